"""Image sources: everything a user may pass as ``source``, turned into BGR uint8 arrays.

Accepted: a path (``str`` / ``Path``), a folder (its images, natural sort), a glob (``"imgs/*.jpg"``), an
``http(s)`` URL, a list of any of these, a numpy array (HWC, BGR as OpenCV reads it; HW grayscale; HWC4 BGRA;
uint8, uint16 or float in 0-1), a PIL image (RGB, or any mode PIL can convert), a torch tensor (CHW or BCHW,
RGB, float 0-1, or uint8 0-255).

Encoded images (files, URLs) are bounded before they are decoded: the width and height an image declares in its
header are checked against :data:`MAX_PIXELS` (per call: ``max_pixels=``), so a small file declaring a huge canvas
(a "decompression bomb") is refused without allocating it; a URL's body is read in chunks up to
:data:`MAX_URL_BYTES` within :data:`URL_DEADLINE` seconds.
"""

from __future__ import annotations

import glob as globlib
import http.client
import io
import numbers
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
VIDEO_SUFFIXES = {".asf", ".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ts", ".wmv", ".webm"}

MAX_PIXELS = 120_000_000
"""Most pixels (width x height) an encoded image may declare before it is decoded; ``max_pixels=`` overrides it
per call, and a value of 0 or less (here or per call) turns the check off. 120 Mpx takes every single-shot camera
frame up to 100-Mpx medium format (11648x8736) and phone/DSLR images (48 Mpx is 8000x6000) with room to spare,
while its decoded 8-bit BGR array stays near 360 MB; larger mosaics and scans need ``max_pixels=``."""

MAX_URL_BYTES = 256 * 2**20
"""Most bytes an image URL's body may have (256 MiB); checked against ``Content-Length`` and while reading."""

URL_DEADLINE = 300.0
"""Seconds a whole image URL download may take (connect and each read also time out after ``timeout``)."""

_URL_CHUNK = 1 << 16
_PIL_LIMIT_LOCK = threading.Lock()


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


def to_bgr_uint8(arr: np.ndarray, name: str) -> np.ndarray:
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
        # round(x / 257) in integers: a quarter of the float64 temporary's memory for a large 16-bit image
        wide = arr.astype(np.uint32)
        wide += 128
        wide //= 257
        arr = wide.astype(np.uint8)
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


def _pixel_limit(max_pixels) -> float | None:
    """The pixel limit for one read: ``None`` -> :data:`MAX_PIXELS`; 0 or less -> no limit (returns ``None``)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or limit != limit:
        raise TypeError(f"max_pixels must be a number of pixels (0: no limit) or None, not {limit!r:.40}")
    return limit if limit > 0 else None


def _check_pixels(width: int, height: int, what: str, limit: float | None, verb: str = "declares") -> None:
    if limit is not None and width * height > limit:
        raise SourceError(
            f"{what} {verb} {width}x{height} pixels ({width * height / 1e6:.1f} Mpx), over the limit of "
            f"{limit:,.0f} pixels; if it is a real image, raise the limit with max_pixels=<pixels> (0: no limit) "
            f"or samkit.data.sources.MAX_PIXELS"
        )


def pil_open(fp):
    """Pillow's own ``Image.open``. Importing Ultralytics replaces ``PIL.Image.open`` with a version that, for a file
    Pillow cannot identify (any non-image), runs ``pip install pi-heif`` and retries; samkit reads headers with the
    function Ultralytics wrapped (which it keeps), so an unknown file is simply not an image here."""
    import sys

    from PIL import Image

    opener = Image.open
    if getattr(opener, "__module__", "") == "ultralytics.utils.patches":
        opener = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", opener)
    return opener(fp)


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an encoded image's header (nothing is decoded), or None when Pillow cannot tell."""
    from PIL import Image

    # Pillow's own decompression-bomb check would warn (89 Mpx) or refuse (179 Mpx) before giving the size; samkit's
    # limit replaces it here, so it is off for this header read only (the lock keeps concurrent reads from
    # restoring the wrong value).
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with pil_open(io.BytesIO(data)) as im:
                width, height = im.size
        except Exception:  # not a format Pillow reads, or a header it cannot parse: OpenCV decides
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    return int(width), int(height)


