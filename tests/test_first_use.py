"""What a new user meets first: packages that are missing (never installed behind their back), a broken torchvision,
empty detections, duplicate ids, settings ported from ``ultralytics.SAM``, and the CLI's help and sample names."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from ultralytics import ASSETS

from samkit import SAM
from samkit.utils.requirements import MissingExtra

SAMKIT = shutil.which("samkit") or ""


@pytest.fixture
def base_install(monkeypatch):
    """A base install as Ultralytics sees it: ``hide(modules, dists)`` makes modules unimportable and their
    distributions unknown to ``importlib.metadata``; Ultralytics believes it is online with auto-install on, and every
    process it would start (pip, uv) is recorded instead of run."""
    started = []

    def check_output(args, *a, **k):
        started.append(args)
        return ""

    def run(args, *a, **k):
        started.append(args)
        return subprocess.CompletedProcess(args, 1, "", "")

    monkeypatch.setattr(subprocess, "check_output", check_output)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess, "Popen", lambda args, *a, **k: started.append(args) or pytest.fail(str(args)))
    from ultralytics.utils import checks

    monkeypatch.setattr(checks, "ONLINE", True)
    monkeypatch.setattr(checks, "AUTOINSTALL", True)
    hidden: set[str] = set()
    real_version = importlib.metadata.version

    def version(name):
        if name.lower().replace("_", "-") in hidden:
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)

    def hide(modules=(), dists=()):
        for m in modules:
            for loaded in [k for k in sys.modules if k == m or k.startswith(m + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, m, None)
        hidden.update(d.lower().replace("_", "-") for d in dists)

    return SimpleNamespace(started=started, hide=hide)


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_the_harness_sees_an_install(base_install):
    """Control: under the same patches Ultralytics' own check does try to install (so an empty record below means
    samkit kept it from doing so)."""
    from ultralytics.utils.checks import check_requirements

    base_install.hide(["timm"], ["timm"])
    check_requirements("timm")
    assert any("timm" in " ".join(map(str, a)) for a in base_install.started if isinstance(a, (list, tuple)))


def test_sam3_without_timm_is_one_line_and_installs_nothing(base_install, monkeypatch, tmp_path):
    base_install.hide(["timm"], ["timm"])
    with pytest.raises(MissingExtra) as e:
        SAM.untrained("sam3_test", verbose=False)
    assert "timm" in _one_line(e) and "pip install 'samkit[sam3]'" in str(e.value)
    # a registry name: refused before any download (offline here, which would be another error)
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    with pytest.raises(MissingExtra, match=r"SAM 3 .*timm.*samkit\[sam3\]"):
        SAM("sam3.pt")
    assert base_install.started == []


def test_sam3_phrases_without_open_clip_fail_before_any_image_work(base_install):
    sam3 = SAM.untrained("sam3_test", device="cpu", verbose=False)
    base_install.hide(["open_clip"], ["open_clip_torch"])
    sam3.concepts.image_features = lambda *a, **k: pytest.fail("the image was encoded before the check")
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    with pytest.raises(MissingExtra) as e:
        sam3(img, texts="person")
    assert "open_clip_torch" in _one_line(e) and "samkit[sam3]" in str(e.value)
    with pytest.raises(MissingExtra, match="open_clip_torch"):
        sam3.track([img, img], texts="person")
    r = sam3(img, bboxes=[100, 200, 500, 800])[0]  # boxes and clicks need no tokenizer
    assert len(r) == 1 and base_install.started == []


def test_a_text_file_named_jpg_is_not_an_image_and_installs_nothing(base_install, tmp_path, caplog):
    from PIL import Image, UnidentifiedImageError

    from samkit.data.sources import SourceError, read_image

    base_install.hide(["pi_heif", "pillow_heif"], ["pi-heif"])
    bad = tmp_path / "notimg.jpg"
    bad.write_text("not an image\n")
    with pytest.raises(SourceError, match="notimg.jpg.*cannot be decoded"):
        read_image(bad)
    assert base_install.started == [] and "pi-heif" not in caplog.text
    # control: the Image.open that Ultralytics installed would have run pip for the same file
    with pytest.raises(Exception) as e:
        Image.open(bad)
    assert isinstance(e.value, (UnidentifiedImageError, ImportError)) and base_install.started


def test_detector_phrases_without_clip_fail_before_the_detector_loads(base_install, tiny_ckpt, monkeypatch):
    import ultralytics

    from samkit.utils.detectors import set_detector_classes

    base_install.hide(["clip"], ["clip"])
    monkeypatch.setattr(ultralytics, "YOLO", lambda *a, **k: pytest.fail("the detector was loaded"))
    called = []
    fake = SimpleNamespace(set_classes=lambda names: called.append(names))
    with pytest.raises(MissingExtra) as e:
        set_detector_classes(fake, ["person"])
    assert "ultralytics/CLIP" in _one_line(e) and called == []
    sam = SAM(tiny_ckpt, device="cpu", verbose=False)
    frames = [np.zeros((64, 64, 3), np.uint8)] * 2
    with pytest.raises(MissingExtra, match="YOLOE / YOLO-World"):
        sam.track(frames, texts=["person"], det_model="yoloe-11s-seg.pt")
    assert base_install.started == []


def test_yolo_masks_warn_when_trackers_would_need_lap(base_install, tiny_ckpt, caplog):
    from samkit.integrations.yolo import add_sam_masks

    base_install.hide(["lap"], ["lap"])
    added = []
    fake = SimpleNamespace(add_callback=lambda event, fn: added.append(event))
    add_sam_masks(fake, SAM(tiny_ckpt, device="cpu", verbose=False))
    assert added == ["on_predict_postprocess_end"]
    assert "pip install 'lap>=0.5.12'" in caplog.text and "yolo.track" in caplog.text
    assert base_install.started == []


def test_ray_and_app_extras_are_checked_before_any_model(base_install, tmp_path, capsys):
    from samkit import auto_annotate
    from samkit.cli import main

    base_install.hide(["ray"], ["ray"])
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(MissingExtra, match=r"engine='ray'.*samkit\[ray\]"):
        auto_annotate(tmp_path / "images", texts=["x"], sam_model="missing-model.pt", engine="ray")
    base_install.hide(["starlette"], ["starlette"])
    assert main(["app", f"source={tmp_path / 'images'}", "model=missing-model.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "starlette" in err[0] and "samkit[app]" in err[0] and "missing-model" not in err[0]
    assert base_install.started == []


# ---------------------------------------------------------------- samkit checks and a broken torchvision
def _broken_torchvision_env(tmp_path) -> dict:
    """An environment whose Python cannot load torchvision's C++ operators (as with a torch and a torchvision from
    two indexes): a sitecustomize that makes torch's library loading fail."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import torch\n"
        "def _fail(path):\n"
        "    raise OSError(f'{path}: undefined symbol: _ZN3c1017RegisterOperators')\n"
        "torch.ops.load_library = _fail\n")
    return {**os.environ, "PYTHONPATH": str(site)}


