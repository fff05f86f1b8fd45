"""The benchmark script's plumbing: ratio table and prompt generation (timings themselves are not tested)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import Table
from benchmarks.image import random_boxes


def test_table_ratios_are_other_over_samkit():
    t = Table(["samkit", "reference", "ultralytics"])
    t.add("m", "case a", samkit=10.0, reference=25.0, ultralytics=None)
    md = t.markdown().splitlines()
    assert md[0].startswith("| section | case | samkit (ms) | reference (ms) | ultralytics (ms)")
    assert md[2] == "| m | case a | 10.0 | 25.0 | - | **2.50x** | - |"


def test_random_boxes_are_valid_xyxy_inside_the_image():
    b = random_boxes(100, (1080, 810))
    assert b.shape == (100, 4)
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert (b >= 0).all() and (b[:, [0, 2]] < 810).all() and (b[:, [1, 3]] < 1080).all()
    assert np.array_equal(b, random_boxes(100, (1080, 810))), "boxes must be the same for every system and run"


def test_mask_iou_per_pair():
    import torch

    from benchmarks.precision import mask_iou

    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    b = torch.zeros(3, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared
    a[1, 0, 0] = True  # nothing shared
    assert mask_iou(a, b).tolist() == pytest.approx([4 / 12, 0.0, 1.0])  # two empty masks agree


def test_interleaved_medians_take_turns():
    from benchmarks.common import interleaved_medians

    order = []
    out = interleaved_medians({"a": lambda: order.append("a"), "b": lambda: order.append("b"), "c": None},
                              "cpu", repeats=3, warmup=1)
    assert order == ["a", "b"] * 4, "systems must alternate within each repeat"
    assert out["c"] is None and out["a"] >= 0 and out["b"] >= 0
