"""The installed `samkit` command, run in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

SAMKIT = shutil.which("samkit") or ""


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if not SAMKIT:
        pytest.fail("the samkit console script is not installed (pip install -e .)")
    return subprocess.run([SAMKIT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_info_model(tiny_ckpt):
    r = run("info", f"model={tiny_ckpt}", "device=cpu")
    assert r.returncode == 0, r.stderr
    assert "family: SAM 2.1" in r.stdout and "architecture: sam2_test" in r.stdout and "device: cpu" in r.stdout


def test_info_lists_registry():
    r = run("info")
    assert r.returncode == 0
    assert "sam2.1_b.pt" in r.stdout and "sam_vit_h_4b8939.pth" in r.stdout


def test_checks():
    r = run("checks")
    assert r.returncode == 0, r.stderr
    for word in ("samkit 0.", "torch ", "ultralytics ", "pycocotools", "weights folders", "sample images"):
        assert word in r.stdout


def test_misspelt_key_suggests():
    r = run("info", "modle=sam2.1_b.pt")
    assert r.returncode == 2
    assert "unknown setting 'modle' (did you mean 'model'?)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_misspelt_mode_suggests():
    r = run("inf")
    assert r.returncode == 2 and "did you mean 'info'" in r.stderr


def test_missing_model_file_is_one_line(tmp_path):
    r = run("info", f"model={tmp_path / 'nope' / 'custom.pt'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "custom.pt" in lines[0] and "does not exist" in lines[0]


def test_offline_registry_model_is_one_line(tmp_path):
    r = run("info", "model=sam2.1_t.pt", env={"SAMKIT_OFFLINE": "1", "SAMKIT_WEIGHTS_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "SAMKIT_OFFLINE" in r.stderr and str(tmp_path) in r.stderr and "Traceback" not in r.stderr


def test_traceback_only_with_verbose(tmp_path):
    r = run("info", f"model={tmp_path / 'x.pt'}", "verbose=True")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "info" in r.stdout and "checks" in r.stdout
    from samkit import __version__

    assert run("version").stdout.strip() == __version__


def test_module_entry_point(tiny_ckpt):
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "info", f"model={tiny_ckpt}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "SAM 2.1" in r.stdout
