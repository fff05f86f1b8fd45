"""Every prompt form through one normaliser; bad prompts are errors that name the problem."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from samkit.prompts import normalize_prompts

HW = (100, 200)


def test_none_when_no_prompt():
    assert normalize_prompts(HW) is None


@pytest.mark.parametrize(
    "kwargs, n, clicks",
    [
        ({"bboxes": [1, 2, 30, 40]}, 1, 0),
        ({"bboxes": [[1, 2, 30, 40], [5, 5, 9, 9]]}, 2, 0),
        ({"bboxes": np.array([[1, 2, 30, 40]])}, 1, 0),
        ({"bboxes": torch.tensor([[1.0, 2, 30, 40]])}, 1, 0),
        ({"points": [10, 20]}, 1, 1),
        ({"points": [[10, 20], [30, 40]], "labels": [1, 0]}, 2, 1),  # flat list: one point per object
        ({"points": [[[10, 20], [30, 40]]], "labels": [[1, 0]]}, 1, 2),  # nested: two clicks on one object
        ({"points": [[[10, 20], [30, 40]]], "labels": [1, 0]}, 1, 2),
        ({"bboxes": [[1, 2, 30, 40], [5, 5, 9, 9]], "points": [[10, 20], [6, 6]]}, 2, 1),
        ({"prompts": [{"points": [[1, 1], [2, 2], [3, 3]], "labels": [1, 0, 1]}, {"box": [1, 1, 5, 5]}]}, 2, 3),
    ],
)
def test_forms(kwargs, n, clicks):
    p = normalize_prompts(HW, **kwargs)
    assert len(p) == n and p.points.shape[1] == clicks


def test_ultralytics_flat_points_are_separate_objects_with_their_labels():
    p = normalize_prompts(HW, points=[[150, 50], [30, 20]], labels=[1, 0])
    assert p.labels.tolist() == [[1], [0]] and p.points[1, 0].tolist() == [30, 20]


def test_ragged_prompts_are_padded_and_recoverable():
    p = normalize_prompts(HW, prompts=[{"points": [[1, 1], [2, 2]], "labels": [1, 0]},
                                       {"box": [10, 10, 50, 50], "points": [[20, 20]], "labels": [0]},
                                       {"mask": np.ones(HW, bool)}])
    assert p.num_points.tolist() == [2, 1, 0]
    assert p.has_box.tolist() == [False, True, False] and p.has_mask.tolist() == [False, False, True]
    pts, lab = p.object_points(1)
    assert pts.tolist() == [[20, 20]] and lab.tolist() == [0]


def test_yolo_boxes_keep_classes_names_confidences_and_ids():
    from ultralytics.engine.results import Results as YoloResults

    data = torch.tensor([[10, 10, 50, 60, 7, 0.9, 2], [20, 30, 80, 90, 8, 0.4, 0]])
    yolo = YoloResults(np.zeros((100, 200, 3), np.uint8), path="x.jpg", names={0: "person", 2: "car"}, boxes=data)
    for source in (yolo, yolo.boxes, [yolo], (yolo,)):  # YOLO(...)(image) returns a list: one Results per image
        p = normalize_prompts(HW, bboxes=source)
        assert p.cls.tolist() == [2, 0] and p.track_id.tolist() == [7, 8]
        assert np.allclose(p.conf, [0.9, 0.4]) and p.boxes[1].tolist() == [20, 30, 80, 90]
    assert normalize_prompts(HW, bboxes=yolo).names == {0: "person", 2: "car"}
    assert normalize_prompts(HW, bboxes=[yolo]).names == {0: "person", 2: "car"}


def test_mask_prompts_binary_and_logits():
    p = normalize_prompts(HW, masks=np.zeros(HW, np.uint8))
    assert not p.mask_is_logits and p.masks.shape == (1, *HW)
    p = normalize_prompts(HW, masks=np.random.default_rng(0).normal(size=(2, 256, 256)).astype(np.float32))
    assert p.mask_is_logits and len(p) == 2


def test_outside_coordinates_are_clipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="samkit"):
        p = normalize_prompts(HW, bboxes=[-10, 5, 250, 120], points=[[300, 50]])
    assert p.boxes[0].tolist() == [0, 5, 200, 100] and p.points[0, 0].tolist() == [200, 50]
    assert "clipped" in caplog.text


@pytest.mark.parametrize(
    "kwargs, box",
    [
        ({"bboxes": [10, 10, 10, 50]}, [10, 10, 10, 50]),  # zero width, inside: allowed
        ({"bboxes": [0, 10, 0, 50]}, [0, 10, 0, 50]),  # on the left border, not beyond it
        ({"bboxes": [200, 0, 200, 100]}, [200, 0, 200, 100]),
        ({"bboxes": [10, -5, 10, 50]}, [10, 0, 10, 50]),  # zero width, partly outside: clipped
        ({"bboxes": [-50, -50, 1, 1]}, [0, 0, 1, 1]),  # mostly outside, one pixel in
        ({"prompts": [{"box": [190, 90, 900, 900]}]}, [190, 90, 200, 100]),
    ],
)
def test_degenerate_and_partly_outside_boxes_are_kept(kwargs, box):
    p = normalize_prompts(HW, **kwargs)
    assert p.boxes[0].tolist() == box


def test_points_far_outside_are_still_clipped():
    p = normalize_prompts(HW, points=[[1000, -1000], [-5, 50]], labels=[1, 0])
    assert p.points[:, 0].tolist() == [[200, 0], [0, 50]]


def _yolo(*rows, names=None):
    from ultralytics.engine.results import Results as YoloResults

    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return YoloResults(np.zeros((480, 640, 3), np.uint8), path="x.jpg", names=names or {0: "person"}, boxes=boxes)


def _classification():
    from ultralytics.engine.results import Results as YoloResults

    return YoloResults(np.zeros((480, 640, 3), np.uint8), path="x.jpg", names={0: "a", 1: "b"},
                       probs=torch.tensor([0.3, 0.7]))


PERSON = [10.0, 20, 100, 200, 0.9, 0]


@pytest.mark.parametrize(
    "hw, kwargs, error, message",
    [
        # a box entirely outside the image: an error naming the box as given and the image size
        ((480, 640), {"bboxes": [700, 700, 800, 800]}, ValueError,
         r"bboxes\[0\] = \[700, 700, 800, 800\] lies entirely outside the 640x480 image"),
        ((480, 640), {"bboxes": [[10, 10, 50, 50], [-300, -20.5, -100, 40]]}, ValueError,
         r"bboxes\[1\] = \[-300, -20.5, -100, 40\] lies entirely outside the 640x480 image"),
        (HW, {"bboxes": [10, 150, 50, 180]}, ValueError, r"\[10, 150, 50, 180\] lies entirely outside the 200x100"),
        (HW, {"bboxes": [200, 10, 260, 50]}, ValueError, "entirely outside"),  # touches the right edge from outside
        (HW, {"bboxes": [-30, 10, 0, 50]}, ValueError, "entirely outside"),  # clipping would leave zero width
        (HW, {"bboxes": [-5, 10, -5, 50]}, ValueError, r"\[-5, 10, -5, 50\] lies entirely outside"),
        (HW, {"bboxes": [2**70, 0, 2**71, 5]}, ValueError, "entirely outside"),
        (HW, {"bboxes": [[1, 1, 5, 5]] * 2 + [[-9, -9, -1, -1]], "points": [[1, 1]] * 3}, ValueError,
         r"bboxes\[2\] = \[-9, -9, -1, -1\]"),
        ((480, 640), {"prompts": [{"points": [[1, 1]]}, {"box": [700, 700, 800, 800]}]}, ValueError,
         r"prompts\[1\]\['box'\] = \[700, 700, 800, 800\] lies entirely outside the 640x480 image"),
        ((100, 100), {"bboxes": _yolo(PERSON, [150, 10, 190, 90, 0.5, 0])}, ValueError,
         r"bboxes\[1\] = \[150, 10, 190, 90\] lies entirely outside the 100x100 image"),
        # YOLO Results for several images given for one
        ((480, 640), {"bboxes": [_yolo(PERSON), _yolo(PERSON)]}, ValueError,
         r"bboxes holds 2 YOLO Results \(one per image\) for one image: give the Results of this image"),
        ((480, 640), {"bboxes": (_yolo(PERSON),) * 3}, ValueError, "3 YOLO Results"),
        ((480, 640), {"bboxes": [_yolo(PERSON).boxes] * 2}, ValueError, "2 YOLO Boxes"),
        ((480, 640), {"prompts": [{"box": [_yolo(PERSON), _yolo(PERSON)]}]}, ValueError,
         r"prompts\[0\]\['box'\] holds 2 YOLO Results"),
        ((480, 640), {"bboxes": [_yolo(PERSON), [1, 2, 3, 4]]}, ValueError, "mixes YOLO Results or Boxes with other"),
        ((480, 640), {"bboxes": [_classification()]}, ValueError, "has no boxes"),
    ],
)
def test_boxes_outside_and_results_of_several_images(hw, kwargs, error, message):
    with pytest.raises(error, match=message):
        normalize_prompts(hw, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"points": [[1, 2], [3, 4]], "labels": [1]}, "1 labels do not match 2 points"),
        ({"points": [[[1, 2], [3, 4]]], "labels": [[1, 0, 1]]}, "3 labels do not match 2 points"),
        ({"bboxes": [50, 10, 20, 40]}, r"bboxes\[0\] = \[50.0, 10.0, 20.0, 40.0\] has x2 < x1"),
        ({"bboxes": [10, 50, 20, 40]}, "y2 < y1"),
        ({"bboxes": [1, 2, 3]}, r"bboxes must be \[x1, y1, x2, y2\].*shape \(1, 3\)"),
        ({"points": [[1, 2, 3]]}, "points must be"),
        ({"points": [[float("nan"), 2]]}, "NaN"),
        ({"bboxes": [0, 0, float("inf"), 5]}, "NaN or infinite"),
        ({"points": [[1, 2]], "labels": [2]}, "must be 1 .* or 0 .*got 2"),
        ({"labels": [1]}, "labels were given without points"),
        ({"bboxes": [[1, 1, 5, 5]] * 2, "points": [[1, 1]] * 3}, "counts differ: bboxes=2, points=3"),
        ({"masks": np.zeros((50, 50))}, r"match neither the image \(100, 200\)"),
        ({"masks": np.full(HW, 3.0)}, "0/1"),
        ({"prompts": [{"pints": [[1, 1]]}]}, "unknown key 'pints' \\(did you mean 'points'\\?\\)"),
        ({"prompts": [{"labels": [1]}]}, "no points, box or mask"),
        ({"prompts": [{"points": [[1, 1], [2, 2]], "labels": [1]}]}, r"prompts\[0\]: 1 labels for 2 points"),
        ({"prompts": [{"box": [[1, 1, 5, 5], [2, 2, 6, 6]]}]}, "must be one"),
        ({"prompts": ["x"]}, r"prompts\[0\] must be a dict"),
        ({"prompts": [{"box": [1, 1, 5, 5]}], "bboxes": [1, 1, 5, 5]}, "either prompts"),
        ({"points": [[1, 2], [3]]}, "ragged or non-numeric"),
        # found by tests/test_prompts_fuzz.py: each used to raise a numpy / Python error or an unclear message
        ({"bboxes": [10**400, 0, 1, 1]}, "bboxes .* holds a number too large"),
        ({"bboxes": [0, 0, 1e39, 5]}, r"bboxes .* holds values beyond \+-3.4e\+38"),
        ({"points": np.array([[1 + 2j, 3]])}, "points must hold real numbers, got complex"),
        ({"points": torch.zeros(1, 2, dtype=torch.complex64)}, "points must hold real numbers"),
        ({"points": [["1", "2"]]}, "points must hold numbers, got text"),
        ({"labels": [2**70], "points": [[1, 2]]}, r"must be 1 \(positive\) or 0 \(negative\), got 1.18\d*e\+21"),
        ({"labels": [10**400], "points": [[1, 2]]}, "labels .* too large"),
        ({"masks": np.full(HW, "a")}, "masks must hold numbers, got text"),
        ({"masks": [[1, None]]}, "masks .*ragged or non-numeric"),
        ({"masks": np.full((1, 256, 256), 1e300)}, "mask logits must be finite and within"),
        ({"masks": np.full((1, 256, 256), -3e4, np.float32)}, "mask logits must be finite and within \\+-10000"),
        ({"masks": np.zeros((1, 256, 256), np.uint8)}, "logits are floats, not bool or integers"),
        ({"points": np.zeros((2, 0, 2))}, "hold no clicks"),
        ({"prompts": [{"points": 5}]}, r"prompts\[0\]\['points'\] must be \[\[x, y\], ...\], got 5"),
        ({"prompts": [{"points": [1, 2, 3]}]}, r"prompts\[0\]\['points'\] must be"),
        ({"prompts": [{"points": [[1, 1]], "labels": ["x"]}]}, r"prompts\[0\]\['labels'\] must hold numbers"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": float("inf")}]}, r"prompts\[0\]\['cls'\] .*NaN or infinite"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": 1.5}]}, r"prompts\[0\]\['cls'\] .*whole numbers"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": "car"}]}, r"prompts\[0\]\['cls'\] must hold numbers"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": [1, 2]}]}, r"prompts\[0\]\['cls'\] must be one integer"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": -1}]}, r"prompts\[0\]\['cls'\] must be an integer >= 0, got -1"),
        ({"prompts": [{"box": [1, 1, 5, 5], "cls": True}]}, r"prompts\[0\]\['cls'\] must be an integer >= 0, got True"),
        ({"prompts": [{"box": [1, 1, 5, 5], "id": -3}]}, r"prompts\[0\]\['id'\] must be an integer >= 0, got -3"),
        ({"prompts": [{"box": [1, 1, 5, 5], "id": 2**70}]}, r"prompts\[0\]\['id'\] .*outside \[-9223372036854775808"),
        ({"prompts": [{"x" * 5000: 1}]}, r"unknown key 'xxxx.*\.\.\..*'; keys are"),
        ({"prompts": [{("a", 1): 1}]}, r"unknown key \('a', 1\); keys are"),
    ],
)
def test_bad_prompts(kwargs, message):
    with pytest.raises(ValueError, match=message) as e:
        normalize_prompts(HW, **kwargs)
    assert len(str(e.value)) < 300


def test_tensors_numpy_cannot_take_are_converted():
    grad = torch.tensor([10.0, 20.0], requires_grad=True)
    p = normalize_prompts(HW, points=[grad, grad * 2], bboxes=torch.tensor([[1, 2, 30, 40]] * 2, dtype=torch.bfloat16))
    assert p.points[:, 0].tolist() == [[10, 20], [20, 40]] and p.boxes[1].tolist() == [1, 2, 30, 40]


def test_no_objects_with_masks():
    p = normalize_prompts(HW, masks=np.zeros((0, *HW), bool))  # has_mask used to fail on an empty stack
    assert len(p) == 0 and p.has_mask.shape == (0,)
