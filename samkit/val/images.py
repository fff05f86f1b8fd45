"""Measuring geometric prompts on images: a box per object, and the click robot (:mod:`samkit.val.clicks`).

Each image is encoded once; every object of the image is then decoded from that one embedding, all objects of an
image in one batch per step (a box each; or the k-th click of every object still clicking). The interactive
protocol is the one of SAM's paper: the first click is decoded with three candidate masks and the one of highest
predicted IoU is kept; every later click is decoded with all of the object's clicks so far and the previous
low-resolution mask logits as the mask prompt, one mask out. An object keeps clicking until ``max_clicks``, or
until its IoU reaches the highest NoC threshold once ``min_clicks`` clicks were given (NoC and mIoU@k for k <=
``min_clicks`` are unchanged by that stop; ``per_item.csv`` leaves the clicks not given empty).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from samkit.prompts import ObjectPrompts
from samkit.val.clicks import first_click, next_click
from samkit.val.datasets import ImageDataset, Instance


@dataclass
class ObjectScore:
    """One object under one prompt kind: its IoU (after each click for ``click``), and what it was given."""

    item: str
    object: int
    cls: int
    area: int
    prompt: str
    ious: list[float]
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)
    box: list[float] | None = None
    final: dict | None = None  # the last prediction, as COCO RLE (for the worst-objects drawing)


def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def mask_box(mask: np.ndarray) -> list[float]:
    """The tight xyxy box of a mask in continuous pixel coordinates (a one-pixel mask at (x, y) is
    ``[x, y, x + 1, y + 1]``)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _ious(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """(B,) IoU of (B, H, W) bool predictions and ground truths (both empty: 1)."""
    inter = (pred & gt).flatten(1).sum(1)
    union = (pred | gt).flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter, dtype=torch.float)).cpu().numpy()


def _prompts(points: np.ndarray, labels: np.ndarray, logits: np.ndarray | None) -> ObjectPrompts:
    n = len(points)
    return ObjectPrompts(points=points.astype(np.float32), labels=labels.astype(np.int32),
                         boxes=np.full((n, 4), np.nan, np.float32), masks=logits,
                         mask_is_logits=logits is not None)


def measure_image(engine, image: np.ndarray, name: str, objects: list[Instance], kinds, max_clicks: int,
                  min_clicks: int, stop_iou: float, timing: dict) -> list[ObjectScore]:
    """Every object of one image under every prompt kind of ``kinds`` (``box``, ``click``)."""
    if not objects:
        return []
    t0 = time.perf_counter()
    emb = engine.encode([image])[0]
    timing["encode"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    dev = engine.device
    gt = torch.from_numpy(np.stack([o.mask for o in objects])).to(dev)
    out = []
    if "box" in kinds:
        boxes = np.array([mask_box(o.mask) for o in objects], np.float32)
        n = len(objects)
        obj = ObjectPrompts(points=np.zeros((n, 0, 2), np.float32), labels=np.zeros((n, 0), np.int32), boxes=boxes)
        dec = engine.decode(emb, obj, multimask=False)
        ious = _ious(dec.masks[:, 0], gt)
        pred = dec.masks[:, 0].cpu().numpy()
        out += [ObjectScore(name, o.id, o.cls, int(o.mask.sum()), "box", [float(v)], box=b.tolist(), final=rle(m))
                for o, v, b, m in zip(objects, ious, boxes, pred)]
    if "click" in kinds:
        out += _clicks(engine, emb, objects, gt, name, max_clicks, min_clicks, stop_iou)
    timing["decode"] += time.perf_counter() - t0
    return out


def _clicks(engine, emb, objects: list[Instance], gt: torch.Tensor, name: str, max_clicks: int, min_clicks: int,
            stop_iou: float) -> list[ObjectScore]:
    n = len(objects)
    clicks = [[first_click(o.mask)] for o in objects]
    ious: list[list[float]] = [[] for _ in range(n)]
    logits = [None] * n
    last: list = [None] * n
    active = list(range(n))
    for k in range(1, max_clicks + 1):
        pts = np.array([[(c.x, c.y) for c in clicks[i]] for i in active], np.float32)  # pixel (column, row)
        labs = np.array([[1 if c.positive else 0 for c in clicks[i]] for i in active], np.int32)
        prev = None if k == 1 else np.stack([logits[i] for i in active])
        dec = engine.decode(emb, _prompts(pts, labs, prev), multimask=k == 1)
        best = dec.scores.argmax(1) if k == 1 else torch.zeros(len(active), dtype=torch.long, device=dec.scores.device)
        rows = torch.arange(len(active), device=best.device)
        masks = dec.masks[rows, best]
        low = dec.low_res_logits[rows, best].float().cpu().numpy()
        step_iou = _ious(masks, gt[active])
        pred = masks.cpu().numpy()
        still = []
        for j, i in enumerate(active):
            ious[i].append(float(step_iou[j]))
            logits[i], last[i] = low[j], pred[j]
            if k == max_clicks or (k >= min_clicks and step_iou[j] >= stop_iou):
                continue
            c = next_click(objects[i].mask, pred[j])
            if c is None:  # exactly right: nothing to click on
                continue
            clicks[i].append(c)
            still.append(i)
        active = still
        if not active:
            break
    return [ObjectScore(name, o.id, o.cls, int(o.mask.sum()), "click", ious[i],
                        clicks=[(c.x, c.y, c.positive) for c in clicks[i][: len(ious[i])]], final=rle(last[i]))
            for i, o in enumerate(objects)]


def measure_images(model, dataset: ImageDataset, kinds=("box", "click"), max_clicks: int = 20, min_clicks: int = 5,
                   stop_iou: float = 0.9, min_area: int = 0, progress=None) -> tuple[list[ObjectScore], dict]:
    """Every object of every image of ``dataset``; returns the scores and what was counted (images, objects,
    left out, seconds)."""
    from samkit.data.sources import SourceError, read_image

    scores: list[ObjectScore] = []
    counts = {"images": 0, "objects": 0, "small": 0, "empty": 0, "unreadable": [], "images_without_objects": 0}
    timing = {"encode": 0.0, "decode": 0.0}
    items = dataset.items if progress is None else progress(dataset.items)
    for item in items:
        try:
            image = read_image(item.path)
        except SourceError as e:
            counts["unreadable"].append((item.name, str(e)))
            continue
        objects = item.read(image.shape[:2])  # a DatasetError (a mask of the wrong size...) names the file
        keep = []
        for o in objects:
            area = int(o.mask.sum())
            if area == 0:
                counts["empty"] += 1
            elif area < min_area:
                counts["small"] += 1
            else:
                keep.append(o)
        counts["images"] += 1
        counts["objects"] += len(keep)
        counts["images_without_objects"] += not keep
        scores += measure_image(model.engine, image, item.name, keep, kinds, max_clicks, min_clicks, stop_iou,
                                timing)
    counts.update(timing)
    return scores, counts
