"""``samkit benchmark`` / ``samkit.benchmark.benchmark``: the table's numbers are the models' own, the files load."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest

from samkit.benchmark import COLUMNS, benchmark
from samkit.cli import main
from samkit.model import SAM


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_random_weights_offline_rows_match_the_models(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    report = benchmark("sam2_test,sam_test,yolo11n-seg.pt", device="cpu", random=True, source=_image(), repeats=1,
                       video_frames=3, project=tmp_path, name="b", verbose=False)
    assert report.markdown_path == tmp_path / "b" / "benchmark.md"
    rows = _read_csv(report.csv_path)
    assert [r["model"] for r in rows] == ["sam2_test", "sam_test", "yolo11n-seg.pt"]
    assert tuple(rows[0]) == COLUMNS
    sam2 = SAM.untrained("sam2_test", device="cpu", verbose=False)
    assert float(rows[0]["params_m"]) == pytest.approx(sum(p.numel() for p in sam2.net.parameters()) / 1e6, abs=1e-3)
    fp32_mb = sum(t.numel() * 4 for t in sam2.net.state_dict().values() if t.is_floating_point()) / 1e6
    assert float(rows[0]["size_mb"]) == pytest.approx(fp32_mb, abs=1e-3)
    assert rows[0]["family"] == "SAM 2.1" and rows[1]["family"] == "SAM" and rows[2]["family"] == "Ultralytics segment"
    for r in rows:
        assert r["weights"] == "random" and r["device"] == "cpu" and r["precision"] == "float32"
        assert float(r["ms_image"]) > 0 and math.isfinite(float(r["ms_image"]))
    # Video FPS for SAM 2 only; a prompt on an encoded image is timed for SAM models only.
    assert float(rows[0]["video_fps"]) > 0 and rows[1]["video_fps"] == "" and rows[2]["video_fps"] == ""
    assert float(rows[0]["ms_prompt"]) > 0 and float(rows[1]["ms_prompt"]) > 0 and rows[2]["ms_prompt"] == ""
    # The YOLO row is Ultralytics' own architecture (yolo11n-seg: 2.9M parameters).
    assert 2.5 < float(rows[2]["params_m"]) < 3.2
    md = report.markdown_path.read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3 and all(m in md for m in ("sam2_test", "sam_test", "yolo11n-seg.pt"))
    assert oct(os.stat(report.csv_path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_checkpoint_file_is_measured_with_its_size(tmp_path, tiny_ckpt):
    report = benchmark(str(tiny_ckpt), device="cpu", source=_image(), repeats=1, video_frames=0, project=tmp_path,
                       verbose=False)
    (row,) = _read_csv(report.csv_path)
    assert row["weights"] == str(tiny_ckpt)
    assert float(row["size_mb"]) == pytest.approx(os.path.getsize(tiny_ckpt) / 1e6, abs=1e-3)
    assert row["video_fps"] == ""  # video_frames=0 skips it


def test_rows_measured_before_a_failure_are_written(tmp_path):
    with pytest.raises(Exception, match="no_such_model"):
        benchmark("sam_test,no_such_model.pt", device="cpu", random=True, source=_image(), repeats=1, video_frames=0,
                  project=tmp_path, name="b", verbose=False)
    rows = _read_csv(tmp_path / "b" / "benchmark.csv")
    assert [r["model"] for r in rows] == ["sam_test"]


@pytest.mark.parametrize("kwargs, message", [
    ({"model": ""}, "names no model"),
    ({"model": "sam_test,,sam2_test"}, "names no model"),
    ({"model": 3}, "must be a model name"),
    ({"repeats": 0}, "repeats=0 must be an integer >= 1"),
    ({"video_frames": -1}, "video_frames=-1 must be an integer >= 0"),
])
def test_bad_settings_are_named(tmp_path, kwargs, message):
    args = {"model": "sam_test", "random": True, "project": tmp_path, "verbose": False, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        benchmark(**args)
    assert not any(tmp_path.iterdir())  # nothing claimed for a refused run


def test_cli_prints_and_writes_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(img), _image())
    assert main(["benchmark", "model=sam_test,sam2_test", "random=True", "repeats=1", "video_frames=2",
                 f"source={img}", "device=cpu", "verbose=False"]) == 0
    out = capsys.readouterr().out
    assert "| sam_test | SAM |" in out and "| sam2_test | SAM 2.1 |" in out
    rows = _read_csv(tmp_path / "runs" / "benchmark" / "exp" / "benchmark.csv")
    assert len(rows) == 2 and float(rows[1]["video_fps"]) > 0
    # A setting of another mode is refused, naming it.
    assert main(["benchmark", "model=sam_test", "bboxes=[1,2,3,4]"]) == 2
    assert "'bboxes' does not apply to samkit benchmark" in capsys.readouterr().err


def test_untrained_model_is_repeatable_and_says_so():
    a = SAM.untrained("sam_test", device="cpu", verbose=False)
    b = SAM.untrained("sam_test", device="cpu", verbose=False)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all((sa[k] == sb[k]).all() for k in sa)
    assert a.ckpt_path is None and a.info(verbose=False)["checkpoint"] == "random weights"
    assert "random weights" in repr(a)
    with pytest.raises(ValueError, match="no_such"):
        SAM.untrained("no_such.pt")


def test_names_that_are_neither_sam_nor_ultralytics_get_the_registry_suggestions(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown model 'sam2_tiny.pt' \\(did you mean 'sam2_t.pt'"):
        benchmark("sam2_tiny.pt", random=True, source=_image(), project=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="no yolo_nope.yaml among its model configurations"):
        benchmark("yolo_nope.pt", random=True, source=_image(), project=tmp_path, verbose=False)
    monkeypatch.setenv("SAMKIT_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="yolo11x-seg.pt is not on disk and downloads are off.*random=True"):
        benchmark("yolo11x-seg.pt", source=_image(), project=tmp_path, verbose=False)


def test_sam3_is_measured_with_phrases(tmp_path):
    pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")
    report = benchmark("sam3_test", random=True, source=_image(), repeats=1, video_frames=2, project=tmp_path,
                       verbose=False)
    (row,) = _read_csv(report.csv_path)
    assert row["family"] == "SAM 3" and float(row["ms_prompt"]) > 0 and row["video_fps"] == ""
    sam3 = SAM.untrained("sam3_test", verbose=False)
    assert float(row["params_m"]) == pytest.approx(sum(p.numel() for p in sam3.net.parameters()) / 1e6, abs=1e-3)
