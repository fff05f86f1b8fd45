"""What ``samkit train`` trains on: the datasets ``samkit val`` reads, split into train and val, and each image's
objects as targets at the network's input size.

A YOLO ``data.yaml`` with ``train`` and ``val`` keys gives both splits. Any other dataset (a data.yaml with one
split, a COCO file, a folder of PNG masks or YOLO labels) is one set of images, of which ``val_fraction`` is held
out for validation, chosen with ``seed``: the same dataset and seed always hold out the same images, and the run
folder's ``split.yaml`` lists both splits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from samkit.val.datasets import DatasetError, ImageDataset, VideoDataset, open_dataset


@dataclass
class Splits:
    """The train and val images (``val`` None when nothing is validated), and how the val split was made."""

    train: ImageDataset
    val: ImageDataset | None
    held_out: bool  # True: val was held out of one set of images with the seed

    def listing(self, fraction: float, seed: int) -> dict:
        doc = {"train": [it.name for it in self.train.items], "val": [it.name for it in self.val.items]
               if self.val is not None else []}
        doc["val_from"] = f"held out: val_fraction={fraction}, seed={seed}" if self.held_out else "given"
        return doc


def _has_split(data, key: str) -> bool:
    from pathlib import Path

    import yaml

    p = Path(data)
    doc = p if p.suffix.lower() in (".yaml", ".yml") else p / "data.yaml"
    if not doc.is_file():
        return False
    try:
        cfg = yaml.safe_load(doc.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and bool(cfg.get(key))


def open_splits(data, val_fraction: float = 0.2, seed: int = 0, validate: bool = True) -> Splits:
    """The train and val splits of ``data`` (see the module text). Raises :class:`DatasetError` for a dataset that
    cannot be trained on (no masks, an empty split, video clips on a family without memory)."""
    if _has_split(data, "train"):
        train = open_dataset(data, "train")
        if _has_split(data, "val") or not validate:
            val = open_dataset(data, "val") if validate else None
            if val is not None and {it.path.resolve() for it in val.items} == {it.path.resolve() for it in train.items}:
                from samkit.utils import LOGGER

                LOGGER.warning("%s: its val split is its train split (the same %d images, as samkit annotate's "
                               "data.yaml has it): the val metrics will measure how well the train images are "
                               "remembered; give the data.yaml a val split of other images", data, len(val.items))
            return Splits(_images_only(train, data), _images_only(val, data) if val else None, False)
        whole = train
    else:
        whole = open_dataset(data, None)
    whole = _images_only(whole, data)
    if not validate:
        return Splits(whole, None, False)
    n = len(whole.items)
    k = max(1, int(round(n * val_fraction))) if n >= 2 else 0  # at least one image to validate on
    if n < 2 or k >= n:
        raise DatasetError(f"{data}: {n} image(s): holding out val_fraction={val_fraction} leaves "
                           f"{'no image to validate on' if k < 1 else 'no image to train on'}; give a data.yaml with "
                           "train and val splits, more images, another val_fraction, or val=False")
    order = np.random.default_rng(seed).permutation(n)
    held = set(order[:k].tolist())
    train = replace(whole, split="train", items=[it for i, it in enumerate(whole.items) if i not in held])
    val = replace(whole, split="val", items=[it for i, it in enumerate(whole.items) if i in held])
    return Splits(train, val, True)


def _images_only(ds, data) -> ImageDataset:
    if isinstance(ds, VideoDataset):
        raise DatasetError(f"{data} is a video dataset ({ds.kind}): samkit train fine-tunes on images (YOLO-seg, "
                           "COCO, PNG masks); training through the video memory on clips is not available yet")
    if not ds.items:
        raise DatasetError(f"{data}: split {ds.split!r} holds no images")
    return ds


@dataclass
class Sample:
    """One training image: its network input (None when its embedding is cached instead), its objects' masks at
    the network's input size ``(N, S, S)`` bool, and the region of the input the image covers ``(h, w)``."""

    name: str
    x: torch.Tensor | None
    gt: torch.Tensor
    hw: tuple[int, int]


def load_sample(item, transforms, device, keep_input: bool) -> Sample | None:
    """An item read and brought to the network input (None when it has no object with pixels)."""
    from samkit.data.sources import read_image

    image = read_image(item.path)
    objects = [o for o in item.read(image.shape[:2]) if o.mask.any()]
    if not objects:
        return None
    ih, iw = transforms.input_hw(image.shape[:2])
    s = transforms.size
    gt = np.zeros((len(objects), s, s), bool)
    for i, o in enumerate(objects):
        m = cv2.resize(o.mask.astype(np.uint8) * 255, (iw, ih), interpolation=cv2.INTER_LINEAR)
        gt[i, :ih, :iw] = m >= 128
    gt = gt[gt.reshape(len(gt), -1).any(1)]  # an object too small to survive the resize is no target
    if not len(gt):
        return None
    x = transforms.image_to_input(image, device) if keep_input else None
    return Sample(item.name, x, torch.from_numpy(gt).to(device), (ih, iw))
