"""Shared pieces of the app tests: image folders, a served project, and checks of the written dataset."""

from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np


def shapes_image(h: int, w: int, seed: int) -> np.ndarray:
    """A BGR image with a few filled discs and rectangles on a gradient (structure for random-weight masks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 120 / w, yy * 120 / h, np.full((h, w), 40.0)], -1)
    for _ in range(3):
        cx, cy, r = rng.integers(w // 5, 4 * w // 5), rng.integers(h // 5, 4 * h // 5), rng.integers(10, h // 4)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.integers(80, 255, 3)
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    img[y0 : y0 + h // 4, x0 : x0 + w // 4] = rng.integers(80, 255, 3)
    return img.astype(np.uint8)


def image_folder(folder: Path, sizes=((120, 160), (150, 200), (100, 100))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"img{k}.{'jpg' if k % 2 == 0 else 'png'}"), shapes_image(h, w, k))
    return folder


@contextmanager
def served(project, **kw):
    """(server, httpx client) of ``project`` on a free port. The client waits after each answer until the dataset
    files of the edit are written (the app writes them in the background), so tests can open them at once."""
    import httpx

    from samkit.app import AppServer

    with AppServer(project, port=0, **kw) as server:
        hooks = {"response": [lambda r: project.dataset.flush()]}
        with httpx.Client(base_url=server.url.split("?")[0], timeout=120, event_hooks=hooks) as client:
            yield server, client


def record(out: Path, key: str) -> dict:
    """An item's record as saved, each object's mask read from the file the record names (images keep each mask in
    a file of its own) or from the record itself (video frames)."""
    rec = json.loads((out / ".samkit" / "objects" / f"{key}.json").read_text())
    for o in rec.get("objects", []):
        if "mask_file" in o:
            o["mask"] = json.loads((out / ".samkit" / "masks" / key / o.pop("mask_file")).read_text())
    return rec


def mask_of(obj: dict) -> np.ndarray:
    from samkit.app.store import rle_decode

    return rle_decode(obj["mask"])


def runs_to_mask(runs: str, hw: tuple[int, int]) -> np.ndarray:
    """The mask of the page's runs (base64 little-endian uint32 run lengths, row-major, zeros first)."""
    import base64

    runs = np.frombuffer(base64.b64decode(runs), "<u4").tolist()
    flat = np.zeros(hw[0] * hw[1], bool)
    pos = 0
    for k, n in enumerate(runs):
        if k % 2:
            flat[pos : pos + n] = True
        pos += n
    assert pos == flat.size, "the runs do not cover the image"
    return flat.reshape(hw)


def check_yolo(label: Path, image: Path) -> int:
    """Rows of a YOLO-seg label file that Ultralytics' own label checker accepts (fails on a refused file)."""
    from ultralytics.data.utils import verify_image_label

    out = verify_image_label((str(image), str(label), "", False, 1000, 0, 0, False))
    assert out[8] == 0, f"Ultralytics' label checker refuses {label}: {out[-1]}"
    return 0 if out[1] is None else len(out[1])


def check_coco(path: Path) -> dict:
    """{file_name: [(category_id, mask pixels)]} of a COCO file loaded by pycocotools (every mask non-empty)."""
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    got: dict = {}
    for img in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        got[img["file_name"]] = [(a["category_id"], int(coco.annToMask(a).sum())) for a in anns]
        assert all(a["category_id"] in coco.cats for a in anns)
        assert all(n > 0 for _, n in got[img["file_name"]])
    return got


def check_modes(folder: Path) -> None:
    """Every file written has the mode the user's umask gives, and no temporary file is left behind."""
    umask = os.umask(0)
    os.umask(umask)
    for p in folder.rglob("*"):
        if p.is_file():
            assert not p.name.endswith(".tmp"), p
            assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, f"{p}: {oct(p.stat().st_mode)}"
