"""Results: ultralytics-compatible, plus SAM's extras (predicted IoU, object ids, the prompts)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from ultralytics.engine.results import Results as _UltralyticsResults

from samkit.engine.prompts import ObjectPrompts


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float xyxy pixel boxes enclosing each mask (zeros for empty masks)."""
    n = masks.shape[0]
    out = torch.zeros((n, 4))
    if n == 0:
        return out
    rows, cols = masks.any(2), masks.any(1)
    for i in range(n):
        ys, xs = torch.nonzero(rows[i]).flatten(), torch.nonzero(cols[i]).flatten()
        if len(ys):
            out[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return out


class Results(_UltralyticsResults):
    """Segmentation of one image, readable by any code that reads Ultralytics results.

    Ultralytics attributes: ``masks.data`` (N, H, W), ``masks.xy`` (polygons), ``boxes.xyxy`` (boxes enclosing
    each mask, pixels), ``boxes.conf`` (the detector's confidence when prompts came from YOLO, else the
    predicted IoU), ``boxes.cls``, ``boxes.id`` (object ids), ``names``, ``orig_img`` (BGR), ``plot()``,
    ``show()``, ``save()``, ``to_json()``.

    Extras:
        iou: (N,) float predicted IoU of each mask.
        obj_ids: (N,) int object ids (the prompt's ``id`` / YOLO track id, else the object's index).
        prompts: The :class:`~samkit.engine.prompts.ObjectPrompts` that produced the masks (None without prompts).
        low_res_logits: (N, r, r) mask logits, reusable as a mask prompt for refinement.
        stability_score: (N,) float, segment-everything only (None otherwise).
        point_coords: (N, 2) float xy pixels of the grid click behind each mask, segment-everything only.
        crop_boxes: (N, 4) int xyxy pixels of the crop each mask came from, segment-everything only.
    """

    def __init__(
        self,
        orig_img: np.ndarray,
        path: str,
        masks: torch.Tensor,
        iou: torch.Tensor,
        obj_ids: torch.Tensor | None = None,
        cls: torch.Tensor | None = None,
        conf: torch.Tensor | None = None,
        names: dict[int, str] | None = None,
        prompts: ObjectPrompts | None = None,
        low_res_logits: torch.Tensor | None = None,
        speed: dict[str, float] | None = None,
        stability_score: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        crop_boxes: torch.Tensor | None = None,
    ):
        n = masks.shape[0]
        obj_ids = torch.arange(n) if obj_ids is None else torch.as_tensor(obj_ids).long()
        cls = torch.zeros(n) if cls is None else torch.as_tensor(cls).float()
        conf = iou.float() if conf is None else torch.as_tensor(conf).float()
        names = names or {0: "object"}
        boxes = torch.cat([masks_to_boxes(masks), obj_ids[:, None].float(), conf[:, None], cls[:, None]], 1)
        super().__init__(orig_img, path=path, names=names, boxes=boxes, masks=masks.float(), speed=speed)
        self.iou = iou.float()
        self.obj_ids = obj_ids
        self.prompts = prompts
        self.low_res_logits = low_res_logits
        self.stability_score = stability_score
        self.point_coords = point_coords
        self.crop_boxes = crop_boxes

    def __len__(self) -> int:
        return 0 if self.masks is None else len(self.masks)

    def save_txt(self, txt_file: str | Path, save_conf: bool = False) -> str:
        """Write YOLO-seg polygon rows (``cls x1 y1 x2 y2 ...`` normalised), replacing any existing file.

        Ultralytics' own ``save_txt`` appends, so a re-run doubles the labels; this one overwrites atomically.
        Empty masks have no polygon and write no row.
        """
        lines = []
        cls = self.boxes.cls.int().tolist()
        conf = self.boxes.conf.tolist()
        for i, poly in enumerate(self.masks.xyn):
            if len(poly) < 3:
                continue
            row = [str(cls[i]), *(f"{v:.6g}" for v in np.asarray(poly).reshape(-1))]
            if save_conf:
                row.append(f"{conf[i]:.6g}")
            lines.append(" ".join(row))
        atomic_write_bytes(txt_file, ("\n".join(lines) + ("\n" if lines else "")).encode())
        return str(txt_file)
