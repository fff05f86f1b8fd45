"""Measuring SAM 3's concept prompts: each category name of the dataset as a phrase, on every image.

Every image is asked for every category name at once (one grounding pass); each detection is an instance of the
phrase it answers. Two measures, as the field computes them:

- **COCO mask AP** (pycocotools' ``COCOeval``, ``segm``): AP over IoU 0.50:0.95, AP50, AP75, from every detection
  scoring at least ``AP_FLOOR`` (the customary 0.05), at most 100 per image (COCO's ``maxDets``).
- **cgF1** (SAM 3's paper): every (image, phrase) pair is a datapoint; its detections scoring at least 0.5 are
  matched one to one to its ground-truth masks (Hungarian, on mask IoU). At each IoU threshold t of 0.50:0.95,
  a match of IoU >= t is a true positive; positive micro-F1 (pmF1) pools the true positives, the false positives of
  the datapoints that have both objects and detections, and every datapoint's missed objects; IL_MCC is the
  Matthews correlation of "the phrase is in the image" (a datapoint with objects) against "the model found it"
  (one with detections); cgF1 = pmF1 x IL_MCC, averaged over the thresholds (cgF1@50 and cgF1@75 too).
"""

from __future__ import annotations

import time

import numpy as np

from samkit.val.images import mask_box

#: The detection score that AP counts from, and the one cgF1 counts from.
AP_FLOOR, CGF1_THRESHOLD = 0.05, 0.5
#: COCO's detections per image.
MAX_DETS = 100
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def datapoint_counts(gt: list[dict], dt: list[dict]) -> dict:
    """One (image, phrase) datapoint: ``gt`` and ``dt`` are RLEs (``dt`` already above the threshold) -> its true
    positives, false positives and misses at each IoU threshold, and its image-level outcome."""
    from pycocotools import mask as mask_utils
    from scipy.optimize import linear_sum_assignment

    n_g, n_d = len(gt), len(dt)
    level = ("TP" if n_d else "FN") if n_g else ("FP" if n_d else "TN")
    if not n_g or not n_d:
        zeros = np.zeros(len(IOU_THRESHOLDS), np.int64)
        return {"level": level, "tp": zeros, "fp": zeros + n_d, "fn": zeros + n_g}
    ious = np.asarray(mask_utils.iou(dt, gt, [0] * n_g)).reshape(n_d, n_g)
    rows, cols = linear_sum_assignment(-ious)
    matched = ious[rows, cols]
    tp = np.array([(matched >= t).sum() for t in IOU_THRESHOLDS], np.int64)
    return {"level": level, "tp": tp, "fp": n_d - tp, "fn": n_g - tp}


