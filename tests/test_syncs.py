"""The host never waits for the device in the hot paths: a prompt on an encoded image, a video prompt, a tracked
frame. Counted with samkit.utils.syncs on the CPU (the calls a GPU run would wait on); tests/test_cuda.py checks the
same paths with CUDA's own sync detector where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit import SAM
from samkit.nn import build_network
from samkit.nn.speedups import embed_points
from samkit.utils.syncs import count_host_syncs
from tests.helpers import moving_square_frames


def test_the_counter_sees_host_reads_and_only_those():
    x = torch.randn(6)
    with count_host_syncs() as s:
        x[0].item()
        bool(x[0] > 0)
        x.tolist()
        x.cpu()
        x[x > 0]
        y = x.clone()
        y[x > 0] = 0.0
        x.nonzero()
        int(x[1])
        x + 1, x.to("cpu"), x.to(torch.float64), len(x), x[1:3], x[torch.tensor([0, 2])]  # none of these
    sites = {name: n for (_, name), n in s.sites.items()}
    assert sites == {"item": 1, "__bool__": 1, "tolist": 1, "cpu": 1, "__getitem__": 1, "__setitem__": 1,
                     "nonzero": 1, "__int__": 1}
    assert all(site.startswith("tests/test_syncs.py:") or "test_syncs.py" in site for site, _ in s.sites)


@pytest.fixture(scope="module")
def model(present_ckpt):
    return SAM(str(present_ckpt), device="cpu", verbose=False)


def _no_reads(counter) -> None:
    assert counter.total == 0, counter.by_site()


def test_prompting_an_image_reads_nothing_back(model):
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with count_host_syncs() as s:  # encoding included
        model.predict(img, bboxes=[[10, 10, 60, 60], [50, 40, 150, 110]], verbose=False)
    _no_reads(s)
    with count_host_syncs() as s:
        r = model.predict(img, points=[[[30, 30], [40, 40]]], labels=[[1, 0]], verbose=False)[0]
    _no_reads(s)
    assert r.iou.shape == (1,) and r.low_res_logits.device == r.masks.data.device


@pytest.mark.parametrize("objects", [1, 3])
def test_video_prompts_and_tracked_frames_read_nothing_back(model, objects):
    with model.video(moving_square_frames(8)) as v:
        for k in range(objects):
            with count_host_syncs() as s:
                v.add(frame=0, obj_id=k, box=[10 + 8 * k, 30, 40 + 8 * k, 60])
            _no_reads(s)
        frames = v.propagate()
        next(frames)
        for _ in range(3):
            with count_host_syncs() as s:
                r = next(frames)
            _no_reads(s)
        with count_host_syncs() as s:
            v.add(frame=r.frame, obj_id=0, points=[[20, 40]], labels=[0])  # a correction
        _no_reads(s)
        assert r.presence.shape == (objects,)


def test_results_move_their_tensor_extras(model):
    with model.video(moving_square_frames(3)) as v:
        r = v.add(frame=0, obj_id=1, box=[10, 30, 40, 60])
    moved = r.cpu()
    for k in ("iou", "presence", "low_res_logits"):
        assert getattr(moved, k) is not None and getattr(moved, k).device.type == "cpu"
    as_numpy = r.numpy()
    assert isinstance(as_numpy.iou, np.ndarray) and isinstance(as_numpy.low_res_logits, np.ndarray)


@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("half", [False, True])
def test_point_embedding_equals_ultralytics(pad, half):
    enc = build_network("sam2_test", replacements=False).sam_prompt_encoder
    torch.manual_seed(0)
    points = torch.rand(3, 6, 2) * 256
    labels = torch.tensor([[1, 0, -1, 2, 3, 1], [2, 3, 1, 1, 0, -1], [0, 0, 0, 1, -1, -1]], dtype=torch.int32)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=half):
        want = type(enc)._embed_points(enc, points, labels, pad)
        got = embed_points(enc, points, labels, pad)
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_memory_attention_shapes_settle_after_the_memory_window(model):
    """Static shapes for compiled / graph-captured tracking: the memory attention's inputs grow while the memory
    and object-pointer window fills, then keep one shape for the rest of the video."""
    net = model.net
    window = max(net.num_maskmem, net.max_obj_ptrs_in_encoder)
    shapes = []
    hook = net.memory_attention.register_forward_hook(
        lambda mod, args, kwargs, out: shapes.append(tuple(kwargs["memory"].shape)), with_kwargs=True)
    try:
        with model.video(moving_square_frames(window + 8)) as v:
            v.add(frame=0, obj_id=1, box=[10, 30, 40, 60])
            for _ in v.propagate():
                pass
    finally:
        hook.remove()
    assert len(shapes) == window + 7  # every frame after the prompted one
    assert len(set(shapes[window - 1 :])) == 1, shapes
    assert len(set(shapes)) <= window
