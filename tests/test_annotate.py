"""auto_annotate: box labels or a detector -> SAM masks -> YOLO-seg / COCO / PNG, resumable, on both engines."""

from __future__ import annotations

import json
import logging
import os
import stat

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit import SAM
from samkit.annotate import auto_annotate, read_box_labels
from tests.helpers import png_bytes, save_random

BOXES = {  # image -> rows "class cx cy w h" (normalised), several classes, box order matters
    "bus": [(5, 0.5, 0.6, 0.8, 0.5), (0, 0.2, 0.7, 0.15, 0.4), (2, 0.8, 0.7, 0.15, 0.4)],
    "zidane": [(0, 0.3, 0.55, 0.3, 0.8), (0, 0.75, 0.5, 0.3, 0.9), (27, 0.5, 0.8, 0.05, 0.1)],
}


@pytest.fixture()
def dataset(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for name in BOXES:
        img = cv2.imread(str(ASSETS / f"{name}.jpg"))
        cv2.imwrite(str(images / f"{name}.jpg"), cv2.resize(img, (img.shape[1] // 3, img.shape[0] // 3)))
        (labels / f"{name}.txt").write_text("".join(" ".join(map(str, r)) + "\n" for r in BOXES[name]))
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(images / "background.jpg"), np.full((64, 80, 3), 90, np.uint8))  # no label file: no objects
    return images, labels


def test_yolo_rows_match_the_boxes(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    s = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "out",
                      verbose=False)
    assert (s.images_total, s.images_done, s.images_resumed, s.objects) == (4, 3, 0, 6)
    assert (tmp_path / "out" / "background.txt").read_text() == ""
    assert len(s.skipped) == 1 and s.skipped[0][0].endswith("corrupt.jpg") and "corrupt" in str(s)
    for name, rows in BOXES.items():
        got = (tmp_path / "out" / f"{name}.txt").read_text().splitlines()
        assert [int(r.split()[0]) for r in got] == [r[0] for r in rows], "class ids or box order changed"
        # Row k is box k's mask: the same polygons as SAM prompted directly with the boxes, in the same order.
        img = cv2.imread(str(images / f"{name}.jpg"))
        boxes, _ = read_box_labels(labels / f"{name}.txt", img.shape[:2])
        direct = SAM(tiny_ckpt, device="cpu", verbose=False)(img, bboxes=boxes)[0]
        assert direct.masks.data.flatten(1).any(1).all(), "an empty mask: the comparison would skip a row"
        direct.save_txt(tmp_path / "direct.txt")
        want = (tmp_path / "direct.txt").read_text().splitlines()
        assert [r.split()[1:] for r in got] == [r.split()[1:] for r in want]
    again = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "out",
                          verbose=False)
    assert (again.images_done, again.images_resumed, len(again.skipped)) == (0, 3, 1)


def test_coco_loads_in_pycocotools(dataset, tiny_ckpt, tmp_path):
    from pycocotools.coco import COCO

    images, labels = dataset
    auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="coco",
                  output_dir=tmp_path / "coco", verbose=False)
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 6
    by_image = {coco.imgs[i]["file_name"]: coco.loadAnns(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()}
    assert [a["category_id"] for a in by_image["bus.jpg"]] == [5, 0, 2]
    for anns in by_image.values():
        for a in anns:
            assert a["iscrowd"] == 0 and isinstance(a["segmentation"], list) and a["area"] > 0
            assert coco.annToMask(a).sum() > 0


def test_empty_masks_skip_policy_keeps_class_ids(dataset, tiny_ckpt, tmp_path, monkeypatch):
    images, labels = dataset
    real = SAM.predict

    def second_mask_empty(self, *a, **k):
        out = real(self, *a, **k)
        with torch.inference_mode():
            out[0].masks.data[1] = False
        return out

    monkeypatch.setattr(SAM, "predict", second_mask_empty)
    s = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "skip",
                      empty="skip", verbose=False)
    assert s.empty_masks == 2 and "2 empty masks, no row written" in str(s)
    rows = (tmp_path / "skip" / "bus.txt").read_text().splitlines()
    assert [int(r.split()[0]) for r in rows] == [5, 2]


def test_png_masks_per_box(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="png", output_dir=tmp_path / "png",
                  verbose=False)
    names = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert names == [f"{n}_{k:03d}.png" for n in ("bus", "zidane") for k in range(3)]
    m = cv2.imread(str(tmp_path / "png" / "bus_000.png"), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (1080 // 3, 810 // 3) and set(np.unique(m)) <= {0, 255} and m.max() == 255


def test_detector_boxes(dataset, tiny_ckpt, tmp_path):
    from ultralytics import YOLO

    images, _ = dataset
    det = YOLO("yolo11n.yaml")  # random weights: boxes at conf 0, with their classes
    s = auto_annotate(images, det_model=det, sam_model=tiny_ckpt, device="cpu", conf=0.0, max_det=4,
                      output_dir=tmp_path / "det", format="coco", verbose=False)
    assert s.images_done == 3 and s.objects == 12
    doc = json.loads((tmp_path / "det" / "annotations.json").read_text())
    assert len(doc["annotations"]) == 12
    assert {c["name"] for c in doc["categories"]} <= set(det.names.values())
    none = auto_annotate(images, det_model=det, sam_model=tiny_ckpt, device="cpu", conf=1.0,
                         output_dir=tmp_path / "none", verbose=False)  # no detection at all
    assert (none.images_done, none.objects) == (3, 0) and (tmp_path / "none" / "bus.txt").read_text() == ""


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "exactly one source of boxes"),
        (dict(labels="nope"), "is not a folder of YOLO box labels"),
        (dict(labels=".", format="voc"), "format='voc' is not a dataset format; use one of yolo, coco, png"),
        (dict(labels=".", empty="drop"), "empty='drop' must be one of box, skip"),
    ],
)
def test_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        auto_annotate(dataset[0], **kwargs)


