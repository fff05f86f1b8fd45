"""samkit in half precision against samkit in fp32: encoder time and how far the masks move."""

from __future__ import annotations

import cv2
import torch
from ultralytics import ASSETS

from benchmarks.common import interleaved_medians, make_checkpoint
from benchmarks.image import random_boxes


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each pair of (N, H, W) boolean masks (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def run(rows: list[str], folder, size: str, device: str, repeats: int, n_boxes: int = 10) -> None:
    """Append one markdown row: fp32 and half encoder medians (two models taking turns), their ratio, the min and
    median IoU of the half model's box masks with the fp32 model's."""
    from samkit import SAM

    path = make_checkpoint(folder, size)
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    boxes = random_boxes(n_boxes, image.shape[:2])
    full = SAM(path, device=device, verbose=False)
    half = SAM(path, device=device, verbose=False, half=True)
    if not half.half:
        rows.append(f"| sam2.1 {size} | - | - | - | - | (no half precision on {device}) |")
        return

    def encoder(model):
        def encode():
            model.engine.clear_cache()
            model.engine.encode([image])
        return encode

    t = interleaved_medians({"fp32": encoder(full), "half": encoder(half)}, device, repeats)
    want = full(image, bboxes=boxes)[0].masks.data
    got = half(image, bboxes=boxes)[0].masks.data
    iou = mask_iou(want, got)
    dtype = str(half.runtime.half_dtype).replace("torch.", "")
    row = (f"| sam2.1 {size} | {t['fp32']:.1f} | {t['half']:.1f} ({dtype}) | **{t['fp32'] / t['half']:.2f}x** | "
           f"{iou.min():.3f} | {iou.median():.3f} |")
    print("  " + row, flush=True)
    rows.append(row)


HEADER = ("| model | encoder fp32 (ms) | encoder half (ms) | fp32 / half | min mask IoU | median mask IoU |\n"
          "|---|---|---|---|---|---|")
