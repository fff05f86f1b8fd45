"""Overlay videos: annotated frames by index -> one video file, in frame order, finished atomically.

Tracking from a frame in the middle of a video yields frames ``k..end`` and then ``k-1..0``; the writer puts them
in order anyway. Frames that arrive before their turn wait on disk (JPEG, quality 95, in a temporary folder next to
the output), never in memory, and are written as soon as the frames before them are in. Until :meth:`close` the
video is a hidden temporary file; closing (also after an error) syncs it to the disk and renames it into place, so
the frames produced before a failure are kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from samkit.utils import LOGGER
from samkit.writers.atomic import OutputError, make_dirs

FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


class VideoOverlayWriter:
    """Write BGR frames given by index to ``path`` in index order.

    Args:
        path: Output file; the suffix picks the container (.mp4 default codec ``mp4v``, .avi ``MJPG``).
        fps: Frames per second (30 when the source did not say).
        first: The first frame index expected; frames before it are never waited for.
    """

    def __init__(self, path: str | Path, fps: float | None = None, first: int = 0):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise ValueError(f"cannot write a video as {suffix!r} ({path}); use one of {sorted(FOURCC)}")
        self.fps = float(fps) if fps and fps > 0 else 30.0
        make_dirs(self.path.parent)
        stem = self.path.stem[:200]  # hidden names stay under the usual 255-byte limit for long video names
        self._tmp = self.path.with_name(f".{stem}.partial{suffix}")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._next = first
        self._waiting: dict[int, Path] = {}
        self._spool: Path | None = None
        self.frames_written = 0

    def write(self, index: int, image: np.ndarray) -> None:
        """Add frame ``index`` (HxWx3 uint8 BGR; every frame the same size)."""
        if index < self._next or index in self._waiting:
            LOGGER.warning("%s: frame %d was given twice; the first one is kept", self.path, index)
            return
        if index == self._next:
            self._append(image)
            self._flush()
        else:
            if self._spool is None:
                self._spool = Path(tempfile.mkdtemp(prefix=f".{self.path.stem[:200]}.frames.", dir=self.path.parent))
            f = self._spool / f"{index:09d}.jpg"
            if not cv2.imwrite(str(f), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write a waiting frame to {f}")
            self._waiting[index] = f

    def _append(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                if not os.access(self.path.parent, os.W_OK):
                    raise OutputError(f"cannot write {self.path}: permission denied on folder {self.path.parent}",
                                      self.path)
                raise OutputError(f"cannot write {self.path}: OpenCV cannot write {self.path.suffix} videos here",
                                  self.path)
        elif (w, h) != self._size:
            raise ValueError(f"frame of size {w}x{h} does not match the video's {self._size[0]}x{self._size[1]}")
        self._writer.write(np.ascontiguousarray(image))
        self.frames_written += 1
        self._next += 1

    def _flush(self) -> None:
        while self._next in self._waiting:
            f = self._waiting.pop(self._next)
            self._append(cv2.imread(str(f)))
            f.unlink()

    def close(self) -> Path | None:
        """Write the frames still waiting (in order, skipping missing indices), finish the file and move it into
        place; returns its path (None when no frame was given)."""
        try:
            for index in sorted(self._waiting):
                self._next = index
                self._flush()
        finally:
            self._waiting.clear()
            if self._spool is not None:
                shutil.rmtree(self._spool, ignore_errors=True)
                self._spool = None
            done = self._writer is not None
            if done:
                self._writer.release()
                self._writer = None
                with open(self._tmp, "rb+") as f:  # on the disk before it takes the name, as atomic writes are
                    os.fsync(f.fileno())
                os.replace(self._tmp, self.path)
        return self.path if done else None

    def __enter__(self) -> VideoOverlayWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
