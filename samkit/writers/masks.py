"""PNG masks: one 8-bit single-channel file per mask, 255 inside the object and 0 outside."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from samkit.writers.atomic import atomic_write_bytes


def save_mask_pngs(masks: np.ndarray, folder: str | Path, stem: str, obj_ids=None) -> list[Path]:
    """Write each (H, W) mask of (N, H, W) ``masks`` to ``folder/<stem>_<id>.png``.

    ``<id>`` is the object id (zero-padded to 3 digits) when ``obj_ids`` are given and unique, else the mask's
    index; files of the same names are replaced.
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
            raise OSError(f"could not encode mask {i} as PNG")
        paths.append(atomic_write_bytes(folder / f"{stem}_{i:03d}.png", buf.tobytes()))
    return paths
