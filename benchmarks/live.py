"""Live tracking: a 720p stream paced at its frame rate, one object, overlay video written; frames per second kept
up with and the latency from a frame's arrival to its mask (Results yielded).

The stream is an mp4 read through OpenCV as a live source (forward only, no length), each frame released at its
arrival time (``i / fps`` after the first), so a system that falls behind shows it as a growing latency.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from ultralytics import ASSETS

from samkit.data.video import StreamVideo

SIZE = (1280, 720)
BOX = [480, 200, 800, 700]


def make_clip(path: Path, n: int, fps: float = 30.0) -> Path:
    base = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), SIZE)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    for i in range(n):
        writer.write(np.roll(base, 4 * i, axis=1))
    writer.release()
    return path


class PacedStream(StreamVideo):
    """A video file read as a live source whose frame ``i`` arrives ``i / fps`` seconds after the first."""

    def __init__(self, path: Path, fps: float):
        super().__init__(str(path))
        self.rate = fps
        self.start: float | None = None
        self.arrival: dict[int, float] = {}

    def read(self, index: int) -> np.ndarray:
        if index not in self.arrival:
            if self.start is None:
                self.start = time.perf_counter()
            due = self.start + index / self.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            self.arrival[index] = max(due, time.perf_counter()) if wait > 0 else due
        return super().read(index)


def run(folder: Path, size: str, device: str, half: bool, compile_: bool, n_frames: int, fps: float = 30.0) -> str:
    """One line of markdown: processed FPS and latency p50 / p95 (ms) over the frames after the first 10."""
    from benchmarks.common import make_checkpoint
    from samkit import SAM

    path = make_checkpoint(folder, size)
    clip = make_clip(folder / "live.mp4", n_frames, fps)
    model = SAM(path, device=device, verbose=False, half=half, compile=compile_)
    if compile_:  # the first calls compile: a short warm-up track first
        for _ in model.track(str(clip), bboxes=BOX, stream=True, verbose=False, max_frames=20):
            pass
    source = PacedStream(clip, fps)
    done: dict[int, float] = {}
    for r in model.track(source, bboxes=BOX, stream=True, verbose=False, save=True, project=folder / "runs",
                         exist_ok=True):
        done[r.frame] = time.perf_counter()
    frames = sorted(done)
    settled = frames[10:] if len(frames) > 12 else frames
    lat = np.array([(done[i] - source.arrival[i]) * 1000 for i in settled])
    elapsed = done[frames[-1]] - source.arrival[frames[0]]
    how = f"{device}{' bf16' if half else ''}{' compiled' if compile_ else ''}"
    fps_kept = len(frames) / elapsed
    p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
    return (f"| sam2.1 {size} | {how} | {SIZE[0]}x{SIZE[1]} at {fps:g} FPS | {len(frames)} | {fps_kept:.1f} | "
            f"{p50:.0f} | {p95:.0f} |")


HEADER = ("| model | device | stream | frames | FPS kept | latency p50 (ms) | latency p95 (ms) |\n"
          "|---|---|---|---|---|---|---|")
