"""auto_annotate: box labels or a detector -> SAM masks -> YOLO-seg / COCO / PNG, resumable, on both engines."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import save_random
from ultralytics import ASSETS

from samkit import SAM
from samkit.annotate import auto_annotate, read_box_labels

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


@pytest.fixture(scope="module")
def sam_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ann") / "tiny.pt"
    save_random(path, "sam2_test", "2.1")
    return path


def test_yolo_rows_match_the_boxes(dataset, sam_ckpt, tmp_path):
    images, labels = dataset
    s = auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", output_dir=tmp_path / "out",
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
        direct = SAM(sam_ckpt, device="cpu", verbose=False)(img, bboxes=boxes)[0]
        assert direct.masks.data.flatten(1).any(1).all(), "an empty mask: the comparison would skip a row"
        direct.save_txt(tmp_path / "direct.txt")
        want = (tmp_path / "direct.txt").read_text().splitlines()
        assert [r.split()[1:] for r in got] == [r.split()[1:] for r in want]
    again = auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", output_dir=tmp_path / "out",
                          verbose=False)
    assert (again.images_done, again.images_resumed, len(again.skipped)) == (0, 3, 1)


def test_coco_loads_in_pycocotools(dataset, sam_ckpt, tmp_path):
    from pycocotools.coco import COCO

    images, labels = dataset
    auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", format="coco",
                  output_dir=tmp_path / "coco", verbose=False)
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 6
    by_image = {coco.imgs[i]["file_name"]: coco.loadAnns(coco.getAnnIds(imgIds=[i])) for i in coco.getImgIds()}
    assert [a["category_id"] for a in by_image["bus.jpg"]] == [5, 0, 2]
    for anns in by_image.values():
        for a in anns:
            assert a["iscrowd"] == 0 and isinstance(a["segmentation"], list) and a["area"] > 0
            assert coco.annToMask(a).sum() > 0


def test_empty_masks_skip_policy_keeps_class_ids(dataset, sam_ckpt, tmp_path, monkeypatch):
    images, labels = dataset
    real = SAM.predict

    def second_mask_empty(self, *a, **k):
        out = real(self, *a, **k)
        with torch.inference_mode():
            out[0].masks.data[1] = False
        return out

    monkeypatch.setattr(SAM, "predict", second_mask_empty)
    s = auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", output_dir=tmp_path / "skip",
                      empty="skip", verbose=False)
    assert s.empty_masks == 2 and "2 empty masks, no row written" in str(s)
    rows = (tmp_path / "skip" / "bus.txt").read_text().splitlines()
    assert [int(r.split()[0]) for r in rows] == [5, 2]


def test_png_masks_per_box(dataset, sam_ckpt, tmp_path):
    images, labels = dataset
    auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", format="png", output_dir=tmp_path / "png",
                  verbose=False)
    names = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert names == [f"{n}_{k:03d}.png" for n in ("bus", "zidane") for k in range(3)]
    m = cv2.imread(str(tmp_path / "png" / "bus_000.png"), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (1080 // 3, 810 // 3) and set(np.unique(m)) <= {0, 255} and m.max() == 255


def test_detector_boxes(dataset, sam_ckpt, tmp_path):
    from ultralytics import YOLO

    images, _ = dataset
    det = YOLO("yolo11n.yaml")  # random weights: boxes at conf 0, with their classes
    s = auto_annotate(images, det_model=det, sam_model=sam_ckpt, device="cpu", conf=0.0, max_det=4,
                      output_dir=tmp_path / "det", format="coco", verbose=False)
    assert s.images_done == 3 and s.objects == 12
    doc = json.loads((tmp_path / "det" / "annotations.json").read_text())
    assert len(doc["annotations"]) == 12
    assert {c["name"] for c in doc["categories"]} <= set(det.names.values())
    none = auto_annotate(images, det_model=det, sam_model=sam_ckpt, device="cpu", conf=1.0,
                         output_dir=tmp_path / "none", verbose=False)  # no detection at all
    assert (none.images_done, none.objects) == (3, 0) and (tmp_path / "none" / "bus.txt").read_text() == ""


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "exactly one source of boxes"),
        (dict(labels="nope"), "is not a folder of YOLO box labels"),
        (dict(labels=".", format="voc"), "format='voc' must be one of yolo, coco, png"),
        (dict(labels=".", empty="drop"), "empty='drop' must be one of box, skip"),
    ],
)
def test_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        auto_annotate(dataset[0], **kwargs)


def test_malformed_label_file(tmp_path):
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match="a.txt line 1: expected a detection row"):
        read_box_labels(tmp_path / "a.txt", (100, 100))
    boxes, cls = read_box_labels(tmp_path / "missing.txt", (100, 100))
    assert boxes.shape == (0, 4) and cls.shape == (0,)


@pytest.mark.slow
def test_ray_engine_equals_local(dataset, sam_ckpt, tmp_path):
    import ray

    images, labels = dataset
    for fmt in ("yolo", "coco"):
        local = auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", format=fmt,
                              output_dir=tmp_path / f"local-{fmt}", verbose=False)
        dist = auto_annotate(images, labels=labels, sam_model=sam_ckpt, device="cpu", format=fmt,
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
