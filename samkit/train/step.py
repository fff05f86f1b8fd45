"""One training sample through the network: the first simulated prompt, then the correction clicks, each decoded
with every prompt so far and the previous mask logits (Meta's SAM 2 interactive training on images).

A step predicts three candidates when its prompt is a single click (as the network's multimask rule; a box counts
as two points) and one otherwise; where the network has an object-score head, the masks of an object it scores
absent are set to -1024 before the loss (as Meta's training forward does). The next click and the next mask prompt
come from the candidate of highest predicted IoU. The loss (:mod:`samkit.train.loss`) is computed on the masks
upsampled to the network's input side, inside the region the image covers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samkit.train.prompts import PromptSettings, error_clicks, first_prompt

#: The logit of a mask whose object is scored absent (Meta's ``NO_OBJ_SCORE``).
NO_OBJECT = -1024.0


def predict_steps(network, features: list[torch.Tensor], gt: torch.Tensor, hw: tuple[int, int], size: int,
                  settings: PromptSettings, rng: np.random.Generator, generator: torch.Generator) -> list[tuple]:
    """The prediction steps of one image's objects.

    Args:
        network: The family's adapter (:class:`~samkit.families.network.TrainNetwork`).
        features: The image's feature maps (B = 1), the image embedding last (``network.encode_image``).
        gt: (N, S, S) bool targets at the network input.
        hw: The (h, w) region of the input the image covers (smaller than S x S for a padded input).
        size: The input side S.

    Returns:
        Per step ``(masks (N, M, h, w) logits, iou (N, M), object scores (N, 1) or None)``.
    """
    n = len(gt)
    h, w = hw
    valid = None
    if (h, w) != (size, size):
        valid = torch.zeros(size, size, dtype=torch.bool, device=gt.device)
        valid[:h, :w] = True
    embed, high_res = features[-1], list(features[:-1])
    kind, first = first_prompt(gt, settings, rng, generator, valid, (h, w))
    boxes = first if kind == "box" else None
    coords, labels = (None, None) if kind == "box" else first
    mask_in = None
    rows = torch.arange(n, device=gt.device)
    steps = []
    for k in range(settings.corrections + 1):
        points = (0 if boxes is None else 2) + (0 if coords is None else coords.shape[1])
        multimask = points <= 1
        low, iou, obj = network.decode_heads(embed, high_res, coords, labels, boxes, mask_in, multimask)
        if obj is not None:
            low = torch.where(obj[:, :, None, None] > 0, low, torch.full_like(low, NO_OBJECT))
        high = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False)
        steps.append((high[..., :h, :w], iou, obj))
        best = iou.argmax(1) if low.shape[1] > 1 else torch.zeros(n, dtype=torch.long, device=gt.device)
        if k == settings.corrections:
            break
        pred = None if rng.random() < settings.gt_click_prob else high[rows, best] > 0
        pts, labs = error_clicks(gt, pred, generator, valid)
        coords = pts if coords is None else torch.cat([coords, pts], 1)
        labels = labs if labels is None else torch.cat([labels, labs], 1)
        mask_in = low[rows, best][:, None]
    return steps
