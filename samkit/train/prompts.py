"""Prompts simulated from ground-truth masks, as Meta's SAM 2 training samples them.

A sample's objects are all prompted the same way: with probability ``box_prob`` a box (the mask's tight box, each
side moved by up to ``box_noise`` of the box's width or height and at most ``box_noise_bound`` pixels), otherwise
one click drawn uniformly inside the mask. Then ``corrections`` correction clicks, each drawn uniformly from the
error region of the previous prediction (a positive click where the object was missed, a negative one where the
prediction spills over; a negative one on the background when the prediction is exactly right); with probability
``gt_click_prob`` a correction is drawn from the ground truth alone, as if nothing had been predicted.

Coordinates are network-input pixels ``(x, y)`` (column, row), boxes ``(x1, y1, x2, y2)`` corners. Every draw takes a
``torch.Generator`` (the tensors' device) and a ``numpy`` generator (the sample's coin flips): a sample's prompts
depend only on its seed, whichever process or step draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PromptSettings:
    """The prompt simulation's probabilities (defaults: Meta's SAM 2.1 training)."""

    box_prob: float = 0.5
    corrections: int = 7
    gt_click_prob: float = 0.1
    box_noise: float = 0.1
    box_noise_bound: float = 20.0


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float ``(x_min, y_min, x_max, y_max)`` of the masks' pixel indices (zeros for an
    empty mask)."""
    n, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)  # (N, W), (N, H)
    xs = torch.arange(w, device=masks.device).expand(n, w)
    ys = torch.arange(h, device=masks.device).expand(n, h)
    big = max(h, w)
    x1 = torch.where(cols, xs, big).amin(1)
    x2 = torch.where(cols, xs, -1).amax(1)
    y1 = torch.where(rows, ys, big).amin(1)
    y2 = torch.where(rows, ys, -1).amax(1)
    box = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), box, torch.zeros_like(box))


def noisy_boxes(masks: torch.Tensor, settings: PromptSettings, generator: torch.Generator,
                hw: tuple[int, int] | None = None) -> torch.Tensor:
    """The masks' boxes with each side moved at random (see the module text), clamped to the ``hw`` region
    (default the masks' size): (N, 2, 2) corners."""
    box = mask_boxes(masks)
    h, w = hw or masks.shape[1:]
    if settings.box_noise > 0:
        bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
        bound = torch.full_like(bw, float(settings.box_noise_bound))
        dx, dy = torch.minimum(bw * settings.box_noise, bound), torch.minimum(bh * settings.box_noise, bound)
        u = torch.rand(len(box), 4, generator=generator, device=box.device) * 2 - 1
        box = box + u * torch.stack([dx, dy, dx, dy], 1)
        box = torch.minimum(box.clamp(min=0), torch.tensor([w - 1, h - 1, w - 1, h - 1], device=box.device,
                                                           dtype=box.dtype))
    return box.reshape(-1, 2, 2)


def error_clicks(gt: torch.Tensor, pred: torch.Tensor | None, generator: torch.Generator,
                 valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object drawn uniformly from its error region.

    Args:
        gt: (N, H, W) bool targets.
        pred: (N, H, W) bool predictions; None: nothing predicted (a positive click inside the target).
        valid: (H, W) bool, where clicks may fall (the image inside a padded input); None: everywhere.

    Returns:
        ``points`` (N, 1, 2) float ``(x, y)``, ``labels`` (N, 1) int32 (1 positive, 0 negative).
    """
    n, h, w = gt.shape
    missed = gt if pred is None else gt & ~pred
    spilled = torch.zeros_like(gt) if pred is None else ~gt & pred
    if valid is not None:
        missed, spilled = missed & valid, spilled & valid
    region = missed | spilled
    exact = ~region.flatten(1).any(1)
    if bool(exact.any()):  # exactly right: a click on the background
        background = ~gt if valid is None else ~gt & valid
        region = torch.where(exact[:, None, None], background, region)
    flat = region.flatten(1)
    counts = flat.sum(1)
    if bool((counts == 0).any()):  # nothing to click on at all: anywhere in the region clicks may fall
        anywhere = torch.ones(h * w, dtype=torch.bool, device=gt.device) if valid is None else valid.flatten()
        flat = torch.where((counts == 0)[:, None], anywhere, flat)
        counts = flat.sum(1)
    # the k-th pixel of the region, k uniform: the first index where the running count reaches k + 1
    k = (torch.rand(n, generator=generator, device=gt.device) * counts).long().clamp(max=counts - 1)
    running = flat.cumsum(1, dtype=torch.int32)
    pick = torch.searchsorted(running, (k + 1).to(torch.int32)[:, None]).clamp(max=h * w - 1)
    labels = missed.flatten(1).gather(1, pick).to(torch.int32)  # a missed pixel: positive
    pix = pick[:, 0]
    points = torch.stack([pix % w, pix // w], 1).float()
    return points[:, None], labels


def first_prompt(gt: torch.Tensor, settings: PromptSettings, rng: np.random.Generator, generator: torch.Generator,
                 valid: torch.Tensor | None = None, hw: tuple[int, int] | None = None):
    """The first prompt of a sample's objects: ``("box", corners (N, 2, 2))`` or ``("click", (points, labels))``."""
    if rng.random() < settings.box_prob:
        return "box", noisy_boxes(gt, settings, generator, hw)
    return "click", error_clicks(gt, None, generator, valid)
