"""Video sessions: the reference video predictor's masks, prompts on any frame, every source, bounded memory."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS

from benchmarks.video_memory import rss_mb
from samkit import SAM
from samkit.data.sources import SourceError
from samkit.data.video import VideoSource
from tests.helpers import (
    build_reference_pair,
    mask_iou,
    moving_square_frames,
    patch_sam2_reference_for_cpu,
    save_random,
    write_video,
)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """Three JPEG frames (the only kind of folder the reference reads): bus.jpg sliding to the right."""
    d = tmp_path_factory.mktemp("frames")
    base = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (320, 240))
    for i in range(3):
        cv2.imwrite(str(d / f"{i:05d}.jpg"), np.roll(base, 6 * i, axis=1))
    return d


def _reference_pair(tmp_path, monkeypatch, correct_as_cond: bool):
    """samkit and Meta's video predictor on the CPU, holding the same SAM 2.1 tiny weights (object presence always
    "present")."""
    patch_sam2_reference_for_cpu(monkeypatch, video=True)
    extra = (f"++model.add_all_frames_to_correct_as_cond={str(correct_as_cond).lower()}",)
    model, ref, _ = build_reference_pair(tmp_path, "sam2_t", present=True, video=True, hydra_overrides_extra=extra)
    return model, ref


def _compare(name, ours: dict, theirs: dict, n: int):
    assert sorted(ours) == sorted(theirs), name
    for t, r in ours.items():
        assert r.boxes.id.tolist() == list(range(1, n + 1))
        got = r.masks.data.numpy()
        for k in range(n):
            assert 0.01 < theirs[t][k].mean() < 0.99, f"degenerate reference mask ({name}, frame {t}, object {k})"
            # Equal masks in practice (IoU 1.0 for every object and frame here); the margin leaves room for a few
            # pixels whose logits sit within rounding of 0 (samkit's memory attention sums in another order).
            assert mask_iou(got[k], theirs[t][k]) >= 0.999, (name, t, k)


BOX, CLICKS, NEG = [40, 60, 200, 200], [[250, 100], [280, 150]], [[100, 100]]


def _object_mask():
    m = np.zeros((240, 320), bool)
    m[120:230, 180:300] = True
    m[150:170, 200:260] = False
    return m


@pytest.mark.slow
def test_masks_match_reference_video_predictor(tmp_path, frames_dir, monkeypatch):
    """Box, clicks with a negative and a mask on frame 0; forward; a refinement click on frame 1 (a conditioning
    frame: it stays when the next forward pass goes over it, and frame 2 follows it); reverse from the last frame."""
    model, ref = _reference_pair(tmp_path, monkeypatch, correct_as_cond=True)
    state = ref.init_state(str(frames_dir))
    ref.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=np.array(BOX, np.float32))
    ref.add_new_points_or_box(state, frame_idx=0, obj_id=2, points=np.array(CLICKS, np.float32),
                              labels=np.array([1, 0], np.int32))
    ref.add_new_mask(state, frame_idx=0, obj_id=3, mask=_object_mask())
    ref_fwd = {t: (m > 0).numpy()[:, 0] for t, _, m in ref.propagate_in_video(state)}
    _, _, m3 = ref.add_new_points_or_box(state, frame_idx=1, obj_id=1, points=np.array(NEG, np.float32),
                                         labels=np.array([0], np.int32), clear_old_points=False)
    ref_refined = (m3 > 0).numpy()[:, 0]
    ref_again = {t: (m > 0).numpy()[:, 0] for t, _, m in ref.propagate_in_video(state)}
    ref_rev = {t: (m > 0).numpy()[:, 0] for t, _, m in ref.propagate_in_video(state, start_frame_idx=2, reverse=True)}

    with model.video(frames_dir) as v:
        v.add(frame=0, obj_id=1, box=BOX)
        v.add(frame=0, obj_id=2, points=CLICKS, labels=[1, 0])
        v.add(frame=0, obj_id=3, mask=_object_mask())
        fwd = {r.frame: r for r in v.propagate()}
        refined = v.add(frame=1, obj_id=1, points=NEG, labels=[0])
        again = {r.frame: r for r in v.propagate()}
        rev = {r.frame: r for r in v.propagate(start=2, reverse=True)}
    assert sorted(fwd) == list(range(3))
    _compare("forward", fwd, ref_fwd, 3)
    _compare("refined", {1: refined}, {1: ref_refined}, 3)
    assert (ref_refined[0] != ref_fwd[1][0]).mean() > 0.01, "the refinement changed nothing to compare"
    _compare("forward after the refinement", again, ref_again, 3)
    assert mask_iou(again[1].masks.data.numpy()[0], ref_refined[0]) == 1.0, "the refinement did not stay"
    _compare("reverse", rev, ref_rev, 3)


@pytest.mark.slow
def test_reference_correction_semantics(tmp_path, frames_dir, monkeypatch):
    """correct_as_cond=False: the reference's default, where the next pass over a corrected frame recomputes it."""
    model, ref = _reference_pair(tmp_path, monkeypatch, correct_as_cond=False)
    state = ref.init_state(str(frames_dir))
    ref.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=np.array(BOX, np.float32))
    list(ref.propagate_in_video(state, max_frame_num_to_track=1))
    _, _, m2 = ref.add_new_points_or_box(state, frame_idx=1, obj_id=1, points=np.array(NEG, np.float32),
                                         labels=np.array([0], np.int32), clear_old_points=False)
    ref_again = {t: (m > 0).numpy()[:, 0] for t, _, m in ref.propagate_in_video(state)}

    with model.video(frames_dir, correct_as_cond=False) as v:
        v.add(frame=0, obj_id=1, box=BOX)
        list(v.propagate(max_frames=1))
        refined = v.add(frame=1, obj_id=1, points=NEG, labels=[0])
        again = {r.frame: r for r in v.propagate()}
    _compare("refined", {1: refined}, {1: (m2 > 0).numpy()[:, 0]}, 1)
    _compare("forward after the refinement", again, ref_again, 1)
    assert mask_iou(again[1].masks.data.numpy()[0], refined.masks.data.numpy()[0]) < 0.99, "the correction stayed"


