"""One prompt model for images and video: the same normaliser, so the same prompt is refused with the same error
by ``predict``, ``track`` and ``VideoSession.add``, and accepted ones give the same objects."""

from __future__ import annotations

import numpy as np
import pytest

from samkit import SAM
from tests.helpers import moving_square_frames, save_present


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return SAM(save_present(tmp_path_factory.mktemp("pm") / "tiny.pt", "sam2_test"), device="cpu", verbose=False)


@pytest.mark.parametrize("prompt, match", [
    (dict(points=[[np.nan, 2]]), "NaN or infinite"),
    (dict(points=[[1, 2], [3, 4]], labels=[1]), "1 labels for 2 points"),
    (dict(points=[[1, 2]], labels=[2]), "must be 1 \\(positive\\) or 0 \\(negative\\), got 2"),
    (dict(box=[10, 10, 5, 50]), "x2 < x1"),
    (dict(box=[500, 500, 600, 600]), "lies entirely outside the 128x96 image"),
    (dict(points="ab"), "must hold numbers"),
])
def test_images_tracking_and_sessions_refuse_alike(model, prompt, match):
    frames = moving_square_frames(3)
    calls = {
        "predict": lambda: model(frames[0], prompts=[prompt]),
        "track": lambda: model.track(frames, prompts=[prompt]),
        "add": lambda: model.video(frames).add(frame=0, obj_id=1, **prompt),
    }
    messages = {}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=match) as e:
            call()
        messages[name] = str(e.value)
    assert messages["predict"] == messages["track"], "one normaliser, one message"


def test_points_outside_a_frame_are_clipped_as_on_images(model, caplog):
    frames = moving_square_frames(3)
    with model.video(frames) as v, caplog.at_level("WARNING", logger="samkit"):
        v.add(frame=0, obj_id=1, points=[[500, 40]], labels=[1])
        assert v.objects[1].clicks[0]["points"].tolist() == [[128, 40]]
    assert any("clipped" in r.getMessage() for r in caplog.records)


def test_session_add_and_track_give_the_same_masks(model):
    frames = moving_square_frames(4)
    box = [0, 30, 24, 54]
    tracked = model.track(frames, bboxes=box, verbose=False)
    with model.video(frames) as v:
        v.add(frame=0, obj_id=0, box=box)
        added = list(v.propagate())
    assert [r.frame for r in tracked] == [r.frame for r in added] == [0, 1, 2, 3]
    for a, b in zip(tracked, added):
        assert np.array_equal(a.masks.data.numpy(), b.masks.data.numpy())


def test_results_import_nothing_from_the_engines():
    import ast
    from pathlib import Path

    import samkit.results

    tree = ast.parse(Path(samkit.results.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [m for m in imported if m.startswith("samkit.engine")], imported
