"""A synthetic segmentation dataset: coloured shapes (discs, rectangles, triangles) on textured backgrounds, written
as a YOLO-seg dataset with ``train`` and ``val`` splits. What the tests and benchmarks train and measure on when no
real data can be had: every object's mask is known exactly, and a network can learn to find the shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHAPES = ("disc", "rectangle", "triangle")


def _shape(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    side = min(h, w)
    r = int(rng.integers(side // 12, side // 4))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    if kind == "disc":
        cv2.circle(m, (cx, cy), r, 1, -1)
    elif kind == "rectangle":
        rw, rh = int(r * rng.uniform(0.6, 1.4)), int(r * rng.uniform(0.6, 1.4))
        cv2.rectangle(m, (max(cx - rw, 0), max(cy - rh, 0)), (min(cx + rw, w - 1), min(cy + rh, h - 1)), 1, -1)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).round().astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def make_shapes(root: str | Path, train: int = 32, val: int = 8, size: tuple[int, int] = (256, 192),
                objects: tuple[int, int] = (1, 4), seed: int = 0) -> Path:
    """Write the dataset under ``root`` (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``) and return the
    ``data.yaml`` path.

    Args:
        train, val: Images per split.
        size: (width, height) of every image.
        objects: Least and most shapes per image (each a class: ``disc`` 0, ``rectangle`` 1, ``triangle`` 2); a
            shape drawn over another hides it, and the hidden object's mask is what stays visible (objects left
            with no pixel are dropped).
    """
    from samkit.writers.formats import write_image

    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            yy, xx = np.mgrid[:h, :w]
            period = int(rng.integers(6, 16))
            base = rng.integers(40, 110, 3)
            img = (base[None, None] + ((xx // period + yy // period) % 2)[..., None] * rng.integers(-25, 25, 3)
                   + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
            masks, classes = [], []
            for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
                cls = int(rng.integers(len(SHAPES)))
                m = _shape(rng, h, w, SHAPES[cls])
                masks = [old & ~m for old in masks]
                masks.append(m)
                classes.append(cls)
                colour = rng.integers(140, 256, 3) * rng.choice([1, 0.5], 3)
                img[m] = (colour + rng.normal(0, 4, (int(m.sum()), 3))).clip(0, 255).astype(np.uint8)
            keep = [k for k, m in enumerate(masks) if m.sum() >= 16]
            stem = f"{split}{i:04d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img)
            write_image("yolo", root / "labels" / split, stem, np.stack([masks[k] for k in keep]) if keep else
                        np.zeros((0, h, w), bool), [classes[k] for k in keep], list(range(len(keep))))
    import yaml

    from samkit.writers.atomic import atomic_write_text

    doc = {"train": "images/train", "val": "images/val", "nc": len(SHAPES), "names": dict(enumerate(SHAPES))}
    return atomic_write_text(root / "data.yaml", "# synthetic shapes (written by samkit.data.synthetic)\n"
                             + yaml.safe_dump(doc, sort_keys=False))
