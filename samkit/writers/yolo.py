"""YOLO-seg labels: one ``class x1 y1 x2 y2 ...`` row per mask, coordinates normalised to 0-1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samkit.utils import LOGGER
from samkit.writers.atomic import atomic_write_text


def mask_polygons(masks: np.ndarray) -> list[np.ndarray]:
    """The normalised (K, 2) polygon of each (H, W) mask of (N, H, W) ``masks``, as Ultralytics' ``Masks.xyn``
    gives them (an empty mask, or one too thin for a polygon, has fewer than 3 points)."""
    if not len(masks):
        return []
    import torch
    from ultralytics.engine.results import Masks

    masks = np.asarray(masks)
    return Masks(torch.from_numpy(masks), masks.shape[1:]).xyn


def box_polygon(box, hw: tuple[int, int]) -> np.ndarray:
    """The rectangle of an xyxy pixel ``box`` as a normalised (4, 2) polygon in an image of size ``hw`` (H, W)."""
    h, w = hw
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64) / [w, h]


def yolo_seg_rows(polygons: list[np.ndarray], cls: list[int], conf: list[float] | None = None) -> list[str]:
    """Rows for normalised (K, 2) polygons; a polygon of fewer than 3 points (an empty mask) has no row.

    Args:
        polygons: One (K, 2) float array of xy in 0-1 per mask.
        cls: Class id per mask, written as is (never shifted, also when earlier masks have no row).
        conf: Confidence per mask, appended to the row when given.
    """
    rows = []
    for i, poly in enumerate(polygons):
        poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(poly) < 3:
            continue
        row = [str(int(cls[i])), *(f"{v:.6g}" for v in poly.reshape(-1))]
        if conf is not None:
            row.append(f"{conf[i]:.6g}")
        rows.append(" ".join(row))
    return rows


def write_yolo_seg(path: str | Path, polygons, cls, conf=None, warn_empty: bool = True) -> Path:
    """Write (replace) a YOLO-seg label file atomically; logs how many empty masks had no row (``warn_empty``).

    ``polygons`` are normalised (K, 2) arrays (see :func:`mask_polygons`, :func:`box_polygon`), ``cls`` their class
    ids and ``conf`` (optional) their confidences; see :func:`yolo_seg_rows`. Returns ``path``.
    """
    rows = yolo_seg_rows(polygons, cls, conf)
    if warn_empty and len(rows) < len(polygons):
        LOGGER.warning("%s: %d empty mask(s) have no polygon and no row", path, len(polygons) - len(rows))
    return atomic_write_text(path, "".join(r + "\n" for r in rows))


def write_data_yaml(folder: str | Path, names: dict[int, str], by: str, train: str | None = None) -> Path:
    """``folder/data.yaml`` naming the classes of YOLO-seg labels (Ultralytics' ``names:`` mapping), atomically.

    Args:
        names: Class id -> name.
        by: What wrote the labels, for the file's first-line comment.
        train: The images folder beside ``labels/`` (relative to ``folder``): with it the file is a dataset
            Ultralytics trains on (``train`` and ``val`` both that folder).
    """
    import yaml

    data: dict = {"train": train, "val": train} if train else {}
    data.update(nc=len(names), names={int(k): str(v) for k, v in sorted(names.items())})
    text = f"# the classes of these YOLO-seg labels (written by {by})\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return atomic_write_text(Path(folder) / "data.yaml", text)
