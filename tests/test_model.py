"""The SAM facade: any file name, weights exactly as saved, info, devices."""

from __future__ import annotations

import logging

import pytest
import torch

from samkit import SAM
from samkit.nn import CheckpointError, UnsafeCheckpointError, model_registry
from samkit.nn.detect import ArchitectureError
from tests.helpers import hardlink_or_copy, save_random

REGISTRY = model_registry()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY.models))
def test_every_registry_model_loads_under_any_name(tmp_path, name):
    """Random weights saved under the Ultralytics name, Meta's name and an arbitrary name load identically."""
    entry = REGISTRY.models[name]
    first = tmp_path / entry.name
    saved = save_random(first, entry.arch.name, entry.version, seed=hash(name) % 1000)
    paths = [first, hardlink_or_copy(first, tmp_path / "my-finetune.pth")]
    paths += [hardlink_or_copy(first, tmp_path / meta) for meta in entry.files]
    try:
        for path in paths:
            model = SAM(path, device="cpu", verbose=False)
            assert (model.arch.name, model.version) == (entry.arch.name, entry.version), path.name
            loaded = model.net.state_dict()
            assert loaded.keys() == saved.keys()
            for k, v in saved.items():
                assert torch.equal(loaded[k], v), f"{path.name}: {k} differs from the saved tensor"
            del model, loaded
    finally:
        for p in paths:
            p.unlink()


def test_sam2_and_sam21_are_told_apart(tmp_path):
    # Both saved under a 2.1 name: the weights, not the name, decide.
    save_random(tmp_path / "a" / "sam2.1_whatever.pt", "sam2_test", "2.0")
    save_random(tmp_path / "b" / "sam2.1_whatever.pt", "sam2_test", "2.1")
    m20 = SAM(tmp_path / "a" / "sam2.1_whatever.pt", verbose=False)
    m21 = SAM(tmp_path / "b" / "sam2.1_whatever.pt", verbose=False)
    assert (m20.family, m20.version) == ("SAM 2", "2.0")
    assert (m21.family, m21.version) == ("SAM 2.1", "2.1")
    assert not m20.net.add_tpos_enc_to_obj_ptrs and m21.net.use_signed_tpos_enc_to_obj_ptrs


def test_misleading_name_warns(tmp_path, caplog):
    path = tmp_path / "sam2.1_b.pt"  # named like SAM 2.1 base+, holds the tiny test network
    save_random(path, "sam2_test", "2.1")
    with caplog.at_level(logging.WARNING, logger="samkit"):
        model = SAM(path, verbose=False)
    assert model.arch.name == "sam2_test"
    assert "using what the weights say" in caplog.text


def test_info_and_device(tiny_ckpt):
    model = SAM(tiny_ckpt, device="cpu", verbose=False)
    info = model.info()
    assert info == {
        "family": "SAM 2.1", "size": "test", "version": "2.1", "architecture": "sam2_test",
        "parameters": sum(p.numel() for p in model.net.parameters()), "device": "cpu", "dtype": "float32",
        "weights_dtype": "float32", "image_size": 256, "checkpoint": str(tiny_ckpt),
    }
    assert model.model is model.net
    assert info["parameters"] > 1_000_000
    assert model.to("cpu") is model and model.device == torch.device("cpu")
    assert "SAM 2.1" in repr(model)
    with pytest.raises(ValueError, match="'cuda:7'"):
        model.to("cuda:7")
    assert model.device == torch.device("cpu")  # a failed move leaves the model where it was


def test_info_logs_when_verbose(tiny_ckpt, caplog):
    with caplog.at_level(logging.INFO, logger="samkit"):
        SAM(tiny_ckpt, verbose=True).info()
    assert "SAM 2.1 test from" in caplog.text and "M parameters" in caplog.text


@pytest.mark.parametrize(
    "kind, error, message",
    [
        ("malicious", UnsafeCheckpointError, "refused to load"),
        ("truncated", CheckpointError, "truncated/corrupt"),
        ("empty", CheckpointError, "empty"),
        ("wrong-family", ArchitectureError, "not a Segment Anything checkpoint"),
        ("missing-keys", CheckpointError, "missing keys"),
    ],
)
def test_bad_checkpoints_name_the_file(tmp_path, tiny_ckpt, kind, error, message):
    import os

    path = tmp_path / f"{kind}.pt"
    if kind == "malicious":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'ran'}",))

        torch.save({"model": Evil()}, path)
    elif kind == "truncated":
        data = tiny_ckpt.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong-family":
        torch.save({"model": {"backbone.conv.weight": torch.zeros(3, 3)}}, path)
    else:
        sd = torch.load(tiny_ckpt, weights_only=True)["model"]
        sd.pop("no_mem_embed")
        torch.save(sd, path)
    with pytest.raises(error, match=message) as info:
        SAM(path, verbose=False)
    assert str(path) in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_bad_model_argument():
    with pytest.raises(TypeError, match="got int"):
        SAM(123)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SAM("/no/such/dir/custom.pt")