def test_a_label_box_outside_its_image_skips_that_image_only(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    (labels / "bus.txt").write_text("0 0.5 0.5 0.2 0.2\n3 1.5 1.5 0.2 0.2\n")  # row 2 lies beyond the image
    s = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "o",
                      verbose=False)
    assert s.images_done == 2 and sorted(p.rsplit("/", 1)[-1] for p, _ in s.skipped) == ["bus.jpg", "corrupt.jpg"]
    reason = dict(s.skipped)[str(images / "bus.jpg")]
    assert reason.startswith(f"{labels / 'bus.txt'}: bboxes[1] = ") and "lies entirely outside" in reason
    assert not (tmp_path / "o" / "bus.txt").exists()


def test_malformed_label_file(tmp_path):
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match="a.txt line 1: expected a detection row"):
        read_box_labels(tmp_path / "a.txt", (100, 100))
    boxes, cls = read_box_labels(tmp_path / "missing.txt", (100, 100))
    assert boxes.shape == (0, 4) and cls.shape == (0,)


@pytest.mark.slow
def test_ray_engine_equals_local(dataset, tiny_ckpt, tmp_path):
    import ray

    images, labels = dataset
    for fmt in ("yolo", "coco"):
        local = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format=fmt,
                              output_dir=tmp_path / f"local-{fmt}", verbose=False)
        dist = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format=fmt,
                             output_dir=tmp_path / f"ray-{fmt}", engine="ray", ray_actors=2, verbose=False)
        assert (dist.images_done, dist.objects, len(dist.skipped)) == (local.images_done, local.objects, 1)
        if fmt == "yolo":
            for name in BOXES:
                assert (tmp_path / f"ray-{fmt}" / f"{name}.txt").read_text() == \
                    (tmp_path / f"local-{fmt}" / f"{name}.txt").read_text()
        else:
            assert json.loads((tmp_path / "ray-coco" / "annotations.json").read_text()) == \
                json.loads((tmp_path / "local-coco" / "annotations.json").read_text())
    ray.shutdown()


