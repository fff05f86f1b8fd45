"""half=True: bf16 autocast where the device computes bf16 natively, a warning and fp32 elsewhere; compile=True."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit import SAM
from samkit.utils import devices
from tests.helpers import moving_square_frames


def test_fp32_by_default(tiny_ckpt):
    model = SAM(tiny_ckpt, device="cpu", verbose=False)
    assert not model.half and model.dtype == torch.float32
    emb = model.engine.encode([np.zeros((40, 40, 3), np.uint8)])[0]
    assert emb.image_embed.dtype == torch.float32


def test_half_on_cpu(tiny_ckpt, caplog):
    model = SAM(tiny_ckpt, device="cpu", verbose=False)
    import cv2

    image = cv2.imread(str(ASSETS / "bus.jpg"))
    boxes = [[100, 200, 500, 800], [0, 0, 400, 400], [300, 100, 800, 900]]
    full = model(image, bboxes=boxes)[0]
    with caplog.at_level(logging.WARNING, logger="samkit"):
        model.half = True
    if not devices.cpu_has_bf16():
        assert not model.half and "no native bf16" in caplog.text
        assert model.info()["dtype"] == "float32"
        return
    assert model.half and model.dtype == torch.float32, "weights stay fp32 under autocast"
    assert (model.info()["dtype"], model.info()["weights_dtype"]) == ("bfloat16", "float32")
    patch = model.net.image_encoder.trunk.patch_embed.proj.weight
    assert patch.is_contiguous(memory_format=torch.channels_last), "half precision runs the encoder channels-last"
    seen = []
    for module in (model.net.image_encoder, model.net.sam_mask_decoder):
        module.register_forward_hook(lambda m, i, o: seen.append(torch.get_autocast_dtype("cpu")
                                                                 if torch.is_autocast_enabled("cpu") else None))
    half = model(image, bboxes=boxes)[0]
    assert seen and set(seen) == {torch.bfloat16}, "the encoder and decoder did not run under bf16 autocast"
    a, b = full.low_res_logits.flatten(1), half.low_res_logits.flatten(1)
    for i in range(len(boxes)):
        assert torch.corrcoef(torch.stack([a[i], b[i]]))[0, 1] > 0.99
        # The random model's logits hover near 0; the pixels it is most sure about must keep their side.
        sure = a[i].abs() > a[i].abs().quantile(0.5)
        assert ((a[i] > 0) == (b[i] > 0))[sure].float().mean() > 0.99
    model.half = False
    assert patch.is_contiguous(), "fp32 must go back to the standard layout"
    again = model(image, bboxes=boxes)[0]
    assert torch.equal(again.masks.data, full.masks.data), "switching back did not restore fp32"


def test_half_dtype_choice(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    dtype, why = devices.half_dtype(torch.device("cpu"))
    assert dtype is None and "bf16" in why
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert devices.half_dtype(torch.device("cpu")) == (torch.bfloat16, "")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.half_dtype(torch.device("cuda:0"))[0] == torch.float16


def test_half_must_be_bool(tiny_ckpt):
    with pytest.raises(TypeError, match="half='yes' must be True or False"):
        SAM(tiny_ckpt, device="cpu", verbose=False, half="yes")


@pytest.mark.slow
def test_compiled_model_gives_the_same_masks(tiny_ckpt):
    eager = SAM(tiny_ckpt, device="cpu", verbose=False)
    compiled = SAM(tiny_ckpt, device="cpu", verbose=False, compile=True)
    for name in ("image_encoder", "memory_attention", "sam_mask_decoder"):
        assert hasattr(getattr(compiled.net, name).forward, "_torchdynamo_orig_callable"), f"{name} not compiled"
    boxes = [[100, 200, 500, 800], [10, 10, 300, 300]]
    a = eager(ASSETS / "bus.jpg", bboxes=boxes)[0]
    b = compiled(ASSETS / "bus.jpg", bboxes=boxes)[0]
    assert (a.masks.data != b.masks.data).float().mean() < 1e-3
    torch.testing.assert_close(a.iou, b.iou, atol=1e-4, rtol=1e-4)
    assert sorted(compiled.net.state_dict()) == sorted(eager.net.state_dict()), "state-dict keys changed"


@pytest.mark.slow
def test_compiled_video_tracking_stops_compiling_once_the_memory_bank_is_full(tiny_ckpt):
    """The memory bank grows for 16 frames (7 memories, 16 object pointers), then keeps its size: a compiled model
    may compile while it grows, fewer times than Dynamo's recompile limit (past which it silently runs eager), and
    never after. Dynamo's own backend keeps the test fast; what recompiles is decided before any backend runs."""
    from torch._dynamo.utils import counters

    frames = moving_square_frames(24)
    box = [[10, 30, 40, 60]]
    eager = SAM(tiny_ckpt, device="cpu", verbose=False)
    want = [r.low_res_logits for r in eager.track(frames, bboxes=box, stream=True)]
    compiled = SAM(tiny_ckpt, device="cpu", verbose=False).compile(backend="eager")
    before = counters["frames"]["ok"]
    compiles, got = [], []
    for r in compiled.track(frames, bboxes=box, stream=True):
        got.append(r.low_res_logits)
        compiles.append(counters["frames"]["ok"] - before)
    assert 0 < compiles[-1] <= torch._dynamo.config.recompile_limit, compiles
    assert compiles[17] == compiles[-1], f"compiled again in steady state: {compiles}"
    for t, (a, b) in enumerate(zip(want, got)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=f"frame {t}")
