"""Plain helpers shared by the tests (the fixtures built on them live in conftest.py).

Checkpoints with random weights, synthetic images (PNG headers too) and videos, mask comparisons, a local HTTP
server, and Meta's reference implementations (PyPI ``sam2`` and ``segment-anything``) loaded with the same random
weights as samkit, with the two patches the SAM 2 reference needs to run on a CPU.
"""

from __future__ import annotations

import copy
import http.server
import os
import shutil
import struct
import threading
import time
import types
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from samkit import SAM
from samkit.nn import build_network

# ---------------------------------------------------------------------------------------------- random weights


def save_random(path: Path, arch: str, version: str | None = None, layout: str = "model", seed: int = 0) -> dict:
    """Build ``arch`` with random weights (seeded), save it to ``path`` and return the saved state dict.

    layout: ``"model"`` for ``{"model": sd}`` (Meta's and Ultralytics' files), ``"bare"`` for the state dict itself.
    """
    torch.manual_seed(seed)
    sd = build_network(arch, version).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd} if layout == "model" else sd, path)
    return sd


def save_present(path: Path, arch: str, seed: int = 0) -> Path:
    """SAM 2.1 random weights whose object-presence head always says "present" (random heads mostly say absent,
    which would leave every video mask empty and a comparison empty too); saved to ``path``, which is returned."""
    sd = save_random(path, arch, "2.1", seed=seed)
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 20.0
    torch.save({"model": sd}, path)
    return path


