"""Calls as Ultralytics users make them: per-call settings, unreadable images in a folder, YOLO results as prompts,
warnings that reach the user, output folders that cannot be written."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from ultralytics import ASSETS
from ultralytics.engine.results import Results as YoloResults

from samkit import SAM
from samkit.data.sources import SourceError
from samkit.writers.atomic import OutputError
from tests.helpers import png_bytes


@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return SAM(tiny_ckpt, device="cpu", verbose=False)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    img = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (135, 180))
    cv2.imwrite(str(d / "a.jpg"), img)
    (d / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    cv2.imwrite(str(d / "c.jpg"), img[:, ::-1])
    return d


def test_ultralytics_per_call_settings(model, tmp_path, caplog):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    model.verbose = True
    try:
        with caplog.at_level(logging.INFO, logger="samkit"):
            r = model(img, bboxes=[100, 200, 500, 800], verbose=False, device="cpu", save=True, project=tmp_path,
                      name="quiet", show=False)
        assert len(r) == 1 and (tmp_path / "quiet" / "image0.jpg").is_file()
        assert "results saved" not in caplog.text, "verbose=False on the call must silence information"
        with caplog.at_level(logging.INFO, logger="samkit"):
            model(img, bboxes=[100, 200, 500, 800], save=True, project=tmp_path, name="loud")
        assert f"results saved to {tmp_path / 'loud'}" in caplog.text
    finally:
        model.verbose = False
    gen = model(img, bboxes=[100, 200, 500, 800], stream=True, exist_ok=True)
    assert not isinstance(gen, list) and len(list(gen)) == 1
    assert model.model is model.net


def test_show_where_nothing_can_be_shown_warns_and_goes_on(model, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr("ultralytics.utils.checks.check_imshow", lambda warn=False: False)
    out = model(cv2.imread(str(ASSETS / "bus.jpg")), bboxes=[100, 200, 500, 800], show=True)
    assert len(out) == 1 and len(out[0]) == 1


def test_show_calls_opencv_per_result(model, monkeypatch):
    shown = []
    monkeypatch.setattr("ultralytics.utils.checks.check_imshow", lambda warn=False: True)
    monkeypatch.setattr(cv2, "imshow", lambda name, im: shown.append((name, im.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: -1)
    model([cv2.imread(str(ASSETS / "bus.jpg"))] * 2, bboxes=[100, 200, 500, 800], show=True)
    assert shown == [("image0.jpg", (1080, 810, 3)), ("image1.jpg", (1080, 810, 3))]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(verbos=False), "unknown keyword argument 'verbos' \\(did you mean 'verbose'\\?\\)"),
        (dict(save_text=True), "did you mean 'save_txt'"),
        (dict(augment=True), "unknown keyword argument 'augment': Ultralytics' augment= does not apply to SAM"),
        (dict(conf=0.5), "'conf': conf= applies to SAM 3's concept prompts \\(texts=, exemplars=\\); SAM 2.1 "
                         "returns one mask per prompt; filter by r.iou"),
        (dict(max_det=3), "'max_det': max_det= applies to SAM 3's concept prompts"),
    ],
)
def test_unknown_keywords_fail_with_a_suggestion(model, kwargs, match):
    with pytest.raises(TypeError, match=match):
        model(ASSETS / "bus.jpg", bboxes=[100, 200, 500, 800], **kwargs)


def test_an_unknown_model_name_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"no file 'nope.pt' here \\({tmp_path}\\) or in the weights folders, "
                                         "and it is not a registry model: unknown model 'nope.pt'") as e:
        SAM("nope.pt")
    assert isinstance(e.value, FileNotFoundError), "a missing checkpoint is a FileNotFoundError, whatever its name"


def test_unknown_track_keyword_fails_with_a_suggestion(model):
    frames = [np.zeros((64, 64, 3), np.uint8)] * 2
    with pytest.raises(TypeError, match="'fill_holes_area' \\(did you mean 'fill_hole_area'\\?\\)"):
        model.track(frames, bboxes=[1, 1, 30, 30], fill_holes_area=4)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreadable_image_in_a_folder_is_skipped_and_listed(model, folder, caplog, stream):
    with caplog.at_level(logging.WARNING, logger="samkit"):
        results = list(model(folder, bboxes=[10, 10, 100, 100], stream=stream))
    assert [os.path.basename(r.path) for r in results] == ["a.jpg", "c.jpg"]
    assert [(os.path.basename(p), "cannot be decoded" in why) for p, why in model.skipped] == [("b.jpg", True)]
    assert f"skipped {folder / 'b.jpg'}" in caplog.text


@pytest.mark.parametrize("stream", [False, True])
def test_nothing_readable_is_an_error(model, folder, stream):
    for name in ("a.jpg", "c.jpg"):
        (folder / name).write_bytes(b"")
    with pytest.raises(SourceError, match="none of the 3 images could be read"):
        list(model(folder, bboxes=[10, 10, 100, 100], stream=stream))
    with pytest.raises(SourceError, match="b.jpg' cannot be decoded"):
        model(folder / "b.jpg", bboxes=[10, 10, 100, 100])


def _yolo(boxes, cls, shape=(180, 135)):
    data = torch.tensor([[*b, 0.9, c] for b, c in zip(boxes, cls)], dtype=torch.float32).reshape(-1, 6)
    return YoloResults(np.zeros((*shape, 3), np.uint8), path="x.jpg", names={0: "person", 5: "bus"}, boxes=data)


def test_a_list_of_yolo_results_gives_each_image_its_boxes(model, folder):
    (folder / "b.jpg").unlink()
    dets = [_yolo([[10, 10, 100, 120], [5, 5, 60, 60]], [5, 0]), _yolo([], [])]
    a, c = model(folder, bboxes=dets)
    assert a.boxes.cls.tolist() == [5, 0] and a.names[5] == "bus" and torch.allclose(a.boxes.conf, torch.tensor(0.9))
    assert len(c) == 0 and c.masks.data.shape == (0, 180, 135)
    with pytest.raises(ValueError, match="3 YOLO Results but the source has 2 image"):
        model(folder, bboxes=[*dets, dets[0]])


def test_a_box_outside_the_image_is_an_error(model):
    with pytest.raises(ValueError, match=r"bboxes\[1\] = \[700, 700, 800, 800\] lies entirely outside the 640x480"):
        model(np.zeros((480, 640, 3), np.uint8), bboxes=[[10, 10, 50, 50], [700, 700, 800, 800]])


def test_tracking_an_image_says_predict_is_for_images(model):
    with pytest.raises(SourceError, match="is an image, not a video: segment images with predict"):
        model.track(str(ASSETS / "bus.jpg"), bboxes=[10, 10, 100, 100])


def test_an_output_folder_blocked_by_a_file_is_named(model, tmp_path):
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    with pytest.raises(OutputError, match=f"cannot create the output folder {tmp_path / 'runs' / 'exp'}: "
                                          f"{tmp_path / 'runs'} exists and is a file, not a folder"):
        model(ASSETS / "bus.jpg", bboxes=[10, 10, 100, 100], save=True, project=tmp_path / "runs")


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "SAMKIT_OFFLINE": "1"})


def test_warnings_reach_a_python_user_and_information_follows_verbose(tiny_ckpt, tmp_path):
    """In a plain script (no logging set up): warnings on stderr whatever verbose says; information only with
    verbose; an application's own logging configuration shows each message once."""
    misnamed = tmp_path / "sam2.1_b.pt"  # SAM 2.1 base+ by its name, the tiny test network by its weights
    shutil.copy(tiny_ckpt, misnamed)
    quiet = _python(f"from samkit import SAM; SAM({str(misnamed)!r}, device='cpu', verbose=False)", tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "WARNING" in quiet.stderr and "using what the weights say" in quiet.stderr
    assert "loaded" not in quiet.stderr and quiet.stdout == ""
    loud = _python(f"from samkit import SAM; SAM({str(tiny_ckpt)!r}, device='cpu')", tmp_path)
    assert "loaded SAM 2.1 test" in loud.stderr and "WARNING" not in loud.stderr
    configured = _python("import logging; logging.basicConfig(level=logging.INFO, format='app: %(message)s'); "
                         f"from samkit import SAM; SAM({str(misnamed)!r}, device='cpu')", tmp_path)
    lines = configured.stderr.splitlines()
    assert sum("using what the weights say" in ln for ln in lines) == 1
    assert any(ln.startswith("app: loaded SAM 2.1 test") for ln in lines)


def test_concurrent_runs_never_share_a_run_folder(tmp_path):
    """Eight threads claim ``exp`` at once, as eight predict calls would: eight different folders."""
    import threading

    from samkit.writers.run import claim_run_dir

    got, start = [], threading.Barrier(8)

    def claim():
        start.wait()
        got.append(claim_run_dir(tmp_path / "runs" / "exp"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in got) == sorted(["exp", *(f"exp-{n}" for n in range(2, 9))])
    assert claim_run_dir(tmp_path / "runs" / "exp", exist_ok=True) == tmp_path / "runs" / "exp"


def test_sources_with_one_name_get_their_own_outputs(model, tmp_path, caplog):
    """a.jpg and a.png, d1/x.jpg and d2/x.jpg, and in-memory images in stream mode: no output replaces another."""
    img = cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (135, 180))
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    paths = [tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "d1" / "x.jpg", tmp_path / "d2" / "x.jpg"]
    for k, p in enumerate(paths):
        cv2.imwrite(str(p), np.roll(img, 9 * k, axis=1))
    with caplog.at_level(logging.WARNING, logger="samkit"):
        model([str(p) for p in paths], bboxes=[10, 10, 100, 120], save=True, save_txt=True, save_masks=True,
              project=tmp_path, name="run")
    out = tmp_path / "run"
    assert sorted(p.name for p in out.glob("*.*")) == ["a.jpg", "a_2.png", "x.jpg", "x_2.jpg"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.txt", "a_2.txt", "x.txt", "x_2.txt"]
    assert len(list((out / "masks").iterdir())) == 4
    assert "has the same name as an earlier source of this run: its outputs are named a_2" in caplog.text
    list(model([img, img[:, ::-1]], bboxes=[10, 10, 100, 120], stream=True, save_txt=True, project=tmp_path,
               name="mem"))
    assert sorted(p.name for p in (tmp_path / "mem" / "labels").iterdir()) == ["image0.txt", "image1.txt"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name=123), TypeError, "name=123 must be a folder name"),
        (dict(name=""), ValueError, "name='' must be a folder name"),
        (dict(project=123), TypeError, "project=123 must be a folder path"),
    ],
)
def test_bad_output_names(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        model(np.zeros((64, 64, 3), np.uint8), bboxes=[1, 1, 30, 30], save=True, **kwargs)


def test_max_pixels_per_call(model, folder):
    (folder / "b.jpg").unlink()
    (folder / "bomb.png").write_bytes(png_bytes(20000, 20000))
    assert len(model(folder, bboxes=[10, 10, 100, 120])) == 2
    assert "declares 20000x20000 pixels" in dict(model.skipped)[str(folder / "bomb.png")]
    assert len(model(folder, bboxes=[10, 10, 100, 120], max_pixels=10_000 + 135 * 180)) == 2  # above the real ones
    with pytest.raises(SourceError, match="none of the 3 images could be read"):
        model(folder, bboxes=[10, 10, 100, 120], max_pixels=1000)


def test_a_corrupt_file_in_a_weights_folder_says_deleting_it_fixes_it(tiny_ckpt, tmp_path, monkeypatch):
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "sam2.1_t.pt").write_bytes(tiny_ckpt.read_bytes()[:5000])  # a download cut short
    monkeypatch.setenv("SAMKIT_WEIGHTS_DIR", str(weights))
    with pytest.raises(Exception, match=f"delete {weights / 'sam2.1_t.pt'} and samkit downloads it again"):
        SAM("sam2.1_t.pt", device="cpu", verbose=False)


