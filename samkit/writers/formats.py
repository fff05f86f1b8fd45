"""Dataset formats: the one place where a format name becomes files (auto-annotation and the app write through it).

- ``yolo``: per image ``<stem>.txt``, one YOLO-seg row per mask (a mask too thin for a polygon gets its box's
  rectangle when boxes are given; an empty one no row), and the dataset's ``data.yaml`` naming the classes;
- ``png``: per image ``<stem>_<id:03d>.png``, one 0 / 255 file per mask, other PNGs of that stem removed;
- ``coco``: no file per image (the caller gathers the annotations) and one ``annotations.json`` for the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The dataset formats samkit writes: YOLO-seg txt, one COCO JSON, PNG masks.
FORMATS = ("yolo", "coco", "png")


def check_format(fmt, error: type[Exception] = ValueError) -> str:
    """``fmt`` when it is one of :data:`FORMATS`, else ``error`` naming it and the formats."""
    if fmt not in FORMATS:
        raise error(f"format={fmt!r} is not a dataset format; use one of {', '.join(FORMATS)}")
    return fmt


def per_image(fmt: str) -> bool:
    """Whether ``fmt`` has files of its own per image (COCO has one document for the dataset)."""
    return check_format(fmt) != "coco"


def image_files(fmt: str, folder: Path, stem: str, ids) -> list[Path]:
    """The files :func:`write_image` writes for an image whose masks have object ids ``ids``."""
    if check_format(fmt) == "yolo":
        return [Path(folder) / f"{stem}.txt"]
    if fmt == "png":
        return [Path(folder) / f"{stem}_{int(i):03d}.png" for i in ids]
    return []


def write_image(fmt: str, folder: Path, stem: str, masks: np.ndarray, cls, ids, polygons=None,
                boxes=None) -> list[Path]:
    """One image's label files in a per-image format; returns them.

    Args:
        masks: (N, H, W) bool masks.
        cls: Their class ids (YOLO rows).
        ids: Their object ids (PNG names).
        polygons: YOLO: the masks' normalised polygons when the caller has them (else computed from ``masks``).
        boxes: YOLO: (N, 4) xyxy pixel boxes: a mask with no polygon gets its box's rectangle instead of no row.
    """
    from samkit.writers.atomic import make_dirs
    from samkit.writers.masks import save_mask_pngs
    from samkit.writers.yolo import box_polygon, mask_polygons, write_yolo_seg

    if not per_image(fmt):
        raise ValueError("COCO has no file per image: gather the annotations and call write_dataset")
    if fmt == "png":
        make_dirs(folder)
        return save_mask_pngs(masks, folder, stem, obj_ids=list(ids), clear_others=True)
    polygons = mask_polygons(masks) if polygons is None else polygons  # masks may be None when polygons are given
    if boxes is not None:
        hw = masks.shape[1:]
        polygons = [p if len(p) >= 3 else box_polygon(b, hw) for p, b in zip(polygons, boxes)]
    return [write_yolo_seg(Path(folder) / f"{stem}.txt", polygons, [int(c) for c in cls], warn_empty=False)]


def write_dataset(fmt: str, folder: Path, names: dict[int, str], by: str, coco=None,
                  train: str | None = None) -> Path | None:
    """The dataset-wide file of ``fmt``: YOLO's ``data.yaml`` (``by``: what wrote the labels; ``train``: the images
    folder, making it a dataset Ultralytics trains on), COCO's ``annotations.json`` from ``coco`` (a
    :class:`~samkit.writers.coco.CocoBuilder`); PNG masks have none (None)."""
    from samkit.writers.yolo import write_data_yaml

    if check_format(fmt) == "yolo":
        return write_data_yaml(folder, names, by=by, train=train)
    if fmt == "coco":
        return coco.write(Path(folder) / "annotations.json", names, name_all=True)
    return None
