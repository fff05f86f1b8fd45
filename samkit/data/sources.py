"""Image sources: everything a user may pass as ``source``, turned into BGR uint8 arrays.

Accepted: a path (``str`` / ``Path``), a folder (its images, natural sort), a glob (``"imgs/*.jpg"``), an
``http(s)`` URL, a list of any of these, a numpy array (HWC, BGR as OpenCV reads it; HW grayscale; HWC4 BGRA;
uint8, uint16 or float in 0-1), a PIL image (RGB, or any mode PIL can convert), a torch tensor (CHW or BCHW,
RGB, float 0-1, or uint8 0-255).
"""

from __future__ import annotations

import glob as globlib
import os
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
VIDEO_SUFFIXES = {".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv", ".webm"}


class SourceError(ValueError):
    """A source that cannot be read: missing, unreadable, corrupt or of an unsupported type."""


@dataclass
class Frame:
    """One image to segment.

    Attributes:
        image: HxWx3 uint8 array, BGR colour order (OpenCV's).
        path: Where it came from (file path, URL) or a generated name such as ``"image0.jpg"``.
    """

    image: np.ndarray
    path: str


def natural_key(text: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def _to_bgr_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Normalise any numpy image to HxWx3 uint8 BGR."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise SourceError(f"{name}: image array of shape {arr.shape} is not HxW, HxWx3 or HxWx4")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SourceError(f"{name}: image array of shape {arr.shape} is empty")
    if arr.dtype == np.uint16:
        arr = (arr / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise SourceError(f"{name}: float image contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise SourceError(
                f"{name}: float image values span [{arr.min():.3g}, {arr.max():.3g}]; expected 0-1 "
                f"(or pass uint8 0-255)"
            )
        arr = (arr * 255.0).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise SourceError(f"{name}: image dtype {arr.dtype} is not uint8, uint16 or float")
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(arr)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR; 16-bit, grayscale and alpha images are converted.

    Raises:
        SourceError: The file is missing, unreadable or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"image {str(path)!r} does not exist")
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise SourceError(f"image {str(path)!r} cannot be decoded: corrupt, empty or not an image file")
    return _to_bgr_uint8(img, str(path))


def read_url(url: str, timeout: float = 30) -> np.ndarray:
    """Download and decode an image URL (BGR uint8)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "samkit"}), timeout=timeout) as r:
            data = np.frombuffer(r.read(), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise SourceError(f"image URL {url!r} cannot be fetched: {getattr(e, 'reason', e)}") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise SourceError(f"image URL {url!r} did not return a decodable image")
    return _to_bgr_uint8(img, url)


def _from_pil(img, name: str) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb[..., ::-1])


def _from_tensor(t, name: str) -> list[np.ndarray]:
    import torch

    t = t.detach().cpu()
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise SourceError(f"{name}: tensor of shape {tuple(t.shape)} is not CHW or BCHW with 1 or 3 channels (RGB)")
    if t.dtype == torch.uint8:
        arr = t.permute(0, 2, 3, 1).numpy()
    elif t.is_floating_point():
        if not torch.isfinite(t).all():
            raise SourceError(f"{name}: tensor contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < 0 or hi > 1:
            raise SourceError(f"{name}: float tensor values span [{lo:.3g}, {hi:.3g}]; expected RGB in 0-1")
        arr = (t.permute(0, 2, 3, 1).float().numpy() * 255.0).round().astype(np.uint8)
    else:
        raise SourceError(f"{name}: tensor dtype {t.dtype} is not float (0-1) or uint8")
    out = []
    for a in arr:
        out.append(cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if a.shape[2] == 1 else np.ascontiguousarray(a[..., ::-1]))
    return out


def _expand_path(text: str) -> list[str]:
    """A path, folder or glob -> image file paths (natural sort)."""
    if any(c in text for c in "*?[") and not Path(text).exists():
        files = [f for f in globlib.glob(text, recursive=True) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"glob {text!r} matches no image files")
        return sorted(files, key=natural_key)
    p = Path(text).expanduser()
    if p.is_dir():
        files = [str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"folder {text!r} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return sorted(files, key=natural_key)
    if not p.exists():
        raise SourceError(f"source {text!r} does not exist")
    return [str(p)]


def is_video_path(source) -> bool:
    """True for a path or URL whose suffix is a video container."""
    return isinstance(source, (str, Path)) and Path(urllib.parse.urlparse(str(source)).path).suffix.lower() in VIDEO_SUFFIXES


def iter_images(source) -> list:
    """Split a source into items that each give one image (paths, URLs, arrays, PIL images, tensors).

    Nothing is decoded here; :func:`load_frame` reads each item. Lists are flattened.

    Raises:
        SourceError: An unsupported type, a missing path, an empty folder or a glob matching nothing.
    """
    items: list = []
    todo = list(source) if isinstance(source, (list, tuple)) else [source]
    if isinstance(source, (list, tuple)) and not todo:
        raise SourceError("source is an empty list")
    for s in todo:
        if isinstance(s, (str, os.PathLike)):
            text = str(s)
            if text.lower().startswith(("http://", "https://")):
                items.append(text)
            else:
                items.extend(_expand_path(text))
        elif isinstance(s, np.ndarray) or _is_pil(s):
            items.append(s)
        elif type(s).__module__.startswith("torch"):
            if getattr(s, "ndim", 0) == 4:
                items.extend(s[i] for i in range(s.shape[0]))
            else:
                items.append(s)
        else:
            raise SourceError(
                f"unsupported source type {type(s).__name__}; expected a path, folder, glob, URL, numpy array "
                f"(HWC BGR), PIL image, torch tensor (BCHW RGB 0-1) or a list of these"
            )
    return items


def _is_pil(obj) -> bool:
    return type(obj).__module__.startswith("PIL.")


def load_frame(item, index: int = 0) -> Frame:
    """Read one item from :func:`iter_images` into a :class:`Frame` (BGR uint8)."""
    if isinstance(item, str):
        if item.lower().startswith(("http://", "https://")):
            return Frame(read_url(item), item)
        return Frame(read_image(item), item)
    name = f"image{index}.jpg"
    if isinstance(item, np.ndarray):
        return Frame(_to_bgr_uint8(item, name), name)
    if _is_pil(item):
        return Frame(_from_pil(item, name), getattr(item, "filename", "") or name)
    return Frame(_from_tensor(item, name)[0], name)
