"""Every image source type, converted to BGR uint8; bad sources name themselves."""

from __future__ import annotations

import http.server
import threading

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit.data.sources import SourceError, iter_images, load_frame

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
