"""Every image source type, converted to BGR uint8; bad sources name themselves."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit.data import sources
from samkit.data.sources import SourceError, iter_images, load_frame, read_image, read_url
from tests.helpers import png_bytes

BUS = ASSETS / "bus.jpg"


def frames(source):
    return [load_frame(it, i) for i, it in enumerate(iter_images(source))]


@pytest.fixture(scope="module")
def bgr():
    return cv2.imread(str(BUS))


def test_path_str_and_pathlib(bgr):
    for s in (str(BUS), BUS):
        (f,) = frames(s)
        assert np.array_equal(f.image, bgr) and f.path == str(BUS)


def test_folder_glob_and_list_natural_order(tmp_path, bgr):
    small = bgr[:50, :60]
    for name in ("frame10.png", "frame2.png", "frame1.jpg", "notes.txt"):
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            cv2.imwrite(str(tmp_path / name), small)
    names = [f.path.rsplit("/", 1)[-1] for f in frames(tmp_path)]
    assert names == ["frame1.jpg", "frame2.png", "frame10.png"]
    assert [f.path.rsplit("/", 1)[-1] for f in frames(str(tmp_path / "*.png"))] == ["frame2.png", "frame10.png"]
    assert len(frames([tmp_path / "frame2.png", str(BUS)])) == 2


def test_url(bgr, tmp_path):
    data = cv2.imencode(".png", bgr)[1].tobytes()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = data if self.path == "/bus.png" else b"not an image"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        (f,) = frames(f"{url}/bus.png")
        assert np.array_equal(f.image, bgr) and f.path.endswith("/bus.png")
        with pytest.raises(SourceError, match="did not return a decodable image"):
            frames(f"{url}/other.png")
    finally:
        srv.shutdown()


def test_numpy_pil_tensor_agree(bgr):
    from PIL import Image

    rgb = bgr[..., ::-1].copy()
    assert np.array_equal(frames(bgr)[0].image, bgr)
    assert np.array_equal(frames(Image.fromarray(rgb))[0].image, bgr)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    assert np.array_equal(frames(t[None])[0].image, bgr)
    assert len(frames(torch.stack([t, t]))) == 2
    assert np.array_equal(frames(torch.from_numpy(rgb).permute(2, 0, 1))[0].image, bgr)  # uint8 CHW


def test_conversions(tmp_path, bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert frames(gray)[0].image.shape == (*gray.shape, 3)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    assert np.array_equal(frames(bgra)[0].image, bgr)
    sixteen = bgr.astype(np.uint16) * 257
    assert np.array_equal(frames(sixteen)[0].image, bgr)
    cv2.imwrite(str(tmp_path / "deep.png"), sixteen)
    assert np.array_equal(frames(tmp_path / "deep.png")[0].image, bgr)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    assert frames(tmp_path / "gray.png")[0].image.shape == bgr.shape
    assert np.array_equal(frames(bgr.astype(np.float32) / 255.0)[0].image, bgr)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.jpg", "does not exist"),
        (lambda d: (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage") and d / "corrupt.jpg", "cannot be decoded"),
        (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "cannot be decoded"),
        (lambda d: (d / "sub").mkdir() or d / "sub", "holds no image files"),
        (lambda d: str(d / "*.nothing"), "matches no image files"),
        (lambda d: 42, "unsupported source type int"),
        (lambda d: [], "empty list"),
        (lambda d: np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\)"),
        (lambda d: np.full((4, 4, 3), 2.0, np.float32), "expected 0-1"),
        (lambda d: np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (lambda d: torch.zeros(2, 3), r"tensor of shape \(2, 3\)"),
        (lambda d: torch.full((3, 4, 4), 7.0), "expected RGB in 0-1"),
        (lambda d: np.zeros((0, 5, 3), np.uint8), "empty"),
    ],
)
def test_bad_sources(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        frames(make(tmp_path))


def test_pixel_limit_default_takes_large_camera_images():
    assert sources.MAX_PIXELS >= 8000 * 6000
    header = png_bytes(8000, 6000)  # a 48-Mpx header; its body is not decoded here
    assert sources._declared_size(header) == (8000, 6000)
    sources._check_pixels(8000, 6000, "image", sources._pixel_limit(None))  # within the default: no error
    with pytest.raises(SourceError, match="declares 8000x6000"):
        sources._check_pixels(8000, 6000, "image", sources._pixel_limit(40_000_000))


def test_pixel_limit_on_a_real_image(bgr, monkeypatch):
    h, w = bgr.shape[:2]
    assert np.array_equal(read_image(BUS, max_pixels=w * h), bgr)
    assert np.array_equal(load_frame(str(BUS), max_pixels=0).image, bgr)  # 0: no limit
    over = rf"declares {w}x{h} pixels .* over the limit of {w * h - 1:,} pixels.*max_pixels="
    with pytest.raises(SourceError, match=over):
        read_image(BUS, max_pixels=w * h - 1)
    monkeypatch.setattr(sources, "MAX_PIXELS", 1000)  # the module default applies when max_pixels is None
    with pytest.raises(SourceError, match="bus.jpg' declares"):
        frames(BUS)
    from PIL import Image

    with Image.open(BUS) as im, pytest.raises(SourceError, match="PIL image .*bus.jpg' declares"):
        frames(im)
    with pytest.raises(TypeError, match="max_pixels"):
        read_image(BUS, max_pixels="many")


def test_decompression_bombs_refused_before_decoding(tmp_path):
    """A 20000x20000 PNG of a few KB (decoded: 400 MB gray, 1.2 GB BGR) and a 60000x60000 header are refused from
    their headers: in a child process limited to a little more address space than it holds, with its peak memory
    measured."""
    pytest.importorskip("resource")
    if not sys.platform.startswith("linux"):
        pytest.skip("address-space limit and /proc are Linux-only")
    (tmp_path / "bomb.png").write_bytes(png_bytes(20000, 20000, bit_depth=1, colour=0, rows=True))
    (tmp_path / "huge.png").write_bytes(png_bytes(60000, 60000))
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    child = f"""
import re, resource, time
from samkit.data.sources import SourceError, read_image
import PIL.Image, PIL.PngImagePlugin
vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
soft = vm + 400 * 2**20 if hard == resource.RLIM_INFINITY else min(vm + 400 * 2**20, hard)
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
for name, limit in (("bomb.png", None), ("huge.png", None), ("huge.png", 0)):
    try:
        read_image({str(tmp_path)!r} + "/" + name, max_pixels=limit)
        print("READ", name)
    except SourceError as e:
        print(e)
