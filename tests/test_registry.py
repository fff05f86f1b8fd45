"""The model registry: every published checkpoint, under both naming schemes, with download URLs."""

from __future__ import annotations

import pytest

from samkit.nn.registry import _build_registry, model_registry

ULTRALYTICS_NAMES = [f"sam2.1_{s}.pt" for s in "tsbl"] + [f"sam2_{s}.pt" for s in "tsbl"] + [
    "sam_b.pt", "sam_l.pt", "sam_h.pt", "mobile_sam.pt"]
META_NAMES = {
    "sam2.1_t.pt": "sam2.1_hiera_tiny.pt", "sam2.1_s.pt": "sam2.1_hiera_small.pt",
    "sam2.1_b.pt": "sam2.1_hiera_base_plus.pt", "sam2.1_l.pt": "sam2.1_hiera_large.pt",
    "sam2_t.pt": "sam2_hiera_tiny.pt", "sam2_s.pt": "sam2_hiera_small.pt",
    "sam2_b.pt": "sam2_hiera_base_plus.pt", "sam2_l.pt": "sam2_hiera_large.pt",
    "sam_b.pt": "sam_vit_b_01ec64.pth", "sam_l.pt": "sam_vit_l_0b3195.pth", "sam_h.pt": "sam_vit_h_4b8939.pth",
}


def test_every_published_checkpoint_is_registered():
    reg = model_registry()
    assert sorted(reg.models) == sorted(ULTRALYTICS_NAMES + ["sam3.pt"])
    for name, meta in META_NAMES.items():
        assert reg.find_model(meta).name == name
        # Meta's name downloads from Meta first, the Ultralytics name from the Ultralytics release first.
        assert reg.model(meta).urls_for(meta)[0].endswith("/" + meta)
        if name != "sam_h.pt":  # Ultralytics never published ViT-H: it downloads from Meta under its own name
            assert reg.model(name).urls_for(name)[0].endswith("/" + name)
    for entry in reg.models.values():
        assert (entry.urls or entry.gated) and all(u.startswith("https://") for u in entry.urls)
    assert not reg.model("sam3.pt").urls and "huggingface.co/facebook/sam3" in reg.model("sam3.pt").gated


@pytest.mark.parametrize(
    "name, arch, version",
    [
        ("sam2.1_b.pt", "sam2_b", "2.1"),
        ("SAM2.1_B.PT", "sam2_b", "2.1"),
        ("sam2.1_b", "sam2_b", "2.1"),
        ("weights/sam2_hiera_large.pt", "sam2_l", "2.0"),
        ("sam_vit_h_4b8939.pth", "sam_h", "1"),
        ("mobile_sam", "mobile_sam", "1"),
    ],
)
def test_find_model_by_any_name(name, arch, version):
    entry = model_registry().find_model(name)
    assert (entry.arch.name, entry.version) == (arch, version)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'sam2\.1_x\.pt'.*did you mean 'sam2\.1_"):
        model_registry().model("sam2.1_x.pt")
    assert model_registry().find_model("yolo11n.pt") is None


def test_sizes_differ_in_hiera_width_and_depth():
    archs = model_registry().architectures
    sigs = {a.signature for a in archs.values()}
    assert len(sigs) == len(archs)
    assert archs["sam2_t"].signature == ("sam2", 96, (1, 2, 7, 2))
    assert archs["sam2_b"].signature == ("sam2", 112, (2, 3, 16, 3))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"architectures": {"x": {"family": "sam4", "size": "t", "image_size": 1024, "encoder": {"a": 1}}}},
         "family 'sam4'"),
        ({"architectures": {"x": {"family": "sam", "size": "t", "image_size": 1000, "encoder": {"a": 1}}}},
         "multiple of 16"),
        ({"architectures": {"x": {"family": "sam2", "size": "t", "image_size": 1024}}}, "needs a 'trunk'"),
        ({"architectures": {}, "models": {"m.pt": {"arch": "nope", "version": "1"}}}, "not a registered"),
        ({"architectures": {"x": {"family": "sam", "size": "t", "image_size": 1024, "encoder": {
            "embed_dim": 8, "depth": 1}}}, "models": {"m.pt": {"arch": "x", "version": "2.1"}}}, "version '2.1'"),
        ({"architectures": {
            "x": {"family": "sam", "size": "t", "image_size": 1024, "encoder": {"embed_dim": 8, "depth": 1}},
            "y": {"family": "sam", "size": "u", "image_size": 512, "encoder": {"embed_dim": 8, "depth": 1}}}},
         "cannot be told apart"),
    ],
)
def test_bad_registry_entries_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        _build_registry(data)