@pytest.fixture(scope="module")
def tiny(present_ckpt):
    return SAM(present_ckpt, device="cpu", verbose=False)


@pytest.fixture(scope="module")
def clip_frames():
    return moving_square_frames(12)


def _track(model, source, **kw):
    with model.video(source) as v:
        v.add(frame=0, obj_id=5, box=[20, 20, 60, 60])
        return [r for r in v.propagate(**kw)]


def test_every_source_gives_the_same_tracks(tiny, clip_frames, tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    for i, f in enumerate(clip_frames):
        cv2.imwrite(str(folder / f"f{i}.png"), f)
    from_arrays = _track(tiny, clip_frames)
    from_folder = _track(tiny, folder)
    assert len(from_arrays) == 12 and [r.frame for r in from_arrays] == list(range(12))
    for a, b in zip(from_arrays, from_folder):
        assert torch.equal(a.masks.data, b.masks.data)
    avi = write_video(tmp_path / "clip.avi", clip_frames, codec="MJPG")  # lossy: compare shapes and ids only
    from_file = _track(tiny, avi)
    assert [r.frame for r in from_file] == list(range(12))
    assert from_file[3].masks.data.shape == (1, 96, 128) and from_file[3].boxes.id.tolist() == [5]


def test_each_frame_is_encoded_once(tiny, clip_frames):
    with tiny.video(clip_frames) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        v.add(frame=0, obj_id=2, points=[[80, 40]])
        assert v.frames_encoded == 1
        list(v.propagate())
        assert v.frames_encoded == 12, "the prompted frame was encoded again, or a frame twice"


def test_new_object_mid_video_remove_and_reset(tiny, clip_frames):
    with tiny.video(clip_frames) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        first = list(v.propagate(max_frames=4))
        assert [r.frame for r in first] == [0, 1, 2, 3, 4]
        r = v.add(frame=6, obj_id=9, points=[[100, 80]], labels=[1])
        assert r.boxes.id.tolist() == [1, 9]
        later = list(v.propagate(start=6))
        assert [r.frame for r in later] == list(range(6, 12))
        assert all(r.boxes.id.tolist() == [1, 9] for r in later)
        back = list(v.propagate(start=6, reverse=True))
        assert [r.frame for r in back] == [6, 5, 4, 3, 2, 1, 0]
        v.remove(1)
        assert [r.boxes.id.tolist() for r in v.propagate(start=6, max_frames=1)] == [[9], [9]]
        with pytest.raises(KeyError, match="no object with id 1; known ids: \\[9\\]"):
            v.remove(1)
        v.reset()
        with pytest.raises(ValueError, match="no objects to track"):
            next(v.propagate())


def test_memory_window_is_bounded(tiny):
    frames = moving_square_frames(60)
    with tiny.video(frames) as v:
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        kept = []
        for _ in v.propagate():
            kept.append(len(v.objects[1].outputs["non_cond_frame_outputs"]))
        # Frames near the prompted frame 0 stay (a reverse pass would start from them), then a sliding window.
        assert max(kept) == kept[-1] == 2 * v.window + 1
        assert sorted(v.objects[1].outputs["non_cond_frame_outputs"])[: v.window] == list(range(1, v.window + 1))
        assert list(v.objects[1].outputs["cond_frame_outputs"]) == [0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda v: v.add(frame=12, obj_id=1, box=[1, 1, 5, 5]), IndexError, "frame 12 is out of range"),
        (lambda v: v.add(frame=0, obj_id="a", box=[1, 1, 5, 5]), TypeError, "obj_id 'a' must be an integer"),
        (lambda v: v.add(frame=0, obj_id=1), ValueError, "needs points="),
        (lambda v: v.add(frame=0, obj_id=1, points=[[1, 2], [3, 4]], labels=[1]), ValueError, "1 labels for 2"),
        (lambda v: v.add(frame=0, obj_id=1, box=[10, 10, 5, 50]), ValueError, "x2 < x1"),
        (lambda v: v.add(frame=0, obj_id=1, points=[[np.nan, 2]]), ValueError, "finite"),
        (lambda v: v.add(frame=0, obj_id=1, box=[1, 1, 5, 5]) and next(v.propagate(start=-1)), IndexError,
         "frame -1 is out of range"),
    ],
)
def test_bad_input(tiny, clip_frames, call, error, match):
    with tiny.video(clip_frames) as v, pytest.raises(error, match=match):
        call(v)


