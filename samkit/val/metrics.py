"""The measures of ``samkit val``, each as the field defines it.

- :func:`iou`: region similarity J, intersection over union of two binary masks (both empty: 1, as DAVIS).
- :func:`boundary_f`: the boundary F-measure of DAVIS (Perazzi et al. 2016): both masks' one-pixel boundaries
  (:func:`boundary_map`) matched within a tolerance of ``0.008`` of the image diagonal, F = 2PR / (P + R); both
  boundaries empty: 1, one empty: 0.
- :func:`noc`: the number of clicks to reach an IoU (NoC@85, NoC@90), the click budget when it is never reached.
- :func:`miou_at`: mean IoU after k clicks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: The boundary tolerance, as a fraction of the image diagonal (DAVIS's ``bound_th``).
BOUNDARY_TOLERANCE = 0.008


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two (H, W) binary masks; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"a mask of shape {pred.shape} is compared with one of shape {gt.shape}")
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The (H, W) one-pixel boundary of a binary mask as DAVIS draws it (``seg2bmap`` at the mask's own size): a
    pixel is on the boundary when it differs from its right, lower or lower-right neighbour, the mask being
    extended past its last row and column by repeating them (so the image border is no boundary by itself)."""
    p = np.pad(np.asarray(mask, bool), ((0, 1), (0, 1)), mode="edge")
    here = p[:-1, :-1]
    return (here != p[:-1, 1:]) | (here != p[1:, :-1]) | (here != p[1:, 1:])


def disk(radius: int) -> np.ndarray:
    """The discrete disk of ``radius``: the offsets (dy, dx) with dy^2 + dx^2 <= radius^2, as a uint8 kernel."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx <= radius * radius).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """DAVIS's boundary F-measure of two (H, W) binary masks: the share of each boundary within ``tolerance`` x the
    image diagonal (rounded up, in pixels) of the other's, combined as F = 2PR / (P + R). Both boundaries empty: 1;
    one empty: 0."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"a mask of shape {pred.shape} is compared with one of shape {gt.shape}")
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = np.count_nonzero(pb), np.count_nonzero(gb)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    kernel = disk(math.ceil(tolerance * math.hypot(*pred.shape)))
    near_g = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
    near_p = cv2.dilate(pb.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pb & near_g) / n_p
    recall = np.count_nonzero(gb & near_p) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def noc(ious, threshold: float, budget: int) -> int:
    """Clicks until the IoU first reaches ``threshold`` (``ious[k]``: after k + 1 clicks); ``budget`` when never."""
    for k, v in enumerate(ious[:budget]):
        if v >= threshold:
            return k + 1
    return budget


def miou_at(per_object: list, k: int) -> float:
    """Mean over objects of the IoU after ``k`` clicks (an object stopped earlier keeps its last IoU)."""
    vals = [o[min(k, len(o)) - 1] for o in per_object if len(o)]
    return float(np.mean(vals)) if vals else float("nan")
