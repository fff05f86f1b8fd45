"""Checkpoint reading is safe (no code runs) and loading is strict (every tensor must fit)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from samkit.nn import (
    ArchitectureError,
    CheckpointError,
    UnsafeCheckpointError,
    build_network,
    detect_architecture,
    read_checkpoint,
)
from samkit.nn.checkpoint import load_state_dict_strict
from tests.helpers import save_random


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle protocol 2", "pickle protocol 5"])
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "sam2.1_b.pt"
    sd = build_network("sam2_test").state_dict()
    if how == "torch.save":
        torch.save({"model": sd, "extra": _Payload(marker)}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"model": _Payload(marker)}, f, protocol=int(how[-1]))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "the payload ran"
    if how != "pickle protocol 5":  # protocol 5 frames are refused before the GLOBAL is even seen
        assert isinstance(info.value, UnsafeCheckpointError)
        assert "system" in str(info.value) and "nothing in the file was executed" in str(info.value)


def test_yolo_model_file_is_refused_with_a_hint(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    path = tmp_path / "yolo11n.pt"
    torch.save({"model": DetectionModel("yolo11n.yaml", verbose=False)}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError), "the wrong kind of file, not a dangerous one"
    assert msg.startswith(f"{path} is an Ultralytics model file (DetectionModel), not Segment Anything weights")
    assert "ultralytics.YOLO" in msg and "det_model=" in msg


def _good_bytes(tmp_path: Path) -> bytes:
    p = tmp_path / "good.pt"
    save_random(p, "sam2_test")
    return p.read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda good: b"", "empty"),
        (lambda good: good[: len(good) // 2], "truncated/corrupt"),
        (lambda good: good[:100], "truncated/corrupt"),
        (lambda good: b"\x00" * 64 + good[64:], "not a readable PyTorch checkpoint"),
        (lambda good: os.urandom(4096), "not a readable PyTorch checkpoint"),
        (lambda good: b"just some text, not a checkpoint\n", "not a readable PyTorch checkpoint"),
        (lambda good: b"\xff\xd8\xff\xe0" + os.urandom(2000), "not a readable PyTorch checkpoint"),  # a JPEG header
    ],
    ids=["empty", "truncated-half", "truncated-head", "corrupt-header", "random", "text", "jpeg"],
)
def test_unreadable_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(make(_good_bytes(tmp_path)))
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "obj, message",
    [
        ([torch.zeros(2)], "holds a list, not a state dict"),
        ({"model": {"a": torch.zeros(1), "b": 3}}, "not name -> tensor"),
        ({}, "not a state dict"),
        (torch.zeros(3), "holds a Tensor"),
    ],
)
def test_not_a_state_dict(tmp_path, obj, message):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message) as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        read_checkpoint("/nonexistent/nowhere.pt")


@pytest.mark.parametrize("layout", ["model", "bare", "state_dict", "module-prefix", "legacy-format"])
def test_layouts_all_load(tmp_path, layout):
    sd = build_network("sam2_test").state_dict()
    obj = {
        "model": {"model": sd, "epoch": 3},
        "bare": sd,
        "state_dict": {"state_dict": sd},
        "module-prefix": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "legacy-format": sd,
    }[layout]
    path = tmp_path / "w.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=layout != "legacy-format")
    got = read_checkpoint(path)
    assert list(got) == list(sd)
    assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_strict_loading_names_file_and_keys():
    net = build_network("sam2_test")
    sd = dict(net.state_dict())
    missing = dict(sd)
    del missing["no_mem_embed"], missing["memory_encoder.out_proj.weight"]
    with pytest.raises(CheckpointError, match=r"x\.pt: .*2 missing keys: no_mem_embed, memory_encoder\.out_proj"):
        load_state_dict_strict(net, missing, "x.pt")
    extra = {**sd, "head.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: head\.weight"):
        load_state_dict_strict(net, extra, "x.pt")
    shaped = {**sd, "no_mem_embed": torch.zeros(1, 1, 7)}
    with pytest.raises(CheckpointError, match=r"shape mismatches .*no_mem_embed \(1, 1, 7\) != \(1, 1, 256\)"):
        load_state_dict_strict(net, shaped, "x.pt")
    many = {k: v for i, (k, v) in enumerate(sd.items()) if i % 2}
    with pytest.raises(CheckpointError, match=r"and \d+ more"):
        load_state_dict_strict(net, many, "x.pt")


def test_wrong_family_is_named(tmp_path):
    import torchvision

    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ArchitectureError, match=r"resnet\.pt: not a Segment Anything checkpoint.*conv1\.weight"):
        detect_architecture(read_checkpoint(path), str(path))


@pytest.mark.parametrize("protocol", [0, 4, 5])
def test_payloads_of_any_pickle_protocol_are_called_unsafe(tmp_path, protocol):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = tmp_path / f"p{protocol}.pt"
    path.write_bytes(pickle.dumps({"model": Evil()}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load: .*\(it imports (posix|os|nt)\.system\)"):
        read_checkpoint(path)
    inst = tmp_path / "inst.pt"  # the INST opcode of protocol 0, written by hand
    inst.write_bytes(b"(S'touch " + str(tmp_path / "ran").encode() + b"'\nios\nsystem\n.")
    with pytest.raises(UnsafeCheckpointError, match=r"it imports os\.system"):
        read_checkpoint(inst)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("bad", ["nan", "inf", "int"])
def test_weights_that_would_give_nan_scores_are_refused(tmp_path, tiny_ckpt, bad):
    from samkit import SAM

    sd = torch.load(tiny_ckpt, weights_only=True)["model"]
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    if bad == "int":
        sd[key] = sd[key].round().to(torch.int32)
    else:
        sd[key] = torch.full_like(sd[key], float(bad))
    path = tmp_path / f"{bad}.pt"
    torch.save({"model": sd}, path)
    match = "are not floating point" if bad == "int" else "hold NaN or infinite values"
    with pytest.raises(CheckpointError, match=f"{path}: weights do not fit the network: 1 tensors {match}: {key}"):
        SAM(path, device="cpu", verbose=False)
