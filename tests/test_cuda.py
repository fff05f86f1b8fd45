"""The CUDA path: reference masks on the GPU in fp32, bf16 autocast close to fp32, segment everything on the GPU.

These need a CUDA device; machines without one (CI) skip them, and the CPU tests cover the same code in fp32.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from tests.helpers import mask_iou

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def reference_device():
    """conftest's reference_pair (samkit and Meta's SAM 2.1 tiny with the same random weights), on the GPU."""
    return "cuda"


def test_prompted_masks_match_reference_on_gpu(reference_pair):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model, ref = reference_pair
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    pred = SAM2ImagePredictor(ref)
    pred.set_image(image[..., ::-1].copy())
    boxes = np.array([[100, 200, 500, 800], [0, 0, 400, 400]])
    for multimask in (False, True):
        r = model(image, bboxes=boxes, multimask=multimask)[0]
        m_ref, s_ref, _ = pred.predict(box=boxes, multimask_output=multimask)
        got = r.masks.data.cpu().numpy().reshape(m_ref.shape) > 0.5
        for i in range(len(boxes)):
            for k in range(m_ref.shape[1]):
                assert mask_iou(got[i, k], m_ref[i, k] > 0) >= 0.99
        np.testing.assert_allclose(r.iou.cpu().numpy().reshape(s_ref.shape), s_ref, atol=1e-3)
    assert model.engine.images_encoded == 1


def test_bf16_close_to_fp32_on_gpu(reference_pair):
    model, _ = reference_pair
    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    boxes = [[100, 100, 600, 700], [500, 50, 1200, 700]]
    model.half = False
    full = model(image, bboxes=boxes)[0]
    model.half = True
    assert model.runtime.half_dtype == torch.bfloat16
    try:
        half = model(image, bboxes=boxes)[0]
    finally:
        model.half = False
    a, b = full.low_res_logits.flatten(1), half.low_res_logits.flatten(1)
    for i in range(len(boxes)):
        assert torch.corrcoef(torch.stack([a[i], b[i]]))[0, 1] > 0.99
        sure = a[i].abs() > a[i].abs().quantile(0.5)
        assert ((a[i] > 0) == (b[i] > 0))[sure].float().mean() > 0.99


def test_everything_matches_reference_on_gpu(reference_pair):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    model, ref = reference_pair
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    settings = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    anns = SAM2AutomaticMaskGenerator(ref, **settings).generate(image[..., ::-1].copy())
    r = model(image, **settings)[0]
    assert len(r) == len(anns) == 192
    got = r.masks.data.cpu().numpy() > 0.5
    # GPU convolutions round differently (TF32), so candidates with near-equal predicted IoU may swap places:
    # match each reference mask to the best of our masks from the same click.
    by_click: dict[tuple, list[int]] = {}
    for i, pt in enumerate(r.point_coords.tolist()):
        by_click.setdefault((round(pt[0], 1), round(pt[1], 1)), []).append(i)
    good = 0
    for a in anns:
        pt = a["point_coords"][0]
        cands = by_click.get((round(pt[0], 1), round(pt[1], 1)), [])
        best = max((mask_iou(got[i], a["segmentation"]) for i in cands), default=0.0)
        good += best >= 0.99
    assert good >= 0.95 * len(anns), f"only {good} of {len(anns)} reference masks found"


def _sync_warnings(fn) -> list[str]:
    """``file:line`` of every place CUDA's sync detector flags while ``fn`` runs (uploads included)."""
    import warnings

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def test_prompts_and_tracked_frames_do_not_wait_for_the_gpu(present_ckpt):
    """samkit's own code never makes the host wait in a prompt call or a tracked frame (CUDA's own detector;
    tests/test_syncs.py counts the same on the CPU). Ultralytics' memory code uploads the object-pointer positions
    with a blocking copy on every frame: reported, not counted against samkit."""
    from samkit import SAM
    from tests.helpers import moving_square_frames

    model = SAM(str(present_ckpt), device="cuda", verbose=False)
    image = moving_square_frames(1)[0]
    model.predict(image, bboxes=[10, 30, 40, 60], verbose=False)
    flagged = _sync_warnings(lambda: model.predict(image, bboxes=[[10, 30, 40, 60], [5, 5, 50, 50]], verbose=False))
    with model.video(moving_square_frames(10)) as v:
        flagged += _sync_warnings(lambda: v.add(frame=0, obj_id=1, box=[10, 30, 40, 60]))
        v.add(frame=0, obj_id=2, box=[40, 30, 70, 60])
        frames = v.propagate()
        next(frames)
        assert v._prepare(5)[1].is_pinned(), "frames are prepared in page-locked memory for a CUDA network"
        flagged += _sync_warnings(lambda: [next(frames) for _ in range(4)])
    ours = [f for f in flagged if "/samkit/" in f]
    print("sync sites (Ultralytics):", sorted(set(flagged) - set(ours)))
    assert not ours, ours


@pytest.mark.parametrize("tune", ["decoder", "all"])
def test_training_on_the_gpu_in_bf16_learns_and_saves_cpu_loadable_weights(tiny_ckpt, tmp_path, tune):
    from samkit import SAM
    from samkit.data.synthetic import make_shapes

    data = make_shapes(tmp_path / "shapes", train=8, val=4, seed=1)
    model = SAM(str(tiny_ckpt), device="cuda", verbose=False)
    res = model.train(data=data, epochs=2, lr0=1e-3, tune=tune, corrections=3, max_clicks=3, amp=True,
                      project=tmp_path, verbose=False)
    assert all(np.isfinite(r["train/loss"]) for r in res.rows[1:])
    assert res.rows[-1]["train/loss"] < res.rows[1]["train/loss"]
    again = SAM(str(res.best), device="cpu", verbose=False)  # written from the GPU, read on the CPU
    assert next(again.net.parameters()).device.type == "cpu" and again.family == "SAM 2.1"
