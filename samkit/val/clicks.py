"""The click robot of interactive segmentation benchmarks (the protocol of RITM, Sofiiuk et al. 2022, used by
SAM's and SAM 2's papers for NoC and mIoU@k).

- The first click is positive, at the object's interior-most pixel: the largest Euclidean distance to the nearest
  pixel outside the object, the image border counting as outside.
- Each next click goes to the larger error region: the missed pixels (ground truth not predicted) and the false
  ones (predicted, not ground truth) each get their interior-most pixel the same way, and the click goes to the
  deeper of the two: positive on a missed region, negative on a false one (a tie goes to the missed region).
- Ties between pixels at the same depth go to the first in row-major order, so the clicks are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    """One click: pixel coordinates (column ``x``, row ``y``), positive or negative, and the depth of its
    pixel in the region it was placed in (its distance to the region's outside)."""

    x: int
    y: int
    positive: bool
    depth: float


def depth(region: np.ndarray) -> np.ndarray:
    """(H, W) float32: each pixel's Euclidean distance to the nearest pixel outside ``region`` (0 outside), the
    image border counting as outside."""
    padded = np.pad(np.asarray(region, np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def interior_most(region: np.ndarray) -> tuple[int, int, float]:
    """``(x, y, depth)`` of the deepest pixel of ``region`` (first in row-major order among equals)."""
    d = depth(region)
    i = int(np.argmax(d))  # argmax returns the first of the maxima in row-major order
    y, x = divmod(i, d.shape[1])
    return x, y, float(d[y, x])


def first_click(gt: np.ndarray) -> Click:
    """The positive click at the interior-most pixel of the ground-truth mask (which must not be empty)."""
    gt = np.asarray(gt, bool)
    if not gt.any():
        raise ValueError("an empty ground-truth mask has no click")
    x, y, d = interior_most(gt)
    return Click(x, y, True, d)


def next_click(gt: np.ndarray, pred: np.ndarray) -> Click | None:
    """The click the robot gives after prediction ``pred``; None when the prediction is exactly right."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    missed, false = gt & ~pred, pred & ~gt
    if not missed.any() and not false.any():
        return None
    mx, my, md = interior_most(missed) if missed.any() else (0, 0, -1.0)
    fx, fy, fd = interior_most(false) if false.any() else (0, 0, -1.0)
    if md >= fd:
        return Click(mx, my, True, md)
    return Click(fx, fy, False, fd)
