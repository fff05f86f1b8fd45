"""The installed `samkit` command, run in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from ultralytics import ASSETS

from tests.helpers import moving_square_frames, read_video, save_present, video_frame_count, write_video

SAMKIT = shutil.which("samkit") or ""


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if not SAMKIT:
        pytest.fail("the samkit console script is not installed (pip install -e .)")
    return subprocess.run([SAMKIT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_info_model(tiny_ckpt):
    r = run("info", f"model={tiny_ckpt}", "device=cpu")
    assert r.returncode == 0, r.stderr
    assert "family: SAM 2.1" in r.stdout and "architecture: sam2_test" in r.stdout and "device: cpu" in r.stdout


def test_info_lists_registry():
    r = run("info")
    assert r.returncode == 0
    assert "sam2.1_b.pt" in r.stdout and "sam_vit_h_4b8939.pth" in r.stdout


def test_checks():
    r = run("checks")
    assert r.returncode == 0, r.stderr
    for word in ("samkit 0.", "torch ", "ultralytics ", "pycocotools", "weights folders", "sample images"):
        assert word in r.stdout


def test_misspelt_key_suggests():
    r = run("info", "modle=sam2.1_b.pt")
    assert r.returncode == 2
    assert "unknown setting 'modle' (did you mean 'model'?)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_misspelt_mode_suggests():
    r = run("inf")
    assert r.returncode == 2 and "did you mean 'info'" in r.stderr


def test_missing_model_file_is_one_line(tmp_path):
    r = run("info", f"model={tmp_path / 'nope' / 'custom.pt'}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "custom.pt" in lines[0] and "does not exist" in lines[0]


def test_offline_registry_model_is_one_line(tmp_path):
    r = run("info", "model=sam2.1_t.pt", env={"SAMKIT_OFFLINE": "1", "SAMKIT_WEIGHTS_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "SAMKIT_OFFLINE" in r.stderr and str(tmp_path) in r.stderr and "Traceback" not in r.stderr


def test_traceback_only_with_verbose(tmp_path):
    r = run("info", f"model={tmp_path / 'x.pt'}", "verbose=True")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "info" in r.stdout and "checks" in r.stdout
    from samkit import __version__

    assert run("version").stdout.strip() == __version__


def test_module_entry_point(tiny_ckpt):
    r = subprocess.run([sys.executable, "-m", "samkit.cli", "info", f"model={tiny_ckpt}"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "SAM 2.1" in r.stdout


def _present_ckpt(tmp_path):
    return save_present(tmp_path / "tiny.pt", "sam2_test", seed=1)


@pytest.mark.parametrize(
    "prompt",
    [
        ["bboxes=[[100,100,500,700]]"],
        ["points=[[300,500],[600,500]]", "labels=[1,0]"],
        ["points_per_side=4", "pred_iou_thresh=0.0", "stability_score_thresh=0.0"],
    ],
    ids=["box", "clicks", "everything"],
)
def test_predict_writes_every_output(tmp_path, prompt):
    import json

    import cv2
    from ultralytics import ASSETS

    ckpt = _present_ckpt(tmp_path)
    r = run("predict", f"model={ckpt}", "device=cpu", f"source={ASSETS / 'bus.jpg'}", *prompt, "save=True",
            "save_txt=True", "save_coco=True", "save_masks=True", f"project={tmp_path}", "name=p", "verbose=False")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "p"
    assert f"saved to {out}" in r.stdout
    assert cv2.imread(str(out / "bus.jpg")).shape == (1080, 810, 3)
    doc = json.loads((out / "coco.json").read_text())
    rows = (out / "labels" / "bus.txt").read_text().splitlines()
    pngs = sorted((out / "masks").glob("bus_*.png"))
    assert len(doc["annotations"]) == len(rows) == len(pngs) > 0
    assert doc["images"][0]["file_name"] == "bus.jpg"


def test_predict_saves_overlays_by_default_and_numbers_runs(tmp_path):
    from ultralytics import ASSETS

    ckpt = _present_ckpt(tmp_path)
    for expect in ("exp", "exp-2"):
        r = run("predict", f"model={ckpt}", "device=cpu", f"source={ASSETS / 'zidane.jpg'}", "bboxes=[10,10,300,300]",
                f"project={tmp_path}", "verbose=False")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / expect / "zidane.jpg").exists()


def test_track_writes_an_overlay_video(tmp_path):
    ckpt = _present_ckpt(tmp_path)
    clip = write_video(tmp_path / "clip.avi", moving_square_frames(8), codec="MJPG")
    r = run("track", f"model={ckpt}", "device=cpu", f"source={clip}", "points=[[12,40]]", "labels=[1]", "frame=2",
            "save_txt=True", "save=True", f"project={tmp_path}", "name=t")
    assert r.returncode == 0, r.stderr
    assert "8 frames" in r.stdout
    assert video_frame_count(tmp_path / "t" / "clip.mp4") == 8
    assert len(list((tmp_path / "t" / "labels").glob("clip_*.txt"))) == 8


def _annotate_args(tmp_path, name: str, rows: str, size: tuple[int, int]) -> tuple[str, ...]:
    """A one-image box dataset (``images/<name>.jpg``, ``labels/<name>.txt``) and the annotate arguments for it."""
    import cv2
    from ultralytics import ASSETS

    ckpt = _present_ckpt(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / f"{name}.jpg"), cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), size))
    (tmp_path / "labels" / f"{name}.txt").write_text(rows)
    return ("annotate", f"data={tmp_path / 'images'}", f"labels={tmp_path / 'labels'}", f"sam_model={ckpt}",
            "device=cpu", "verbose=False")


def test_annotate_command(tmp_path):
    r = run(*_annotate_args(tmp_path, "bus", "3 0.5 0.5 0.4 0.4\n1 0.2 0.2 0.1 0.1\n", (270, 360)))
    assert r.returncode == 0, r.stderr
    assert "1 annotated" in r.stdout and "2 objects" in r.stdout
    rows = (tmp_path / "images_auto_annotate_labels" / "bus.txt").read_text().splitlines()
    assert [row.split()[0] for row in rows] == ["3", "1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "model=x.pt", "sorce=bus.jpg"], "unknown setting 'sorce' (did you mean 'source'?)"),
        (["predict", "data=images/"], "setting 'data' does not apply to samkit predict"),
        (["predict", "model=/nowhere/custom.pt", f"source={ASSETS / 'bus.jpg'}"], "/nowhere/custom.pt"),
        (["predict", "model=/nowhere/custom.pt", "source=nothere.jpg"], "source 'nothere.jpg' does not exist"),
        (["annotate", "data=images/"], "exactly one source of boxes"),
    ],
)
def test_predict_errors_are_one_line(args, message):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_annotate_resume_is_a_success(tmp_path):
    args = _annotate_args(tmp_path, "a", "0 0.5 0.5 0.4 0.4\n", (135, 180))
    assert run(*args).returncode == 0
    again = run(*args)
    assert again.returncode == 0 and "1 already done" in again.stdout
    (tmp_path / "images" / "a.jpg").write_bytes(b"broken")
    (tmp_path / "images_auto_annotate_labels" / ".parts" / "a.json").unlink()
    failed = run(*args)
    assert failed.returncode == 1 and "skipped" in failed.stdout


def test_first_predict_without_source_segments_the_sample_images(tmp_path):
    """A newcomer's second command: no source, the sample images, an overlay to open, and a note saying so."""
    import cv2

    from samkit.data.samples import SAMPLE_BOXES

    ckpt = _present_ckpt(tmp_path)
    r = subprocess.run([SAMKIT, "predict", f"model={ckpt}", "device=cpu", "save_txt=True", "save=True"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "source= is missing: segmenting the sample images" in r.stderr and "bus.jpg" in r.stderr
    out = tmp_path / "runs" / "predict" / "exp"
    assert "2 images, 6 masks" in r.stdout and f"saved to {out.relative_to(tmp_path)}" in r.stdout
    assert cv2.imread(str(out / "bus.jpg")).shape == (1080, 810, 3)
    assert cv2.imread(str(out / "zidane.jpg")).shape == (720, 1280, 3)
    for name, (_, cls) in SAMPLE_BOXES.items():  # one row per sample box, its COCO class id as is
        rows = (out / "labels" / f"{name[:-4]}.txt").read_text().splitlines()
        assert [int(row.split()[0]) for row in rows] == cls
    # Segment-everything settings without a source: everything on the sample images, no sample boxes.
    r = subprocess.run([SAMKIT, "predict", f"model={ckpt}", "device=cpu", "points_per_side=2", "save_txt=True"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "with boxes" not in r.stderr and "2 images" in r.stdout, r.stderr


def test_first_track_without_source_tracks_the_sample_clip(tmp_path):
    from samkit.data.samples import CLIP_FRAMES, sample_clip

    ckpt = _present_ckpt(tmp_path)
    r = subprocess.run([SAMKIT, "track", f"model={ckpt}", "device=cpu", "save_txt=True", "save=True"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"source= is missing: tracking {sample_clip()} with bboxes=" in r.stderr
    out = tmp_path / "runs" / "track" / "exp"
    assert video_frame_count(out / "pan.mp4") == CLIP_FRAMES == 24
    assert len(list((out / "labels").glob("pan_*.txt"))) == CLIP_FRAMES


def test_the_sample_clip_is_the_one_the_project_makes(tmp_path):
    from samkit.data.samples import clip_frames, make_sample_clip, sample_clip

    shipped, made = sample_clip(), make_sample_clip(tmp_path / "pan.mp4")
    for path in (shipped, made):
        frames = read_video(path)
        want = clip_frames()
        assert len(frames) == len(want) == 24
        assert max(abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, want)) < 6, path


def test_info_describes_the_model_once(tiny_ckpt):
    r = run("info", f"model={tiny_ckpt}", "device=cpu", "verbose=True")
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).count("M parameters") == 1 and r.stdout.count("family: SAM 2.1") == 1


def test_annotate_summary_goes_to_stdout_only(tmp_path):
    args = [a for a in _annotate_args(tmp_path, "bus", "3 0.5 0.5 0.4 0.4\n", (270, 360)) if a != "verbose=False"]
    r = run(*args, "verbose=True")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("auto_annotate: 1 images") == 1 and "auto_annotate: 1 images" not in r.stderr


def test_predict_skips_an_unreadable_image_and_lists_it(tmp_path):
    import cv2
    from ultralytics import ASSETS

    ckpt = _present_ckpt(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.jpg"), cv2.resize(cv2.imread(str(ASSETS / "bus.jpg")), (135, 180)))
    (images / "b.jpg").write_bytes(b"")
    args = ("predict", f"model={ckpt}", "device=cpu", f"source={images}", "bboxes=[10,10,100,100]",
            f"project={tmp_path}", "save_txt=True")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "1 image, 1 mask; 1 skipped (unreadable)" in r.stdout and f"skipped {images / 'b.jpg'}:" in r.stdout
    assert f"skipped {images / 'b.jpg'}" in r.stderr  # the warning, as it happened
    assert len((tmp_path / "exp" / "labels" / "a.txt").read_text().splitlines()) == 1
    (images / "a.jpg").write_bytes(b"")
    nothing = run(*args)
    assert nothing.returncode == 2 and "none of the 2 images could be read" in nothing.stderr


def test_bad_inputs_get_samkit_errors(tmp_path):
    import torch
    from ultralytics import ASSETS
    from ultralytics.nn.tasks import DetectionModel

    yolo = tmp_path / "yolo11n.pt"
    torch.save({"model": DetectionModel("yolo11n.yaml", verbose=False)}, yolo)
    r = run("predict", f"model={yolo}", f"source={ASSETS / 'bus.jpg'}")
    assert r.returncode == 2 and "is an Ultralytics model file (DetectionModel), not Segment Anything" in r.stderr
    ckpt = _present_ckpt(tmp_path)
    r = run("track", f"model={ckpt}", "device=cpu", f"source={ASSETS / 'bus.jpg'}", "bboxes=[10,10,100,100]")
    assert r.returncode == 2 and "is an image, not a video: segment images with predict" in r.stderr
    (tmp_path / "blocked").write_text("")
    r = run("predict", f"model={ckpt}", "device=cpu", f"source={ASSETS / 'bus.jpg'}", "bboxes=[10,10,100,100]",
            f"project={tmp_path / 'blocked'}")
    assert r.returncode == 2 and f"{tmp_path / 'blocked'} exists and is a file, not a folder" in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("samkit predict: error: OutputError: cannot create the output folder")
    assert "Traceback" not in r.stderr and ".tmp" not in r.stderr


def test_track_passes_sam3_concept_tracking_settings(tmp_path):
    """SAM 3's concept-tracking settings (default.yaml's section) reach its session from the command line: a bad
    value is refused by it, naming the setting, and a good one runs."""
    from tests.helpers import save_random

    ckpt = tmp_path / "sam3.pt"
    save_random(ckpt, "sam3_test")
    frames = moving_square_frames(3)
    write_video(tmp_path / "clip.avi", frames, fps=10, codec="MJPG")
    base = ["track", f"model={ckpt}", f"source={tmp_path / 'clip.avi'}", "texts=square", "device=cpu",
            f"project={tmp_path / 'runs'}", "save_txt=True", "save=False"]
    r = run(*base, "hotstart_delay=-1")
    assert r.returncode == 2 and "hotstart_delay=-1 must be an integer >= 0" in r.stderr
    r = run(*base, "hotstart_delay=0", "max_objects=2", "new_threshold=0.9")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("3 frames")
