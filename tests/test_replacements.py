"""The replacement table: installed once when a network is built, gated by Ultralytics' version and sources, one
mask-decoder path (images, mask prompts, video) that compilation reaches, and the runtime that owns the network."""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import pytest
import torch

from samkit.nn import decoder as samkit_decoder
from samkit.nn import replacements
from samkit.nn.build import build_network
from samkit.nn.replacements import active, fingerprint, install, installed


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from samkit import SAM
    from tests.helpers import save_present

    return SAM(save_present(tmp_path_factory.mktemp("rt") / "tiny.pt", "sam2_test"), device="cpu", verbose=False)


@pytest.fixture
def fresh_gate():
    """The gate is decided once per process; these tests decide it again under their own conditions."""
    active.cache_clear()
    yield
    active.cache_clear()


def test_every_replacement_is_in_use_with_the_installed_ultralytics():
    """Fails when Ultralytics changes code samkit mirrors: read the change, carry it over, record the fingerprint
    (see docs/architecture.md)."""
    used, skipped = active()
    assert not skipped, [f"{r.name}: {why}" for r, why in skipped]
    assert {r.name for r in used} == {r.name for r in replacements.table()}
    for r in used:
        assert fingerprint(r.mirrors) == r.fingerprint


def test_built_networks_carry_the_table_and_nothing_else_patches_them():
    net = build_network("sam2_test")
    assert installed(net) == sorted(r.name for r in replacements.table() if "MaskDecoder.predict" not in r.name
                                    or r.owner.endswith("SAM2MaskDecoder"))
    assert installed(build_network("sam_test")) == ["MaskDecoder.predict_masks", "PromptEncoder._embed_points"]
    assert installed(build_network("sam2_test", replacements=False)) == []
    assert install(net) == 0, "installing twice must not wrap twice"


def _outputs(net, x):
    with torch.inference_mode():
        return net.image_encoder(x)["backbone_fpn"]


def test_outside_the_tested_versions_ultralytics_code_runs(monkeypatch, fresh_gate, caplog):
    monkeypatch.setattr(replacements, "_ultralytics_version", lambda: "8.5.3")
    with caplog.at_level(logging.WARNING, logger="samkit"):
        torch.manual_seed(0)
        net = build_network("sam2_test")
        build_network("sam2_test")
    assert installed(net) == []
    warnings = [r.getMessage() for r in caplog.records if "outside the versions" in r.getMessage()]
    assert len(warnings) == 1 and "8.5.3" in warnings[0], "one warning per process, naming the version"
    torch.manual_seed(0)
    plain = build_network("sam2_test", replacements=False)
    x = torch.randn(1, 3, 256, 256)
    for a, b in zip(_outputs(plain, x), _outputs(net, x)):
        assert torch.equal(a, b)


