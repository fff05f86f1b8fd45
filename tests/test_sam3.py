"""SAM 3's concept prompts (texts, exemplar boxes) against Meta's reference with the same random weights, on the
small test architecture (the same module classes as the real one); loading, caching and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SAM
from samkit.nn import build_network
from samkit.nn.registry import model_registry
from tests.helpers import mask_iou

pytest.importorskip("sam3", reason="Meta's sam3 reference is a dev dependency (pip install -e '.[dev]')")
pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")

from benchmarks import sam3_reference as ref  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(samkit SAM, Meta's Sam3Processor) on the same random weights, saved in the published sam3.pt layout."""
    from sam3.model.sam3_image_processor import Sam3Processor

    arch = model_registry().architecture("sam3_test")
    with ref.cpu_patches():
        meta = ref.build_reference(arch)
        ref.fill_random_(meta, seed=0)
    path = tmp_path_factory.mktemp("sam3") / "sam3.pt"
    torch.save(ref.published_layout(meta), path)
    model = SAM(str(path), device="cpu", verbose=False)
    processor = Sam3Processor(meta, resolution=arch.image_size, device="cpu", confidence_threshold=0.0)
    return model, processor


@pytest.fixture(scope="module")
def image():
    """A non-square RGB uint8 image with structure (gradients and discs): the stretch and the box scaling matter."""
    h, w = 180, 260
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([xx * 200, yy * 200, xx * yy * 250], -1)
    rng = np.random.default_rng(0)
    for _ in range(4):
        cy, cx, r = rng.random(3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.05 + 0.2 * r) ** 2] = rng.random(3) * 255
    return np.clip(img + rng.random(img.shape) * 20, 0, 255).astype(np.uint8)


def _reference(processor, rgb, text=None, boxes=(), labels=()):
    """Meta's processor: set_image, the phrase, then each exemplar box (normalised centre form)."""
    with ref.cpu_patches(), torch.inference_mode():
        state = processor.set_image(torch.from_numpy(rgb).permute(2, 0, 1))
        if text is not None:
            state = processor.set_text_prompt(text, state)
        h, w = rgb.shape[:2]
        for (x0, y0, x1, y1), lab in zip(boxes, labels):
            box = [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
            state = processor.add_geometric_prompt(box, bool(lab), state)
    order = torch.argsort(state["scores"], descending=True, stable=True)
    return state["scores"][order], state["boxes"][order], state["masks"][order, 0]


def _same(r, scores, boxes, masks, cls=None):
    n = len(scores)
    assert len(r) >= n
    got = r.boxes.cls == cls if cls is not None else torch.ones(len(r), dtype=torch.bool)
    s, b, m = r.boxes.conf[got], r.boxes.xyxy[got], r.masks.data[got]
    assert len(s) == n
    np.testing.assert_allclose(s.numpy(), scores.numpy(), atol=1e-4)
    h, w = m.shape[-2:]  # samkit clips the detector's boxes to the image; the reference does not
    clipped = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                           boxes[:, 3].clamp(0, h)], 1)
    np.testing.assert_allclose(b.numpy(), clipped.numpy(), atol=0.05)
    assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all()
    for i in range(n):
        assert mask_iou(m[i].numpy(), masks[i].numpy()) >= 0.99, i
    assert (masks.flatten(1).any(1)).any(), "every reference mask is empty: the comparison would be trivial"


def test_text_prompts_match_the_reference(pair, image):
    model, processor = pair
    phrases = ["a red car", "dog"]
    r = model(image[..., ::-1], texts=phrases, conf=0.0, verbose=False)[0]
    assert r.names == {0: "a red car", 1: "dog"} and len(r) == 2 * model.net.sizes.queries
    for i, phrase in enumerate(phrases):
        _same(r, *_reference(processor, image, text=phrase), cls=i)
    assert (r.boxes.conf[:-1] >= r.boxes.conf[1:]).all(), "best first"


def test_exemplar_boxes_and_text_with_boxes_match_the_reference(pair, image):
    model, processor = pair
    boxes, labels = [[60.0, 40.0, 200.0, 150.0], [10.0, 100.0, 70.0, 170.0]], [1, 0]
    r = model(image[..., ::-1], exemplars=boxes, exemplar_labels=labels, conf=0.0, verbose=False)[0]
    _same(r, *_reference(processor, image, boxes=boxes, labels=labels))
    r = model(image[..., ::-1], texts="dog", exemplars=boxes[:1], conf=0.0, verbose=False)[0]
    _same(r, *_reference(processor, image, text="dog", boxes=boxes[:1], labels=[1]))


