"""SAM 3 on video as users call it: model(video, texts=...), track(), model.video() sessions, the CLI, the writers,
every source kind and bad input. The test network's weights are shaped so that phrases find objects
(:func:`benchmarks.sam3_video_reference.shape_weights_`); fidelity to Meta's model is in test_sam3_video.py."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from benchmarks.sam3_video import disc_frames
from samkit import SAM
from tests.helpers import offline_text_encoder, read_video, write_video

pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")

from benchmarks.sam3_reference import fill_random_  # noqa: E402
from benchmarks.sam3_video_reference import shape_weights_  # noqa: E402
from tests.test_sam3_video import TEXT  # noqa: E402

N = 20


@pytest.fixture(scope="module")
def sam3(tmp_path_factory):
    """A SAM 3 test network with shaped random weights, loaded from a file as users load sam3.pt."""
    model = SAM.untrained("sam3_test", seed=0)
    fill_random_(model.net, seed=0)  # the fidelity tests' draw (the detector's tensors have the reference's names)
    shape_weights_(model.net, offset=3.0)
    path = tmp_path_factory.mktemp("sam3v") / "sam3_shaped.pt"
    torch.save({"model": model.net.state_dict()}, path)
    return SAM(str(path), device="cpu", verbose=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = disc_frames(N)
    path = write_video(tmp_path_factory.mktemp("clip") / "discs.mp4", frames, fps=10)
    return path, read_video(path)  # the frames as decoded (mp4 is lossy)


def _same(a, b) -> bool:
    return [r.frame for r in a] == [r.frame for r in b] and all(
        x.obj_ids.tolist() == y.obj_ids.tolist() and torch.equal(x.masks.data, y.masks.data) for x, y in zip(a, b))


def test_track_phrases_writes_every_frame_labels_coco_and_masks(sam3, clip, tmp_path):
    from pycocotools import mask as mask_utils

    path, frames = clip
    results = sam3.track(path, texts=TEXT, save=True, save_txt=True, save_coco=True, save_masks=True,
                         project=tmp_path, name="run")
    out = sam3.save_dir
    assert out == tmp_path / "run"
    assert [r.frame for r in results] == list(range(N))
    shown = [r for r in results if len(r)]
    assert len(shown) >= 5, "the shaped weights must find objects on several frames"
    for r in shown:
        assert r.names == {0: TEXT} and (r.boxes.cls == 0).all() and r.boxes.id is not None
        assert r.boxes.id.tolist() == r.obj_ids.tolist()
        assert ((r.boxes.conf > 0) & (r.boxes.conf <= 1)).all()
    assert len(read_video(out / "discs.mp4")) == N
    by_frame = {r.frame: r for r in results}
    for t in (shown[0].frame, shown[-1].frame):
        r = by_frame[t]
        rows = (out / "labels" / f"discs_{t:06d}.txt").read_text().splitlines()
        assert len(rows) == int(r.masks.data.flatten(1).any(1).sum())
        assert all(row.split()[0] == "0" for row in rows)  # the phrase's class
        doc = json.loads((out / "labels" / f"discs_{t:06d}.json").read_text())
        assert doc["categories"][0]["name"] == TEXT
        for ann in doc["annotations"]:
            k = r.obj_ids.tolist().index(ann["track_id"])
            assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), r.masks.data[k].numpy())
        for k, i in enumerate(r.obj_ids.tolist()):
            png = cv2.imread(str(out / "masks" / f"discs_{t:06d}_{i:03d}.png"), cv2.IMREAD_GRAYSCALE)
            assert np.array_equal(png > 0, r.masks.data[k].numpy())
    # the same as a one-way session over the decoded frames
    with sam3.video(frames, interactive=False) as v:
        v.add(0, texts=TEXT)
        assert _same(results, list(v.propagate()))


def test_call_with_texts_streams_a_video(sam3, clip):
    path, _ = clip
    gen = sam3(path, texts=[TEXT], stream=True)
    assert not isinstance(gen, list)
    got = list(gen)
    assert _same(got, sam3.track(path, texts=TEXT))
    got2 = sam3.predict(path, texts=TEXT, conf=0.9, max_det=2)  # a stricter detection score, fewer objects
    assert all(len(r) <= 2 * 2 for r in got2)  # at most 2 per phrase at once (plus no more than the ones held)


def test_every_source_gives_the_same_results(sam3, clip, tmp_path):
    from samkit.data.video import StreamVideo

    path, frames = clip
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:05d}.png"), f)
    a = sam3.track(frames, texts=TEXT)
    b = sam3.track(folder, texts=TEXT)
    c = sam3.track(StreamVideo(str(path)), texts=TEXT)  # a file read as a live stream: forward only, no length
    assert _same(a, b) and _same(a, c)
    assert sum(len(r) for r in a) > 0


def test_middle_frame_prompt_goes_both_ways(sam3, clip):
    _, frames = clip
    results = sam3.track(frames, texts=TEXT, frame=8)
    assert [r.frame for r in results] == list(range(8, N)) + list(range(7, -1, -1))
    with sam3.video(frames) as v:  # an interactive session: the same
        v.add(8, texts=TEXT)
        ref = list(v.propagate(start=8)) + list(v.propagate(start=8, reverse=True))
    assert _same(results, ref)


def test_clicks_track_objects_with_sam3s_tracker(sam3, clip):
    _, frames = clip
    results = sam3.track(frames, points=[[60, 60]], labels=[1], frame=2)
    assert [r.frame for r in results] == list(range(2, N)) + [1, 0]
    assert all(r.obj_ids.tolist() in ([0], []) for r in results)
    assert sum(len(r) for r in results) >= N // 2
    boxed = sam3.track(frames, bboxes=[[30, 30, 90, 90], [150, 80, 220, 140]])
    assert {i for r in boxed for i in r.obj_ids.tolist()} == {0, 1}


def test_session_phrases_corrections_and_removal(sam3, clip):
    _, frames = clip
    with sam3.video(frames) as v:
        first = v.add(0, texts=[TEXT, "a green disc"])
        assert first.names == {0: TEXT, 1: "a green disc"}
        results = list(v.propagate())
        ids = sorted({i for r in results for i in r.obj_ids.tolist()})
        assert ids, "objects were found"
        obj = ids[0]
        t = next(r.frame for r in results if obj in r.obj_ids.tolist())
        r = next(r for r in results if r.frame == t)
        m = r.masks.data[r.obj_ids.tolist().index(obj)].numpy()
        ys, xs = np.nonzero(m)
        fixed = v.add(t, obj_id=obj, points=[[xs.mean(), ys.mean()]], labels=[0])  # a negative click
        k = fixed.obj_ids.tolist().index(obj) if obj in fixed.obj_ids.tolist() else None
        assert k is None or not np.array_equal(fixed.masks.data[k].numpy(), m)
        assert float(fixed.boxes.conf[k]) == 1.0 if k is not None else True  # a clicked object's score
        again = list(v.propagate())
        assert [x.frame for x in again] == list(range(N))
        new = v.add(5, obj_id=500, points=[[130, 40]], labels=[1])
        assert 500 in new.obj_ids.tolist()
        v.remove(obj)
        assert obj not in v.obj_ids
        after = list(v.propagate(start=0))
        assert all(obj not in x.obj_ids.tolist() for x in after)
        with pytest.raises(KeyError, match="no object with id 123456"):
            v.remove(123456)


@pytest.mark.parametrize("call, err, match", [
    (lambda m, f: m.track(f, texts=TEXT, points=[[1, 1]]), ValueError, "not both"),
    (lambda m, f: m.track(f, masks=np.ones((180, 260), bool)), ValueError, "not masks="),
    (lambda m, f: m.track(f, texts=TEXT, conf=1.5), ValueError, r"conf=1\.5"),
    (lambda m, f: m.track(f, texts=TEXT, max_det=0), ValueError, "max_det=0"),
    (lambda m, f: m.track(f, texts=TEXT, hotstart_dealy=3), TypeError, "hotstart_dealy"),
    (lambda m, f: m.track(f, texts=""), ValueError, "empty"),
    (lambda m, f: m.track(f), ValueError, "texts="),
    (lambda m, f: m.video(f).add(0), ValueError, "texts="),
    (lambda m, f: m.video(f).add(0, texts=TEXT, obj_id=1, points=[[1, 1]]), ValueError, "not both"),
    (lambda m, f: m.video(f).add(99, texts=TEXT), ValueError, "99"),
    (lambda m, f: m.video(f).propagate().__next__(), ValueError, "nothing to track"),
    (lambda m, f: m.video(f, interactive=False).add(0, obj_id=1, points=[[5, 5]]), ValueError, "interactive"),
    (lambda m, f: m.video(f).add(0, obj_id=-1, points=[[5, 5]]), ValueError, "obj_id=-1"),
    (lambda m, f: m.video(f, new_threshold=2), ValueError, "new_threshold=2"),
])
def test_bad_input_is_named(sam3, clip, call, err, match):
    _, frames = clip
    with pytest.raises(err, match=match):
        call(sam3, frames[:4])


def test_exemplars_and_sam2_are_refused_on_video(sam3, clip, tiny_ckpt):
    path, frames = clip
    with pytest.raises(ValueError, match="exemplars= are for images"):
        sam3.predict(path, exemplars=[[0, 0, 20, 20]])
    with pytest.raises(ValueError, match="SAM 3"):
        SAM(str(tiny_ckpt), verbose=False).track(frames[:3], texts="person")


def test_cli_track_with_phrases(sam3, clip, tmp_path):
    from samkit.cli import main

    path, _ = clip
    rc = main(["track", f"model={sam3.ckpt_path}", f"source={path}", f"texts={TEXT}", "save=True", "save_txt=True",
               f"project={tmp_path}", "name=cli", "verbose=False"])
    assert rc == 0
    labels = sorted((tmp_path / "cli" / "labels").glob("discs_*.txt"))
    assert labels, "no label file was written"
    assert all(len(row.split()) >= 7 and row.split()[0] == "0" for p in labels for row in p.read_text().splitlines())
    assert len(read_video(tmp_path / "cli" / "discs.mp4")) == N


class ScriptedDetector:
    """An open-vocabulary detector stand-in: the boxes it "finds" on each frame are scripted (by frame index, read
    from the square's position in the clip)."""

    def __init__(self, script: dict):
        self.script, self.names, self.calls = script, {}, []

    def set_classes(self, texts):
        self.names = dict(enumerate(texts))

    def predict(self, image, verbose=False, conf=0.25, **kw):
        from ultralytics.engine.results import Results as YoloResults

        t = len(self.calls)
        self.calls.append(t)
        rows = self.script.get(t, [])
        boxes = torch.tensor([[*b, 0.9, c] for b, c in rows], dtype=torch.float32).reshape(-1, 6)
        return [YoloResults(image, path="frame.jpg", names=self.names, boxes=boxes)]


def test_grounded_sam2_starts_objects_from_detections_on_keyframes(present_ckpt, monkeypatch):
    """SAM 2 with texts= and an open-vocabulary detector: the detector runs on every det_every-th frame; a box
    overlapping a tracked object is that object, a box overlapping none starts a new one (with the phrase's class)."""
    offline_text_encoder(monkeypatch)  # the scripted detector's phrases need no text model; samkit checks for one
    frames = disc_frames(12)
    a, b = [35, 35, 85, 85], [145, 75, 215, 145]
    tiny = SAM(str(present_ckpt), verbose=False)  # its objects stay present: real masks
    alone = tiny.track(frames, texts=["red disc", "green disc"], det_model=ScriptedDetector({0: [(a, 0)]}),
                       det_every=4)
    assert [r.obj_ids.tolist() for r in alone] == [[0]] * 12
    x0, y0, x1, y1 = alone[4].boxes.xyxy[0].tolist()  # where the tracker has object 0 on frame 4
    again = [x0 + 0.1 * (x1 - x0), y0, x1 + 0.1 * (x1 - x0), y1]  # the detector finds it there again (IoU > 0.5)
    # keyframes 0, 4, 8 (the detector's 1st, 2nd, 3rd call): A on frame 0; A again and B on frame 4
    det = ScriptedDetector({0: [(a, 0)], 1: [(again, 0), (b, 1)], 2: []})
    results = tiny.track(frames, texts=["red disc", "green disc"], det_model=det, det_every=4)
    assert len(det.calls) == 3 and det.names == {0: "red disc", 1: "green disc"}
    assert [r.frame for r in results] == list(range(12))
    for r in results:
        assert r.names == {0: "red disc", 1: "green disc"}
    assert results[0].obj_ids.tolist() == [0]
    assert results[3].obj_ids.tolist() == [0]
    assert results[4].obj_ids.tolist() == [0, 1] and results[11].obj_ids.tolist() == [0, 1]
    assert results[4].boxes.cls.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="det_model= needs texts="):
        tiny.track(frames, det_model=det)
    with pytest.raises(ValueError, match="det_every=0"):
        tiny.track(frames, texts="red disc", det_model=det, det_every=0)
    with pytest.raises(ValueError, match="open-vocabulary detector"):
        tiny.track(frames, texts="red disc", det_model=object.__new__(type("Fixed", (), {"predict": None})))


