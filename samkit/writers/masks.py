"""PNG masks: one 8-bit single-channel file per mask, 255 inside the object and 0 outside."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import cv2
import numpy as np

from samkit.writers.atomic import atomic_write_bytes


def save_mask_pngs(masks: np.ndarray, folder: str | Path, stem: str, obj_ids=None, clear_others: bool = False
                   ) -> list[Path]:
    """Write each (H, W) mask of (N, H, W) ``masks`` to ``folder/<stem>_<id>.png``.

    ``<id>`` is the object id (zero-padded to 3 digits) when ``obj_ids`` are given and unique, else the mask's
    index; files of the same names are replaced. With ``clear_others``, the other ``<stem>_<id>.png`` files in
    ``folder`` (masks an earlier write of ``stem`` had and this one has not) are then removed, so the folder holds
    exactly this write's masks of ``stem``.
    """
    folder = Path(folder)
    n = len(masks)
    ids = list(range(n)) if obj_ids is None else [int(i) for i in obj_ids]
    if len(set(ids)) != n:  # several masks per object (multimask): name them by index
        ids = list(range(n))
    paths = []
    for m, i in zip(masks, ids):
        ok, buf = cv2.imencode(".png", np.asarray(m, dtype=np.uint8) * 255)
        if not ok:
            raise OSError(f"could not encode mask {i} of {stem} as PNG")
        paths.append(atomic_write_bytes(folder / f"{stem}_{i:03d}.png", buf.tobytes()))
    if clear_others:
        written = {p.name for p in paths}
        pattern = re.compile(re.escape(stem) + r"_\d{3,}\.png")
        for old in folder.glob(f"{glob.escape(stem)}_*.png"):
            if pattern.fullmatch(old.name) and old.name not in written:
                old.unlink(missing_ok=True)
    return paths