def test_conf_and_max_det_select_the_best(pair, image):
    model, _ = pair
    everything = model(image[..., ::-1], texts=["dog"], conf=0.0, verbose=False)[0]
    threshold = float(everything.boxes.conf[4] + everything.boxes.conf[5]) / 2
    top = model(image[..., ::-1], texts=["dog"], conf=threshold, verbose=False)[0]
    assert len(top) == 5 and torch.equal(top.boxes.conf, everything.boxes.conf[:5])
    three = model(image[..., ::-1], texts=["dog"], conf=0.0, max_det=3, verbose=False)[0]
    assert torch.equal(three.boxes.conf, everything.boxes.conf[:3])
    assert len(model(image[..., ::-1], texts=["dog"], verbose=False)[0]) == (everything.boxes.conf > 0.5).sum()


def test_image_and_phrases_are_encoded_once(pair, image):
    model, _ = pair
    model.concepts.clear_cache()
    bgr = np.ascontiguousarray(image[..., ::-1])
    first = model(bgr, texts=["person", "bus"], conf=0.0, verbose=False)[0]
    images, texts = model.concepts.images_encoded, model.concepts.texts_encoded
    second = model(bgr, texts=["bus", "a third phrase"], conf=0.0, verbose=False)[0]
    assert model.concepts.images_encoded == images, "the image was encoded again"
    assert model.concepts.texts_encoded == texts + 1, "only the new phrase is encoded"
    bus_first = first.boxes.conf[first.boxes.cls == 1]
    torch.testing.assert_close(bus_first, second.boxes.conf[second.boxes.cls == 0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("prompt", ["one click", "two clicks", "box", "box and click"])
def test_clicks_and_boxes_match_the_reference_interactive_task(pair, image, prompt, multimask):
    """SAM 3's point and box task (Meta's predict_inst): the tracker's heads on the detector's image features."""
    model, processor = pair
    kw = {"one click": dict(points=[[130.0, 90.0]], labels=[1]),
          "two clicks": dict(points=[[130.0, 90.0], [40.0, 30.0]], labels=[1, 0]),
          "box": dict(box=[60.0, 40.0, 200.0, 150.0]),
          "box and click": dict(points=[[130.0, 90.0]], labels=[1], box=[60.0, 40.0, 200.0, 150.0])}[prompt]
    with ref.cpu_patches(), torch.inference_mode():
        state = processor.set_image(torch.from_numpy(image).permute(2, 0, 1))
        masks, iou, low = processor.model.predict_inst(
            state, point_coords=np.array(kw["points"]) if "points" in kw else None,
            point_labels=np.array(kw["labels"]) if "labels" in kw else None,
            box=np.array(kw["box"]) if "box" in kw else None, multimask_output=multimask)
    obj = {"points": kw.get("points"), "labels": kw.get("labels"), "box": kw.get("box")}
    r = model(image[..., ::-1], prompts=[{k: v for k, v in obj.items() if v is not None}], multimask=multimask,
              verbose=False)[0]
    assert len(r) == len(masks)
    np.testing.assert_allclose(r.iou.numpy(), iou, atol=1e-4)
    np.testing.assert_allclose(r.low_res_logits.numpy(), low, atol=1e-3)
    for k in range(len(masks)):
        assert mask_iou(r.masks.data[k].numpy(), masks[k] > 0) >= 0.99, k
    assert masks.any(), "empty reference masks: the comparison would be trivial"


def test_loading_is_strict_and_the_architecture_comes_from_the_weights(tmp_path):
    sd = build_network("sam3_test").state_dict()
    torch.save({"model": sd}, tmp_path / "renamed.pt")
    model = SAM(str(tmp_path / "renamed.pt"), device="cpu", verbose=False)
    assert model.arch.name == "sam3_test" and model.family == "SAM 3"
    bare = {k[len("detector."):]: v for k, v in sd.items() if k.startswith("detector.")}  # the detector alone
    torch.save(bare, tmp_path / "bare.pt")
    with pytest.raises(Exception, match="missing keys: tracker"):  # recognised, but the tracker heads are missing
        SAM(str(tmp_path / "bare.pt"), device="cpu", verbose=False)
    broken = dict(sd)
    broken.pop("detector.dot_prod_scoring.hs_proj.weight")
    torch.save({"model": broken}, tmp_path / "broken.pt")
    with pytest.raises(Exception, match="hs_proj"):
        SAM(str(tmp_path / "broken.pt"), device="cpu", verbose=False)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"texts": ""}, ValueError, "texts='' is empty: give a phrase"),
    ({"texts": ["person", " "]}, ValueError, "texts\\[1\\] is empty"),
    ({"texts": ["person", "bus", "person"]}, ValueError, "texts names 'person' twice"),
    ({"texts": "dog", "exemplar_labels": [1]}, ValueError, "exemplar_labels= needs exemplars="),
    ({"exemplars": [[5000, 5000, 6000, 6000]]}, ValueError,
     "exemplars\\[0\\] = \\[5000, 5000, 6000, 6000\\] lies entirely outside the 260x180 image"),
    ({"texts": "dog", "conf": "x"}, ValueError, "conf='x' must be a number"),
    ({"texts": ["person", 3]}, TypeError, "texts\\[1\\] = 3 is a int, not a string"),
    ({"texts": []}, ValueError, "names no phrase"),
    ({"texts": ["x"] * 1000}, ValueError, "1000 phrases; at most 256"),
    ({"exemplars": [[0, 0, 10, 10]], "exemplar_labels": [1, 0]}, ValueError, "2 labels for 1 exemplar boxes"),
    ({"exemplars": [[10, 0, 5, 10]]}, ValueError, "x1 < x2"),
    ({"exemplar_labels": [1]}, ValueError, "needs exemplars="),
    ({"texts": "dog", "conf": 1.5}, ValueError, "conf=1.5"),
    ({"texts": "dog", "max_det": 0}, ValueError, "max_det=0"),
    ({"texts": "dog", "bboxes": [0, 0, 10, 10]}, ValueError, "without bboxes"),
    ({"bboxes": [0, 0, 10, 10], "conf": 0.3}, TypeError, "'conf': conf= applies to concept prompts"),
])
def test_bad_concept_prompts_are_named(pair, image, kwargs, error, message):
    model, _ = pair
    with pytest.raises(error, match=message):
        model(image, verbose=False, **kwargs)