def test_checks_and_predict_name_a_broken_torchvision_and_the_fix(tmp_path, tiny_ckpt):
    if not SAMKIT:
        pytest.fail("the samkit console script is not installed (pip install -e .)")
    env = _broken_torchvision_env(tmp_path)
    r = subprocess.run([SAMKIT, "checks"], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [line for line in r.stdout.splitlines() if line.startswith("ERROR:")]
    assert errors and "torchvision" in errors[0] and "operator torchvision::nms does not exist" in errors[0]
    assert "pip install --force-reinstall 'torch==" in errors[0] and "'torchvision==0." in errors[0]
    assert "--index-url https://download.pytorch.org/whl/" in errors[0]
    fix = errors[0].split("reinstall both from one index: ")[1]
    p = subprocess.run([SAMKIT, "predict", f"model={tiny_ckpt}", f"source={ASSETS / 'bus.jpg'}", "device=cpu"],
                       capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("samkit predict: error: BrokenInstall: torchvision") and fix in lines[-1]
    assert "loaded" not in p.stderr  # refused before the model was read
    code = f"from samkit import SAM\nSAM({str(tiny_ckpt)!r}, device='cpu')\n"
    py = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert py.returncode == 1 and "samkit.utils.requirements.BrokenInstall: torchvision" in py.stderr
    assert fix in py.stderr


def test_checks_run_what_samkit_needs(monkeypatch):
    import torch

    from samkit.checks import failures, run_checks

    lines = run_checks()
    assert failures(lines) == [], lines
    assert any(line.startswith("torchvision ") and "on cpu: nms, batched_nms, roi_align" in line for line in lines)
    assert any("convolution in float32" in line for line in lines)
    assert any("wrote and read back an mp4 ok" in line for line in lines)
    for extra in ("[sam3]", "[app]", "[ray]"):
        assert any(line.startswith(f"extra {extra} for ") for line in lines), extra
    cuda_build_here = bool(torch.version.cuda) and not torch.cuda.is_available()
    notes = [line for line in lines if line.startswith("NOTE: torch ") and "is a CUDA" in line]
    assert len(notes) == int(cuda_build_here) and all("--index-url https://download.pytorch.org/whl/cpu" in n
                                                      for n in notes)
    # a dtype that cannot convolve, and an OpenCV that cannot write video, are errors naming them
    real = torch.nn.functional.conv2d

    def conv2d(x, w, *a, **k):
        if x.dtype != torch.float32:
            raise RuntimeError("no kernel for this dtype")
        return real(x, w, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "conv2d", conv2d)

    class NoVideo:
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoWriter", NoVideo)
    bad = failures(run_checks())
    assert any("mp4" in line and "opencv-python" in line for line in bad), bad
    if any("convolution in float32, bfloat16" in line for line in lines):  # a CPU with native bf16 (half=True)
        assert any("a bfloat16 convolution on cpu" in line for line in bad), bad


def test_cli_checks_exits_1_on_a_problem(tmp_path):
    # the same failure through the command: the broken torchvision environment, exit code 1
    env = _broken_torchvision_env(tmp_path)
    r = subprocess.run([SAMKIT, "checks"], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 1 and "problem(s) found" in r.stderr


# ---------------------------------------------------------------- empty detections and duplicate ids
@pytest.fixture(scope="module")
def model(tiny_ckpt):
    return SAM(tiny_ckpt, device="cpu", verbose=False)


@pytest.mark.parametrize("given", [dict(bboxes=[]), dict(bboxes=np.zeros((0, 4))), dict(points=[]),
                                   dict(points=[], labels=[]), dict(masks=[]), dict(prompts=[])],
                         ids=["bboxes", "bboxes-array", "points", "points-labels", "masks", "prompts"])
def test_an_empty_prompt_list_means_no_objects(model, given, tmp_path):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    before = model.engine.images_encoded
    (r,) = model(img, **given)
    assert len(r) == 0 and r.masks is None or len(r.masks) == 0
    assert model.engine.images_encoded == before  # nothing to decode: the image is not encoded either
    r.save_txt(tmp_path / "bus.txt")
    assert (tmp_path / "bus.txt").read_text() == ""
    assert r.to_coco()["annotations"] == []


def test_empty_detections_in_a_batch_and_on_the_command_line(model, tiny_ckpt, tmp_path):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    a, b = model([img, img], bboxes=[[[100, 200, 500, 800]], []])
    assert (len(a), len(b)) == (1, 0)
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(folder / name), cv2.resize(img, (135, 180)))
    r = subprocess.run([SAMKIT, "predict", f"model={tiny_ckpt}", f"source={folder}", "bboxes=[]", "save_txt=True",
                        "device=cpu", f"project={tmp_path / 'runs'}"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 images, 0 masks")
    labels = sorted((tmp_path / "runs" / "exp" / "labels").glob("*.txt"))
    assert [p.name for p in labels] == ["a.txt", "b.txt"] and all(p.read_text() == "" for p in labels)


def test_track_refuses_an_empty_prompt_list(model):
    with pytest.raises(ValueError, match="at least one object"):
        model.track([np.zeros((64, 64, 3), np.uint8)] * 2, bboxes=[])


def test_two_objects_with_one_id_are_refused(model):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    with pytest.raises(ValueError, match=r"object id 5 is given to 2 objects \(prompts \[0, 2\]\)"):
        model(img, prompts=[{"box": [10, 10, 90, 90], "id": 5}, {"box": [20, 20, 80, 80], "id": 6},
                            {"box": [30, 30, 70, 70], "id": 5}])
    (r,) = model(img, prompts=[{"box": [10, 10, 90, 90], "id": 5}, {"box": [20, 20, 80, 80], "id": 6}])
    assert r.boxes.id.tolist() == [5, 6]


# ---------------------------------------------------------------- calls ported from ultralytics.SAM
@pytest.mark.parametrize("given, match", [
    (dict(bboxes=[[1, 2, 3]]), r"\(N, 4\)"),
    (dict(bboxes=[500, 800, 100, 200]), "x2 < x1"),
    (dict(bboxes=[5000, 5000, 6000, 6000]), "entirely outside"),
    (dict(points=[[1, 2]], labels=[3]), "must be 1 \\(positive\\) or 0"),
    (dict(bboxes=[10, 10, 50, 50], multimask="yes"), "multimask='yes'"),
    (dict(bboxes=[10, 10, 50, 50], batch=0), "batch=0"),
    (dict(bboxes=[10, 10, 50, 50], imgsz=1024), "imgsz=1024: SAM 2.1 runs at its own input size 256"),
])
def test_bad_prompts_and_settings_fail_before_the_encoder(model, monkeypatch, given, match):
    monkeypatch.setattr(model.net, "forward_image", lambda *a, **k: pytest.fail("the encoder ran"))
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    with pytest.raises((ValueError, TypeError), match=match):
        model([img, img], **given)


def test_bad_video_prompts_fail_before_the_encoder(model, monkeypatch):
    monkeypatch.setattr(model.net, "forward_image", lambda *a, **k: pytest.fail("the encoder ran"))
    frames = [np.zeros((64, 64, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model.track(frames, bboxes=[[1, 2, 3]])
    with model.video(frames) as v, pytest.raises(ValueError, match="x2 < x1"):
        v.add(0, obj_id=1, box=[50, 50, 10, 10])


def test_ultralytics_settings_that_mean_what_samkit_does(model):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    box = [100, 200, 500, 800]
    want = model(img, bboxes=box)[0]
    for same in (dict(imgsz=256), dict(imgsz=[256, 256]), dict(retina_masks=True)):
        got = model(img, bboxes=box, **same)[0]
        assert np.array_equal(got.masks.data.numpy(), want.masks.data.numpy()), same
    three = model(img, bboxes=box, multimask_output=True)[0]
    assert len(three) == 3 and np.array_equal(three.masks.data.numpy(), model(img, bboxes=box, multimask=True)[0]
                                              .masks.data.numpy())
    with pytest.raises(ValueError, match="retina_masks=False: samkit's masks are always at the image's resolution"):
        model(img, bboxes=box, retina_masks=False)
    with pytest.raises(ValueError, match="disagree"):
        model(img, bboxes=box, multimask=False, multimask_output=True)
    with pytest.raises(TypeError) as e:
        model(img, bboxes=box, multimasks=True)
    assert str(e.value).count("'multimask'") == 1  # the suggestion names it once


def test_boxes_per_image_for_a_list_of_images(model):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    b1, b2, b3 = [100, 200, 500, 800], [30, 230, 800, 740], [52, 398, 248, 905]
    r1, r2 = model([img, img], bboxes=[[b1], [b2, b3]])
    assert (len(r1), len(r2)) == (1, 2)
    alone = model(img, bboxes=[b2, b3])[0]
    assert np.array_equal(r2.masks.data.numpy(), alone.masks.data.numpy())
    assert r2.boxes.xyxy.shape == (2, 4)
    same = model([img, img], bboxes=[b1, b2])  # a flat list: the same two boxes on every image
    assert [len(r) for r in same] == [2, 2]
    with pytest.raises(ValueError, match=r"holds 3 lists of boxes \(one per image\) but the source has 2"):
        model([img, img], bboxes=[[b1], [b2], [b3]])
    with pytest.raises(ValueError, match="the source is not a list of images"):
        model(img, bboxes=[[b1], [b2]])


def test_speed_preprocess_is_measured(model):
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    model.engine.clear_cache()
    r = model(img, bboxes=[100, 200, 500, 800])[0]
    assert r.speed["preprocess"] > 0 and r.speed["inference"] > 0 and r.speed["postprocess"] > 0


# ---------------------------------------------------------------- the command line
def test_sample_image_names_resolve_like_ultralytics(tmp_path, tiny_ckpt):
    r = subprocess.run([SAMKIT, "predict", f"model={tiny_ckpt}", "source=bus.jpg", "bboxes=[[100,200,500,800]]",
                        "device=cpu", "save_txt=True"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"source=bus.jpg is not in this folder: using the sample image {ASSETS / 'bus.jpg'}" in r.stderr
    assert len((tmp_path / "runs" / "predict" / "exp" / "labels" / "bus.txt").read_text().splitlines()) == 1
    r = subprocess.run([SAMKIT, "predict", f"model={tiny_ckpt}", "source=nope.jpg"], capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert r.returncode == 2 and "'nope.jpg' does not exist" in r.stderr


@pytest.mark.parametrize("mode", ["predict", "track", "annotate", "app", "benchmark", "info", "checks"])
def test_every_mode_has_help(mode):
    from samkit.cli import MODE_KEYS, main

    for flag in ("--help", "-h"):
        r = subprocess.run([SAMKIT, mode, flag], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"samkit {mode}: ") and f"settings of samkit {mode}" in r.stdout
        for key in MODE_KEYS[mode]:
            assert f"\n  {key}=" in r.stdout, key
    assert main([mode, "help"]) == 0


def test_app_help_shows_defaults_and_an_example():
    r = subprocess.run([SAMKIT, "app", "--help"], capture_output=True, text=True, timeout=60)
    assert "samkit app source=images/ model=sam2.1_t.pt" in r.stdout
    assert "  port=8765" in r.stdout and "  host=127.0.0.1" in r.stdout and "  format=yolo" in r.stdout


def test_a_verbose_error_prints_the_traceback_and_exits_2(tmp_path):
    r = subprocess.run([SAMKIT, "info", f"model={tmp_path / 'x.pt'}", "verbose=True"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("samkit info: error: WeightsNotFoundError")


def test_no_autoinstall_nests_and_restores():
    from ultralytics.utils import checks

    from samkit.utils.requirements import no_autoinstall

    was = checks.AUTOINSTALL
    seen = []
    with no_autoinstall():
        seen.append(checks.AUTOINSTALL)
        with no_autoinstall():
            seen.append(checks.AUTOINSTALL)
        seen.append(checks.AUTOINSTALL)  # the inner one closed; the outer is still open
    assert seen == [False, False, False] and checks.AUTOINSTALL == was
    with pytest.raises(RuntimeError), no_autoinstall():
        raise RuntimeError("an error inside")
    assert checks.AUTOINSTALL == was
