"""Segment everything: the automatic mask generator, with the reference's parameters and results.

A grid of single positive clicks is decoded over the whole image (and, with ``crop_n_layers``, over
overlapping crops); candidates are filtered by predicted IoU, by stability under a shifted threshold and by
touching a crop edge, de-duplicated with box NMS per crop and across crops, and optionally cleaned of small
holes and islands. The order of operations, the thresholds and the tie-breaking follow Meta's
``SAM2AutomaticMaskGenerator`` (SAM 2) and ``SamAutomaticMaskGenerator`` (SAM, MobileSAM), so the same
weights and settings give the same masks. Differences, all of which keep the masks identical:

- predicted-IoU filtering happens before the logits are upsampled, so rejected candidates never cost a
  full-resolution interpolation;
- surviving candidates are kept as low-resolution logits until NMS has decided which remain;
- ``min_mask_region_area`` works on the CPU: SAM 2's low-resolution hole and sprinkle filling, which the
  reference runs only through its CUDA extension (and silently skips without it), uses OpenCV here.

``min_mask_region_area`` means what it means in each reference: for SAM 2, holes and islands of at most that
many pixels of the low-resolution (image_size / 4) mask are filled / removed before upsampling (the SAM 2
generator never runs the full-resolution clean-up it defines); for SAM and MobileSAM, holes and islands smaller
than that many image pixels are removed from the final masks and NMS runs again, preferring unchanged masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torchvision.ops import batched_nms

from samkit.engine.image import ImageEmbedding, ImageEngine
from samkit.ops import fill_low_res, inclusive_mask_boxes, remove_small_regions, stability_score

_UPSAMPLE_CHUNK = 16  # candidates upsampled to full resolution at once, at most
#: Bytes of full-resolution float logits upsampled at once: on large images fewer than _UPSAMPLE_CHUNK candidates
#: go together, so the memory besides the kept masks does not grow with the number of clicks x the image size.
UPSAMPLE_BYTES = 64 * 2**20


def _upsample_chunk(h: int, w: int) -> int:
    """Candidates upsampled at once to an ``h`` x ``w`` crop (float32 logits within :data:`UPSAMPLE_BYTES`)."""
    return max(1, min(_UPSAMPLE_CHUNK, UPSAMPLE_BYTES // (4 * h * w)))


@dataclass
class EverythingConfig:
    """Settings of the automatic mask generator (the reference's names and meanings).

    Attributes:
        points_per_side: Clicks per side of the grid on the full image (ignored when ``point_grids`` is given).
        points_per_batch: Clicks decoded together (memory versus speed; results do not depend on it).
        pred_iou_thresh: Keep candidates whose predicted IoU is above this; None = the family's reference
            default (0.8 for SAM 2, 0.88 for SAM / MobileSAM). 0 disables.
        stability_score_thresh: Keep candidates whose stability score is at least this; 0 disables.
        stability_score_offset: Logit offset of the stability score's two thresholds.
        box_nms_thresh: Box IoU above which the lower-scoring of two masks of one crop is dropped.
        crop_n_layers: Extra layers of crops (layer i has (2**i)**2 crops); 0 = the whole image only.
        crop_nms_thresh: Box IoU for de-duplicating masks across crops (smaller crops win).
        crop_overlap_ratio: Overlap of neighbouring crops as a fraction of the short image side (layer 1).
        crop_n_points_downscale_factor: The grid of layer i has ``points_per_side / factor**i`` clicks a side.
        point_grids: Explicit grids, one (P, 2) array of normalised xy in [0, 1] per crop layer.
        min_mask_region_area: Fill holes and remove islands up to this area (0 disables): low-resolution
            pixels for SAM 2, image pixels for SAM / MobileSAM, as each reference (see the module docstring).
        multimask: Three candidates per click (the reference's default) or one.
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: list | None = None
    min_mask_region_area: int = 0
    multimask: bool = True
    grids: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self):
        def check(name, ok, expected):
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} must be {expected}")

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)

        check("points_per_batch", is_int(self.points_per_batch) and self.points_per_batch > 0, "a positive integer")
        check("crop_n_layers", is_int(self.crop_n_layers) and self.crop_n_layers >= 0, "a non-negative integer")
        check("crop_n_points_downscale_factor",
              is_int(self.crop_n_points_downscale_factor) and self.crop_n_points_downscale_factor >= 1,
              "an integer >= 1")
        check("min_mask_region_area", is_num(self.min_mask_region_area) and self.min_mask_region_area >= 0,
              "a non-negative number of pixels")
        check("multimask", isinstance(self.multimask, bool), "True or False")
        for name in ("stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            check(name, is_num(getattr(self, name)) and 0 <= getattr(self, name) <= 1, "a number in [0, 1]")
        check("pred_iou_thresh", self.pred_iou_thresh is None or is_num(self.pred_iou_thresh),
              "a number (or None for the family's default)")
        check("stability_score_offset", is_num(self.stability_score_offset), "a finite number")
        check("crop_overlap_ratio", is_num(self.crop_overlap_ratio) and 0 <= self.crop_overlap_ratio < 1,
              "a number in [0, 1)")
        if self.point_grids is not None:
            grids = self.point_grids if isinstance(self.point_grids, (list, tuple)) else [self.point_grids]
            self.grids = []
            for i, g in enumerate(grids):
                try:
                    g = np.asarray(g, dtype=np.float64)
                except (TypeError, ValueError):
                    raise ValueError(f"point_grids[{i}] must be a (P, 2) array of normalised xy, got {g!r}") from None
                if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0 or not np.isfinite(g).all():
                    raise ValueError(f"point_grids[{i}] must be a non-empty (P, 2) array of finite xy, got shape "
                                     f"{g.shape}")
                if (g < 0).any() or (g > 1).any():
                    raise ValueError(f"point_grids[{i}] holds xy outside [0, 1]: grids are normalised to the crop size")
                self.grids.append(g)
            if len(self.grids) != self.crop_n_layers + 1:
                raise ValueError(f"point_grids has {len(self.grids)} grid(s) but crop_n_layers={self.crop_n_layers} "
                                 f"needs {self.crop_n_layers + 1} (one per layer)")
        else:
            check("points_per_side", is_int(self.points_per_side) and self.points_per_side > 0,
                  "a positive integer (or give point_grids)")
            self.grids = [
                point_grid(int(self.points_per_side / self.crop_n_points_downscale_factor**i))
                for i in range(self.crop_n_layers + 1)
            ]
            for i, g in enumerate(self.grids):
                if len(g) == 0:
                    raise ValueError(f"crop layer {i} has no clicks: points_per_side={self.points_per_side} / "
                                     f"crop_n_points_downscale_factor**{i} is below 1")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The setting names (the keyword arguments ``SAM.predict`` accepts for segment-everything)."""
        return tuple(f.name for f in fields(cls) if f.init)


@dataclass
class EverythingMasks:
    """What the automatic mask generator found on one image (struct of arrays, N masks).

    Attributes:
        masks: (N, H, W) bool at the image size. All tensors are on the model's device.
        iou: (N,) float predicted IoU.
        stability_score: (N,) float.
        boxes: (N, 4) int xyxy pixel boxes with inclusive right/bottom edges (the reference's convention).
        point_coords: (N, 2) float xy pixel coordinates of the click that produced each mask.
        crop_boxes: (N, 4) int xyxy pixel box of the crop each mask came from.
    """

    masks: torch.Tensor
    iou: torch.Tensor
    stability_score: torch.Tensor
    boxes: torch.Tensor
    point_coords: torch.Tensor
    crop_boxes: torch.Tensor

    def __len__(self) -> int:
        return len(self.iou)

    def select(self, keep: torch.Tensor) -> EverythingMasks:
        return EverythingMasks(*(getattr(self, f.name)[keep] for f in fields(self)))

    def to(self, device) -> EverythingMasks:
        return EverythingMasks(*(getattr(self, f.name).to(device) for f in fields(self)))

    def to_cpu(self) -> EverythingMasks:
        return self.to("cpu")


def point_grid(n: int) -> np.ndarray:
    """(n*n, 2) normalised xy at the centres of an n x n grid of cells, row by row (y outer, x inner)."""
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n if n > 0 else np.zeros(0)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> list[tuple[list[int], int]]:
    """``[(xyxy crop box, layer index), ...]``: the whole image, then (2**i)**2 overlapping crops for layer i."""
    h, w = image_hw
    out = [([0, 0, w, h], 0)]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * 2 / n)
        cw = math.ceil((overlap * (n - 1) + w) / n)
        ch = math.ceil((overlap * (n - 1) + h) / n)
        for x0 in (int((cw - overlap) * i) for i in range(n)):
            for y0 in (int((ch - overlap) * j) for j in range(n)):
                out.append(([x0, y0, min(x0 + cw, w), min(y0 + ch, h)], layer))
    return out


def _near_crop_edge(boxes: torch.Tensor, crop: list[int], image_box: list[int], atol: float = 20.0) -> torch.Tensor:
    """Boxes (in image coordinates) within ``atol`` of a crop edge that is not also an image edge."""
    crop_t = torch.tensor(crop, dtype=torch.float32, device=boxes.device)
    img_t = torch.tensor(image_box, dtype=torch.float32, device=boxes.device)
    b = boxes.float()
    near_crop = torch.isclose(b, crop_t[None], atol=atol, rtol=0)
    near_img = torch.isclose(b, img_t[None], atol=atol, rtol=0)
    return (near_crop & ~near_img).any(1)


def segment_everything(
    engine: ImageEngine, image: np.ndarray, cfg: EverythingConfig, embedding: ImageEmbedding | None = None
) -> EverythingMasks:
    """Every mask the model finds on a BGR HxWx3 uint8 image, per ``cfg``.

    ``embedding`` is the whole image's embedding when the caller already has it (it is not encoded again).
    """
    h, w = image.shape[:2]
    family = engine.transforms
    pred_iou_thresh = family.pred_iou_thresh if cfg.pred_iou_thresh is None else cfg.pred_iou_thresh
    clean_low_res = family.clean_low_res and cfg.min_mask_region_area > 0
    crops = crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
    per_crop = []
    for crop, layer in crops:
        x0, y0, x1, y1 = crop
        crop_img = image[y0:y1, x0:x1]
        emb = embedding if embedding is not None and layer == 0 else engine.encode([crop_img])[0]
        ch, cw = crop_img.shape[:2]
        chunk = _upsample_chunk(ch, cw)
        grid = (cfg.grids[layer] * np.array([[cw, ch]], dtype=np.float64)).astype(np.float32)
        dev = engine.device
        found = []  # per batch: (low-res logits, iou, stability, boxes, points), all on ``dev``
        for start in range(0, len(grid), cfg.points_per_batch):
            xy = grid[start : start + cfg.points_per_batch]
            lr, sc = engine.decode_clicks(emb, xy, multimask=cfg.multimask)
            k = lr.shape[1]
            lr, sc = lr.flatten(0, 1), sc.flatten(0, 1).float()
            p = torch.from_numpy(xy).to(dev).repeat_interleave(k, 0)
            if pred_iou_thresh > 0:
                keep = sc > pred_iou_thresh
                lr, sc, p = lr[keep], sc[keep], p[keep]
            if clean_low_res and len(lr):
                lr = fill_low_res(lr, cfg.min_mask_region_area)
            st = torch.zeros(len(lr), device=dev)
            bx = torch.zeros((len(lr), 4), dtype=torch.int64, device=dev)
            for c in range(0, len(lr), chunk):
                full = engine.upsample(lr[c : c + chunk, None], emb)[:, 0]
                st[c : c + len(full)] = stability_score(full, cfg.stability_score_offset)
                bx[c : c + len(full)] = inclusive_mask_boxes(full > 0)
            keep = ~_near_crop_edge(bx + torch.tensor([x0, y0, x0, y0], device=dev), crop, [0, 0, w, h])
            if cfg.stability_score_thresh > 0:
                keep &= st >= cfg.stability_score_thresh
            found.append((lr[keep], sc[keep], st[keep], bx[keep], p[keep]))
        lr, sc, st, bx, p = (torch.cat(v) for v in zip(*found))
        keep = batched_nms(bx.float(), sc, torch.zeros(len(bx), device=dev), cfg.box_nms_thresh)
        lr, sc, st, bx, p = lr[keep], sc[keep], st[keep], bx[keep], p[keep]
        masks = torch.zeros((len(lr), h, w), dtype=torch.bool, device=dev)
        for c in range(0, len(lr), chunk):
            part = engine.upsample(lr[c : c + chunk, None], emb)[:, 0] > 0
            masks[c : c + len(part), y0:y1, x0:x1] = part
        per_crop.append(EverythingMasks(
            masks=masks,
            iou=sc,
            stability_score=st.float(),
            boxes=bx + torch.tensor([x0, y0, x0, y0], device=dev),
            point_coords=p.float() + torch.tensor([x0, y0], dtype=torch.float32, device=dev),
            crop_boxes=torch.tensor([crop] * len(lr), dtype=torch.int64, device=dev).reshape(-1, 4),
        ))
    out = EverythingMasks(*(torch.cat([getattr(m, f.name) for m in per_crop]) for f in fields(EverythingMasks)))
    if len(crops) > 1 and len(out):
        cb = out.crop_boxes
        scores = 1 / ((cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1]))
        out = out.select(batched_nms(out.boxes.float(), scores, torch.zeros(len(out), device=cb.device),
                                     cfg.crop_nms_thresh))
    if cfg.min_mask_region_area > 0 and len(out) and not family.clean_low_res:
        out = _clean_small_regions(out, cfg.min_mask_region_area, max(cfg.box_nms_thresh, cfg.crop_nms_thresh))
    return out


def _clean_small_regions(found: EverythingMasks, min_area: float, nms_thresh: float) -> EverythingMasks:
    """Fill small holes and drop small islands of every mask, then drop new duplicates, preferring masks that
    needed no change (the reference's post-processing)."""
    dev = found.masks.device
    found = found.to_cpu()
    new_masks, unchanged = [], []
    for m in found.masks.numpy():
        m, c1 = remove_small_regions(m, min_area, holes=True)
        m, c2 = remove_small_regions(m, min_area, holes=False)
        new_masks.append(torch.from_numpy(np.ascontiguousarray(m)))
        unchanged.append(not (c1 or c2))
    masks = torch.stack(new_masks)
    boxes = inclusive_mask_boxes(masks)
    scores = torch.tensor(unchanged, dtype=torch.float32)
    keep = batched_nms(boxes.float(), scores, torch.zeros(len(boxes)), nms_thresh)
    changed = ~scores.bool()
    found.masks = torch.where(changed[:, None, None], masks, found.masks)
    found.boxes = torch.where(changed[:, None], boxes, found.boxes)
    return found.select(keep).to(dev)