def test_bad_sources_and_models(tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        tiny.video(tmp_path / "empty")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot be opened as a video"):
        tiny.video(tmp_path / "bad.mp4")
    sam1 = SAM(save_random(tmp_path / "s1.pt", "sam_test") and tmp_path / "s1.pt", device="cpu", verbose=False)
    with pytest.raises(ValueError, match="needs a SAM 2"):
        sam1.video(moving_square_frames(2))


class _Synthetic(VideoSource):
    """A long video rendered on demand, so that the source itself holds no frames."""

    def __init__(self, n):
        super().__init__("<synthetic>")
        self.n = n
        self.height, self.width = 64, 64

    def __len__(self):
        return self.n

    def read(self, index):
        index = self.check_index(index)
        f = np.full((64, 64, 3), 30, np.uint8)
        x = 5 + (index % 40)
        f[20:40, x : x + 16] = 230
        return f


@pytest.mark.slow
def test_resident_memory_is_flat_over_a_long_video(tiny):
    # 750 frames after a warm-up of 150: a session keeping even ~30 KB a frame (half of one frame's memory
    # features at this size) would grow past the limit; the reference keeps every frame, ~800 KB each here.
    first, last = 150, 900
    with tiny.video(_Synthetic(last)) as v:
        v.add(frame=0, obj_id=1, box=[5, 20, 21, 40])
        rss = {}
        for r in v.propagate():
            if r.frame in (first, last - 1):
                rss[r.frame] = rss_mb()
    grown = rss[last - 1] - rss[first]
    assert grown < 20, f"resident memory grew {grown:.1f} MB between frame {first} and frame {last}"


def test_one_line_tracking(tiny, clip_frames, tmp_path):
    avi = write_video(tmp_path / "clip.avi", clip_frames, codec="MJPG")
    results = tiny(str(avi), bboxes=[[20, 20, 60, 60], [70, 10, 120, 50]])
    assert [r.frame for r in results] == list(range(12)) and results[0].boxes.id.tolist() == [0, 1]
    gen = tiny.track(clip_frames, points=[[40, 40]], labels=[1], frame=5, stream=True)
    assert not isinstance(gen, list)
    order = [r.frame for r in gen]
    assert order == list(range(5, 12)) + [4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="tracking needs prompts"):
        tiny.track(clip_frames)
    with pytest.raises(ValueError, match="segment-everything and multimask are for images"):
        tiny(str(avi), points_per_side=4)


def test_objects_tracked_together_equal_one_by_one(tiny, clip_frames, monkeypatch):
    import samkit.engine.video as engine

    monkeypatch.setattr(engine, "CPU_OBJECTS_PER_BATCH", 8)  # batch on the CPU too, as on accelerators
    calls = []
    real = engine.VideoSession._track_group
    monkeypatch.setattr(engine.VideoSession, "_track_group",
                        lambda self, group, t, rev: calls.append(len(group)) or real(self, group, t, rev))
    boxes = {1: [20, 20, 60, 60], 2: [70, 10, 120, 50], 3: [10, 50, 60, 90]}
    with tiny.video(clip_frames) as v:
        for i, b in boxes.items():
            v.add(frame=0, obj_id=i, box=b)
        together = [r.low_res_logits for r in v.propagate()]
    assert calls and set(calls) == {3}, "the objects were not tracked as one batch"
    monkeypatch.setattr(engine, "CPU_OBJECTS_PER_BATCH", 1)
    for k, (i, b) in enumerate(boxes.items()):
        with tiny.video(clip_frames) as v:
            v.add(frame=0, obj_id=i, box=b)
            alone = [r.low_res_logits[0] for r in v.propagate()]
        for t in range(len(alone)):
            torch.testing.assert_close(together[t][k], alone[t], atol=1e-4, rtol=1e-4)


def test_live_source_prompted_on_its_first_frame(tiny, clip_frames, tmp_path):
    from samkit.data.video import StreamVideo

    avi = write_video(tmp_path / "live.avi", clip_frames, codec="MJPG")
    with tiny.video(StreamVideo(str(avi))) as v:  # a file read as a live stream: forward only, no length
        assert v.num_frames is None
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        live = list(v.propagate(max_frames=3))
        got = [r.frame for r in live]
        assert got == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="only be read forward"):
            next(v.propagate(start=3, reverse=True))
    with tiny.video(avi) as v:  # the same file read as a file: the prompt means the same pixels
        v.add(frame=0, obj_id=1, box=[20, 20, 60, 60])
        for a, b in zip(live, v.propagate(max_frames=3)):
            assert torch.equal(a.masks.data, b.masks.data), a.frame