# ---------------------------------------------------------------------------------------------- resume
def _rows(path) -> list[int]:
    return [int(r.split()[0]) for r in path.read_text().splitlines()]


def test_resume_skips_only_what_the_same_settings_and_inputs_produced(dataset, tiny_ckpt, tmp_path, caplog):
    from pycocotools.coco import COCO

    images, labels = dataset
    out = tmp_path / "out"

    def run(**kw):
        return auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=out, verbose=False,
                             **kw)

    first = run()
    assert (first.images_done, first.images_redone) == (3, 0)
    # Another format into the same folder: nothing of it was done yet, so every image is annotated again.
    with caplog.at_level(logging.WARNING, logger="samkit"):
        coco = run(format="coco")
    assert (coco.images_done, coco.images_redone, coco.images_resumed) == (3, 3, 0)
    assert "annotated again" in caplog.text and "format: 'yolo' -> 'coco'" in caplog.text
    assert len(COCO(str(out / "annotations.json")).getAnnIds()) == 6
    same = run(format="coco")
    assert (same.images_done, same.images_resumed) == (0, 3)
    assert len(COCO(str(out / "annotations.json")).getAnnIds()) == 6
    # An edited box-label file: that image again, with its new boxes; a new label file for the background image.
    (labels / "bus.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (labels / "background.txt").write_text("4 0.5 0.5 0.5 0.5\n")
    edited = run(format="coco")
    assert (edited.images_done, edited.images_redone, edited.images_resumed) == (2, 2, 1)
    coco_doc = COCO(str(out / "annotations.json"))
    cats = {coco_doc.imgs[i]["file_name"]: [a["category_id"] for a in coco_doc.loadAnns(coco_doc.getAnnIds(imgIds=[i]))]
            for i in coco_doc.getImgIds()}
    assert cats == {"background.jpg": [4], "bus.jpg": [1], "zidane.jpg": [0, 0, 27]}
    # Back to YOLO rows: the earlier .txt files are stale (bus had 3 boxes then) and are written again.
    yolo = run()
    assert yolo.images_done == 3 and _rows(out / "bus.txt") == [1] and _rows(out / "background.txt") == [4]
    # A replaced image, rle=True, empty="skip", half: each is work the folder does not hold.
    cv2.imwrite(str(images / "zidane.jpg"), np.full((90, 120, 3), 200, np.uint8))
    assert run().images_done == 1
    for kw in (dict(format="coco", rle=True), dict(empty="skip")):
        assert run(**kw).images_done == 3, kw


def test_resume_redoes_work_of_another_sam_model(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    other = tmp_path / "other.pt"
    save_random(other, "sam2_test", "2.1", seed=7)
    out = tmp_path / "out"
    auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=out, verbose=False)
    again = auto_annotate(images, labels=labels, sam_model=other, device="cpu", output_dir=out, verbose=False)
    assert (again.images_done, again.images_redone, again.images_resumed) == (3, 3, 0)
    record = json.loads((out / ".parts" / "bus.json").read_text())
    from samkit.annotate import file_sha256

    assert record["settings"]["sam"] == file_sha256(other)


def test_detector_settings_are_part_of_what_produced_a_label(dataset, tiny_ckpt, tmp_path):
    from ultralytics import YOLO

    images, _ = dataset
    det = YOLO("yolo11n.yaml")
    out = tmp_path / "det"
    kw = dict(det_model=det, sam_model=tiny_ckpt, device="cpu", max_det=2, output_dir=out, verbose=False)
    assert auto_annotate(images, conf=0.0, **kw).objects == 6
    assert auto_annotate(images, conf=0.0, **kw).images_resumed == 3
    none = auto_annotate(images, conf=1.0, **kw)  # another threshold: every image again, now with no box
    assert (none.images_done, none.objects) == (3, 0) and (out / "bus.txt").read_text() == ""


def test_output_folder_may_not_be_the_box_label_folder(dataset, tiny_ckpt):
    images, labels = dataset
    before = {p.name: p.read_text() for p in labels.iterdir()}
    with pytest.raises(ValueError, match="is the box-label folder"):
        auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=labels / ".." / "labels",
                      verbose=False)
    assert {p.name: p.read_text() for p in labels.iterdir()} == before


