"""SAM and MobileSAM give the masks of Meta's ``segment_anything`` predictor and mask generator for the same weights.

MobileSAM's published code is ``segment_anything`` with a TinyViT image encoder, so the MobileSAM oracle is
``segment_anything``'s ``Sam`` holding the same TinyViT.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from ultralytics import ASSETS

from tests.helpers import mask_iou

pytestmark = pytest.mark.slow


PROMPTS = [
    ("box", {"bboxes": [100, 200, 500, 800]}, {"box": np.array([100, 200, 500, 800])}),
    ("clicks with a negative", {"prompts": [{"points": [[300, 400], [600, 500]], "labels": [1, 0]}]},
     {"point_coords": np.array([[300, 400], [600, 500]]), "point_labels": np.array([1, 0])}),
    ("box plus click", {"prompts": [{"box": [50, 300, 700, 900], "points": [[300, 600]], "labels": [0]}]},
     {"box": np.array([50, 300, 700, 900]), "point_coords": np.array([[300, 600]]), "point_labels": np.array([0])}),
]


@pytest.mark.parametrize("reference_pair", ["sam_b", "mobile_sam"], indirect=True)
def test_prompted_masks_match_reference(reference_pair):
    from segment_anything import SamPredictor

    model, ref = reference_pair
    image = cv2.imread(str(ASSETS / "bus.jpg"))
    predictor = SamPredictor(ref)
    predictor.set_image(image[..., ::-1].copy())
    for name, ours, theirs in PROMPTS:
        for multimask in (False, True):
            r = model(image, multimask=multimask, **ours)[0]
            m_ref, s_ref, low_ref = predictor.predict(multimask_output=multimask, **theirs)
            got = r.masks.data.numpy() > 0.5
            assert got.shape == m_ref.shape
            for k in range(len(got)):
                assert 0.01 < m_ref[k].mean() < 0.99, "degenerate reference mask: the comparison would prove nothing"
                assert mask_iou(got[k], m_ref[k]) >= 0.99, (name, multimask, k)
            np.testing.assert_allclose(r.iou.numpy(), s_ref, atol=1e-4)
            np.testing.assert_allclose(r.low_res_logits.numpy(), np.clip(low_ref, -32, 32), atol=1e-3)


@pytest.mark.parametrize("reference_pair", ["mobile_sam"], indirect=True)
@pytest.mark.parametrize("settings", [
    dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0),
    dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
         min_mask_region_area=300),
])
def test_generator_matches_reference(reference_pair, settings):
    """MobileSAM only: the generator's logic is the same for every SAM 1 encoder, and ViT-B costs a minute here."""
    from segment_anything import SamAutomaticMaskGenerator

    model, ref = reference_pair
    image = cv2.imread(str(ASSETS / "zidane.jpg"))
    anns = SamAutomaticMaskGenerator(ref, **settings).generate(image[..., ::-1].copy())
    r = model(image, **settings)[0]
    assert len(anns) >= 2 and len(r) == len(anns)
    got = r.masks.data.numpy() > 0.5
    for i, a in enumerate(anns):
        assert mask_iou(got[i], a["segmentation"]) >= 0.999, i
        assert r.iou[i].item() == pytest.approx(a["predicted_iou"], abs=1e-4)
        assert r.stability_score[i].item() == pytest.approx(a["stability_score"], abs=1e-3)