def cgf1(points: list[dict]) -> dict:
    """cgF1 and its parts from every datapoint's :func:`datapoint_counts`."""
    tp = sum(p["tp"] for p in points)
    fn = sum(p["fn"] for p in points)
    fp_pos = sum((p["fp"] for p in points if p["level"] == "TP"), np.zeros(len(IOU_THRESHOLDS), np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp_pos > 0, tp / np.maximum(tp + fp_pos, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        pmf1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    c = {k: sum(p["level"] == k for p in points) for k in ("TP", "FP", "TN", "FN")}
    denom = float((c["TP"] + c["FP"]) * (c["TP"] + c["FN"]) * (c["TN"] + c["FP"]) * (c["TN"] + c["FN"])) ** 0.5
    mcc = (c["TP"] * c["TN"] - c["FP"] * c["FN"]) / denom if denom else 0.0
    per = pmf1 * mcc
    return {"cgF1": float(per.mean()), "cgF1@50": float(per[0]), "cgF1@75": float(per[5]),
            "pmF1": float(pmf1.mean()), "IL_MCC": float(mcc), "datapoints": len(points),
            "image_level": {k.lower(): int(v) for k, v in c.items()}}


def coco_ap(images: list[dict], gts: list[dict], dets: list[dict], names: dict[int, str]) -> dict:
    """COCO mask AP of ``dets`` against ``gts`` (pycocotools' ``COCOeval``)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = {"images": images, "annotations": gts,
                  "categories": [{"id": int(k), "name": v} for k, v in sorted(names.items())]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "segm")
        ev.params.maxDets = [1, 10, MAX_DETS]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(v), 0.0) for v in ev.stats[:3]]  # -1: no ground truth of any category
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2]}


def measure_concepts(model, dataset, min_area: int = 0, progress=None):
    """Every category name of ``dataset`` as a phrase on every image; returns the run's dict and, per datapoint,
    ``(item, phrase, objects, detections >= 0.5, counts)``."""
    from samkit.data.sources import SourceError, read_image
    from samkit.engine.concepts import ConceptQuery
    from samkit.utils.requirements import require_phrases

    require_phrases()
    ids = sorted(dataset.names)
    if not ids:
        raise ValueError(f"{dataset.root}: the dataset names no categories: concept prompts need the category "
                         "names as phrases")
    phrases = [dataset.names[k] for k in ids]
    query = ConceptQuery(phrases, np.zeros((0, 4), np.float32), np.zeros(0, bool))
    images, gts, dets, points, rows = [], [], [], [], []
    seconds, skipped = 0.0, []
    for n, item in enumerate(dataset.items if progress is None else progress(dataset.items), 1):
        try:
            image = read_image(item.path)
        except SourceError as e:
            skipped.append((item.name, str(e)))
            continue
        h, w = image.shape[:2]
        images.append({"id": n, "file_name": item.name, "height": h, "width": w})
        objects = [o for o in item.read((h, w)) if o.mask.sum() >= max(min_area, 1)]
        for o in objects:
            gts.append({"id": len(gts) + 1, "image_id": n, "category_id": int(o.cls), "segmentation": rle(o.mask),
                        "area": float(o.mask.sum()), "bbox": _xywh(mask_box(o.mask)), "iscrowd": 0})
        t0 = time.perf_counter()
        r = model.concepts.detect(image, str(item.path), query, conf=AP_FLOOR, max_det=MAX_DETS)
        seconds += time.perf_counter() - t0
        masks = r.masks.data.cpu().numpy() if len(r) else np.zeros((0, h, w), bool)
        scores = r.boxes.conf.cpu().numpy() if len(r) else np.zeros(0)
        cls = r.boxes.cls.cpu().numpy().astype(int) if len(r) else np.zeros(0, int)
        encoded = [rle(m) for m in masks]
        for e, s, c in zip(encoded, scores, cls):
            dets.append({"image_id": n, "category_id": ids[c], "segmentation": e, "score": float(s)})
        for qi, cat in enumerate(ids):
            g = [rle(o.mask) for o in objects if o.cls == cat]
            d = [e for e, s, c in zip(encoded, scores, cls) if c == qi and s >= CGF1_THRESHOLD]
            counts = datapoint_counts(g, d)
            points.append(counts)
            rows.append((item.name, dataset.names[cat], len(g), len(d), counts))
    if not images:
        raise ValueError(f"{dataset.root}: no image could be read (first: {skipped[0][0]}: {skipped[0][1]})")
    metrics = {"text": {**coco_ap(images, gts, dets, dataset.names), **cgf1(points), "objects": len(gts)}}
    with_objects = {g["image_id"] for g in gts}
    run = {"metrics": metrics,
           "counts": {"images": len(images), "objects": len(gts), "phrases": len(phrases), "small": 0, "empty": 0,
                      "images_without_objects": sum(im["id"] not in with_objects for im in images)},
           "speed": {"ms_per_object": 1000 * seconds / max(len(images) * len(phrases), 1),
                     "what": "per image and phrase", "seconds": seconds},
           "settings": {"prompts": ["text"], "ap_floor": AP_FLOOR, "cgf1_threshold": CGF1_THRESHOLD,
                        "max_dets": MAX_DETS, "min_area": min_area},
           "notes": [f"{len(skipped)} unreadable image(s) skipped (first: {skipped[0][0]})"] if skipped else []}
    return run, rows
