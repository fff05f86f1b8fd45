"""COCO instance segmentation: polygons (default) or RLE through pycocotools.

Category ids are the model's class ids as they are (0-based like YOLO's), so class ids never shift between the
YOLO and COCO outputs of one run; every class is named in the document's ``categories``. ``area`` is the mask's pixel
count; ``bbox`` is xywh in pixels.

Polygons keep every outer component of a mask (one polygon each) but cannot hold holes: a ring becomes a filled
disc. RLE (``rle=True``) keeps masks exactly, holes included. When polygons lose holes, one warning per run says so
(see :class:`HoleWarning`).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from samkit.utils import LOGGER
from samkit.writers.atomic import atomic_write_text


def _contours(mask: np.ndarray) -> tuple[list[np.ndarray], bool]:
    """The outer contours of a binary mask (as ``cv2.RETR_EXTERNAL`` finds them) and whether the mask has holes."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    # RETR_TREE: the top level is exactly RETR_EXTERNAL's contours, in the same order; any contour with a parent is
    # a hole's border (or an island inside a hole, which needs a hole around it). Each hole is a 4-connected
    # background region of at least one pixel that the filled outer polygon covers.
    contours, hierarchy = cv2.findContours(m, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return [], False
    parent = hierarchy[0][:, 3]
    return [c for c, p in zip(contours, parent) if p < 0], bool((parent >= 0).any())


def mask_has_holes(mask: np.ndarray) -> bool:
    """Whether a binary HxW mask has a hole (background pixels enclosed by the mask, 4-connected, 1 pixel or more),
    which its COCO polygons would fill in."""
    return _contours(mask)[1]


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a binary HxW mask as COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates).

    Every outer component gets its own polygon; holes are not represented (a polygon is filled), see
    :func:`mask_has_holes`. A region too thin for a 3-point contour (a line or a dot) is written as the rectangle
    around its pixels, so a non-empty mask always has a polygon. An empty mask has none.
    """
    return _polygons(_contours(mask)[0])


def _polygons(contours: list[np.ndarray]) -> list[list[float]]:
    polys = []
    for c in contours:
        c = c.reshape(-1, 2).astype(np.float64)
        if len(c) < 3:
            x0, y0 = c.min(0)
            x1, y1 = c.max(0) + 1
            c = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append(np.round(c.reshape(-1), 2).tolist())  # contour points are whole pixels: exact either way
    return polys


class HoleWarning:
    """Warns once that polygons lost the holes of masks: one instance per run, passed to every
    :func:`coco_annotations` call of that run (``holes=``).

    The first mask with holes logs one ``LOGGER.warning`` naming where it happened and pointing to ``rle=True``;
    later ones are only counted (:attr:`count`), so a run over many images warns once, not once per image.

    Example::

        holes = HoleWarning()
        for image_id, (name, masks, cls, scores) in enumerate(results, 1):
            anns += coco_annotations(masks, cls, scores, image_id, holes=holes, where=name)
    """

    def __init__(self, warn: bool = True):
        self.warn = warn  # False: only count (a caller that reports the total itself)
        self.count = 0  # masks whose polygons lost holes
        self.first: str | None = None  # where the first of them was

    def check(self, mask_or_flag, where: str) -> bool:
        """Report a mask written as polygons (or, as a bool, whether it has holes); warn if it is the run's first
        with holes. ``where`` names the file or image for the message. Returns whether it has holes."""
        lost = bool(mask_or_flag) if isinstance(mask_or_flag, (bool, np.bool_)) else mask_has_holes(mask_or_flag)
        if lost:
            self.count += 1
            if self.first is None and self.warn:
                LOGGER.warning(
                    f"COCO polygons cannot hold holes: masks with holes are written with them filled in (first in "
                    f"{where}); write RLE segmentations (rle=True) to keep them"
                )
            if self.first is None:
                self.first = where
        return lost


#: The warner of :func:`coco_annotations` calls that pass none: at most one warning per process.
_PROCESS_HOLES = HoleWarning()


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary HxW mask, JSON-ready (``counts`` as str)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_annotations(masks: np.ndarray, cls, scores, image_id: int, first_id: int | None = 1, rle: bool = False,
                     track_ids=None, *, holes: HoleWarning | None = None, where: str | None = None) -> list[dict]:
    """One annotation per non-empty mask of (N, H, W) bool ``masks`` (empty masks have no annotation).

    Each holds ``id``, ``image_id``, ``category_id`` (the class id), ``segmentation``, ``area``, ``bbox`` (xywh),
    ``iscrowd`` (0: these are instances, also when the segmentation is an RLE), ``score`` and, when given,
    ``track_id``. ``scores=None`` leaves out ``score``; ``first_id=None`` leaves out ``id`` (annotations that
    :class:`CocoBuilder` numbers when it gathers them into a document).

    With polygons (``rle=False``), masks with holes lose them; each such mask is reported to ``holes``, the run's
    :class:`HoleWarning`, which warns once per run naming ``where`` (the image's file name; default
    ``"image <image_id>"``). Without ``holes``, a process-wide warner is used: at most one warning per process, so
    pass one per run to be told about each run. ``area`` stays the mask's pixel count either way.
    """
    warner = _PROCESS_HOLES if holes is None else holes
    out = []
    for i, m in enumerate(masks):
        area = int(m.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        x0, y0, x1, y1 = int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1
        ann = {} if first_id is None else {"id": first_id + len(out)}
        ann.update(
            image_id=image_id,
            category_id=int(cls[i]),
            segmentation=mask_to_rle(m) if rle else _polygons_reporting(m, warner, where or f"image {image_id}"),
            area=area,
            bbox=[x0, y0, x1 - x0, y1 - y0],
            iscrowd=0,
        )
        if scores is not None:
            ann["score"] = round(float(scores[i]), 6)
        if track_ids is not None:
            ann["track_id"] = int(track_ids[i])
        out.append(ann)
    return out


def _polygons_reporting(mask: np.ndarray, holes: HoleWarning, where: str) -> list[list[float]]:
    contours, has_holes = _contours(mask)
    holes.check(has_holes, where)
    return _polygons(contours)


def coco_document(images: list[dict], annotations: list[dict], names: dict[int, str]) -> dict:
    """A COCO instances document: ``images``, ``annotations`` and ``categories`` (id = class id, name)."""
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(k), "name": str(v)} for k, v in sorted(names.items())],
    }


def write_coco(path: str | Path, document: dict) -> Path:
    """Write a COCO document as JSON, atomically."""
    return atomic_write_text(path, json.dumps(document, separators=(",", ":")))


class CocoBuilder:
    """One COCO instances document gathered image by image: both a run's ``coco.json``
    (:class:`~samkit.writers.run.ResultSaver`) and ``auto_annotate``'s ``annotations.json`` are assembled here.

    Each image's annotations get the image's ``id`` as their ``image_id`` and are numbered ``1, 2, ...`` in the
    order they are added (an ``id`` they already have is replaced, keeping its place among the keys; one they lack
    is appended). Image ids are the caller's: :attr:`next_image_id` numbers images in the order they come.

    Example::

        coco = CocoBuilder()
        for r in results:
            doc = r.to_coco(image_id=coco.next_image_id, first_id=coco.next_annotation_id)
            coco.add(doc["images"][0], doc["annotations"])
        coco.write("coco.json", names)
    """

    def __init__(self):
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def __len__(self) -> int:
        return len(self.images)

    @property
    def next_image_id(self) -> int:
        """``1 +`` the number of images added: the id of the next image when images are numbered in order."""
        return len(self.images) + 1

    @property
    def next_annotation_id(self) -> int:
        """The id the next annotation added will get."""
        return len(self.annotations) + 1

    def add(self, image: dict, annotations: list[dict]) -> None:
        """Add one image (a COCO ``images`` entry: ``id``, ``file_name``, ``height``, ``width``...) and its
        annotations (as :func:`coco_annotations` makes them, with or without ``id`` / ``image_id``)."""
        self.images.append(image)
        for a in annotations:
            self.annotations.append({**a, "id": len(self.annotations) + 1, "image_id": image["id"]})

    def category_ids(self) -> set[int]:
        """The class ids the annotations so far use."""
        return {int(a["category_id"]) for a in self.annotations}

    def document(self, names: dict[int, str], name_all: bool = False) -> dict:
        """The document so far (see :func:`coco_document`); ``categories`` from ``names`` (class id -> name) and,
        with ``name_all``, every other class id the annotations use, named by its number."""
        if name_all:
            names = {**{c: str(c) for c in self.category_ids()}, **names}
        return coco_document(self.images, self.annotations, names)

    def write(self, path: str | Path, names: dict[int, str], name_all: bool = False) -> Path:
        """Write :meth:`document` to ``path`` (see :func:`write_coco`); returns ``path``."""
        return write_coco(path, self.document(names, name_all))
