"""YOLO pipelines: detector boxes in, SAM masks out, with classes, names, confidences and track ids kept."""

from __future__ import annotations

import types

import pytest
import torch
from ultralytics import ASSETS, YOLO
from ultralytics.engine.results import Results as YoloResults

from samkit import SAM
from samkit.integrations.yolo import add_sam_masks, segment
from tests.helpers import moving_square_frames


@pytest.fixture(scope="module")
def sam(tiny_ckpt):
    return SAM(tiny_ckpt, device="cpu", verbose=False)


def _tracked(img):
    boxes = torch.tensor([[50, 400, 250, 900, 12, 0.9, 0], [600, 300, 800, 900, 4, 0.7, 5]], dtype=torch.float32)
    return YoloResults(img, path="bus.jpg", names={0: "person", 5: "bus"}, boxes=boxes)


def test_segment_keeps_detector_metadata(sam):
    import cv2

    img = cv2.imread(str(ASSETS / "bus.jpg"))
    r = segment(_tracked(img), sam)
    assert r.masks.data.shape == (2, 1080, 810)
    assert r.boxes.id.tolist() == [12, 4] and r.boxes.cls.tolist() == [0, 5]
    torch.testing.assert_close(r.boxes.conf, torch.tensor([0.9, 0.7]))
    assert r.names == {0: "person", 5: "bus"} and r.path == "bus.jpg"
    empty = segment([YoloResults(img, path="x.jpg", names={0: "a"}, boxes=torch.zeros((0, 6)))], sam)
    assert len(empty) == 1 and len(empty[0]) == 0


def test_callback_adds_masks_to_yolo_results(sam):
    import cv2

    from samkit.utils.devices import default_threads

    img = cv2.imread(str(ASSETS / "bus.jpg"))
    yolo = YOLO("yolo11n.yaml")  # random weights: boxes at conf 0
    add_sam_masks(yolo, sam)
    r = yolo.predict(img, conf=0.0, max_det=4, verbose=False)[0]
    assert r.masks is not None and r.masks.data.shape == (len(r.boxes), 1080, 810) and len(r.boxes) == 4
    with default_threads():  # the callback's thread count: another count may flip a pixel on a mask's edge
        direct = sam(img, bboxes=r.boxes.xyxy)[0]
    assert torch.equal(r.masks.data.bool(), direct.masks.data)
    # Inside a tracking loop the callback leaves boxes and track ids as the tracker set them.
    callback = yolo.callbacks["on_predict_postprocess_end"][-1]
    res = _tracked(img)
    before = res.boxes.data.clone()
    callback(types.SimpleNamespace(results=[res]))
    assert torch.equal(res.boxes.data, before) and res.masks.data.shape == (2, 1080, 810)
    assert res.boxes.id.tolist() == [12, 4]


def test_callback_keeps_masks_aligned_through_the_tracker(sam):
    yolo = YOLO("yolo11n.yaml")
    add_sam_masks(yolo, sam)
    for r in yolo.track(moving_square_frames(3), conf=0.0, max_det=3, verbose=False, tracker="bytetrack.yaml"):
        assert r.masks is not None and len(r.masks) == len(r.boxes)