def test_exemplar_boxes_past_the_edge_are_clipped_with_a_warning(pair, image, caplog):
    model, _ = pair
    with caplog.at_level("WARNING", logger="samkit"):
        past = model(image[..., ::-1], exemplars=[[-50, -20, 120, 100]], conf=0.0, verbose=False)[0]
    assert "clipped" in caplog.text
    inside = model(image[..., ::-1], exemplars=[[0, 0, 120, 100]], conf=0.0, verbose=False)[0]
    assert torch.equal(past.boxes.conf, inside.boxes.conf)


def test_concept_detections_are_plotted_one_colour_per_phrase(pair, image):
    model, _ = pair
    r = model(image[..., ::-1], texts=["dog", "cat"], conf=0.0, max_det=6, verbose=False)[0]
    assert np.array_equal(r.plot(), r.plot(color_mode="class"))
    assert not np.array_equal(r.plot(), r.plot(color_mode="instance"))
    boxed = model(image[..., ::-1], bboxes=[[60, 40, 200, 150], [10, 10, 80, 80]], verbose=False)[0]
    assert np.array_equal(boxed.plot(), boxed.plot(color_mode="instance"))


def test_a_string_is_one_phrase_and_the_command_line_splits_commas():
    from samkit.cli import _phrases
    from samkit.engine.concepts import concept_query

    assert concept_query("a red car, parked").texts == ["a red car, parked"]
    assert _phrases("person, bus") == ["person", "bus"]
    assert _phrases("[person,bus]") == ["person", "bus"] == _phrases("['person', 'bus']")
    assert _phrases(["a", "b"]) == ["a", "b"]


def test_concept_prompts_need_sam3(tiny_ckpt, image):
    with pytest.raises(ValueError, match="need a SAM 3 model"):
        SAM(str(tiny_ckpt), device="cpu", verbose=False)(image, texts=["dog"])


def test_missing_sam3_weights_say_how_to_get_them(tmp_path, monkeypatch):
    from samkit.utils.downloads import WeightsNotFoundError

    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="gated by Meta.*huggingface.co/facebook/sam3.*put it in"):
        SAM("sam3.pt", verbose=False)


@pytest.mark.slow
def test_real_size_text_and_box_match_the_reference(tmp_path, image):
    """The real SAM 3 sizes once (1008 px, 32 ViT blocks in 24-token windows, 200 queries): a phrase, and a box
    through the tracker, equal Meta's on the same random weights loaded from the published layout."""
    from sam3.model.sam3_image_processor import Sam3Processor

    arch = model_registry().architecture("sam3")
    with ref.cpu_patches():
        meta = ref.build_reference(arch)
        ref.fill_random_(meta, seed=0)
    path = tmp_path / "sam3.pt"
    torch.save(ref.published_layout(meta), path)
    model = SAM(str(path), device="cpu", verbose=False)
    path.unlink()
    assert model.arch.name == "sam3" and model.info(verbose=False)["parameters"] > 8e8
    processor = Sam3Processor(meta, resolution=arch.image_size, device="cpu", confidence_threshold=0.0)
    r = model(image[..., ::-1], texts=["dog"], conf=0.0, verbose=False)[0]
    _same(r, *_reference(processor, image, text="dog"), cls=0)
    box = [60.0, 40.0, 200.0, 150.0]
    with ref.cpu_patches(), torch.inference_mode():
        state = processor.set_image(torch.from_numpy(image).permute(2, 0, 1))
        masks, iou, _ = processor.model.predict_inst(state, box=np.array(box), multimask_output=False)
    r = model(image[..., ::-1], bboxes=box, verbose=False)[0]
    np.testing.assert_allclose(r.iou.numpy(), iou, atol=1e-4)
    assert mask_iou(r.masks.data[0].numpy(), masks[0] > 0) >= 0.99
