"""Video sources: frames decoded on demand, never all in memory.

:func:`open_video` accepts a video file OpenCV can read (mp4, avi, mkv, ...), a folder of frame images (any
names, natural order), a list / array of frames, or a live source (a webcam index or an rtsp/http(s) stream
URL). Every source gives frames as HxWx3 uint8 BGR arrays by index:

- forward iteration reads sequentially, with a small read-ahead in a background thread;
- reverse iteration reads short chunks forward and hands them out backwards (memory bounded by the chunk);
- random access (:meth:`VideoSource.read`) seeks.

Live sources are forward-only and have no length. A frame that cannot be read raises :class:`VideoReadError`
naming the source and the frame index; frames already handed out stay valid, so a caller that yields results
as it goes keeps everything produced before the error.
"""

from __future__ import annotations

import queue
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from samkit.data.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, SourceError, natural_key, to_bgr_uint8

READ_AHEAD = 4  # frames decoded ahead of the consumer
REVERSE_CHUNK = 16  # frames read at once when going backwards


class VideoReadError(SourceError):
    """A frame of a video could not be read (truncated or corrupt file, dropped stream)."""


class FrameIndexError(IndexError, ValueError):
    """A frame index outside the video (an ``IndexError``, and a ``ValueError`` like samkit's other refusals)."""


