"""Segment everything: the reference automatic mask generator's masks, parameters and clean-up."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit import SAM, ops
from samkit.engine import everything as ev
from tests.helpers import patch_sam2_reference_for_cpu, save_present, save_random

LOOSE = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, settings",
    [
        ("every candidate, 3 per click", dict(points_per_side=4, **LOOSE)),
        ("one per click, stability filter", dict(points_per_side=4, multimask=False, pred_iou_thresh=0.0,
                                                 stability_score_offset=0.05, stability_score_thresh=0.5,
                                                 box_nms_thresh=1.0)),
        ("predicted IoU filter", dict(points_per_side=4, pred_iou_thresh=0.51, stability_score_thresh=0.0,
                                      box_nms_thresh=1.0)),
        ("crops", dict(points_per_side=4, crop_n_layers=1, crop_n_points_downscale_factor=2, crop_nms_thresh=1.0,
                       **LOOSE)),
        ("small regions", dict(points_per_side=3, min_mask_region_area=400, **LOOSE)),
        ("explicit grid", dict(point_grids=[np.array([[0.2, 0.3], [0.7, 0.6], [0.5, 0.5], [0.21, 0.3]])],
                               points_per_side=None, **LOOSE)),
    ],
)
def test_masks_match_reference_generator(reference_pair, monkeypatch, name, settings):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    patch_sam2_reference_for_cpu(monkeypatch)  # its hole filling, as on a GPU
    model, ref_model = reference_pair
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    ref_settings = {("multimask_output" if k == "multimask" else k): v for k, v in settings.items()}
    anns = SAM2AutomaticMaskGenerator(ref_model, **ref_settings).generate(image[..., ::-1].copy())
    ours = {k: v for k, v in settings.items() if v is not None}
    r = model(image, **ours)[0]
    assert len(anns) >= 2, "too few reference masks for the comparison to mean anything"
    assert len(r) == len(anns), name
    got = r.masks.data.numpy() > 0.5
    for i, a in enumerate(anns):
        # ultralytics' attention and the reference's fused attention round differently in the last bits, which can
        # flip a pixel whose logit is ~0; anything more would be a real difference.
        assert (got[i] != a["segmentation"]).sum() <= 3, (name, i)
        assert r.iou[i].item() == pytest.approx(a["predicted_iou"], abs=1e-5)
        assert r.stability_score[i].item() == pytest.approx(a["stability_score"], abs=1e-5)
        assert r.point_coords[i].tolist() == pytest.approx(a["point_coords"][0], abs=1e-3)
        x, y, w, h = a["crop_box"]
        assert r.crop_boxes[i].tolist() == [x, y, x + w, y + h]
    # Results boxes enclose the masks (exclusive right/bottom edge); the reference's are inclusive xywh.
    ref_boxes = np.array([[b[0], b[1], b[0] + b[2] + 1, b[1] + b[3] + 1] for b in (a["bbox"] for a in anns)])
    np.testing.assert_allclose(r.boxes.xyxy.numpy(), ref_boxes, atol=1)


def test_grids_and_crops_match_reference():
    from sam2.utils import amg

    for n in (1, 2, 7, 32):
        np.testing.assert_allclose(ev.point_grid(n), amg.build_point_grid(n), atol=1e-12)
    for hw in ((1080, 810), (480, 640), (17, 1000)):
        for layers in (0, 1, 2, 3):
            for overlap in (0.0, 512 / 1500, 0.5):
                boxes, idx = amg.generate_crop_boxes(hw, layers, overlap)
                assert ev.crop_boxes(hw, layers, overlap) == list(zip(boxes, idx))
    cfg = ev.EverythingConfig(points_per_side=16, crop_n_layers=2, crop_n_points_downscale_factor=2)
    for ours, theirs in zip(cfg.grids, amg.build_all_layer_point_grids(16, 2, 2)):
        np.testing.assert_allclose(ours, theirs)


def test_region_cleanup_and_boxes_match_reference():
    from sam2.utils import amg

    rng = np.random.default_rng(0)
    for seed in range(20):
        mask = rng.random((40, 50)) > (0.3 + 0.02 * seed)
        for holes in (True, False):
            for area in (1, 3, 10, 3000):
                want, want_changed = amg.remove_small_regions(mask, area, "holes" if holes else "islands")
                got, changed = ops.remove_small_regions(mask, area, holes)
                assert changed == want_changed
                np.testing.assert_array_equal(got, want)
    masks = torch.from_numpy(rng.random((6, 30, 20)) > 0.97)
    masks[0] = False
    np.testing.assert_array_equal(ops.inclusive_mask_boxes(masks).numpy(), amg.batched_mask_to_box(masks).numpy())


def test_low_res_fill_matches_reference_rule():
    """Holes and islands of at most the area flip sign (to +-10); larger regions keep their logits; both are
    found on the input (an island inside a filled hole is still removed)."""
    logits = torch.full((1, 32, 32), -5.0)
    logits[0, 4:20, 4:20] = 5.0
    logits[0, 8:10, 8:10] = -3.0  # a 4-pixel hole
    logits[0, 25:27, 25:28] = 4.0  # a 6-pixel island
    logits[0, 12:15, 12:15] = -2.0  # a 9-pixel hole with a 1-pixel island in it
    logits[0, 13, 13] = 1.0
    out = ops.fill_low_res(logits, 6)
    assert out[0, 13, 13] == -10.0 and out[0, 12, 12] == -2.0
    assert (out[0, 8:10, 8:10] == 10.0).all()
    assert (out[0, 25:27, 25:28] == -10.0).all()
    untouched = torch.ones(32, 32, dtype=torch.bool)
    untouched[8:10, 8:10] = False
    untouched[25:27, 25:28] = False
    untouched[13, 13] = False
    assert torch.equal(out[0][untouched], logits[0][untouched])
    assert torch.equal(ops.fill_low_res(logits, 3)[0, 8:10, 8:10], logits[0, 8:10, 8:10])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ev") / "tiny.pt"
    save_random(path, "sam2_test", "2.1", seed=5)
    return SAM(path, device="cpu", verbose=False)


def test_everything_on_tiny_model(tiny):
    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    before = tiny.engine.images_encoded
    r = tiny(image, points_per_side=4, **LOOSE)[0]
    assert tiny.engine.images_encoded == before + 1
    assert len(r) == 48 and r.masks.data.shape[1:] == image.shape[:2]
    assert r.boxes.id is None and r.obj_ids.tolist() == list(range(48))
    # Each grid click gives three candidates; the masks come best first (NMS order).
    grid = ev.point_grid(4) * np.array([image.shape[1], image.shape[0]])
    got = sorted(map(tuple, np.round(r.point_coords.numpy(), 3)))
    assert got == sorted(map(tuple, np.round(np.repeat(grid, 3, axis=0), 3)))
    assert (np.diff(r.iou.numpy()) <= 0).all()
    # Calling again on the same image reuses the embedding.
    tiny(image, points_per_side=2, **LOOSE)
    assert tiny.engine.images_encoded == before + 1
    one = tiny(image, points_per_side=4, multimask=False, **LOOSE)[0]
    assert len(one) == 16
    # The default thresholds filter: whatever survives passes them.
    d = tiny(image, points_per_side=4, pred_iou_thresh=0.3, stability_score_thresh=0.5)[0]
    assert (d.iou > 0.3).all() and (d.stability_score >= 0.5).all()
    assert len(d) <= len(r)


@pytest.fixture(scope="module")
def tiny_sam1(tmp_path_factory):
    path = tmp_path_factory.mktemp("ev1") / "tiny_sam1.pt"
    save_random(path, "sam_test", seed=2)
    return SAM(path, device="cpu", verbose=False)


def test_min_mask_region_area_leaves_no_small_regions(tiny_sam1):
    """SAM 1 family: the final masks have no hole or island under the area (the largest island always stays)."""
    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    raw = tiny_sam1(image, points_per_side=3, **LOOSE)[0].masks.data.numpy() > 0.5
    area = 2000
    clean = tiny_sam1(image, points_per_side=3, min_mask_region_area=area, **LOOSE)[0].masks.data.numpy() > 0.5
    assert len(clean) >= 1
    for m in clean:
        for region in (m, ~m):
            n, _, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
            sizes = stats[1:, cv2.CC_STAT_AREA]
            if region is m:
                assert (sizes >= area).all() or len(sizes) == 1, "an island smaller than the area survived"
            else:
                assert (sizes >= area).all(), "a hole smaller than the area survived"
    assert not all(np.array_equal(a, b) for a, b in zip(raw, clean)), "the clean-up changed nothing to test"


@pytest.mark.parametrize(
    "settings, error, match",
    [
        (dict(points_per_side=0), ValueError, "points_per_side=0"),
        (dict(points_per_batch=-1), ValueError, "points_per_batch=-1"),
        (dict(pred_iou_thresh="high"), ValueError, "pred_iou_thresh='high'"),
        (dict(stability_score_thresh=1.5), ValueError, r"stability_score_thresh=1.5 must be a number in \[0, 1\]"),
        (dict(box_nms_thresh=float("nan")), ValueError, "box_nms_thresh=nan"),
        (dict(crop_n_layers=-1), ValueError, "crop_n_layers=-1"),
        (dict(crop_overlap_ratio=1.0), ValueError, "crop_overlap_ratio=1.0"),
        (dict(crop_n_points_downscale_factor=0), ValueError, "crop_n_points_downscale_factor=0"),
        (dict(min_mask_region_area=-5), ValueError, "min_mask_region_area=-5"),
        (dict(point_grids=[np.zeros((3, 3))]), ValueError, r"point_grids\[0\] must be a non-empty \(P, 2\)"),
        (dict(point_grids=[np.full((3, 2), 2.0)]), ValueError, "outside"),
        (dict(point_grids=[np.zeros((3, 2))], crop_n_layers=1), ValueError, "one per layer"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=4), ValueError, "no clicks"),
        (dict(points_per_sid=8), TypeError, "did you mean 'points_per_side'"),
    ],
)
def test_bad_settings(tiny, settings, error, match):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(error, match=match):
        tiny(image, **settings)


def test_settings_with_prompts_are_an_error(tiny):
    with pytest.raises(ValueError, match="points_per_side only apply to segment-everything"):
        tiny(np.zeros((64, 64, 3), np.uint8), bboxes=[1, 1, 30, 30], points_per_side=8)


@pytest.mark.slow
def test_memory_on_a_large_image_does_not_grow_with_clicks(tmp_path):
    """Segment everything on a 6-megapixel image: besides the masks it returns, memory stays within a few tens of
    MB (every candidate used to be upsampled 16 at a time as full-size float logits: ~0.7 GB here, ~3 GB at
    8000x6000)."""
    import subprocess
    import sys

    ckpt = save_present(tmp_path / "tiny.pt", "sam2_test")
    code = f"""
import resource
import numpy as np
from samkit import SAM, ops
m = SAM({str(ckpt)!r}, device="cpu", verbose=False)
img = (np.random.default_rng(0).random((3000, 2000, 3)) * 255).astype(np.uint8)
m.engine.encode([img])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = m(img, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)[0]
print(len(r), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, grown_mb = out.stdout.split()
    assert float(grown_mb) < 120 + int(n) * 6, f"peak memory grew by {grown_mb} MB for {n} masks of 6 MB"
