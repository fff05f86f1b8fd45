"""Phrases through the command line and dataset annotation: SAM 3 on its own, and an open-vocabulary detector's
boxes for SAM 2; class ids follow the phrase order and the files load in the tools users load them with."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from samkit import auto_annotate
from samkit.cli import main
from samkit.nn import build_network

pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def sam3_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam3") / "my-sam3.pt"
    torch.save({"model": build_network("sam3_test").state_dict()}, path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        img = np.full((120, 160, 3), 60, np.uint8)
        img[20 + 10 * i : 80, 30:110] = rng.integers(100, 255, 3)
        cv2.imwrite(str(folder / f"im{i}.jpg"), img)
    return folder


def _check_yolo(folder, images, n_classes):
    from ultralytics.data.utils import verify_image_label

    for img in sorted(images.glob("*.jpg")):
        txt = folder / f"{img.stem}.txt"
        out = verify_image_label((str(img), str(txt), "", False, n_classes, 0, 0, False))
        assert out[8] == 0, out[-1]  # no corrupt label
        rows = [r.split() for r in txt.read_text().splitlines()]
        assert rows and all(0 <= int(r[0]) < n_classes and len(r) >= 7 for r in rows)
        yield rows


def test_predict_command_with_phrases_writes_labels_named_by_phrase(sam3_ckpt, images, tmp_path, capsys):
    from pycocotools.coco import COCO

    code = main(["predict", f"model={sam3_ckpt}", f"source={images}", "texts=person, bus", "conf=0.0", "max_det=4",
                 "save_txt=True", "save_coco=True", f"project={tmp_path / 'runs'}", "device=cpu", "verbose=False"])
    assert code == 0, capsys.readouterr().err
    assert "2 images, 8 masks" in capsys.readouterr().out
    run = tmp_path / "runs" / "exp"
    assert sum(len(rows) for rows in _check_yolo(run / "labels", images, 2)) == 8
    coco = COCO(str(run / "coco.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"person", "bus"}
    assert len(coco.getAnnIds()) == 8


def test_annotate_with_phrases_and_sam3(sam3_ckpt, images, tmp_path):
    out = tmp_path / "yolo"
    summary = auto_annotate(images, texts=["person", "bus"], sam_model=str(sam3_ckpt), conf=0.0, max_det=3,
                            output_dir=out, device="cpu", verbose=False)
    assert summary.images_done == 2
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "person", 1: "bus"}
    assert [len(rows) for rows in _check_yolo(out, images, 2)] == [3, 3]
    again = auto_annotate(images, texts=["person", "bus"], sam_model=str(sam3_ckpt), conf=0.0, max_det=3,
                          output_dir=out, device="cpu", verbose=False)
    assert again.images_resumed == 2 and again.images_done == 0
    other = auto_annotate(images, texts=["person", "dog"], sam_model=str(sam3_ckpt), conf=0.0, max_det=3,
                          output_dir=out, device="cpu", verbose=False)
    assert other.images_done == 2, "other phrases: annotated again"
    coco_out = tmp_path / "coco"
    auto_annotate(images, texts=["person", "bus"], sam_model=str(sam3_ckpt), conf=0.0, max_det=3, format="coco",
                  output_dir=coco_out, device="cpu", verbose=False)
    doc = json.loads((coco_out / "annotations.json").read_text())
    assert {c["id"]: c["name"] for c in doc["categories"]} == {0: "person", 1: "bus"}
    assert len(doc["annotations"]) == 6 and {a["category_id"] for a in doc["annotations"]} <= {0, 1}


def test_annotate_with_phrases_through_an_open_vocabulary_detector(tiny_ckpt, images, tmp_path, monkeypatch):
    from ultralytics import YOLO

    from tests.helpers import offline_text_encoder

    torch.manual_seed(1)  # the random detector finds 5 boxes per image whatever the tests before it drew
    det = YOLO("yoloe-11s-seg.yaml")  # random weights; its text embeddings too (no download)
    offline_text_encoder(monkeypatch)
    out = tmp_path / "yoloe"
    summary = auto_annotate(images, det_model=det, texts=["car", "person", "bus"], sam_model=str(tiny_ckpt),
                            conf=0.0001, max_det=5, output_dir=out, device="cpu", verbose=False)
    assert summary.images_done == 2
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "car", 1: "person", 2: "bus"}
    assert det.names == {0: "car", 1: "person", 2: "bus"}, "the detector's classes are the phrases, in order"
    assert all(len(rows) == 5 for rows in _check_yolo(out, images, 3))


def test_phrase_annotation_refusals(tiny_ckpt, sam3_ckpt, images, tmp_path):
    from ultralytics import YOLO

    with pytest.raises(ValueError, match="needs a SAM 3 model"):
        auto_annotate(images, texts="person", sam_model=str(tiny_ckpt), output_dir=tmp_path / "a", verbose=False)
    with pytest.raises(ValueError, match="texts= and labels= are two sources"):
        auto_annotate(images, texts="person", labels=images, sam_model=str(sam3_ckpt), verbose=False)
    with pytest.raises(ValueError, match="texts\\[1\\] is empty"):
        auto_annotate(images, texts=["person", " ", "bus"], sam_model=str(sam3_ckpt), verbose=False)
    with pytest.raises(ValueError, match="texts names 'bus' twice"):
        auto_annotate(images, texts=["bus", "person", "bus"], sam_model=str(sam3_ckpt), verbose=False)
    with pytest.raises(ValueError, match="needs an open-vocabulary detector \\(YOLOE, YOLO-World\\)"):
        auto_annotate(images, det_model=YOLO("yolo11n.yaml"), texts="person", sam_model=str(tiny_ckpt),
                      output_dir=tmp_path / "b", verbose=False, device="cpu")


@pytest.mark.slow
def test_phrase_annotation_on_ray_equals_local(sam3_ckpt, images, tmp_path):
    import ray

    kw = dict(texts=["person", "bus"], sam_model=str(sam3_ckpt), conf=0.0, max_det=3, device="cpu", verbose=False)
    local = auto_annotate(images, output_dir=tmp_path / "local", **kw)
    dist = auto_annotate(images, output_dir=tmp_path / "ray", engine="ray", ray_actors=1, **kw)
    ray.shutdown()
    assert dist.images_done == local.images_done == 2 and dist.objects == local.objects == 6
    for img in images.glob("*.jpg"):
        name = f"{img.stem}.txt"
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert yaml.safe_load((tmp_path / "ray" / "data.yaml").read_text())["names"] == {0: "person", 1: "bus"}
