"""Device selection."""

from __future__ import annotations

import pytest
import torch

from samkit.utils.devices import select_device


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu(spec):
    assert select_device(spec) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["", None])
def test_automatic(spec):
    assert select_device(spec) == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("spec, expected", [("cuda", "cuda:0"), ("cuda:1", "cuda:1"), (1, "cuda:1"), ("0", "cuda:0"),
                                            ("", "cuda:0")])
def test_cuda_forms(two_gpus, spec, expected):
    assert select_device(spec) == torch.device(expected)


def test_cuda_index_out_of_range(two_gpus):
    with pytest.raises(ValueError, match=r"'cuda:2' was requested but this machine has 2 CUDA device\(s\): 0\.\.1"):
        select_device("cuda:2")


@pytest.mark.parametrize(
    "spec, message",
    [("gpu", "'gpu' is not understood"), ("cuda:x", "'cuda:x' is not understood"), (True, "True is not understood"),
     ([0], r"\[0\] is not understood"), ("tpu:0", "expected '' \\(automatic\\), 'cpu'")],
)
def test_unknown_device(spec, message):
    with pytest.raises(ValueError, match=message):
        select_device(spec)


def test_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda:1' was requested but CUDA is not available"):
        select_device("cuda:1")
    assert select_device("") == torch.device("cpu")
