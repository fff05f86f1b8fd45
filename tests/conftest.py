"""Shared fixtures: random-weight checkpoints built on the fly and a local HTTP server for downloads. The plain
helpers they use live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import FileServer, save_present, save_random


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
