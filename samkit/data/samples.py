"""Sample inputs for first runs: the images that ship with Ultralytics and a short clip samkit makes from one.

``samkit predict`` without ``source=`` segments :func:`sample_images`, prompted (unless prompts are given) with the
boxes of :func:`sample_detections` (people and the bus, as a detector would give them, with COCO class ids and names);
``samkit track`` without ``source=`` tracks
:data:`SAMPLE_CLIP_BOX` through :func:`sample_clip`, a 2-second pan across Ultralytics' ``zidane.jpg`` (made by
:func:`make_sample_clip`; a clone of the repository has it in ``assets/``, an installed package writes it to the
cache folder on first use).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from samkit.utils import REPO_DIR

CLIP_NAME = "pan.mp4"
CLIP_FRAMES, CLIP_FPS, CLIP_SIZE = 24, 12.0, (640, 360)  # frames, frames per second, (width, height)
_SCALE, _PAN = 0.6, 128  # zidane.jpg (1280x720) scaled to 768x432; the window moves 128 px to the left
#: A box (xyxy pixels of frame 0) around the man on the right of the sample clip.
SAMPLE_CLIP_BOX = [324.0, 24.0, 564.0, 360.0]


def sample_images() -> list[str]:
    """The sample photographs that ship with ``ultralytics`` (``bus.jpg``, ``zidane.jpg``)."""
    from ultralytics import ASSETS

    return [str(ASSETS / "bus.jpg"), str(ASSETS / "zidane.jpg")]


def sample_path(source) -> str | None:
    """The sample image (in Ultralytics' ``ASSETS``) a bare file name such as ``"bus.jpg"`` names when no such file
    is here, as ``yolo predict source=bus.jpg`` finds it; None for anything else (a path, a file that exists)."""
    if not isinstance(source, str) or not source or os.path.exists(source) or Path(source).name != source:
        return None
    from ultralytics import ASSETS

    found = ASSETS / source
    return str(found) if found.is_file() else None


#: Boxes (xyxy pixels) and COCO class ids of the objects in the sample images, as a detector would report them.
SAMPLE_BOXES = {
    "bus.jpg": ([[30, 230, 800, 740], [52, 398, 248, 905], [222, 405, 342, 865], [668, 395, 810, 880]], [5, 0, 0, 0]),
    "zidane.jpg": ([[125, 195, 800, 720], [745, 40, 1150, 720]], [0, 0]),
}
SAMPLE_NAMES = {0: "person", 5: "bus"}


def sample_detections() -> list:
    """One Ultralytics ``Results`` per sample image holding :data:`SAMPLE_BOXES` (confidence 1), in the order of
    :func:`sample_images`: prompts for them, as a detector's results would be."""
    import torch
    from ultralytics.engine.results import Results

    out = []
    for path in sample_images():
        boxes, cls = SAMPLE_BOXES[Path(path).name]
        data = torch.tensor([[*b, 1.0, c] for b, c in zip(boxes, cls)], dtype=torch.float32)
        out.append(Results(cv2.imread(path), path=path, names=dict(SAMPLE_NAMES), boxes=data))
    return out


def clip_frames() -> list[np.ndarray]:
    """The sample clip's frames (BGR uint8, 360x640): a window panning left across a scaled ``zidane.jpg``."""
    from ultralytics import ASSETS

    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    if image is None:
        raise FileNotFoundError(f"{ASSETS / 'zidane.jpg'} (shipped with ultralytics) cannot be read")
    big = cv2.resize(image, None, fx=_SCALE, fy=_SCALE, interpolation=cv2.INTER_AREA)
    w, h = CLIP_SIZE
    frames = []
    for i in range(CLIP_FRAMES):
        x = round(_PAN * (1 - i / (CLIP_FRAMES - 1)))
        frames.append(np.ascontiguousarray(big[:h, x : x + w]))
    return frames


def make_sample_clip(path: str | Path) -> Path:
    """Write the sample clip to ``path`` (mp4, codec ``mp4v``), atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, CLIP_SIZE)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write mp4 videos here ({path})")
    try:
        for frame in clip_frames():
            writer.write(frame)
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def sample_clip() -> Path:
    """The sample clip: ``assets/pan.mp4`` of a repository clone, else made once in the cache folder."""
    shipped = REPO_DIR / "assets" / CLIP_NAME
    if shipped.is_file():
        return shipped
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "samkit" / CLIP_NAME
    return cache if cache.is_file() else make_sample_clip(cache)
