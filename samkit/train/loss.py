"""The training loss of SAM 2 (Meta's ``MultiStepMultiMasksAndIous``), written for samkit.

For every prediction step of an object (the first prompt, then each correction click) the loss adds a focal term
and a dice term on the mask logits, a term on the predicted IoU against the IoU the mask actually has, and a focal
term on the object score. Where a step predicts several masks, the mask and dice terms count only the candidate of
lowest ``focal * w_focal + dice * w_dice`` (SAM's rule: one of three masks has to be right); the IoU term counts every
candidate (``supervise_all_iou``, Meta's SAM 2.1 setting) or that candidate only. The mask, dice and IoU terms count
only objects present in the target; every term is summed over steps and objects and divided by the number of
objects (across processes when training is distributed).

The defaults are Meta's SAM 2.1 fine-tuning settings: weights focal 20, dice 1, IoU 1, object score 1; focal
alpha 0.25, gamma 2; the IoU term an L1 distance; the object score's focal term with gamma 0 and no alpha (a plain
binary cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

#: The loss terms, in the order ``results.csv`` lists them.
TERMS = ("focal", "dice", "iou", "class")


@dataclass(frozen=True)
class LossSettings:
    """Weights and shapes of the loss terms (defaults: Meta's SAM 2.1 fine-tuning)."""

    weights: dict = field(default_factory=lambda: {"focal": 20.0, "dice": 1.0, "iou": 1.0, "class": 1.0})
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    iou_l1: bool = True
    class_alpha: float = -1.0
    class_gamma: float = 0.0


def focal(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """RetinaNet's sigmoid focal loss, averaged over the last dimension: (..., P) -> (...). ``alpha < 0``: no class
    weighting; ``gamma = 0``: binary cross-entropy."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = logits.sigmoid()
    miss = 1 - (p * target + (1 - p) * (1 - target))  # 1 - probability of the right answer
    loss = ce if gamma == 0 else ce * miss.pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean(-1)


def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The soft dice loss of (..., P) logits against (..., P) targets in [0, 1], smoothed by 1: (..., P) -> (...).
    The overlap is written ``(sum p + sum t - |p - t|_1) / 2``, which equals ``sum p * t`` for binary targets and
    keeps its meaning for soft ones."""
    p = logits.sigmoid()
    total = p.sum(-1) + target.sum(-1)
    overlap2 = total - (p - target).abs().sum(-1)  # twice the soft intersection
    return 1 - (overlap2 + 1) / (total + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The IoU of ``logits > 0`` with ``target > 0``, (..., P) -> (...); 0 when both are empty."""
    pred, gt = logits > 0, target > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


def step_terms(masks: torch.Tensor, iou_pred: torch.Tensor, obj_logits: torch.Tensor | None, target: torch.Tensor,
               s: LossSettings) -> dict[str, torch.Tensor]:
    """The four terms of one prediction step, summed over objects (not yet divided by their number).

    Args:
        masks: (N, M, H, W) mask logits, M candidates per object.
        iou_pred: (N, M) predicted IoUs.
        obj_logits: (N, 1) object-score logits, or None for a network without an object-score head (every object
            is then taken as present and the class term is 0).
        target: (N, H, W) target masks (0 / 1).
    """
    n, m = masks.shape[:2]
    logits = masks.flatten(2).float()
    t = target.flatten(1).float()[:, None].expand_as(logits)
    f = focal(logits, t, s.focal_alpha, s.focal_gamma)  # (N, M)
    d = dice(logits, t)
    i = (iou_pred.float() - mask_iou(logits, t)).abs() if s.iou_l1 else (iou_pred.float() - mask_iou(logits, t)) ** 2
    present = (t[:, 0] > 0).any(-1).float()  # (N,)
    if obj_logits is None:
        cls = logits.new_zeros(())
        present = torch.ones_like(present)
    else:
        cls = focal(obj_logits.float(), present[:, None], s.class_alpha, s.class_gamma).sum()
    if m > 1:
        best = (f * s.weights["focal"] + d * s.weights["dice"]).argmin(-1)
        rows = torch.arange(n, device=masks.device)
        f, d = f[rows, best], d[rows, best]
        i = i.mean(-1) if s.supervise_all_iou else i[rows, best]
    else:
        f, d, i = f[:, 0], d[:, 0], i[:, 0]
    return {"focal": (f * present).sum(), "dice": (d * present).sum(), "iou": (i * present).sum(), "class": cls}


def multistep_loss(steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], target: torch.Tensor,
                   num_objects: float, settings: LossSettings | None = None) -> dict[str, torch.Tensor]:
    """The loss of one frame's objects over their prediction steps.

    Args:
        steps: Per step ``(masks (N, M, H, W), iou_pred (N, M), obj_logits (N, 1) or None)``.
        target: (N, H, W) target masks.
        num_objects: What the terms are divided by (the objects of the batch, averaged over processes).

    Returns:
        ``focal``, ``dice``, ``iou``, ``class`` and ``loss`` (their weighted sum).
    """
    s = settings or LossSettings()
    out = {k: target.new_zeros((), dtype=torch.float32) for k in TERMS}
    for masks, iou_pred, obj in steps:
        for k, v in step_terms(masks, iou_pred, obj, target, s).items():
            out[k] = out[k] + v / num_objects
    out["loss"] = sum(out[k] * s.weights[k] for k in TERMS if s.weights[k] != 0)
    return out