def hardlink_or_copy(src: Path, dst: Path) -> Path:
    """``dst`` with the same bytes as ``src`` (a hard link when the file system allows it)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------- images and videos


def disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """An ``(h, w)`` boolean mask of the disc of radius ``r`` around ``(cx, cy)`` (edge included)."""
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def png_bytes(width: int, height: int, bit_depth: int = 8, colour: int = 2, rows: bool = False) -> bytes:
    """A PNG declaring ``width`` x ``height``; ``rows``: every row present (all zero), else a truncated body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if rows:  # filter byte + zero pixels per row, compressed as a stream so the raw rows never sit in memory
        row = b"\0" * (1 + (width * bit_depth * (3 if colour == 2 else 1) + 7) // 8)
        z = zlib.compressobj(9)
        body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    else:
        body = zlib.compress(b"\0" * 64)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def moving_square_frames(n: int, hw: tuple[int, int] = (96, 128), side: int = 24) -> list:
    """``n`` BGR frames of a white square moving right over a dark background (the frame index is readable
    back from the square's position: x = 2 * index)."""
    return [_square_frame(i, hw, side) for i in range(n)]


def _square_x(index: int, hw: tuple[int, int], side: int) -> int:
    return (2 * index) % (hw[1] - side)


def _square_frame(index: int, hw: tuple[int, int], side: int) -> np.ndarray:
    f = np.full((*hw, 3), 20, np.uint8)
    x = _square_x(index, hw, side)
    f[30 : 30 + side, x : x + side] = 255
    return f


def moving_square_mask(index: int, hw: tuple[int, int] = (96, 128), side: int = 24) -> np.ndarray:
    """The square's pixels on frame ``index`` of ``moving_square_frames(..., hw, side)`` (a boolean mask)."""
    m = np.zeros(hw, bool)
    x = _square_x(index, hw, side)
    m[30 : 30 + side, x : x + side] = True
    return m


def square_left_edge(frame: np.ndarray) -> int:
    """Left edge of the bright square of a ``moving_square_frames`` frame, read back from its pixels (tolerates
    codec blur)."""
    cols = np.flatnonzero(frame[40, :, 0] > 128)
    return int(cols[0])


def read_video(path) -> list:
    """Every frame OpenCV decodes from the video at ``path`` (BGR arrays), in order."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def video_frame_count(path) -> int:
    """The frame count the container of the video at ``path`` declares (OpenCV's ``CAP_PROP_FRAME_COUNT``)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def write_video(path: Path, frames: list, fps: float = 10.0, codec: str = "mp4v") -> Path:
    """Write BGR frames as a video file with OpenCV."""
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert out.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        out.write(f)
    out.release()
    return path


# ---------------------------------------------------------------------------------------------- masks


def mask_iou(a, b) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def cpu_connected_components(mask: torch.Tensor):
    """What the reference's CUDA kernel returns (8-connected labels and per-pixel component areas), on the CPU."""
    m = mask.to(torch.uint8).numpy()
    labels, counts = np.zeros(m.shape, np.int32), np.zeros(m.shape, np.int32)
    for i in range(m.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(m[i, 0], connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA].copy()
        area[0] = 0
        labels[i, 0], counts[i, 0] = lab, area[lab]
    return torch.from_numpy(labels), torch.from_numpy(counts)


# ---------------------------------------------------------------------------------------------- HTTP server


class FileServer:
    """A tiny HTTP server on 127.0.0.1 serving in-memory files with Range support and scripted failures.

    Attributes:
        files: URL path (``"/a.pt"``) -> bytes.
        status: URL path -> HTTP status to answer with instead of the file.
        cut_after: URL path -> number of body bytes after which the next response is cut (once).
        ignore_range: answer 200 with the whole body even when a Range is asked for.
        headers: URL path -> headers to send instead of the usual ones: a value is a string, a function of
            ``(first byte sent, whole body)`` returning one, or None to leave the header out (``{"Content-Length":
            None}``). An ``ETag`` given here is also what ``If-Range`` is compared with.
        trickle: URL path -> seconds to wait between single bytes of the body (for at most 30 s, or until the
            client hangs up).
        require_auth: URL path -> the ``Authorization`` value that path needs (401 without it).
        redirect: URL path -> URL to send the client to (302).
        requests: ``(path, range header or None)`` for every request received.
        request_headers: the headers of every request received (case-insensitive ``.get``), in the order of
            ``requests``.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        self.headers: dict[str, dict] = {}
        self.trickle: dict[str, float] = {}
        self.require_auth: dict[str, str] = {}
        self.redirect: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.request_headers: list = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                server.request_headers.append(self.headers)
                if self.path in server.require_auth and self.headers.get("Authorization") != server.require_auth[
                    self.path
                ]:
                    self.send_error(401)
                    return
                if self.path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in server.status:
                    self.send_error(server.status[self.path])
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                extra = server.headers.get(self.path, {})
                if_range = self.headers.get("If-Range")
                if if_range is not None and if_range != extra.get("ETag"):
                    rng = None  # the file changed since the partial download: send all of it
                start = 0
                send = {}
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    status = 206
                    send["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                else:
                    status = 200
                chunk = body[start:]
                send["Content-Length"] = str(len(chunk))
                for name, value in extra.items():
                    value = value(start, body) if callable(value) else value
                    if value is None:
                        send.pop(name, None)
                    else:
                        send[name] = value
                self.send_response(status)
                for name, value in send.items():
                    self.send_header(name, value)
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                delay = server.trickle.get(self.path)
                if delay is not None:
                    stop = time.monotonic() + 30
                    try:
                        for i in range(len(chunk)):
                            if time.monotonic() > stop:
                                break
                            self.wfile.write(chunk[i : i + 1])
                            self.wfile.flush()
                            time.sleep(delay)
                    except OSError:  # the client hung up
                        pass
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------------- Meta's reference

# Meta's configuration files (inside the ``sam2`` package) for samkit's SAM 2 architectures.
SAM2_CONFIGS = {
    ("sam2_t", "2.0"): "configs/sam2/sam2_hiera_t.yaml", ("sam2_s", "2.0"): "configs/sam2/sam2_hiera_s.yaml",
    ("sam2_b", "2.0"): "configs/sam2/sam2_hiera_b+.yaml", ("sam2_l", "2.0"): "configs/sam2/sam2_hiera_l.yaml",
    ("sam2_t", "2.1"): "configs/sam2.1/sam2.1_hiera_t.yaml", ("sam2_s", "2.1"): "configs/sam2.1/sam2.1_hiera_s.yaml",
    ("sam2_b", "2.1"): "configs/sam2.1/sam2.1_hiera_b+.yaml", ("sam2_l", "2.1"): "configs/sam2.1/sam2.1_hiera_l.yaml",
}

# The random weights each reference comparison uses: a file name samkit reads the right model from, and the seed
# the comparisons were checked with (random heads can give degenerate masks, which the tests refuse to compare).
REFERENCE_WEIGHTS = {
    "sam2_t": ("sam2.1_hiera_tiny.pt", 3),
    "sam_b": ("sam_b.pt", 11),
    "mobile_sam": ("mobile_sam.pt", 11),
}


def sam2_reference(path, arch: str = "sam2_t", version: str = "2.1", device: str = "cpu", video: bool = False,
                   hydra_overrides_extra: tuple[str, ...] = ()) -> torch.nn.Module:
    """Meta's SAM 2 model (``video``: its video predictor) built from its own config, with the weights at ``path``
    (None: its own random initialisation)."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    build = build_sam2_video_predictor if video else build_sam2
    return build(SAM2_CONFIGS[(arch, version)], ckpt_path=None if path is None else str(path), device=device,
                 hydra_overrides_extra=list(hydra_overrides_extra))


def sam1_reference(arch: str, sd: dict, path: Path, image_encoder: torch.nn.Module,
                   device: str = "cpu") -> torch.nn.Module:
    """Meta's ``segment_anything`` ``Sam`` holding the state dict ``sd`` (saved at ``path``).

    SAM ViT-B: the reference's own builder, from a bare copy of the state dict beside ``path``. MobileSAM: its
    published code is ``segment_anything`` with a TinyViT image encoder, so the reference is ``segment_anything``'s
    ``Sam`` around a copy of ``image_encoder`` (samkit's TinyViT) with the reference's prompt encoder and decoder.
    """
    if arch == "sam_b":
        from segment_anything import sam_model_registry

        bare = path.with_name("bare.pth")
        torch.save(sd, bare)
        return sam_model_registry["vit_b"](checkpoint=str(bare)).to(device).eval()
    if arch != "mobile_sam":
        raise ValueError(f"no SAM 1 reference for {arch!r}")
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    ref = Sam(
        image_encoder=copy.deepcopy(image_encoder),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=256, iou_head_depth=3,
                                 iou_head_hidden_dim=256,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)),
    )
    ref.load_state_dict(sd)
    return ref.to(device).eval()


def build_reference_pair(directory: Path, arch: str = "sam2_t", device: str = "cpu", present: bool = False,
                         video: bool = False, hydra_overrides_extra: tuple[str, ...] = ()):
    """samkit's ``SAM`` and Meta's reference holding the same random weights (``REFERENCE_WEIGHTS[arch]``), saved
    in ``directory``; returns ``(model, reference, path)``.

    present: SAM 2.1 weights whose object-presence head says "present" (``save_present``), for video comparisons.
    video, hydra_overrides_extra: SAM 2's video predictor, with these overrides of its config.
    """
    name, seed = REFERENCE_WEIGHTS[arch]
    path = Path(directory) / name
    if arch.startswith("sam2"):
        if present:
            save_present(path, arch, seed=seed)
        else:
            save_random(path, arch, "2.1", seed=seed)
        ref = sam2_reference(path, arch, "2.1", device, video=video, hydra_overrides_extra=hydra_overrides_extra)
        return SAM(path, device=device, verbose=False), ref, path
    sd = save_random(path, arch, seed=seed)
    model = SAM(path, device=device, verbose=False)
    return model, sam1_reference(arch, sd, path, model.net.image_encoder, device), path


def patch_sam2_reference_for_cpu(monkeypatch, video: bool = False) -> None:
    """The two patches Meta's ``sam2`` needs to run on a CPU what it runs on a GPU (nothing else is changed):

    * its hole filling labels regions only with a CUDA kernel: give it the same labelling computed on the CPU
      (``cpu_connected_components``), so that a comparison covers what it does on a GPU;
    * ``video``: its video predictor casts the memories it keeps to bf16, which fp32 attention on the CPU rejects:
      keep them in fp32 (its module sees a ``torch`` whose ``bfloat16`` is ``float32``).
    """
    from sam2.utils import misc

    monkeypatch.setattr(misc, "get_connected_components", cpu_connected_components)
    if video:
        import sam2.sam2_video_predictor as svp

        proxy = types.ModuleType("torch_fp32_memories")
        proxy.__dict__.update(torch.__dict__)
        proxy.bfloat16 = torch.float32
        monkeypatch.setattr(svp, "torch", proxy)


def offline_text_encoder(monkeypatch) -> None:
    """YOLOE without its text model: Ultralytics downloads MobileCLIP's weights and imports its CLIP package (from
    GitHub, not on PyPI) for ``set_classes``; here phrases get random embeddings instead, and an empty ``clip``
    module stands for the package samkit checks for before it lets a detector take phrases."""
    import sys

    from ultralytics import YOLOE

    monkeypatch.setattr(YOLOE, "get_text_pe", lambda self, texts: torch.randn(1, len(texts), 512))
    monkeypatch.setitem(sys.modules, "clip", sys.modules.get("clip") or types.ModuleType("clip"))
