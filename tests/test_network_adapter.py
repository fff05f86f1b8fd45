"""The network adapter (samkit.families.network): every family's adapter implements the protocols its capabilities
need, and the engines reach the network through it alone (a runtime whose ``net`` refuses every access still
predicts, segments everything, tracks and grounds phrases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SAM, families
from samkit.families.network import PROTOCOLS, FrameFeatures, MemoryNetwork, members, missing_members
from tests.helpers import moving_square_frames, write_video


class _Refused:
    """Stands in for the built network: any use of it is a test failure."""

    def __getattr__(self, name):
        pytest.fail(f"an engine reached the network directly (.{name}) instead of through its adapter")

    def __call__(self, *args, **kwargs):
        pytest.fail("an engine called the network directly instead of through its adapter")


class _Counting:
    """A second adapter: the family's own one behind a wrapper that counts the calls (what an exported graph set or
    a training forward would replace)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if callable(value):
            def counted(*args, **kwargs):
                self.calls[name] = self.calls.get(name, 0) + 1
                return value(*args, **kwargs)
            return counted
        return value


def _through_adapter_only(model: SAM) -> _Counting:
    rt = model.engine.runtime
    adapter = _Counting(rt.network)
    rt.network = adapter
    rt.net = _Refused()
    return adapter


@pytest.mark.parametrize("family", families.all_families(), ids=lambda f: f.name)
def test_every_adapter_implements_the_protocols_of_its_capabilities(family):
    assert missing_members(family.network, family.capabilities) == []
    for cap in family.capabilities:
        proto = PROTOCOLS.get(cap)
        for name in members(proto) if proto else ():
            assert hasattr(family.network, name), (family.name, cap, name)


def test_missing_members_names_what_an_adapter_lacks():
    class Half:
        def encode_image(self, x):
            return [x]

    assert missing_members(Half, {"prompts"}) == ["PromptNetwork.decode"]
    assert "MemoryNetwork.track_step" in missing_members(Half, {"video"})
    assert {"memory_frames", "encode_image", "track_step"} <= set(members(MemoryNetwork))


def test_frame_features_expand_to_a_batch_without_copying():
    f = FrameFeatures([torch.randn(16, 1, 8)], [torch.randn(16, 1, 8)], [(4, 4)])
    assert f.expand(1) is f
    e = f.expand(3)
    assert e.feats[0].shape == (16, 3, 8) and e.feats[0].data_ptr() == f.feats[0].data_ptr()
    assert torch.equal(e.pos[0][:, 2], f.pos[0][:, 0]) and e.sizes == [(4, 4)]


def test_sam2_images_everything_and_video_go_through_the_adapter(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)
    ref = SAM.untrained("sam2_test", device="cpu", verbose=False)
    want = ref(image, bboxes=[10, 10, 60, 60])[0].masks.data
    model = SAM.untrained("sam2_test", device="cpu", verbose=False)
    adapter = _through_adapter_only(model)
    got = model(image, bboxes=[10, 10, 60, 60])[0].masks.data
    assert torch.equal(got, want), "the counting adapter must change nothing"
    assert adapter.calls["encode_image"] == 1 and adapter.calls["decode"] == 1
    model(image, points_per_side=4)
    assert adapter.calls["decode"] > 1
    video = write_video(tmp_path / "clip.mp4", moving_square_frames(4))
    results = model.track(str(video), bboxes=[[10, 30, 40, 60]])
    assert [r.frame for r in results] == [0, 1, 2, 3]
    assert adapter.calls["encode_frame"] == 4 and adapter.calls["track_step"] == 4
    assert adapter.calls["encode_memory"] == 1  # the prompted frame's; tracked frames encode in their step


def test_sam1_goes_through_the_adapter():
    image = np.random.default_rng(1).integers(0, 255, (64, 80, 3), np.uint8)
    model = SAM.untrained("sam_test", device="cpu", verbose=False)
    adapter = _through_adapter_only(model)
    r = model(image, points=[[20, 20]], labels=[1])[0]
    assert r.masks.data.shape == (1, 64, 80) and adapter.calls == {"encode_image": 1, "decode": 1}


def test_sam3_phrases_and_video_go_through_the_adapter(tmp_path):
    pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")
    model = SAM.untrained("sam3_test", device="cpu", verbose=False)
    adapter = _through_adapter_only(model)
    image = np.random.default_rng(2).integers(0, 255, (72, 72, 3), np.uint8)
    model(image, texts=["a square"], conf=0.0, max_det=2)
    assert adapter.calls["encode_concept_image"] == 1 and adapter.calls["ground"] == 1
    assert adapter.calls["encode_text"] == 1
    model(image, bboxes=[5, 5, 40, 40])
    assert adapter.calls["encode_image"] == 1 and adapter.calls["decode"] == 1
    video = write_video(tmp_path / "clip.mp4", moving_square_frames(3, hw=(72, 72), side=20))
    results = model.track(str(video), texts=["a square"], conf=0.0, max_det=2)
    assert [r.frame for r in results] == [0, 1, 2]
    assert adapter.calls["tracker_maps"] == 3
    assert adapter.calls.get("track", 0) + adapter.calls.get("mask_output", 0) > 0
