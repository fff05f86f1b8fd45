"""Every example in README.md runs (with random-weight checkpoints standing in for the downloads)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import save_random

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [
    re.sub(r"\s+#.*$", "", line).strip()
    for lang, code in BLOCKS if lang == "bash"
    for line in code.splitlines() if line.startswith("samkit ")
]


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A weights folder holding the registry models the README names (random weights of the small test
    architecture, loaded with a name-mismatch warning; the examples only need to run); in the working folder
    the files the examples read: bus.jpg, clip.avi, an images/ + labels/ box dataset and a random yolo11n.pt."""
    import cv2
    import numpy as np
    from ultralytics import ASSETS, YOLO

    d = tmp_path / "weights"
    save_random(d / "sam2.1_t.pt", "sam2_test", "2.1")  # the test architecture under the name: fast examples
    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(d))
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    shutil.copy(ASSETS / "bus.jpg", tmp_path / "bus.jpg")
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(2):
        f = np.full((240, 320, 3), 40, np.uint8)
        f[80:160, 40 + 10 * i : 120 + 10 * i] = 230
        writer.write(f)
    writer.release()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "bus.jpg"), cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (405, 540)))
    (tmp_path / "labels" / "bus.txt").write_text("5 0.5 0.6 0.8 0.5\n0 0.2 0.7 0.15 0.4\n")
    YOLO("yolo11n.yaml").save(str(tmp_path / "yolo11n.pt"))  # random weights under the name the examples use
    return d


def test_readme_has_examples():
    assert len(PYTHON) >= 2 and len(COMMANDS) >= 4


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_examples(code, weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write relative paths (runs/...) and read the fixture's files
    exec(compile(code, str(README), "exec"), {})


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_examples(command, weights, tmp_path):
    args = shlex.split(command)
    r = subprocess.run([shutil.which(args[0]) or args[0], *args[1:]], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