def test_a_run_that_fails_before_writing_leaves_no_folder(model, tmp_path):
    """The run folder is claimed before the first image; a run that fails with nothing written removes it, so the
    next run is not numbered past an empty folder."""
    img = np.zeros((60, 80, 3), np.uint8)
    gen = model(img, bboxes=[500, 500, 600, 600], stream=True, save=True, project=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="lies entirely outside"):
        next(gen)
    assert not (tmp_path / "exp").exists()
    model(img, bboxes=[5, 5, 40, 40], save=True, project=tmp_path, verbose=False)
    assert [p.name for p in tmp_path.iterdir()] == ["exp"] and list((tmp_path / "exp").iterdir())


def test_video_refusals_are_value_errors_with_plain_messages(model):
    frames = [np.zeros((48, 64, 3), np.uint8)] * 3
    with model.video(frames) as v:
        with pytest.raises(ValueError, match="frame 5 is out of range") as e:
            v.add(frame=5, obj_id=1, box=[1, 1, 9, 9])
        assert isinstance(e.value, IndexError)
        with pytest.raises(ValueError) as e:
            v.remove(3)
        assert isinstance(e.value, KeyError) and str(e.value) == "no object with id 3; known ids: []"
        with pytest.raises(ValueError, match="^labels were given without points$"):
            v.add(frame=0, obj_id=1, labels=[1])
