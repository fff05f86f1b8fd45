"""Results writers (YOLO-seg txt, COCO JSON, PNG masks, plots): files are re-read and checked."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from samkit.ops import masks_to_boxes
from samkit.prompts import normalize_prompts
from samkit.results import Results
from samkit.writers.atomic import atomic_write_bytes
from samkit.writers.coco import mask_to_polygons
from tests.helpers import disc

H, W = 120, 160


@pytest.fixture
def result():
    """Three objects: two discs (classes 2 and 0) and an empty mask (class 5) in between."""
    masks = np.stack([disc(H, W, 40, 40, 20), np.zeros((H, W), bool), disc(H, W, 110, 80, 25)])
    prompts = normalize_prompts(
        (H, W),
        prompts=[{"points": [[40, 40], [70, 40]], "labels": [1, 0]}, {"box": [60, 10, 100, 50]},
                 {"box": [80, 50, 140, 110]}],
    )
    return Results(
        np.full((H, W, 3), 90, np.uint8),
        path="/data/frame_7.jpg",
        masks=torch.from_numpy(masks),
        iou=torch.tensor([0.9, 0.5, 0.8]),
        obj_ids=torch.tensor([4, 9, 12]),
        cls=torch.tensor([2, 5, 0]),
        conf=torch.tensor([0.7, 0.6, 0.95]),
        names={0: "person", 2: "car", 5: "dog"},
        prompts=prompts,
        tracked=True,  # ids from a tracker (YOLO tracks, video objects)
    )


def test_boxes_enclose_masks(result):
    xyxy = result.boxes.xyxy.numpy()
    np.testing.assert_array_equal(xyxy[0], [20, 20, 61, 61])
    np.testing.assert_array_equal(xyxy[1], [0, 0, 0, 0])
    assert result.boxes.id.tolist() == [4, 9, 12] and result.boxes.cls.tolist() == [2, 5, 0]
    m = torch.zeros((1, 5, 7), dtype=torch.bool)
    m[0, 4, 6] = True
    assert masks_to_boxes(m).tolist() == [[6, 4, 7, 5]]


def test_untracked_results_have_no_ids(result):
    """Image results of objects nobody tracked: no ``boxes.id`` (supervision would report tracker ids) and no
    ``track_id`` in COCO; the ids still name the mask files."""
    r = Results(result.orig_img, path=result.path, masks=result.masks.data, iou=result.iou, obj_ids=result.obj_ids,
                cls=result.boxes.cls, names=result.names)
    assert r.boxes.id is None and not r.boxes.is_track and r.boxes.cls.tolist() == [2, 5, 0]
    np.testing.assert_array_equal(r.boxes.xyxy.numpy(), result.boxes.xyxy.numpy())
    assert all("track_id" not in a for a in r.to_coco()["annotations"])


def test_save_txt_overwrites_and_keeps_class_ids(result, tmp_path, caplog):
    path = tmp_path / "labels" / "frame_7.txt"
    result.save_txt(path, save_conf=True)
    result.save_txt(path, save_conf=True)  # a re-run must not append
    rows = [r.split() for r in path.read_text().splitlines()]
    assert [r[0] for r in rows] == ["2", "0"], "the empty mask has no row, the others keep their classes"
    assert "empty mask" in caplog.text
    assert float(rows[0][-1]) == pytest.approx(0.7) and float(rows[1][-1]) == pytest.approx(0.95)
    for row, (cx, cy) in zip(rows, [(40, 40), (110, 80)]):
        xy = np.array(row[1:-1], dtype=float).reshape(-1, 2) * [W, H]
        assert len(xy) >= 3 and (xy >= 0).all() and (xy <= [W, H]).all()
        assert np.abs(xy.mean(0) - [cx, cy]).max() < 3, "polygon not around its mask"
    assert list(tmp_path.glob("labels/.*")) == [], "temporary file left behind"


@pytest.mark.parametrize("rle", [False, True])
def test_to_coco_loads_in_pycocotools(result, tmp_path, rle):
    from pycocotools.coco import COCO

    path = tmp_path / "ann.json"
    result.save_coco(path, rle=rle)
    doc = json.loads(path.read_text())
    assert doc["images"] == [{"id": 1, "file_name": "frame_7.jpg", "height": H, "width": W}]
    assert {c["id"]: c["name"] for c in doc["categories"]} == {0: "person", 2: "car", 5: "dog"}
    coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["category_id"] for a in anns] == [2, 0] and [a["track_id"] for a in anns] == [4, 12]
    assert [a["iscrowd"] for a in anns] == [0, 0]
    truth = result.masks.data.numpy()[[0, 2]] > 0.5
    for a, m in zip(anns, truth):
        got = coco.annToMask(a).astype(bool)
        iou = (got & m).sum() / (got | m).sum()
        assert iou == 1.0 if rle else iou > 0.9
        assert a["area"] == m.sum()
        x, y, w, h = a["bbox"]
        assert m[y : y + h, x : x + w].sum() == m.sum() and m[y, x : x + w].any() and m[y : y + h, x].any()
    assert isinstance(anns[0]["segmentation"], dict if rle else list)


def test_polygons_of_tiny_regions_are_kept():
    dot = np.zeros((10, 10), bool)
    dot[3, 4] = True
    assert mask_to_polygons(dot) == [[4.0, 3.0, 5.0, 3.0, 5.0, 4.0, 4.0, 4.0]]
    assert mask_to_polygons(np.zeros((10, 10), bool)) == []
    two = np.zeros((20, 20), bool)
    two[2:6, 2:6] = two[10:15, 12:18] = True
    assert len(mask_to_polygons(two)) == 2


def test_save_masks_round_trip(result, tmp_path):
    paths = result.save_masks(tmp_path / "masks")
    assert [p.split("/")[-1] for p in paths] == ["frame_7_004.png", "frame_7_009.png", "frame_7_012.png"]
    for p, m in zip(paths, result.masks.data.numpy()):
        png = cv2.imread(p, cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == (H, W)
        np.testing.assert_array_equal(png, (m > 0.5).astype(np.uint8) * 255)


def test_plot_draws_prompts_and_saves(result, tmp_path):
    plain = result.plot(prompts=False, boxes=False, masks=False)
    drawn = result.plot(boxes=False, masks=False)
    assert plain.shape == drawn.shape == (H, W, 3)
    b, g, r = (int(v) for v in drawn[40, 40])
    assert g > 150 and r < 80 and b < 80, "positive click not drawn in green"
    b, g, r = (int(v) for v in drawn[40, 70])
    assert r > 150 and g < 80, "negative click not drawn in red"
    assert drawn[10, 80].min() > 200, "prompt box edge not drawn in white"
    np.testing.assert_array_equal(plain[100, 5], [90, 90, 90])
    assert (drawn[60:, :60] == plain[60:, :60]).all(), "drawing spilled outside the prompts"
    out = tmp_path / "vis" / "out.png"
    assert result.save(out, boxes=False, masks=False) == str(out)
    np.testing.assert_array_equal(cv2.imread(str(out)), drawn)
    with pytest.raises(ValueError, match="'.xyz'"):
        result.save(tmp_path / "bad.xyz")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_empty_results_write_empty_outputs(tmp_path):
    r = Results(np.zeros((H, W, 3), np.uint8), path="e.jpg", masks=torch.zeros((0, H, W), dtype=torch.bool),
                iou=torch.zeros(0))
    r.save_txt(tmp_path / "e.txt")
    assert (tmp_path / "e.txt").read_text() == ""
    assert r.to_coco()["annotations"] == [] and r.save_masks(tmp_path / "m") == []
    assert r.plot().shape == (H, W, 3)


def test_device_moves_keep_sam_extras(result):
    c = result.cpu()
    assert isinstance(c, Results) and c is not result
    assert torch.equal(c.iou, result.iou) and torch.equal(c.obj_ids, result.obj_ids) and c.prompts is result.prompts
    assert c.masks.data.dtype == torch.bool and torch.equal(c.masks.data, result.masks.data)
    n = result.numpy()
    assert isinstance(n.masks.data, np.ndarray) and isinstance(n.iou, np.ndarray)
    assert np.array_equal(n.iou, result.iou.numpy()) and n.obj_ids is result.obj_ids


def test_results_is_public():
    import samkit

    assert samkit.Results is Results and "Results" in samkit.__all__


def test_plot_draws_nothing_for_an_empty_mask(result):
    """The empty mask (object 9) has no box to draw: its label must not appear at the image's corner."""
    full = result.plot(prompts=False)
    without = Results(result.orig_img, path=result.path, masks=result.masks.data[[0, 2]], iou=result.iou[[0, 2]],
                      obj_ids=result.obj_ids[[0, 2]], cls=result.boxes.cls[[0, 2]], conf=result.boxes.conf[[0, 2]],
                      names=result.names, tracked=True).plot(prompts=False)
    assert np.array_equal(full, without)
    assert len(result) == 3, "plotting must not change the Results"