def test_track_on_a_live_source_reads_the_frame_size_before_the_prompts(tiny, clip_frames, tmp_path):
    """SAM.track checks the prompts against the frame size, which a live source knows only from its first frame."""
    from samkit.data.video import StreamVideo

    avi = write_video(tmp_path / "live.avi", clip_frames, codec="MJPG")
    live = tiny.track(StreamVideo(str(avi)), bboxes=[20, 20, 60, 60], max_frames=2, verbose=False)
    from_file = tiny.track(str(avi), bboxes=[20, 20, 60, 60], max_frames=2, verbose=False)
    assert [r.frame for r in live] == [0, 1, 2]
    for a, b in zip(live, from_file):
        assert torch.equal(a.masks.data, b.masks.data) and a.masks.data.any(), a.frame


def test_half_precision_tracking_follows_fp32(tiny, clip_frames):
    from samkit.utils.devices import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16: half=True runs fp32 here (test_precision checks that fallback)")
    box = [[20, 20, 60, 60]]
    full = [r.low_res_logits[0] for r in tiny.track(clip_frames, bboxes=box, stream=True)]
    tiny.half = True
    try:
        half = [r.low_res_logits[0] for r in tiny.track(clip_frames, bboxes=box, stream=True)]
    finally:
        tiny.half = False
    assert len(half) == len(full) == len(clip_frames)
    for t, (a, b) in enumerate(zip(full, half)):
        a, b = a.flatten(), b.float().flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.98, f"frame {t}"
        sure = a.abs() > a.abs().quantile(0.5)
        assert ((a > 0) == (b > 0))[sure].float().mean() > 0.98, f"frame {t}"


def test_network_never_runs_with_autograd(tiny, clip_frames):
    """Every network call of a session (prompts, memory encoding, tracking) runs without autograd: a graph built
    on the way would keep the encoder's activations alive with the frame's features."""
    seen = []
    handles = [getattr(tiny.net, name).register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled()))
               for name in ("image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder")]
    try:
        with tiny.video(clip_frames) as v:
            v.add(frame=3, obj_id=1, box=[20, 20, 60, 60])
            v.add(frame=5, obj_id=1, points=[[40, 40]], labels=[1])
            list(v.propagate(max_frames=4))
        tiny(clip_frames[0], bboxes=[[20, 20, 60, 60]])
    finally:
        for h in handles:
            h.remove()
    assert len(seen) > 10 and not any(seen), f"{sum(seen)} of {len(seen)} network calls ran with autograd on"