def _decode(data: bytes, what: str, name: str, undecodable: str, max_pixels=None) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 BGR, refused before decoding when the header declares too many pixels.

    Formats Pillow cannot read the header of are decoded by OpenCV (under its own cap, 2**30 pixels unless
    ``OPENCV_IO_MAX_IMAGE_PIXELS`` says otherwise) and checked after decoding.
    """
    limit = _pixel_limit(max_pixels)
    size = _declared_size(data) if limit is not None and data else None
    if size is not None:
        _check_pixels(*size, what, limit)
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error as e:
        reason = (getattr(e, "err", "") or str(e)).strip()
        raise SourceError(f"{what} cannot be decoded: OpenCV refused it ({reason}); corrupt or too large") from None
    if img is None:
        raise SourceError(f"{what} {undecodable}")
    if size is None:
        _check_pixels(img.shape[1], img.shape[0], what, limit, "decodes to")
    return to_bgr_uint8(img, name)


def read_image(path: str | Path, max_pixels: float | None = None) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR; 16-bit, grayscale and alpha images are converted.

    Args:
        path: The image file.
        max_pixels: Most pixels (width x height) the file may declare, checked on its header before decoding;
            None: :data:`MAX_PIXELS`; 0 or less: no limit.

    Raises:
        SourceError: The file is missing, unreadable, corrupt, or declares more than ``max_pixels`` pixels.
    """
    path = Path(path)
    what = f"image {str(path)!r}"
    if not path.is_file():
        raise SourceError(f"{what} does not exist")
    try:
        data = path.read_bytes()  # bytes, not cv2.imread: non-ASCII paths work too
    except OSError as e:
        raise SourceError(f"{what} cannot be read: {e.strerror or e}") from None
    return _decode(data, what, str(path), "cannot be decoded: corrupt, empty or not an image file", max_pixels)


def _shown_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _scrub(text: str, url: str) -> str:
    """``text`` (an error's reason) without the userinfo of ``url``."""
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    for secret in {userinfo, *userinfo.split(":", 1)} - {""}:
        text = text.replace(secret, "***")
    return text


def read_url(url: str, timeout: float = 30, max_pixels: float | None = None) -> np.ndarray:
    """Download and decode an image URL (BGR uint8).

    The body is read in chunks: more than :data:`MAX_URL_BYTES` bytes (declared or sent), or a download taking
    longer than :data:`URL_DEADLINE` seconds, is refused. ``timeout`` bounds the connection and each read (the
    deadline is checked between reads, so a stalled read can add up to ``timeout`` to it); ``max_pixels`` is as in
    :func:`read_image`.

    Raises:
        SourceError: The URL cannot be fetched, is too large or too slow, or is not a decodable image.
    """
    shown = _shown_url(url)
    what = f"image URL {shown!r}"
    cap, seconds = MAX_URL_BYTES, URL_DEADLINE
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            declared = (r.headers.get("Content-Length") or "").strip()
            if declared.isdigit() and int(declared) > cap:
                raise SourceError(
                    f"{what} declares {int(declared):,} bytes, over the limit of {cap:,} bytes "
                    f"(samkit.data.sources.MAX_URL_BYTES)"
                )
            total = 0
            while chunk := r.read1(_URL_CHUNK):
                total += len(chunk)
                if total > cap:
                    raise SourceError(
                        f"{what} sent more than {cap:,} bytes, the limit (samkit.data.sources.MAX_URL_BYTES)"
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise SourceError(
                        f"{what} took longer than {seconds:g} s to download (samkit.data.sources.URL_DEADLINE)"
                    )
    except SourceError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as e:
        reason = _scrub(str(getattr(e, "reason", None) or e), url)
        raise SourceError(f"{what} cannot be fetched: {reason}") from None
    return _decode(b"".join(chunks), what, shown, "did not return a decodable image", max_pixels)


def _from_pil(img, name: str, max_pixels=None) -> np.ndarray:
    # A PIL image opened from a file is decoded only by this conversion: its declared size is checked first.
    _check_pixels(*img.size, f"PIL image {name!r}", _pixel_limit(max_pixels))
    try:
        rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise SourceError(f"PIL image {name!r} cannot be decoded: {e}") from None
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
    if not isinstance(source, (str, Path)):
        return False
    return Path(urllib.parse.urlparse(str(source)).path).suffix.lower() in VIDEO_SUFFIXES


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


def load_frame(item, index: int = 0, max_pixels: float | None = None) -> Frame:
    """Read one item from :func:`iter_images` into a :class:`Frame` (BGR uint8).

    ``max_pixels`` bounds what is decoded here (files, URLs, PIL images), as in :func:`read_image`; arrays and
    tensors are already in memory and are not checked.
    """
    if isinstance(item, str):
        if item.lower().startswith(("http://", "https://")):
            return Frame(read_url(item, max_pixels=max_pixels), item)
        return Frame(read_image(item, max_pixels), item)
    name = f"image{index}.jpg"
    if isinstance(item, np.ndarray):
        return Frame(to_bgr_uint8(item, name), name)
    if _is_pil(item):
        path = getattr(item, "filename", "") or name
        return Frame(_from_pil(item, path, max_pixels), path)
    return Frame(_from_tensor(item, name)[0], name)
