"""Video benchmarks: per-frame tracking time with 1 and 3 objects, samkit against Meta's video predictor."""

from __future__ import annotations

import contextlib
import time
import types
from pathlib import Path

import cv2
import numpy as np
import torch
from ultralytics import ASSETS

from benchmarks.common import MODELS, Table, make_checkpoint, sync

BOXES = [[40, 60, 200, 200], [220, 40, 310, 200], [100, 150, 260, 235], [0, 0, 80, 80], [240, 0, 320, 60],
         [0, 160, 90, 240], [150, 20, 230, 110], [260, 180, 320, 240]]


def make_frames(folder: Path, n: int) -> Path:
    """``n`` JPEG frames (320x240, bus.jpg sliding right): the one kind of input the reference reads."""
    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (320, 240))
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), np.roll(base, 3 * i, axis=1))
    return folder


STEADY = 8  # from this frame on the memory bank is full (7 memories + the prompted frame): steady-state cost


def _per_frame_ms(gen, device: str, whole: list | None = None) -> float:
    """Median milliseconds between consecutive frames of a propagation generator: over the frames from
    ``STEADY`` on when the video is long enough (memory bank full), else over every frame but the first. ``whole``
    gets the mean milliseconds per frame of the whole propagation (first frame, memory filling, decoding)."""
    times, t = [], time.perf_counter()
    start = t
    for _ in gen:
        sync(device)
        now = time.perf_counter()
        times.append((now - t) * 1000)
        t = now
    if whole is not None:
        whole.append((t - start) * 1000 / max(len(times), 1))
    return float(np.median(times[STEADY:] if len(times) > STEADY + 2 else times[1:]))


def _reference(size: str, path: Path, device: str, half: bool):
    import sam2.sam2_video_predictor as svp
    from sam2.build_sam import build_sam2_video_predictor

    if device == "cpu" or not half:  # the reference keeps memories in bf16: fp32 runs need them kept fp32
        proxy = types.ModuleType("torch_fp32_memories")
        proxy.__dict__.update(torch.__dict__)
        proxy.bfloat16 = torch.float32
        svp.torch = proxy
    return build_sam2_video_predictor(MODELS[size][0], ckpt_path=str(path), device=device)


def run(table: Table, folder: Path, size: str, device: str, half: bool, n_frames: int,
        objects: list[int] = (1, 3), compile_: bool = False) -> None:
    from samkit import SAM

    path = make_checkpoint(folder, size)
    frames = make_frames(folder / "frames", n_frames)
    tag = f"sam2.1 {size} video" + (" bf16" if half else "") + (" compiled" if compile_ else "")
    model = SAM(path, device=device, verbose=False, half=half, compile=compile_)
    ref = None
    if compile_:  # compilation happens on the first frames of every shape: one untimed pass first
        with model.video(frames) as v:
            v.add(frame=0, obj_id=1, box=BOXES[0])
            for _ in v.propagate():
                pass
    try:
        ref = None if compile_ else _reference(size, path, device, half)  # compiled: samkit's column only
    except ImportError:
        print("  (sam2 reference not installed: reference column left empty)")
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if half
                else contextlib.nullcontext())
    for k in objects:
        if not 1 <= k <= len(BOXES):
            raise ValueError(f"{k} objects: the video cases have boxes for 1 to {len(BOXES)}")
        whole: list[float] = []
        with model.video(frames) as v:
            for i in range(k):
                v.add(frame=0, obj_id=i + 1, box=BOXES[i])
            ours = _per_frame_ms(v.propagate(), device, whole)
        theirs = None
        if ref is not None:
            with autocast, torch.inference_mode():
                state = ref.init_state(str(frames))
                for i in range(k):
                    ref.add_new_points_or_box(state, frame_idx=0, obj_id=i + 1, box=np.array(BOXES[i], np.float32))
                theirs = _per_frame_ms(ref.propagate_in_video(state), device)
        table.add(tag, f"per frame, {k} object{'s' if k > 1 else ''}", samkit=ours, reference=theirs)
        print(f"  {tag}: whole propagation, {k} object{'s' if k > 1 else ''}: {whole[0]:.1f} ms a frame "
              f"({1000 / whole[0]:.1f} FPS, frame decoding included)", flush=True)