def test_png_rerun_leaves_no_masks_of_earlier_boxes(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    out = tmp_path / "png"
    auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="png", output_dir=out,
                  verbose=False)
    (labels / "bus.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="png", output_dir=out,
                  verbose=False)
    assert sorted(p.name for p in out.glob("bus_*.png")) == ["bus_000.png"]
    assert len(list(out.glob("zidane_*.png"))) == 3


def test_outputs_have_the_mode_of_a_plain_open(dataset, tiny_ckpt, tmp_path):
    images, labels = dataset
    old = os.umask(0o002)
    try:
        auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="coco",
                      output_dir=tmp_path / "o", verbose=False)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert len(files) == 4  # annotations.json and one record per annotated image
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o664}


def test_coco_polygons_say_once_that_holes_are_lost(dataset, tiny_ckpt, tmp_path, monkeypatch, caplog):
    images, labels = dataset
    real = SAM.predict

    def ring_masks(self, *a, **k):
        out = real(self, *a, **k)
        with torch.inference_mode():
            m = out[0].masks.data
            m[:] = False
            m[:, 10:60, 10:60] = True
            m[:, 30:40, 30:40] = False  # a hole in every mask
        return out

    monkeypatch.setattr(SAM, "predict", ring_masks)
    with caplog.at_level(logging.WARNING, logger="samkit"):
        s = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="coco",
                          output_dir=tmp_path / "c", verbose=False)
    assert s.holes == 6
    assert [r.getMessage() for r in caplog.records if "holes" in r.getMessage()] == [
        f"{tmp_path / 'c'}: 6 mask(s) have holes that COCO polygons cannot hold (written filled in); "
        "rle=True keeps them"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="samkit"):
        auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", format="coco", rle=True,
                      output_dir=tmp_path / "r", verbose=False)
    assert "holes" not in caplog.text


@pytest.mark.slow
def test_killed_run_resumes_to_complete_labels(tmp_path, tiny_ckpt):
    """SIGKILL part-way, then the same settings (finishes the rest), then other settings (redoes everything): every
    label complete, none half-written, nothing skipped that was not done."""
    import shutil
    import signal
    import subprocess
    import time

    from pycocotools.coco import COCO

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    base = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (135, 180))
    n = 16
    for i in range(n):
        cv2.imwrite(str(images / f"im{i:02d}.jpg"), np.roll(base, 7 * i, axis=1))
        (labels / f"im{i:02d}.txt").write_text("".join(f"{k} 0.5 0.5 {0.2 + 0.1 * k} 0.3\n" for k in range(1 + i % 3)))
    out = tmp_path / "out"
    args = [shutil.which("samkit") or "samkit", "annotate", f"data={images}", f"labels={labels}",
            f"sam_model={tiny_ckpt}", "device=cpu", f"output_dir={out}", "verbose=False"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / ".parts").glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / ".parts").glob("*.json")))
    assert 3 <= done_before < n, "the run was not killed part-way"
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{n - done_before} annotated" in again.stdout and f"{done_before} already done" in again.stdout
    for i in range(n):
        assert _rows(out / f"im{i:02d}.txt") == list(range(1 + i % 3)), f"im{i:02d}.txt is incomplete"
    coco = subprocess.run([*args, "format=coco"], capture_output=True, text=True, timeout=300)
    assert coco.returncode == 0 and f"{n} annotated ({n} redone" in coco.stdout, coco.stdout + coco.stderr
    doc = COCO(str(out / "annotations.json"))
    assert len(doc.getImgIds()) == n and len(doc.getAnnIds()) == sum(1 + i % 3 for i in range(n))


