"""Video prompts beyond clicks and boxes (masks, classes), the prompt-frame cap, hole filling on any device, and
what a tracking run writes (overlay video in frame order, labels, masks, per-frame COCO RLE)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ultralytics.engine.results import Results as YoloResults

from samkit import SAM
from samkit.data.video import StreamVideo
from samkit.ops import fill_holes, small_components, small_regions
from samkit.writers.video import VideoOverlayWriter
from tests.helpers import moving_square_frames, moving_square_mask, read_video, save_present, write_video


@pytest.fixture(scope="module")
def tiny(present_ckpt):
    return SAM(present_ckpt, device="cpu", verbose=False)


@pytest.fixture(scope="module")
def clip():
    return moving_square_frames(12)


# ---------------------------------------------------------------------------------------------- prompts
def test_mask_prompt_is_the_prompted_frames_mask(tiny, clip):
    with tiny.video(clip) as v:
        r = v.add(frame=3, obj_id=4, mask=moving_square_mask(3))
        # A mask prompt is used as the output on its frame (resized to the network input and back).
        got = r.masks.data[0].numpy()
        assert (got == moving_square_mask(3)).mean() > 0.98
        later = list(v.propagate())
    assert [x.frame for x in later] == list(range(3, 12)) and later[0].boxes.id.tolist() == [4]
    one_line = tiny.track(clip, masks=moving_square_mask(3)[None], frame=3)
    assert torch.equal(one_line[0].masks.data, r.masks.data)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=np.ones((10, 10), bool)), r"mask of shape \(10, 10\) must be \(H, W\) = \(96, 128\)"),
        (dict(mask=np.ones((96, 128)), points=[[5, 5]]), "give mask= alone"),
        (dict(mask=np.full((96, 128), np.nan)), "NaN or infinite"),
        (dict(box=[1, 1, 9, 9], cls=-1), "cls=-1 must be a class id"),
    ],
)
def test_bad_mask_and_class_prompts(tiny, clip, kwargs, match):
    with tiny.video(clip) as v, pytest.raises(ValueError, match=match):
        v.add(frame=0, obj_id=1, **kwargs)


def test_bad_session_settings(tiny, clip):
    with pytest.raises(ValueError, match="max_prompt_frames=0 must be a positive integer"):
        tiny.video(clip, max_prompt_frames=0)
    with pytest.raises(ValueError, match="fill_hole_area=-1 must be an integer >= 0"):
        tiny.video(clip, fill_hole_area=-1)
    with pytest.raises(ValueError, match="a mask and a box or clicks"):
        tiny.track(clip, prompts=[{"box": [1, 1, 20, 20], "mask": moving_square_mask(0)}])


def test_yolo_boxes_keep_classes_names_and_track_ids(tiny, clip):
    boxes = torch.tensor([[20, 20, 60, 60, 7, 0.9, 3], [70, 10, 120, 50, 9, 0.8, 0]], dtype=torch.float32)
    det = YoloResults(clip[0], path="clip", names={0: "person", 3: "car"}, boxes=boxes)
    results = tiny.track(clip, bboxes=det, max_frames=3)
    for r in results:
        assert r.boxes.id.tolist() == [7, 9]
        assert r.boxes.cls.tolist() == [3, 0]
        assert r.names == {0: "person", 3: "car"}


def test_prompts_are_drawn_on_their_frame_only(tiny, clip):
    with tiny.video(clip) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        r = v.add(frame=0, obj_id=2, points=[[90, 40], [100, 80]], labels=[1, 0])
        assert r.prompts is not None
        assert r.prompts.points[1].tolist() == [[90, 40], [100, 80]] and r.prompts.labels[1].tolist() == [1, 0]
        assert r.prompts.boxes[0].tolist() == [20, 20, 60, 60] and np.isnan(r.prompts.boxes[1]).all()
        again = v.add(frame=0, obj_id=2, points=[[50, 50]], labels=[1])  # added to the frame's clicks
        assert again.prompts.labels[1].tolist() == [1, 0, 1]
        frames = list(v.propagate(max_frames=2))
    assert frames[0].prompts is not None and frames[1].prompts is None
    plain, drawn = frames[0].plot(prompts=False), frames[0].plot()
    # positive clicks are green dots, negative red: the pixels at the clicks changed
    assert (plain[40, 90] != drawn[40, 90]).any() and (plain[80, 100] != drawn[80, 100]).any()


def test_prompt_frames_are_capped(tiny, clip):
    with tiny.video(clip, max_prompt_frames=2) as v:
        for f in (0, 5, 10):
            v.add(frame=f, obj_id=1, box=[2 * f, 30, 2 * f + 24, 54])
        for r in v.propagate():
            kept = sorted(v.objects[1].outputs["cond_frame_outputs"])
            assert [f for f in kept if f > r.frame] == [f for f in (5, 10) if f > r.frame], "a frame ahead was lost"
            assert len([f for f in kept if f <= r.frame]) <= 2
        assert kept == [5, 10]  # the farthest behind went first
        assert sorted(v.objects[1].clicks) == [5, 10]
    with tiny.video(clip) as v:  # no cap: every prompted frame stays, as in the reference
        for f in (0, 5, 10):
            v.add(frame=f, obj_id=1, box=[2 * f, 30, 2 * f + 24, 54])
        list(v.propagate())
        assert sorted(v.objects[1].outputs["cond_frame_outputs"]) == [0, 5, 10]


def test_correction_stays_by_default(tiny, clip):
    with tiny.video(clip) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        list(v.propagate())
        fixed = v.add(frame=6, obj_id=1, points=[[70, 40]], labels=[0])
        again = {r.frame: r for r in v.propagate()}
    assert 6 in v.objects[1].outputs["cond_frame_outputs"]
    assert torch.equal(again[6].masks.data, fixed.masks.data)


def test_live_sources_keep_only_the_window_behind(tiny, tmp_path):
    frames = moving_square_frames(40)
    avi = write_video(tmp_path / "live.avi", frames, codec="MJPG")
    with tiny.video(StreamVideo(str(avi))) as v:
        v.add(frame=0, obj_id=1, box=[0, 30, 24, 54])
        for r in v.propagate():
            pass
        kept = sorted(v.objects[1].outputs["non_cond_frame_outputs"])
    assert r.frame == 39
    assert kept == list(range(39 - v.window, 40)), "a live source cannot go back: nothing near frame 0 is needed"


# ---------------------------------------------------------------------------------------------- hole filling
@pytest.mark.parametrize("density", [0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("max_area", [1, 3, 8, 20])
def test_tensor_region_labelling_equals_opencv(density, max_area):
    g = torch.Generator().manual_seed(int(density * 100) + max_area)
    binary = torch.rand((5, 1, 40, 48), generator=g) < density
    binary[0] = True  # one region covering everything
    binary[1] = False  # no region
    got = small_regions(binary, max_area)
    for i in range(5):
        want = small_components(binary[i, 0].numpy(), max_area)
        assert np.array_equal(got[i, 0].numpy(), want), i


def test_fill_holes_on_tensors_equals_the_cpu_path(monkeypatch):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((3, 1, 64, 64), generator=g) + 1.5
    cpu = fill_holes(logits, 8)
    assert (cpu != logits).any(), "no hole was filled: nothing compared"
    # the accelerator path, run on the CPU tensors
    filled = torch.where(small_regions(logits <= 0, 8), torch.tensor(0.1), logits)
    assert torch.equal(filled, cpu)


# ---------------------------------------------------------------------------------------------- outputs
def test_track_saves_video_labels_masks_and_rle(tiny, clip, tmp_path):
    from pycocotools import mask as mask_utils

    results = tiny.track(clip, bboxes=[[20, 20, 60, 60], [70, 10, 120, 50]], frame=4, save=True, save_txt=True,
                         save_coco=True, save_masks=True, project=tmp_path, name="run")
    out = tiny.save_dir
    assert out == tmp_path / "run"
    by_frame = {r.frame: r for r in results}
    video = read_video(out / "arrays.mp4")
    assert len(video) == 12
    # Frames are in order although tracking went 4..11 and then 3..0: each written frame is closest to its own
    # overlay (the square moves 2 px a frame).
    plots = [by_frame[t].plot() for t in range(12)]
    for t, f in enumerate(video):
        errs = [np.abs(f.astype(int) - p.astype(int)).mean() for p in plots]
        assert int(np.argmin(errs)) == t
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files were left behind"
    for t in (0, 4, 11):
        r = by_frame[t]
        rows = (out / "labels" / f"arrays_{t:06d}.txt").read_text().splitlines()
        assert len(rows) == int(r.masks.data.flatten(1).any(1).sum())
        doc = json.loads((out / "labels" / f"arrays_{t:06d}.json").read_text())
        assert doc["images"][0]["frame_index"] == t
        for ann in doc["annotations"]:
            k = r.obj_ids.tolist().index(ann["track_id"])
            assert isinstance(ann["segmentation"]["counts"], str)  # RLE by default for video
            assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), r.masks.data[k].numpy())
        for k, i in enumerate(r.obj_ids.tolist()):
            png = cv2.imread(str(out / "masks" / f"arrays_{t:06d}_{i:03d}.png"), cv2.IMREAD_GRAYSCALE)
            assert np.array_equal(png > 0, r.masks.data[k].numpy())
    again = tiny.track(clip, bboxes=[[20, 20, 60, 60]], max_frames=1, save=True, project=tmp_path, name="run")
    assert tiny.save_dir == tmp_path / "run-2" and len(again) == 2
    assert len(read_video(tmp_path / "run-2" / "arrays.mp4")) == 2


def test_overlay_writer_orders_frames_and_keeps_them_on_error(tmp_path, caplog):
    frames = moving_square_frames(6)
    w = VideoOverlayWriter(tmp_path / "o.mp4", fps=5)
    with pytest.raises(RuntimeError):
        with w:
            for t in (3, 4, 5, 0, 1):
                w.write(t, frames[t])
            with caplog.at_level(logging.WARNING, logger="samkit"):
                w.write(4, frames[0])
            assert "frame 4 was given twice" in caplog.text
            raise RuntimeError("the source broke before frame 2")
    got = read_video(tmp_path / "o.mp4")
    assert len(got) == 5  # 0, 1, then the frames that waited (3, 4, 5) after the missing frame 2
    for f, t in zip(got, (0, 1, 3, 4, 5)):
        assert np.abs(f.astype(int) - frames[t].astype(int)).mean() < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]
    with pytest.raises(ValueError, match="cannot write a video as '.gif'"):
        VideoOverlayWriter(tmp_path / "o.gif")


def test_colours_follow_object_ids(tiny, clip):
    with tiny.video(clip) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        v.add(frame=0, obj_id=2, box=[70, 10, 120, 50])
        both = v.add(frame=0, obj_id=2, points=[[90, 30]])
        v.remove(1)
        alone = v._results(0)
    k = both.obj_ids.tolist().index(2)
    m = both.masks.data[k].numpy() & ~both.masks.data[1 - k].numpy()
    assert m.any()
    a, b = both.plot(boxes=False, prompts=False), alone.plot(boxes=False, prompts=False)
    assert np.abs(a[m].astype(int) - b[m].astype(int)).max() <= 1  # object 2 keeps its colour


def test_predict_saves_image_outputs(tiny, tmp_path):
    from pycocotools.coco import COCO
    from ultralytics import ASSETS

    src = [str(ASSETS / "bus.jpg"), str(ASSETS / "zidane.jpg")]
    results = tiny(src, bboxes=[[50, 50, 300, 400], [400, 100, 600, 500]], save=True, save_txt=True,
                   save_coco=True, save_masks=True, project=tmp_path, name="p")
    out = tiny.save_dir
    assert out == tmp_path / "p"
    assert cv2.imread(str(out / "bus.jpg")).shape == results[0].orig_img.shape
    coco = COCO(str(out / "coco.json"))
    assert len(coco.getImgIds()) == 2
    non_empty = sum(int(r.masks.data.flatten(1).any(1).sum()) for r in results)
    assert non_empty > 0, "no mask to write: nothing compared"
    assert len(coco.getAnnIds()) == non_empty
    assert len({a["id"] for a in coco.dataset["annotations"]}) == non_empty  # ids unique across the images
    assert all(isinstance(a["segmentation"], list) for a in coco.dataset["annotations"])  # polygons for images
    assert (out / "labels" / "zidane.txt").exists() and (out / "masks" / "bus_001.png").exists()
    tiny(src[0], bboxes=[1, 1, 50, 50], save=True, project=tmp_path, name="p", exist_ok=True)
    assert tiny.save_dir == tmp_path / "p"
    gen = tiny(src, bboxes=[1, 1, 50, 50], save_txt=True, stream=True, project=tmp_path, name="s")
    assert not (tmp_path / "s2").exists()
    assert len(list(gen)) == 2 and sorted(p.name for p in (tmp_path / "s" / "labels").iterdir()) == [
        "bus.txt", "zidane.txt"]


@pytest.mark.parametrize("k", [0, 1, 6, 11])
def test_every_frame_is_written_whatever_frame_is_prompted(tiny, clip, tmp_path, k):
    from pycocotools.coco import COCO

    video = write_video(tmp_path / "clip.avi", clip, codec="MJPG")
    results = tiny.track(video, bboxes=[[2 * k, 30, 2 * k + 24, 54]], frame=k, save=True, save_txt=True,
                         save_coco=True, project=tmp_path, name="run")
    assert [r.frame for r in results] == [*range(k, 12), *range(k - 1, -1, -1)]
    out = tiny.save_dir
    assert len(read_video(out / "clip.mp4")) == 12
    assert sorted(p.name for p in (out / "labels").glob("*.txt")) == [f"clip_{t:06d}.txt" for t in range(12)]
    for t in range(12):
        coco = COCO(str(out / "labels" / f"clip_{t:06d}.json"))
        assert list(coco.imgs) == [t] and coco.imgs[t]["file_name"] == "clip.avi" and coco.imgs[t]["frame_index"] == t
        rows = (out / "labels" / f"clip_{t:06d}.txt").read_text().splitlines()
        result = results[[r.frame for r in results].index(t)]
        assert len(rows) == len(coco.getAnnIds(imgIds=[t])) == int(result.masks.data.flatten(1).any(1).sum())


def test_max_frames_counts_frames_after_the_prompt_in_each_direction(tiny, clip):
    got = [r.frame for r in tiny.track(clip, bboxes=[[12, 30, 36, 54]], frame=6, max_frames=2)]
    assert got == [6, 7, 8, 5, 4]
    assert [r.frame for r in tiny.track(clip, bboxes=[[12, 30, 36, 54]], frame=6, max_frames=0)] == [6]


def test_reverse_from_frame_0_yields_frame_0(tiny, clip):
    with tiny.video(clip) as v:
        v.add(frame=1, obj_id=1, box=[2, 30, 26, 54])
        assert [r.frame for r in v.propagate(start=0, reverse=True)] == [0]
        assert [r.frame for r in v.propagate(start=3, reverse=True)] == [3, 2, 1, 0]


@pytest.mark.parametrize("max_frames", [-1, 1.5, "x", True])
def test_max_frames_must_be_a_count(tiny, clip, max_frames):
    with pytest.raises(ValueError, match=f"max_frames={max_frames!r} must be an integer >= 0"):
        tiny.track(clip, bboxes=[[12, 30, 36, 54]], max_frames=max_frames)


def test_one_id_for_two_objects_is_an_error(tiny, clip):
    with pytest.raises(ValueError, match="object id 1 is given to 2 objects"):
        tiny.track(clip, prompts=[{"box": [12, 30, 36, 54], "id": 1}, {"box": [40, 30, 64, 54], "id": 1}])


def test_a_failed_add_leaves_the_session_as_it_was(tiny, clip, monkeypatch):
    with tiny.video(clip) as v:
        v.add(frame=0, obj_id=1, box=[0, 30, 24, 54])

        def device_lost(*a, **k):
            raise RuntimeError("device lost")

        monkeypatch.setattr(v.network, "track_step", device_lost)
        for obj_id, kw in ((2, dict(box=[40, 30, 64, 54])), (1, dict(frame=3, points=[[10, 40]], cls=4))):
            with pytest.raises(RuntimeError, match="device lost"):
                v.add(**{"frame": 0, **kw}, obj_id=obj_id)
        monkeypatch.undo()
        assert sorted(v.objects) == [1] and sorted(v.objects[1].clicks) == [0] and v.objects[1].cls == 0
        frames = [r.frame for r in v.propagate()]
    assert frames == list(range(12))


_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
                    st.sampled_from([0, 5.5, 20, 1e30]))
_VALUE = st.recursive(st.one_of(st.none(), _NUMBER, st.booleans(), st.text(max_size=3)),
                      lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.one_of(st.integers(-2, 13), _VALUE), obj_id=st.one_of(st.integers(-(2**70), 2**70), _VALUE),
       points=_VALUE, labels=_VALUE, box=_VALUE, cls=st.one_of(st.integers(-3, 2**70), _VALUE),
       mask=st.one_of(st.none(), st.sampled_from(["bool", "wrong-size", "nan", "ints"])))
def test_add_takes_any_value_or_says_why(session_model, frame, obj_id, points, labels, box, cls, mask):
    """Whatever ``add`` is given, it either adds the prompt or raises samkit's own error naming the problem, and a
    refused add leaves the session as it was."""
    masks = {"bool": np.ones((96, 128), bool), "wrong-size": np.ones((10, 10), bool),
             "nan": np.full((96, 128), np.nan), "ints": np.arange(96 * 128).reshape(96, 128)}
    with session_model.video(moving_square_frames(12)) as v:
        v.add(frame=0, obj_id=1, box=[0, 30, 24, 54])
        before = {k: (sorted(o.clicks), o.cls) for k, o in v.objects.items()}
        try:
            r = v.add(frame=frame, obj_id=obj_id, points=points, labels=labels, box=box, cls=cls,
                      mask=None if mask is None else masks[mask])
        except (ValueError, TypeError, IndexError) as e:
            assert str(e) and len(str(e)) < 500
            assert not any(n in str(e) for n in ("could not convert", "cannot reshape", "invalid literal")), e
            assert {k: (sorted(o.clicks), o.cls) for k, o in v.objects.items()} == before
        else:
            assert r.frame == frame and len(r) == len(v.objects)


@pytest.fixture(scope="module")
def session_model(tmp_path_factory):
    return SAM(save_present(tmp_path_factory.mktemp("fz") / "tiny.pt", "sam2_test", seed=2), device="cpu",
               verbose=False)


def test_a_video_with_a_250_character_name_is_written(tmp_path):
    name = "v" * 246 + ".mp4"  # 250 characters: the hidden temporary names must not pass 255
    with VideoOverlayWriter(tmp_path / name, fps=5) as w:
        for i, f in enumerate(moving_square_frames(3)):
            w.write(2 - i, f)  # out of order: frames wait in the spool folder too
    assert len(read_video(tmp_path / name)) == 3 and [p.name for p in tmp_path.iterdir()] == [name]
