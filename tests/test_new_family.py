"""A family registered from one module (tests/plugin_family.py) works everywhere without another samkit file
changing: detection, loading, info, predict, segment everything, video tracking, training, the benchmark and the
app."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from samkit import SAM
from samkit.nn import build_network
from tests.helpers import moving_square_frames


@pytest.fixture(scope="module")
def plugin():
    import tests.plugin_family as plugin

    importlib.reload(plugin)  # registered again if an earlier module removed it
    yield plugin
    plugin.remove()


@pytest.fixture(scope="module")
def ckpt(plugin, tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "any-name.pt"
    torch.manual_seed(0)
    sd = build_network(plugin.ARCH).state_dict()
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 20.0  # objects stay present: real video masks
    torch.save({"model": sd}, path)
    return path


def test_the_new_family_is_detected_loaded_and_described(plugin, ckpt):
    model = SAM(ckpt, device="cpu", verbose=False)
    info = model.info()
    assert (info["family"], info["architecture"], info["version"]) == ("SAM 2.1-X", plugin.ARCH, "2.1")
    assert model.capabilities == frozenset({"prompts", "everything", "video", "train"})
    assert "SAM 2.1-X" in repr(model)
    # the SAM 2.1 weights without the marker are still SAM 2.1
    sd = {k: v for k, v in torch.load(ckpt, weights_only=True)["model"].items() if k != plugin.MARKER}
    from samkit.nn import detect_architecture

    assert detect_architecture(sd)[0].name == "sam2_test"


def test_the_new_family_predicts_segments_everything_and_tracks(plugin, ckpt):
    model = SAM(ckpt, device="cpu", verbose=False)
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    (r,) = model(img, bboxes=[100, 200, 500, 800])
    assert len(r) == 1 and r.masks.data.shape[1:] == img.shape[:2]
    (every,) = model(img, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert len(every) > 0
    frames = moving_square_frames(6)
    results = model.track(frames, bboxes=[[40, 40, 90, 90]])
    assert [res.frame for res in results] == list(range(6)) and all(len(res) == 1 for res in results)
    with pytest.raises(ValueError, match="need a SAM 3 model \\(sam3.pt\\); SAM 2.1-X takes"):
        model(img, texts="person")


def test_the_new_family_in_the_benchmark(plugin, tmp_path):
    from samkit.benchmark import benchmark

    report = benchmark(plugin.ARCH, random=True, source=str(ASSETS / "bus.jpg"), repeats=1, video_frames=2,
                       project=tmp_path, verbose=False)
    (row,) = report.rows
    assert row.family == "SAM 2.1-X" and row.ms_image > 0 and row.video_fps is not None


def test_the_new_family_in_the_app(plugin, ckpt, tmp_path):
    pytest.importorskip("starlette")
    from samkit.app import open_project
    from tests.app_helpers import check_yolo, image_folder, served

    model = SAM(ckpt, device="cpu", verbose=False)
    folder = image_folder(tmp_path / "images")
    with served(open_project(model, folder)) as (_, c):
        assert c.get("/api/project").json()["model"] == "SAM 2.1-X"
        r = c.post("/api/images/0/object", json={"box": [5, 5, 70, 60]})
        assert r.status_code == 200 and r.json()["objects"][0]["id"] == 1
    assert check_yolo(folder / "labels" / "img0.txt", folder / "img0.jpg") == 1
    assert np.isfinite(model(folder / "img0.jpg", bboxes=[5, 5, 70, 60])[0].iou.numpy()).all()


def test_the_new_family_trains_and_its_checkpoint_loads_as_itself(plugin, ckpt, tmp_path):
    from samkit.data.synthetic import make_shapes

    data = make_shapes(tmp_path / "shapes", train=3, val=2)
    model = SAM(ckpt, device="cpu", verbose=False)
    res = model.train(data=data, epochs=1, corrections=0, max_clicks=1, project=tmp_path, verbose=False)
    again = SAM(res.last, device="cpu", verbose=False)
    assert again.info()["family"] == "SAM 2.1-X"
    assert len(res.rows) == 2 and res.rows[1]["train/loss"] > 0