def test_grounded_sam2_with_a_real_yoloe_and_both_directions(tiny_ckpt, monkeypatch):
    from ultralytics import YOLO

    det = YOLO("yoloe-11s-seg.yaml")  # random weights; its text embeddings too (no download)
    offline_text_encoder(monkeypatch)
    frames = disc_frames(9)
    tiny = SAM(str(tiny_ckpt), verbose=False)
    results = tiny.track(frames, texts=["disc"], det_model=det, det_every=3, frame=4, conf=0.0001, max_det=3)
    assert [r.frame for r in results] == list(range(4, 9)) + [3, 2, 1, 0]
    assert results[0].obj_ids.tolist() == list(range(len(results[0])))  # frame 4: the detector's boxes, ids 0..
    assert 1 <= len(results[0]) <= 3


def test_frame_features_follow_the_runtime(sam3, clip):
    """A frame's backbone outputs belong to the runtime settings they were computed under: after half / compile /
    to() change them (the runtime's generation moves), the frame is encoded again."""
    _, frames = clip
    with sam3.video(frames[:3]) as v:
        v.add(0, texts=TEXT)
        n = v.frames_encoded
        v._frame_data(0)
        assert v.frames_encoded == n  # the kept frame
        sam3.runtime.generation += 1  # what half / compile / to() do
        try:
            v._frame_data(0)
            assert v.frames_encoded == n + 1
        finally:
            sam3.runtime.generation -= 1
