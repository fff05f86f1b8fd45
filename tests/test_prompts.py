"""Every prompt form through one normaliser; bad prompts are errors that name the problem."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from samkit.engine.prompts import normalize_prompts

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
    for source in (yolo, yolo.boxes):
        p = normalize_prompts(HW, bboxes=source)
        assert p.cls.tolist() == [2, 0] and p.track_id.tolist() == [7, 8]
        assert np.allclose(p.conf, [0.9, 0.4]) and p.boxes[1].tolist() == [20, 30, 80, 90]
    assert normalize_prompts(HW, bboxes=yolo).names == {0: "person", 2: "car"}


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
        ({"prompts": []}, "non-empty list"),
        ({"prompts": ["x"]}, r"prompts\[0\] must be a dict"),
        ({"prompts": [{"box": [1, 1, 5, 5]}], "bboxes": [1, 1, 5, 5]}, "either prompts"),
        ({"points": [[1, 2], [3]]}, "ragged or non-numeric"),
    ],
)
def test_bad_prompts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        normalize_prompts(HW, **kwargs)