def test_an_image_declaring_a_huge_canvas_is_skipped_not_decoded(dataset, tiny_ckpt, tmp_path):
    """A 20000x20000 PNG of a few bytes: skipped with its size and the setting that raises the limit; the rest of
    the run goes on. With ``max_pixels=`` below the real images' size, those are skipped too."""
    images, labels = dataset
    (images / "bomb.png").write_bytes(png_bytes(20000, 20000))
    s = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "o",
                      verbose=False)
    assert s.images_done == 3
    reason = dict(s.skipped)[str(images / "bomb.png")]
    assert "declares 20000x20000 pixels" in reason and "max_pixels=" in reason
    small = auto_annotate(images, labels=labels, sam_model=tiny_ckpt, device="cpu", output_dir=tmp_path / "p",
                          max_pixels=50_000, verbose=False)
    assert small.images_done == 1  # only the 80x64 background image is under 50,000 pixels


# ---------------------------------------------------------------------------------------------- engines
def test_ray_engine_module_does_not_import_annotation():
    """samkit.integrations.ray runs any worker it is given: it imports nothing of samkit (annotate -> ray only)."""
    import ast
    import subprocess
    import sys

    import samkit.integrations.ray as ray_engine

    tree = ast.parse(open(ray_engine.__file__).read())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.split(".")[0] == "samkit"], imported
    code = ("import sys, samkit.integrations.ray; "
            "print(sorted(m for m in sys.modules if m in ('samkit.annotate', 'samkit.model', 'samkit.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_worker_annotators_and_their_records(dataset, tmp_path):
    """The Ray engine's factory: device "" is the CPU on a worker without a GPU; records are JSON-able and carry
    the class names (read back by the driver)."""
    import functools

    from samkit.annotate import Annotator

    images, labels = dataset
    make = functools.partial(Annotator.on_worker, labels=labels, output_dir=tmp_path / "o", device="", settings={})
    assert make(gpu=False).device == "cpu" and make(gpu=True).device == ""
    assert functools.partial(Annotator.on_worker, labels=labels, device="cuda:1", settings={})(gpu=False).device \
        == "cuda:1"
    worker = make(gpu=False)
    worker.names[3] = "truck"
    record = worker(str(images / "background.jpg"))  # no boxes: no model is loaded
    assert json.loads(json.dumps(record)) == record
    assert (record["status"], record["objects"], record["names"]) == ("done", 0, {"3": "truck"})
    assert worker(str(images / "background.jpg"))["status"] == "resumed"
    assert (tmp_path / "o" / "background.txt").read_text() == ""


@pytest.mark.parametrize("fmt", ["yolo", "png"])
def test_a_deleted_output_file_is_written_again_on_resume(tiny_ckpt, tmp_path, fmt):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    img = np.full((96, 128, 3), 50, np.uint8)
    img[20:70, 30:90] = 220
    for stem in ("a", "b"):
        cv2.imwrite(str(images / f"{stem}.png"), img)
        (labels / f"{stem}.txt").write_text("0 0.47 0.47 0.5 0.55\n")
    out = tmp_path / "out"
    auto_annotate(images, labels=labels, sam_model=str(tiny_ckpt), format=fmt, output_dir=out, device="cpu",
                  verbose=False)
    gone = out / ("a.txt" if fmt == "yolo" else "a_000.png")
    kept = (out / ("b.txt" if fmt == "yolo" else "b_000.png")).read_bytes()
    gone.unlink()
    again = auto_annotate(images, labels=labels, sam_model=str(tiny_ckpt), format=fmt, output_dir=out,
                          device="cpu", verbose=False)
    assert again.images_done == 1 and again.images_resumed == 1
    assert gone.is_file() and (out / ("b.txt" if fmt == "yolo" else "b_000.png")).read_bytes() == kept
