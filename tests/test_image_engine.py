"""The image engine gives the reference's masks, encodes each image once and batches prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit import SAM
from tests.helpers import mask_iou, save_random


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, ours, theirs",
    [
        ("box", {"bboxes": [100, 200, 500, 800]}, {"box": np.array([100, 200, 500, 800])}),
        ("clicks with a negative", {"prompts": [{"points": [[300, 400], [600, 500]], "labels": [1, 0]}]},
         {"point_coords": np.array([[300, 400], [600, 500]]), "point_labels": np.array([1, 0])}),
        ("box plus click", {"prompts": [{"box": [50, 300, 700, 900], "points": [[300, 600]], "labels": [0]}]},
         {"box": np.array([50, 300, 700, 900]), "point_coords": np.array([[300, 600]]), "point_labels": np.array([0])}),
    ],
)
def test_masks_match_reference(reference_pair, name, ours, theirs):
    import cv2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model, ref_model = reference_pair
    image = ASSETS / "bus.jpg"
    ref = SAM2ImagePredictor(ref_model)
    ref.set_image(cv2.imread(str(image))[..., ::-1].copy())
    for multimask in (False, True):
        r = model(image, multimask=multimask, **ours)[0]
        m_ref, s_ref, low_ref = ref.predict(multimask_output=multimask, **theirs)
        got = r.masks.data.numpy() > 0.5
        assert got.shape == m_ref.shape
        for k in range(len(got)):
            assert 0.01 < m_ref[k].mean() < 0.99, "degenerate reference mask: the comparison would prove nothing"
            assert mask_iou(got[k], m_ref[k] > 0) >= 0.99, (name, multimask, k)
        np.testing.assert_allclose(r.iou.numpy(), s_ref, atol=1e-4)
        np.testing.assert_allclose(r.low_res_logits.numpy(), low_ref, atol=1e-3)


@pytest.mark.slow
def test_batched_objects_equal_one_by_one(reference_pair):
    model, _ = reference_pair
    boxes = [[100, 200, 500, 800], [10, 10, 300, 300], [400, 100, 800, 700]]
    together = model(ASSETS / "bus.jpg", bboxes=boxes)[0]

    def same(a, i, b, j):  # equal up to float rounding (GEMM results may depend on batch shape and alignment)
        torch.testing.assert_close(a.low_res_logits[i], b.low_res_logits[j], atol=1e-3, rtol=1e-4)
        assert (a.masks.data[i] != b.masks.data[j]).float().mean() < 1e-4

    for i, b in enumerate(boxes):
        alone = model(ASSETS / "bus.jpg", bboxes=b)[0]
        same(alone, 0, together, i)
    # Objects of different structure (a box, two clicks, a box with a click) in one call.
    mixed = model(ASSETS / "bus.jpg", prompts=[{"box": boxes[0]},
                                               {"points": [[300, 400], [600, 500]], "labels": [1, 0]},
                                               {"box": boxes[1], "points": [[50, 50]]}])[0]
    alone = model(ASSETS / "bus.jpg", prompts=[{"points": [[300, 400], [600, 500]], "labels": [1, 0]}])[0]
    same(alone, 0, mixed, 1)
    assert mixed.obj_ids.tolist() == [0, 1, 2]


def test_encoder_runs_once_per_image(tiny_ckpt):
    model = SAM(tiny_ckpt, verbose=False)
    img = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    model(img, bboxes=[10, 10, 80, 80])
    model(img.copy(), points=[[50, 50]], labels=[1])
    assert model.engine.images_encoded == 1
    model.set_image(img)
    r = model.predict(bboxes=[[0, 0, 40, 40], [50, 50, 100, 100]])
    assert model.engine.images_encoded == 1 and len(r[0]) == 2
    other = img.copy()
    other[0, 0, 0] ^= 1  # one changed byte is another image
    model(other, bboxes=[10, 10, 80, 80])
    assert model.engine.images_encoded == 2


def test_cache_off_and_lru(tiny_ckpt):
    model = SAM(tiny_ckpt, verbose=False, cache=0)
    img = np.zeros((64, 64, 3), np.uint8)
    model(img, bboxes=[1, 1, 30, 30])
    model(img, bboxes=[1, 1, 30, 30])
    assert model.engine.images_encoded == 2
    lru = SAM(tiny_ckpt, verbose=False, cache=2)
    imgs = [np.full((32, 32, 3), v, np.uint8) for v in range(3)]
    for im in imgs:
        lru(im, bboxes=[1, 1, 20, 20])
    lru(imgs[2], bboxes=[1, 1, 20, 20])
    assert lru.engine.images_encoded == 3
    lru(imgs[0], bboxes=[1, 1, 20, 20])  # the oldest was dropped
    assert lru.engine.images_encoded == 4
    with pytest.raises(ValueError, match="cache=-1"):
        SAM(tiny_ckpt, verbose=False, cache=-1)


def test_batched_encoder_matches_single(tiny_ckpt):
    model = SAM(tiny_ckpt, verbose=False, cache=0)
    rng = np.random.default_rng(1)
    imgs = [(rng.random((100 + 10 * i, 90, 3)) * 255).astype(np.uint8) for i in range(3)]
    single = [model(im, bboxes=[5, 5, 60, 60])[0] for im in imgs]
    batched = model(imgs, bboxes=[5, 5, 60, 60], batch=3)
    assert model.engine.images_encoded == 6
    for a, b in zip(single, batched):
        assert mask_iou(a.masks.data[0].numpy() > 0.5, b.masks.data[0].numpy() > 0.5) >= 0.99


def test_sam1_family_decodes(tmp_path):
    path = tmp_path / "sam_test.pt"
    save_random(path, "sam_test")
    model = SAM(path, verbose=False)
    img = (np.random.default_rng(2).random((90, 200, 3)) * 255).astype(np.uint8)  # wide: padded at the bottom
    r = model(img, prompts=[{"box": [10, 10, 100, 80]}, {"points": [[50, 40], [150, 20]], "labels": [1, 0]}],
              multimask=True)[0]
    assert r.masks.data.shape == (6, 90, 200) and r.iou.shape == (6,)
    assert model.engine.input_hw((90, 200)) == (115, 256)


def test_results_are_ultralytics_compatible(tiny_ckpt, tmp_path):
    model = SAM(tiny_ckpt, verbose=False)
    img = (np.random.default_rng(3).random((100, 120, 3)) * 255).astype(np.uint8)
    r = model(img, bboxes=[[10, 10, 60, 60], [30, 30, 110, 90]])[0]
    assert r.masks.data.shape == (2, 100, 120) and r.boxes.xyxy.shape == (2, 4)
    assert r.boxes.id is None and r.obj_ids.tolist() == [0, 1] and r.names == {0: "object"}
    assert r.orig_img is img or np.array_equal(r.orig_img, img)
    for i in range(2):
        m = r.masks.data[i] > 0.5
        if m.any():
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert r.boxes.xyxy[i].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1,
                                                ys.max().item() + 1]
    plotted = r.plot()
    assert plotted.shape == img.shape
    txt = tmp_path / "labels" / "a.txt"
    r.save_txt(txt)
    first = txt.read_text()
    r.save_txt(txt)
    assert txt.read_text() == first, "save_txt must overwrite, not append"
    rows = [line.split() for line in first.splitlines()]
    nonempty = [i for i in range(2) if (r.masks.data[i] > 0.5).sum() > 4]
    assert len(rows) == len(nonempty)
    for row in rows:
        vals = list(map(float, row[1:]))
        assert row[0] == "0" and len(vals) % 2 == 0 and all(0 <= v <= 1 for v in vals)
    assert not list(txt.parent.glob(".*tmp"))


def test_predict_without_image(tiny_ckpt):
    model = SAM(tiny_ckpt, verbose=False)
    with pytest.raises(ValueError, match="no source given and no image set"):
        model.predict(bboxes=[1, 1, 5, 5])
    # With an image set, no source and no prompt segments everything on it.
    model.set_image(np.full((32, 48, 3), 128, np.uint8))
    r = model.predict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert r[0].masks.data.shape[1:] == (32, 48) and r[0].stability_score is not None


def test_mask_prompts_decode_binary_and_logits(tiny_ckpt):
    model = SAM(tiny_ckpt, verbose=False)
    img = (np.random.default_rng(4).random((80, 90, 3)) * 255).astype(np.uint8)
    binary = np.zeros((2, 80, 90), bool)
    binary[0, 10:40, 10:40] = True
    binary[1, 50:70, 50:80] = True
    first = model(img, masks=binary)[0]
    assert first.masks.data.shape == (2, 80, 90) and first.low_res_logits.shape == (2, 64, 64)
    # The low-resolution logits of a prediction feed back as mask prompts (refinement).
    again = model(img, masks=first.low_res_logits.numpy())[0]
    assert again.masks.data.shape == (2, 80, 90)
    assert model.engine.images_encoded == 1


def test_stream_yields_one_result_per_image(tiny_ckpt, tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((40, 50, 3), 60 * i, np.uint8))
    model = SAM(tiny_ckpt, verbose=False)
    gen = model(tmp_path, bboxes=[5, 5, 30, 30], stream=True)
    assert not isinstance(gen, list)
    paths = [r.path for r in gen]
    assert [p.split("/")[-1] for p in paths] == ["im0.png", "im1.png", "im2.png"]
    with pytest.raises(TypeError, match="points_per_sid"):
        model(tmp_path, stream=True, points_per_sid=3)


@pytest.mark.parametrize("arch", ["sam2_test", "sam_test"])
@pytest.mark.parametrize("clicks", [0, 2, 12])
def test_factored_decoder_equals_the_plain_one(tmp_path, arch, clicks):
    """samkit's decoder path (the CPU's factored attention: few prompt tokens against many image tokens) is
    Ultralytics' decoder's mathematics: same logits up to rounding, for 1 and several objects on a real embedding;
    with many clicks it falls back to the plain attention."""
    save_random(tmp_path / "m.pt", arch, "2.1" if arch.startswith("sam2") else None, seed=2)
    model = SAM(tmp_path / "m.pt", device="cpu", verbose=False)
    emb = model.engine.encode([np.asarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3)), np.uint8)])[0]
    sam2 = arch.startswith("sam2")
    enc = model.net.sam_prompt_encoder if sam2 else model.net.prompt_encoder
    dec = model.net.sam_mask_decoder if sam2 else model.net.mask_decoder
    assert "predict_masks" in dec.__dict__, "the replacement is installed"
    g = torch.Generator().manual_seed(clicks)
    for n in (1, 3):
        coords = torch.rand((n, clicks + 2, 2), generator=g) * 200
        labels = torch.tensor([2, 3] + [1, 0] * (clicks // 2), dtype=torch.int32).repeat(n, 1)
        with torch.inference_mode():
            sparse, dense = enc(points=(coords, labels), boxes=None, masks=None)
            pe = enc.get_dense_pe()
            extra = (n > 1, emb.high_res_feats) if sam2 else ()
            plain = type(dec).predict_masks(dec, emb.image_embed, pe, sparse, dense, *extra)
            fact = dec.predict_masks(emb.image_embed, pe, sparse, dense, *extra)
        torch.testing.assert_close(fact[0], plain[0], atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(fact[1], plain[1], atol=2e-5, rtol=1e-4)


def test_set_image_embedding_is_not_served_after_the_runtime_changed(tiny_ckpt):
    """An embedding kept by set_image belongs to the runtime settings it was computed under: after half / compile /
    to() change them, the image is encoded again (as the engine's cache does)."""
    from samkit import SAM

    model = SAM(tiny_ckpt, device="cpu", verbose=False)
    img = np.full((48, 64, 3), 90, np.uint8)
    model.set_image(img)
    n = model.engine.images_encoded
    model.predict(bboxes=[5, 5, 40, 30])
    assert model.engine.images_encoded == n  # the kept embedding
    generation = model.runtime.generation
    model.runtime.generation += 1  # what half / compile / to() do to the runtime
    model.predict(bboxes=[5, 5, 40, 30])
    assert model.engine.images_encoded == n + 1
    model.runtime.generation = generation