print("seconds", time.perf_counter() - t)
print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, cwd=repo)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "bomb.png' declares 20000x20000 pixels (400.0 Mpx), over the limit of" in lines[0]
    assert "max_pixels=" in lines[0]
    assert "huge.png' declares 60000x60000 pixels" in lines[1]
    assert "huge.png' cannot be decoded: OpenCV refused it" in lines[2]  # no limit: OpenCV's own cap, as a SourceError
    assert float(lines[3].split()[1]) < 2
    assert int(lines[4].split()[1]) < 50 * 1024


class _Streams(http.server.BaseHTTPRequestHandler):
    """/endless: a body without end; /huge: a declared 1 TB body; /slow: one byte per 50 ms, without end."""

    stop = threading.Event()

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        if self.path == "/huge":
            self.send_header("Content-Length", str(10**12))
        self.end_headers()
        data, pause = (b"x", 0.05) if self.path == "/slow" else (b"\0" * 65536, 0)
        try:
            while not self.stop.is_set():
                self.wfile.write(data)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:  # the client hung up
            pass


@pytest.fixture
def streams():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Streams)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        _Streams.stop.set()
        srv.shutdown()
        srv.server_close()
        _Streams.stop.clear()


def test_url_body_capped_while_reading(streams, monkeypatch):
    monkeypatch.setattr(sources, "MAX_URL_BYTES", 2**20)
    t = time.perf_counter()
    with pytest.raises(SourceError, match=r"image URL 'http://127.0.0.1:\d+/endless' sent more than 1,048,576 bytes"):
        read_url(f"http://{streams}/endless")
    with pytest.raises(SourceError, match=r"/huge' declares 1,000,000,000,000 bytes, over the limit of 1,048,576"):
        frames(f"http://{streams}/huge")
    monkeypatch.setattr(sources, "URL_DEADLINE", 0.3)
    with pytest.raises(SourceError, match=r"/slow' took longer than 0.3 s"):
        read_url(f"http://{streams}/slow", timeout=5)
    assert time.perf_counter() - t < 5


def test_url_messages_hide_credentials(monkeypatch):
    import urllib.error

    def fails(request, timeout):  # a library error that echoes the address it was given
        raise urllib.error.URLError(f"cannot reach {request.host}")

    monkeypatch.setattr(sources.urllib.request, "urlopen", fails)
    with pytest.raises(SourceError, match="cannot be fetched") as e:
        read_url("http://alice:s3cret@127.0.0.1:9/a.png")
    assert "s3cret" not in str(e.value) and "alice" not in str(e.value)
    assert "'http://***@127.0.0.1:9/a.png'" in str(e.value)
    assert sources._shown_url("https://tok@example.com/a.png?x=1") == "https://***@example.com/a.png?x=1"
    assert sources._shown_url("https://example.com/a.png") == "https://example.com/a.png"


def test_url_pixel_limit(file_server, bgr):
    file_server.files["/bus.png"] = cv2.imencode(".png", bgr)[1].tobytes()
    url = f"{file_server.url}/bus.png"
    assert np.array_equal(load_frame(url, max_pixels=bgr.shape[0] * bgr.shape[1]).image, bgr)
    with pytest.raises(SourceError, match=rf"image URL '{url}' declares {bgr.shape[1]}x{bgr.shape[0]} pixels"):
        load_frame(url, max_pixels=1000)
