"""Every example in README.md runs (with random-weight checkpoints standing in for the downloads)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from samkit.writers.formats import write_image
from tests.helpers import offline_text_encoder, read_video, save_random, write_video

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [
    re.sub(r"\s+#.*$", "", line).strip()
    for lang, code in BLOCKS if lang == "bash"
    for line in code.splitlines() if line.startswith("samkit ")
]


@pytest.fixture(scope="module")
def sam3_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam3") / "sam3.pt"
    save_random(path, "sam3_test")
    return path


@pytest.fixture
def weights(tmp_path, monkeypatch, sam3_weights):
    """A weights folder holding the registry models the README names (random weights of the small test
    architecture, loaded with a name-mismatch warning; the examples only need to run); in the working folder
    the files the examples read: bus.jpg, clip.avi, an images/ + labels/ box dataset and a random yolo11n.pt."""
    import cv2
    import numpy as np
    from ultralytics import ASSETS, YOLO

    d = tmp_path / "weights"
    save_random(d / "sam2.1_t.pt", "sam2_test", "2.1")  # the test architecture under the name: fast examples
    shutil.copy(sam3_weights, d / "sam3.pt")  # and SAM 3's small test network (its published weights are gated)
    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(d))
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    shutil.copy(ASSETS / "bus.jpg", tmp_path / "bus.jpg")
    frames = [np.full((240, 320, 3), 40, np.uint8) for _ in range(2)]
    for i, f in enumerate(frames):
        f[80:160, 40 + 10 * i : 120 + 10 * i] = 230
    write_video(tmp_path / "clip.avi", frames, fps=10, codec="MJPG")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "bus.jpg"), cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (405, 540)))
    (tmp_path / "labels" / "bus.txt").write_text("5 0.5 0.6 0.8 0.5\n0 0.2 0.7 0.15 0.4\n")
    dataset = tmp_path / "dataset"  # a YOLO-seg dataset (images/ + labels/): two images, discs and a square
    for i in range(2):
        img = np.full((96, 128, 3), 40 + 30 * i, np.uint8)
        masks = np.zeros((2, 96, 128), np.uint8)
        cv2.circle(masks[0], (30 + 10 * i, 40), 15, 1, -1)
        masks[1, 55:85, 70:110] = 1
        img[masks[0] > 0], img[masks[1] > 0] = (200, 90, 40), (40, 200, 90)
        (dataset / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dataset / "images" / f"shapes{i}.jpg"), img)
        write_image("yolo", dataset / "labels", f"shapes{i}", masks.astype(bool), [0, 1], [0, 1])
    from samkit.data.synthetic import make_shapes

    make_shapes(tmp_path / "shapes", train=6, val=2)  # what the README's train line trains on
    YOLO("yolo11n.yaml").save(str(tmp_path / "yolo11n.pt"))  # random weights under the name the examples use
    YOLO("yoloe-11s-seg.yaml").save(str(tmp_path / "yoloe-11s-seg.pt"))  # and YOLOE, without its text model
    offline_text_encoder(monkeypatch)
    return d


def test_readme_has_examples():
    assert len(PYTHON) >= 2 and len(COMMANDS) >= 4


def check_outputs(root: Path) -> dict[str, int]:
    """Open everything an example wrote under ``root`` the way users would and check it; returns counts by kind.

    Files have the mode a plain ``open()`` gives; every overlay video has as many frames as its source and, when
    labels were written, one label file per frame; YOLO-seg labels pass Ultralytics' own label checker; COCO files
    load in pycocotools with every annotation's mask non-empty; mask PNGs hold 0/255.
    """
    import cv2
    import numpy as np
    from pycocotools.coco import COCO
    from ultralytics.data.utils import verify_image_label

    umask = os.umask(0)
    os.umask(umask)
    counts = {"video": 0, "txt": 0, "coco": 0, "png": 0}
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp") or ".partial" in p.name], "temporary files left behind"
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, f"{p} has mode {oct(p.stat().st_mode)}"
        if any(part.startswith(".") for part in p.relative_to(root).parts):  # samkit's own records (.parts/)
            continue
        if p.suffix == ".mp4":
            source = next(root.parent.glob(f"{p.stem}.*"), None)
            assert source is not None and len(read_video(p)) == len(read_video(source)), f"{p}: frames missing"
            labels = sorted((p.parent / "labels").glob(f"{p.stem}_*.txt"))
            assert not labels or len(labels) == len(read_video(source)), f"{p}: not one label file per frame"
            counts["video"] += 1
        elif p.suffix == ".txt":
            image = next((q for q in root.parent.rglob(f"{p.stem}.*") if q.suffix in (".jpg", ".png")), None)
            if image is None:  # a video frame's labels: a frame-sized image for the checker
                video = next(root.parent.glob(f"{p.stem.rsplit('_', 1)[0]}.*"))
                cap = cv2.VideoCapture(str(video))
                image = p.with_name(f"{p.stem}.check.png")
                cv2.imwrite(str(image), cap.read()[1])
                cap.release()
            out = verify_image_label((str(image), str(p), "", False, 1000, 0, 0, False))
            if image.name.endswith(".check.png"):
                image.unlink()
            assert out[8] == 0, f"Ultralytics' label checker refuses {p}: {out[-1]}"
            counts["txt"] += 1
        elif p.suffix == ".json" and p.name != "metrics.json":  # val's metrics are checked by check_val_run
            coco = COCO(str(p))
            for a in coco.loadAnns(coco.getAnnIds()):
                assert coco.annToMask(a).sum() > 0 and a["category_id"] in coco.cats, p
            counts["coco"] += 1
        elif p.suffix == ".png" and p.parent.name == "masks":
            assert set(np.unique(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))) <= {0, 255}, p
            counts["png"] += 1
    return counts


def check_val_run(out: Path, kinds: int) -> None:
    """A val run folder as a user opens it: the metrics, one CSV row per object and prompt kind, the plots."""
    import csv

    import cv2

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"] == {"images": 2, "objects": 4, "small": 0, "empty": 0, "images_without_objects": 0}
    with open(out / "per_item.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4 * kinds
    for name in ("clicks.png", "iou_hist.png", "worst.jpg"):
        assert cv2.imread(str(out / name)) is not None, name
    assert "| sam2.1_t.pt |" in (out / "summary.md").read_text()
    check_outputs(out)


def check_train_run(out: Path, epochs: int) -> None:
    """A train run folder as a user opens it: a results.csv row per epoch (and the start), the curves, both
    checkpoints loading as SAM models."""
    import csv

    import cv2
    import torch

    from samkit import SAM

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == [str(e) for e in range(epochs + 1)]
    assert all(float(r["train/loss"]) > 0 for r in rows[1:]) and all(r["metrics/box_miou"] for r in rows)
    assert cv2.imread(str(out / "results.png")) is not None
    for name in ("best.pt", "last.pt"):
        assert SAM(out / "weights" / name, device="cpu", verbose=False).family == "SAM 2.1"
    assert torch.load(out / "weights" / "last.pt", weights_only=True)["train"]["finished"]


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_examples(code, weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write relative paths (runs/...) and read the fixture's files
    exec(compile(code, str(README), "exec"), {})
    written = check_outputs(tmp_path / "runs") if (tmp_path / "runs").exists() else {}
    if "frame=1, save=True" in code:  # prompted on frame 1: the video and its labels still have all 3 frames
        assert written["video"] == 1 and len(read_video(tmp_path / "runs" / "track" / "exp" / "clip.mp4")) == 3
        assert len(list((tmp_path / "runs" / "track" / "exp" / "labels").glob("clip_*.json"))) == 3
    if "det_model=" in code and "model.track(" in code:  # SAM 3's phrases and Grounded SAM 2: one video each
        assert written["video"] == 2 and written["coco"] >= 2
    if ".val(" in code:
        check_val_run(tmp_path / "runs" / "val" / "exp", kinds=2)
    if ".train(" in code:
        check_train_run(tmp_path / "runs" / "train" / "exp", epochs=2)
    if "save_coco=True" in code and "save_masks(" in code:
        assert written["txt"] >= 2 and written["coco"] >= 2 and written["png"] >= 2


def run_app(args: list[str], tmp_path: Path) -> None:
    """A README ``samkit app`` line: it prints its URL and serves until Ctrl+C; an edit made through it is in the
    dataset folder afterwards, readable by pycocotools or Ultralytics' label checker."""
    import signal
    import time

    import httpx

    proc = subprocess.Popen([shutil.which(args[0]) or args[0], *args[1:], "port=0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=dict(os.environ))
    try:
        url, deadline = None, time.time() + 300
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if " open http" in line:
                url = line.split(" open ", 1)[1].split()[0]
        info = httpx.get(url + "api/project", timeout=60).json()
        if info["kind"] == "images":
            assert info["items"] == ["bus.jpg"]
            r = httpx.post(url + "api/images/0/object", json={"points": [[200, 300, 1]], "cls": 1}, timeout=120)
        else:
            r = httpx.post(url + "api/video/prompt", json={"frame": 0, "points": [[80, 120, 1]]}, timeout=120)
            assert r.status_code == 200, r.text
            with httpx.stream("POST", url + "api/video/propagate", json={"start": 0}, timeout=120) as s:
                events = [ln for ln in s.iter_lines() if ln.startswith("event: ")]
            assert events[-1] == "event: done", events
        assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    if info["kind"] == "images":
        from pycocotools.coco import COCO

        coco = COCO(str(tmp_path / "images" / "labels" / "annotations.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["person", "bus"]
        assert [a["category_id"] for a in coco.loadAnns(coco.getAnnIds())] == [1]
    else:
        out = tmp_path / "clip_labels"
        assert sorted(p.name for p in (out / "labels").glob("*.txt")) == ["clip_000000.txt", "clip_000001.txt"]
        assert sorted(p.name for p in (out / "images").glob("*.jpg")) == ["clip_000000.jpg", "clip_000001.jpg"]
        check_outputs(out)


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_examples(command, weights, tmp_path):
    args = shlex.split(command)
    if args[1] == "app" and "--help" not in args:
        return run_app(args, tmp_path)
    r = subprocess.run([shutil.which(args[0]) or args[0], *args[1:]], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    if "--help" in args:  # the mode's settings with their defaults
        assert r.stdout.startswith(f"samkit {args[1]}: ") and f"settings of samkit {args[1]}" in r.stdout
    if args[1] == "checks":  # every check ran, none failed
        assert "ERROR" not in r.stdout and "nms, batched_nms, roi_align" in r.stdout
    if args[1] in ("predict", "track"):
        written = check_outputs(tmp_path / "runs")
        assert written["video" if args[1] == "track" else "txt"] or args[1] == "predict" and not written["txt"]
        assert "saved to runs/" in r.stdout and Path(tmp_path, r.stdout.split("saved to ")[1].strip()).is_dir()
    if args[1] == "benchmark":  # one row per model, in the order given, in the CSV and the markdown
        import csv

        models = next(a for a in args if a.startswith("model=")).split("=", 1)[1].split(",")
        with open(tmp_path / "runs" / "benchmark" / "exp" / "benchmark.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["model"] for r in rows] == models and all(float(r["ms_image"]) > 0 for r in rows)
        assert all(f"| {m} |" in (tmp_path / "runs" / "benchmark" / "exp" / "benchmark.md").read_text() for m in models)
    if args[1] == "val":
        check_val_run(tmp_path / "runs" / "val" / "exp", kinds=2)
        assert "NoC@90" in r.stdout and "saved to runs/val/exp" in r.stdout
    if args[1] == "train":
        check_train_run(tmp_path / "runs" / "train" / "exp", epochs=2)
        assert "best (epoch" in r.stdout and "saved to runs/train/exp" in r.stdout
    if args[1] == "annotate":
        out = tmp_path / "images_auto_annotate_labels"
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == (
            ["annotations.json"] if "format=coco" in command else ["bus.txt", "data.yaml"])
        check_outputs(out)


@pytest.mark.slow
def test_annotate_commands_in_order(weights, tmp_path):
    """The README's annotate lines run one after the other into one folder: the second (another box source and
    format) writes its own labels instead of calling the first run's work done."""
    lines = [shlex.split(c) for c in COMMANDS if c.startswith("samkit annotate")]
    assert len(lines) == 3
    outputs = []
    for args in lines:
        r = subprocess.run([shutil.which("samkit"), *args[1:], "conf=0.0"], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outputs.append(r.stdout)
    assert "1 annotated" in outputs[0] and "1 annotated (1 redone" in outputs[1], outputs
    out = tmp_path / "images_auto_annotate_labels"
    rows = (out / "bus.txt").read_text().splitlines()
    assert len(rows) > 0  # the detector at conf 0 finds boxes (random weights)
    # The third line (phrases, SAM 3, COCO) redoes the first one's COCO records: categories are the phrases.
    assert "1 annotated (1 redone" in outputs[2], outputs
    doc = json.loads((out / "annotations.json").read_text())
    assert {c["id"]: c["name"] for c in doc["categories"]} == {0: "person", 1: "bus"} and doc["annotations"]
    check_outputs(out)