class VideoSource:
    """Base class: a sequence of frames of one size.

    Attributes:
        name: What the source was opened from (path, URL, ``"<arrays>"``).
        height, width: Frame size in pixels (from the first frame).
        fps: Frames per second when the source says (files, streams), else None.
        live: True for webcams and streams (forward-only, no length).
    """

    live = False

    def __init__(self, name: str):
        self.name = name
        self.fps: float | None = None
        self.height = self.width = 0

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def length(self) -> int | None:
        """Number of frames, None for live sources."""
        return None if self.live else len(self)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as HxWx3 uint8 BGR."""
        raise NotImplementedError

    def check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index {index!r} must be an integer")
        n = self.length
        if index < 0 or (n is not None and index >= n):
            raise FrameIndexError(f"frame {index} is out of range: {self.name} has {n} frames (0..{n - 1})"
                                  if n is not None else f"frame {index} is negative")
        return int(index)

    def frames(self, start: int = 0, reverse: bool = False,
               stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` from ``start`` forward (to ``stop`` exclusive, default the end) or backward (to
        ``stop`` exclusive, default frame 0 included)."""
        start = self.check_index(start)
        if reverse:
            if self.live:
                raise ValueError(f"{self.name} is a live source: it can only be read forward")
            end = -1 if stop is None else stop
            yield from self._reverse(start, end)
            return
        yield from prefetch(self._forward(start, stop), READ_AHEAD)

    def _forward(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        end = len(self) if stop is None else min(stop, len(self))
        for i in range(start, end):
            yield i, self.read(i)

    def _reverse(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        i = start
        while i > end:
            lo = max(end + 1, i - REVERSE_CHUNK + 1)
            chunk = list(self._forward(lo, i + 1))
            for j, frame in reversed(chunk):
                yield j, frame
            i = lo - 1

    def _check_size(self, frame: np.ndarray, index: int) -> np.ndarray:
        if not self.height:
            self.height, self.width = frame.shape[:2]
        elif frame.shape[:2] != (self.height, self.width):
            raise VideoReadError(f"{self.name}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but the video is "
                                 f"{self.width}x{self.height}; every frame must have the same size")
        return frame

    def close(self) -> None:
        """Release files and devices (also done by ``with``)."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        n = "live" if self.live else f"{len(self)} frames"
        return f"{type(self).__name__}({self.name!r}, {n}, {self.width}x{self.height})"


class FolderVideo(VideoSource):
    """A folder of frame images, in natural order of their names (``frame2`` before ``frame10``)."""

    def __init__(self, folder: str | Path):
        super().__init__(str(folder))
        files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not files:
            raise SourceError(f"video folder {str(folder)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.files = sorted(files, key=lambda p: natural_key(p.name))
        self._check_size(self.read(0), 0)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> np.ndarray:
        index = self.check_index(index)
        path = self.files[index]
        frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if frame is None:
            raise VideoReadError(f"{self.name}: frame {index} ({path.name}) cannot be read as an image")
        return self._check_size(to_bgr_uint8(frame, str(path)), index)


class ArrayVideo(VideoSource):
    """Frames given as a list of HxWx3 BGR arrays (or a TxHxWx3 array); any image array form is converted."""

    def __init__(self, frames):
        super().__init__("<arrays>")
        if isinstance(frames, np.ndarray) and frames.ndim in (3, 4):
            frames = list(frames)
        if not isinstance(frames, (list, tuple)) or not frames:
            raise SourceError("a video given as arrays needs a non-empty list of HxWx3 frames")
        self._frames = frames
        self._check_size(self.read(0), 0)

    def __len__(self) -> int:
        return len(self._frames)

    def read(self, index: int) -> np.ndarray:
        index = self.check_index(index)
        f = self._frames[index]
        if not isinstance(f, np.ndarray):
            raise SourceError(f"frame {index} is a {type(f).__name__}, not a numpy array")
        return self._check_size(to_bgr_uint8(f, f"frame {index}"), index)


class FileVideo(VideoSource):
    """A video file read with OpenCV; sequential reads are cheap, other reads seek."""

    def __init__(self, path: str | Path):
        super().__init__(str(path))
        if not Path(path).is_file():
            raise SourceError(f"video file {str(path)!r} does not exist")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"{str(path)!r} cannot be opened as a video (unsupported or corrupt file)")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None
        self._n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._pos = 0
        self._lock = threading.Lock()
        if self._n <= 0:
            raise SourceError(f"{str(path)!r} has no frames")
        self._check_size(self.read(0), 0)

    def __len__(self) -> int:
        return self._n

    def read(self, index: int) -> np.ndarray:
        index = self.check_index(index)
        with self._lock:
            if index != self._pos:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = self._cap.read()
            self._pos = index + 1 if ok else -1
        if not ok or frame is None:
            raise VideoReadError(f"{self.name}: frame {index} of {self._n} cannot be read (the file is truncated "
                                 "or corrupt from there)")
        return self._check_size(frame, index)

    def close(self) -> None:
        self._cap.release()


class StreamVideo(VideoSource):
    """A webcam (index) or a network stream (rtsp://, http(s)://): forward only, frames as they arrive."""

    live = True

    def __init__(self, source: int | str):
        super().__init__(str(source))
        self._cap = cv2.VideoCapture(source)
        if not self._cap.isOpened():
            what = f"webcam {source}" if isinstance(source, int) else f"stream {source!r}"
            raise SourceError(f"{what} cannot be opened")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None
        self._next = 0
        self._last: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        raise TypeError(f"{self.name} is a live source: it has no length")

    def read(self, index: int) -> np.ndarray:
        """The next frame, or again the frame read last (a prompted frame is read for its prompt, then for
        tracking); any other index is an error."""
        index = self.check_index(index)
        if self._last is not None and index == self._last[0]:
            return self._last[1]
        if index != self._next:
            raise ValueError(f"{self.name} is a live source: frame {index} cannot be read out of order "
                             f"(the next frame is {self._next})")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise VideoReadError(f"{self.name}: the stream ended or dropped at frame {index}")
        self._next += 1
        self._last = (index, self._check_size(frame, index))
        return frame

    def _forward(self, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
        i = start
        while stop is None or i < stop:
            try:
                frame = self.read(i)
            except VideoReadError:
                return  # a live source ends when it stops sending frames
            yield i, frame
            i += 1

    def close(self) -> None:
        self._cap.release()


#: URL schemes of live streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtp", "udp", "tcp")


def is_live(source) -> bool:
    """Whether ``source`` is live: a webcam index or a streaming URL (rtsp, rtmp, ...). An http(s) URL is a file
    (an image, or a video by its suffix), not live. The one test of liveness in samkit."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return True
    return isinstance(source, str) and urllib.parse.urlparse(source).scheme.lower() in STREAM_SCHEMES


def is_stream(source) -> bool:
    """Whether a video source is read forward only, as it arrives: a live source, or a video file behind an
    http(s) URL."""
    return is_live(source) or (isinstance(source, str)
                               and urllib.parse.urlparse(source).scheme.lower() in ("http", "https"))


def open_video(source) -> VideoSource:
    """A :class:`VideoSource` for a video file, a folder of frames, a list/array of frames, a webcam index or a
    stream URL (see the module docstring)."""
    if isinstance(source, VideoSource):
        return source
    if is_stream(source):
        return StreamVideo(int(source) if isinstance(source, (int, np.integer)) else source)
    if isinstance(source, (list, tuple, np.ndarray)):
        return ArrayVideo(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return FolderVideo(path)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            raise SourceError(f"{str(source)!r} is an image, not a video: segment images with predict "
                              "(model.predict / samkit predict); a video made of frame images is a folder of them")
        if path.suffix.lower() in VIDEO_SUFFIXES or path.is_file():
            return FileVideo(path)
        raise SourceError(f"video source {str(source)!r} does not exist")
    raise SourceError(
        f"unsupported video source of type {type(source).__name__}: expected a video file, a folder of frames, a "
        "list of arrays, a webcam index or a stream URL"
    )


_DONE = object()


def prefetch(it: Iterator, size: int) -> Iterator:
    """Run ``it`` in a background thread, ``size`` items ahead; errors re-raise in the consumer at the point
    where they happened. Closing the returned generator stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, name="samkit-video-read-ahead", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.05)
