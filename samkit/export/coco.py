"""COCO instance segmentation: polygons (default) or RLE through pycocotools.

Category ids are the model's class ids as they are (0-based like YOLO's), so class ids never shift between the
YOLO and COCO outputs of one run. ``area`` is the mask's pixel count; ``bbox`` is xywh in pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from samkit.export.atomic import atomic_write_text


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a binary HxW mask as COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates).

    A region too thin for a 3-point contour (a line or a dot) is written as the rectangle around its pixels, so a
    non-empty mask always has a polygon. An empty mask has none.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        c = c.reshape(-1, 2).astype(np.float64)
        if len(c) < 3:
            x0, y0 = c.min(0)
            x1, y1 = c.max(0) + 1
            c = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append([round(float(v), 2) for v in c.reshape(-1)])
    return polys


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary HxW mask, JSON-ready (``counts`` as str)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_annotations(masks: np.ndarray, cls, scores, image_id: int, first_id: int = 1, rle: bool = False,
                     track_ids=None) -> list[dict]:
    """One annotation per non-empty mask of (N, H, W) bool ``masks`` (empty masks have no annotation).

    Each holds ``id``, ``image_id``, ``category_id`` (the class id), ``segmentation``, ``area``, ``bbox`` (xywh),
    ``iscrowd`` (0: these are instances, also when the segmentation is an RLE), ``score`` and, when given,
    ``track_id``.
    """
    out = []
    next_id = first_id
    for i, m in enumerate(masks):
        area = int(m.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        x0, y0, x1, y1 = int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1
        ann = {
            "id": next_id,
            "image_id": image_id,
            "category_id": int(cls[i]),
            "segmentation": mask_to_rle(m) if rle else mask_to_polygons(m),
            "area": area,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
            "score": round(float(scores[i]), 6),
        }
        if track_ids is not None:
            ann["track_id"] = int(track_ids[i])
        out.append(ann)
        next_id += 1
    return out


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