def test_a_changed_upstream_source_turns_its_replacement_off(monkeypatch, fresh_gate, caplog):
    table = replacements.table()
    changed = [dataclasses.replace(r, fingerprint="0" * 16) if r.attribute == "_get_pos_embed" else r for r in table]
    monkeypatch.setattr(replacements, "table", lambda: changed)
    with caplog.at_level(logging.WARNING, logger="samkit"):
        used, skipped = active()
    assert [r.name for r, _ in skipped] == ["Hiera._get_pos_embed"]
    assert "changed" in skipped[0][1] and len(used) == len(table) - 1
    assert any("Hiera._get_pos_embed" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------- the mask decoder
def _decoder_inputs(dec, b: int, image_rows: int, dense_rows: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c, side = dec.transformer_dim, 16
    image = torch.randn(image_rows, c, side, side, generator=g)
    pe = torch.randn(1, c, side, side, generator=g)
    sparse = torch.randn(b, 3, c, generator=g)
    dense = torch.randn(dense_rows, c, side, side, generator=g)
    if dense_rows == 1 and b > 1:
        dense = dense.expand(b, -1, -1, -1)  # the prompt encoder's no-mask embedding: one row, broadcast
    high = [torch.randn(image_rows, c // 8, 4 * side, 4 * side, generator=g),
            torch.randn(image_rows, c // 4, 2 * side, 2 * side, generator=g)]
    return image, pe, sparse, dense, high


@pytest.mark.parametrize("case, b, image_rows, dense_rows, repeat", [
    ("boxes on one image", 5, 1, 1, True),
    ("mask prompts on one image", 3, 1, 3, True),
    ("video: one image row per object", 4, 4, 4, False),
    ("one object", 1, 1, 1, False),
])
@pytest.mark.parametrize("device_factored", [True, False])
def test_sam2_decoder_path_equals_ultralytics(monkeypatch, case, b, image_rows, dense_rows, repeat, device_factored):
    net = build_network("sam2_test", replacements=False)
    dec = net.sam_mask_decoder
    image, pe, sparse, dense, high = _decoder_inputs(dec, b, image_rows, dense_rows)
    if not device_factored:  # the accelerator path: fused attention, no factoring
        monkeypatch.setattr(samkit_decoder, "_few_tokens", lambda attn, t: False)
    with torch.inference_mode():
        want = dec.predict_masks(image, pe, sparse, dense, repeat, high)
        got = samkit_decoder.sam2_predict_masks(dec, image, pe, sparse, dense, repeat, high)
    assert len(got) == 4
    for name, w, o in zip(("masks", "iou", "mask tokens", "object score"), want, got):
        assert o.shape == w.shape, name
        torch.testing.assert_close(o, w, atol=2e-4, rtol=2e-4, msg=name)


def test_sam1_decoder_path_equals_ultralytics():
    dec = build_network("sam_test", replacements=False).mask_decoder
    image, pe, sparse, dense, _ = _decoder_inputs(dec, 6, 1, 1, seed=1)
    with torch.inference_mode():
        want = dec.predict_masks(image, pe, sparse, dense)
        got = samkit_decoder.sam_predict_masks(dec, image, pe, sparse, dense)
    for w, o in zip(want, got):
        torch.testing.assert_close(o, w, atol=2e-4, rtol=2e-4)


def test_training_keeps_ultralytics_decoder(monkeypatch):
    net = build_network("sam2_test")
    calls = []
    monkeypatch.setattr(samkit_decoder, "_heads", lambda *a, **k: calls.append(1))
    image, pe, sparse, dense, high = _decoder_inputs(net.sam_mask_decoder, 2, 1, 1)
    net.sam_mask_decoder.predict_masks(image, pe, sparse, dense, True, high)  # autograd on: the class's own
    assert not calls


def _counting(monkeypatch) -> list:
    calls = []
    real = samkit_decoder._heads

    def counted(*a, **k):
        calls.append(a[1].shape[0])
        return real(*a, **k)

    monkeypatch.setattr(samkit_decoder, "_heads", counted)
    return calls


def test_images_mask_prompts_and_video_all_decode_through_samkits_path(tiny, monkeypatch):
    calls = _counting(monkeypatch)
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    tiny(img, bboxes=[[10, 10, 60, 60], [30, 20, 90, 80]], verbose=False)
    assert calls, "box prompts"
    calls.clear()
    mask = np.zeros((96, 128), bool)
    mask[20:60, 30:80] = True
    tiny(img, masks=mask, verbose=False)
    assert calls, "mask prompts"
    calls.clear()
    tiny.track([img] * 3, bboxes=[10, 10, 60, 60], verbose=False)
    assert len(calls) >= 3, "video: the prompt and every tracked frame"


def test_compile_reaches_the_decoder_path(tiny_ckpt, monkeypatch):
    from torch._dynamo.testing import CompileCounter

    from samkit import SAM

    torch._dynamo.reset()
    model = SAM(tiny_ckpt, device="cpu", verbose=False)
    counter = CompileCounter()
    model.compile(backend=counter)
    calls = _counting(monkeypatch)
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    model(img, bboxes=[[5, 5, 40, 40]], verbose=False)
    assert counter.frame_count > 0, "nothing was compiled"
    assert calls, "the compiled decoder did not run samkit's predict_masks"
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------- the runtime
def test_runtime_owns_device_precision_and_compilation(tiny):
    rt = tiny.runtime
    assert tiny.engine.runtime is rt and tiny.net is rt.net and tiny.model is rt.net
    g = rt.generation
    img = np.zeros((40, 40, 3), np.uint8)
    tiny.engine.encode([img])
    encoded = tiny.engine.images_encoded
    tiny.engine.encode([img])
    assert tiny.engine.images_encoded == encoded, "the same image under the same settings comes from the cache"
    tiny.to("cpu")
    assert rt.generation == g, "moving to where it already is changes nothing"
    rt.set_half(not tiny.half)
    try:
        assert rt.generation != g or rt.half_dtype is None
        if rt.generation != g:
            tiny.engine.encode([img])
            assert tiny.engine.images_encoded == encoded + 1, "an embedding from fp32 served under half precision"
    finally:
        rt.set_half(False)
    with tiny.video([img] * 2) as v:
        assert v.runtime is rt


def test_sessions_and_engines_never_see_the_facade():
    import inspect

    from samkit.engine.image import ImageEngine
    from samkit.engine.video import VideoSession

    for cls in (ImageEngine, VideoSession):
        first = list(inspect.signature(cls.__init__).parameters)[1]
        assert first == "runtime", cls


def test_deep_copies_keep_working():
    """A copied network (as tests and users make) keeps replacements bound to the copy, not the original."""
    net = build_network("sam2_test")
    twin = copy.deepcopy(net)
    trunk = twin.image_encoder.trunk
    assert trunk.__dict__["_get_pos_embed"].__self__ is trunk


def test_set_image_keeps_its_embedding_whatever_the_cache_holds(tiny_ckpt):
    from samkit import SAM

    model = SAM(tiny_ckpt, device="cpu", verbose=False, cache=1)
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    model.set_image(a)
    model(b, bboxes=[5, 5, 30, 30])  # fills the one-entry cache with another image
    before = model.engine.images_encoded
    r = model(bboxes=[5, 5, 30, 30])[0]  # the image of set_image, not encoded again
    assert model.engine.images_encoded == before and r.orig_shape == (48, 64)


def test_checks_report_the_table(monkeypatch, fresh_gate):
    from samkit.cli import run_checks

    n = len(replacements.table())
    assert f"faster Ultralytics methods (tested with ultralytics {replacements.TESTED_ULTRALYTICS}): {n} of {n} " \
           "in use" in run_checks()
    active.cache_clear()
    monkeypatch.setattr(replacements, "_ultralytics_version", lambda: "9.0.0")
    lines = run_checks()
    assert f"faster Ultralytics methods (tested with ultralytics {replacements.TESTED_ULTRALYTICS}): 0 of {n} " \
           "in use" in lines
    assert sum("runs Ultralytics' own code: ultralytics 9.0.0 not in" in line for line in lines) == n


def test_sam3_memory_selection_is_a_required_family_entry(monkeypatch, caplog):
    """SAM 3's memory selection is the family's own entry of the table (fingerprinted like the others): on every
    SAM 3 network, ``replacements=False`` too; when the Ultralytics code it plugs into changed it is still used (the
    results would not be SAM 3's without it) and one warning says so."""
    pytest.importorskip("timm")
    from samkit import families

    entries = replacements.family_entries(families.family("sam3"))
    assert [r.name for r in entries] == ["SAM3Model._prepare_memory_conditioned_features"]
    assert all(r.required and fingerprint(r.mirrors) == r.fingerprint for r in entries)
    assert replacements.family_entries(families.family("sam2")) == ()
    name = "SAM3Model._prepare_memory_conditioned_features"
    assert name in installed(build_network("sam3_test", replacements=False))
    assert name not in installed(build_network("sam2_test")), "a family's entries go on its own networks only"

    changed = (dataclasses.replace(entries[0], fingerprint="0" * 16),)
    monkeypatch.setattr(replacements, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="samkit"):
        assert replacements.required_entries(changed) == changed
        replacements.required_entries(changed)
    warned = [r.getMessage() for r in caplog.records if "results may differ" in r.getMessage()]
    assert len(warned) == 1 and "sam.SAM2Model._track_step" in warned[0] and "0" * 16 in warned[0]
