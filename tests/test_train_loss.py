"""samkit's training loss against Meta's ``training/loss_fns.py`` (PyPI ``sam2``, a test-only oracle), term by
term, on the same predictions and targets."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from samkit.train.loss import TERMS, LossSettings, multistep_loss


@pytest.fixture(scope="module")
def meta_loss():
    """Meta's ``MultiStepMultiMasksAndIous``. Its module imports ``training.trainer`` for one constant
    (``CORE_LOSS_KEY``), and that module needs packages the loss never uses (tensordict, iopath...): the fixture
    puts a module holding only that constant in its place (the one patch), then imports the loss as shipped."""
    saved = sys.modules.get("training.trainer")
    stub = types.ModuleType("training.trainer")
    stub.CORE_LOSS_KEY = "core_loss"
    sys.modules["training.trainer"] = stub
    try:
        from training import loss_fns
    finally:
        if saved is None:
            sys.modules.pop("training.trainer", None)
        else:
            sys.modules["training.trainer"] = saved
    return loss_fns.MultiStepMultiMasksAndIous


def _case(seed: int, n: int, steps: list[int], absent: int, obj: bool, hw=(24, 20)):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, *hw, generator=g) > 0.6).float()
    target[:absent] = 0  # objects not in the frame
    preds = []
    for m in steps:
        masks = torch.randn(n, m, *hw, generator=g) * 3
        ious = torch.rand(n, m, generator=g)
        logits = torch.randn(n, 1, generator=g) * 2 if obj else None
        preds.append((masks, ious, logits))
    return target, preds


CASES = [
    # (steps' candidate counts, absent objects, object scores, supervise_all_iou, L1 IoU)
    ([3], 0, True, True, True),              # one multimask step
    ([3, 1, 1, 1, 1, 1, 1, 1], 0, True, True, True),  # a click and 7 corrections (Meta's image training)
    ([1, 1, 1], 2, True, True, True),        # a box and corrections, two objects absent
    ([3, 1], 1, True, False, False),         # IoU on the best candidate only, squared error
    ([3, 1, 1], 1, False, True, True),       # no object-score head (SAM, MobileSAM)
    ([3], 4, True, True, True),              # every object absent
]


@pytest.mark.parametrize("steps, absent, obj, all_iou, l1", CASES)
def test_every_term_equals_metas(meta_loss, steps, absent, obj, all_iou, l1):
    n = 4
    target, preds = _case(len(steps) * 10 + absent, n, steps, absent, obj)
    weights = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}
    ref = meta_loss(dict(weights), supervise_all_iou=all_iou, iou_use_l1_loss=l1, pred_obj_scores=obj,
                    focal_gamma_obj_score=0.0, focal_alpha_obj_score=-1.0)
    outs = {"multistep_pred_multimasks_high_res": [p[0] for p in preds],
            "multistep_pred_ious": [p[1] for p in preds],
            "multistep_object_score_logits": [p[2] if obj else torch.zeros(n, 1) for p in preds]}
    want = ref([outs], target[None])
    got = multistep_loss(preds, target, num_objects=float(n),
                         settings=LossSettings(supervise_all_iou=all_iou, iou_l1=l1))
    names = dict(zip(TERMS, ("loss_mask", "loss_dice", "loss_iou", "loss_class")))
    for term, meta_name in names.items():
        assert float(got[term]) == pytest.approx(float(want[meta_name]), abs=1e-5, rel=1e-5), term
    assert float(got["loss"]) == pytest.approx(float(want["core_loss"]), abs=1e-5, rel=1e-5)
    if absent == n:  # nothing present: only the object score is learned
        assert float(got["focal"]) == float(got["dice"]) == float(got["iou"]) == 0.0
        assert float(got["class"]) > 0


def test_the_loss_has_gradients_and_the_best_candidate_rule_picks_one():
    target, preds = _case(5, 3, [3], 0, True)
    masks = preds[0][0].clone()
    masks[:, 1] = (target * 2 - 1) * 20  # candidate 1 is exactly right for every object
    masks.requires_grad_(True)
    out = multistep_loss([(masks, preds[0][1], preds[0][2])], target, 3.0)
    out["loss"].backward()
    grad = masks.grad.abs().flatten(2).sum(-1)
    assert (grad[:, 1] > 0).all() and (grad[:, [0, 2]] == 0).all()  # only the best candidate learns its mask...
    assert torch.allclose(out["dice"], torch.tensor(0.0), atol=1e-3)  # ...and it is the right one
