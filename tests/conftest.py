"""Shared fixtures: random-weight checkpoints built on the fly, Meta's reference models holding the same weights and
a local HTTP server for downloads. The plain helpers they use live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import FileServer, build_reference_pair, save_present, save_random


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A SAM 2.1 checkpoint of the tiny test architecture (256 px input) with random weights."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny-sam2.1.pt"
    save_random(path, "sam2_test", "2.1")
    return path


@pytest.fixture(scope="session")
def present_ckpt(tmp_path_factory) -> Path:
    """A SAM 2.1 checkpoint of the tiny test architecture whose object-presence head says "present" (for videos)."""
    return save_present(tmp_path_factory.mktemp("present") / "tiny.pt", "sam2_test", seed=1)


@pytest.fixture(scope="module")
def reference_device() -> str:
    """The device ``reference_pair`` puts both models on (a test module may override this fixture)."""
    return "cpu"


@pytest.fixture(scope="module")
def reference_pair(request, tmp_path_factory, reference_device):
    """``(samkit model, Meta's reference model)`` holding the same random weights, built once per module and
    architecture: SAM 2.1 tiny at its real size (1024 px) unless parametrised indirectly with another architecture
    of ``helpers.REFERENCE_WEIGHTS`` (``"sam_b"``, ``"mobile_sam"``); see ``helpers.build_reference_pair``. On a
    CPU the SAM 2 reference also needs ``helpers.patch_sam2_reference_for_cpu`` (hole filling)."""
    arch = getattr(request, "param", "sam2_t")
    model, ref, _ = build_reference_pair(tmp_path_factory.mktemp(f"reference-{arch}"), arch, reference_device)
    return model, ref


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path, monkeypatch):
    """Never touch the user's cache or network during tests: weights folders point into tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SAMKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("SAMKIT_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("SAMKIT_OFFLINE", raising=False)


@pytest.fixture
def file_server():
    with FileServer() as server:
        yield server
