"""samkit train: the prompt simulation against Meta's, a run's outputs opened and checked against samkit val, the
checkpoints loaded as users load them, and bad input."""

from __future__ import annotations

import csv
import math
import os
import stat

import numpy as np
import pytest
import torch
import yaml

from samkit import SAM
from samkit.data.synthetic import make_shapes
from samkit.train import TrainError
from samkit.train.prompts import PromptSettings, error_clicks, mask_boxes, noisy_boxes
from samkit.val.datasets import DatasetError


# ---------------------------------------------------------------------- prompts
def _blobs(n=5, h=40, w=56, seed=0):
    g = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = g.integers(0, h - 8), g.integers(0, w - 8)
        masks[i, y:y + g.integers(2, 8), x:x + g.integers(2, 12)] = True
    return torch.from_numpy(masks)


def test_boxes_equal_metas_noisy_boxes_draw_for_draw():
    from sam2.modeling.sam2_utils import sample_box_points
    from sam2.utils.misc import mask_to_box

    masks = _blobs()
    assert torch.equal(mask_boxes(masks), mask_to_box(masks[:, None])[:, 0].float())
    for seed in range(3):
        torch.manual_seed(seed)  # Meta draws from the global generator; samkit from its own, seeded alike
        want, labels = sample_box_points(masks[:, None])
        got = noisy_boxes(masks, PromptSettings(), torch.Generator().manual_seed(seed))
        assert torch.allclose(got, want, atol=1e-5)
        assert labels.tolist() == [[2, 3]] * len(masks)


def test_error_clicks_fall_in_the_errors_with_their_sign():
    gt = torch.zeros(3, 20, 30, dtype=torch.bool)
    gt[:, 5:15, 5:15] = True
    pred = gt.clone()
    pred[0, 5:15, 5:10] = False  # object 0: its left half missed -> a positive click there
    pred[1, 0:3, 20:30] = True   # object 1: a false strip -> a negative click there
    # object 2: exactly right -> a negative click on the background
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        pts, labels = error_clicks(gt, pred, g)
        (x0, y0), (x1, y1), (x2, y2) = pts[:, 0].long().tolist()
        assert labels[:, 0].tolist() == [1, 0, 0]
        assert 5 <= x0 < 10 and 5 <= y0 < 15
        assert 20 <= x1 < 30 and 0 <= y1 < 3
        assert not gt[2, y2, x2]
    # nothing predicted: a positive click inside the mask; a padded input: never outside the image
    valid = torch.zeros(20, 30, dtype=torch.bool)
    valid[:, :12] = True
    for _ in range(50):
        pts, labels = error_clicks(gt, None, g, valid)
        assert labels.all() and (pts[..., 0] < 12).all() and gt[0][pts[:, 0, 1].long(), pts[:, 0, 0].long()].all()


def test_error_clicks_are_uniform_over_the_error_region():
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, 0, :2] = True  # two missed pixels
    g = torch.Generator().manual_seed(1)
    seen = [tuple(error_clicks(gt, None, g)[0][0, 0].long().tolist()) for _ in range(2000)]
    share = seen.count((0, 0)) / len(seen)
    assert set(seen) == {(0, 0), (1, 0)} and 0.45 < share < 0.55


# ---------------------------------------------------------------------- a run, its files and its numbers
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), train=16, val=8, seed=1)


@pytest.fixture(scope="module")
def run(shapes, tiny_ckpt, tmp_path_factory):
    """A short decoder-only fine-tune of the tiny random SAM 2.1 (what every test of this module opens)."""
    project = tmp_path_factory.mktemp("runs")
    model = SAM(str(tiny_ckpt), device="cpu", verbose=False)
    res = model.train(data=shapes, epochs=3, lr0=1e-3, corrections=3, max_clicks=3, project=project, name="exp",
                      verbose=False)
    return model, res


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_what_ultralytics_users_look_for(run, shapes):
    _, res = run
    d = res.save_dir
    assert d.name == "exp" and d.parent.name
    names = sorted(p.name for p in d.iterdir())
    assert names == ["args.yaml", "results.csv", "results.png", "split.yaml", "summary.md", "weights"]
    assert sorted(p.name for p in (d / "weights").iterdir()) == ["best.pt", "last.pt"]  # nothing half-written
    umask = os.umask(0)
    os.umask(umask)
    for p in [*d.iterdir(), *(d / "weights").iterdir()]:
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p
    rows = _rows(d / "results.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]
    for col in ("train/focal", "train/dice", "train/iou", "train/class", "train/loss", "metrics/box_miou",
                "metrics/click_miou@1", "metrics/click_miou@3", "fitness", "lr"):
        assert col in rows[0], col
    assert rows[0]["train/loss"] == ""  # the starting model has no training loss
    assert all(math.isfinite(float(r["train/loss"])) for r in rows[1:])
    with open(d / "results.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    args = yaml.safe_load((d / "args.yaml").read_text())
    assert args["epochs"] == 3 and args["lr0"] == 1e-3 and args["tune"] == "decoder" and args["data"] == str(shapes)
    split = yaml.safe_load((d / "split.yaml").read_text())
    assert len(split["train"]) == 16 and len(split["val"]) == 8 and split["val_from"] == "given"


def test_each_epochs_metrics_are_what_samkit_val_gives_for_its_weights(run, shapes, tiny_ckpt, tmp_path):
    model, res = run
    rows = _rows(res.save_dir / "results.csv")
    kw = dict(split="val", max_clicks=3, plots=False, project=tmp_path, verbose=False)
    start = SAM(str(tiny_ckpt), device="cpu", verbose=False).val(shapes, name="start", **kw)
    last = SAM(str(res.last), device="cpu", verbose=False).val(shapes, name="last", **kw)
    for row, measured in ((rows[0], start), (rows[-1], last)):
        assert float(row["metrics/box_miou"]) == pytest.approx(measured.metrics["box"]["miou"], abs=1e-5)
        assert float(row["metrics/click_miou@1"]) == pytest.approx(measured.metrics["click"]["miou@1"], abs=1e-5)
    # the model holds best.pt afterwards, and best.pt is the epoch of highest fitness
    fits = [float(r["fitness"]) for r in rows]
    assert res.best_epoch == int(np.argmax(fits))
    best = torch.load(res.best, weights_only=True)
    assert best["epoch"] == res.best_epoch
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, best["model"][k]), k


def test_a_decoder_fine_tune_learns_and_leaves_the_encoder_alone(run, tiny_ckpt):
    _, res = run
    before, after = res.before, res.after
    assert after["box"]["miou"] > before["box"]["miou"] + 0.03
    assert after["click"]["miou@1"] > before["click"]["miou@1"] + 0.03
    start = torch.load(tiny_ckpt, weights_only=True)["model"]
    trained = torch.load(res.last, weights_only=True)["model"]
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert changed and all(k.startswith("sam_mask_decoder.") for k in changed)
    assert not any(k.startswith(("sam_mask_decoder.conv_s0", "sam_mask_decoder.conv_s1")) for k in changed)
    table = (res.save_dir / "summary.md").read_text()
    assert "start" in table and f"best (epoch {res.best_epoch})" in table and "change" in table


def test_the_checkpoints_are_plain_sam_checkpoints(run, tmp_path):
    from samkit.nn.checkpoint import read_checkpoint

    _, res = run
    best = torch.load(res.best, weights_only=True)
    assert set(best) == {"model", "epoch", "samkit", "date"}
    last = torch.load(res.last, weights_only=True)  # the training state reads with weights_only too
    assert {"optimizer", "epoch", "step", "args", "scheduler", "rng"} <= set(last["train"])
    assert set(read_checkpoint(res.best)) == set(read_checkpoint(res.last))
    m = SAM(str(res.best), device="cpu", verbose=False)  # recognised from the weights, as any checkpoint
    assert m.family == "SAM 2.1"
    out = m(np.zeros((64, 80, 3), np.uint8), bboxes=[10, 10, 40, 40], verbose=False)[0]
    assert out.masks.data.shape == (1, 64, 80)


# ---------------------------------------------------------------------- stopping and resuming
def _train_cli(*args, **kw):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "samkit", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


SHORT = ("epochs=3", "lr0=0.001", "corrections=2", "max_clicks=2", "verbose=False")


@pytest.fixture(scope="module")
def uninterrupted(tiny_ckpt, tmp_path_factory):
    data = make_shapes(tmp_path_factory.mktemp("resume-data"), train=10, val=4, seed=2)
    project = tmp_path_factory.mktemp("resume-runs")
    p = _train_cli(f"model={tiny_ckpt}", f"data={data}", *SHORT, f"project={project}", "name=a")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return data, project, project / "a"


def _same_run(a, b):
    wa, wb = (torch.load(d / "weights" / "last.pt", weights_only=True) for d in (a, b))
    assert wa["train"]["finished"] and wb["train"]["finished"]
    for k in wa["model"]:
        assert torch.equal(wa["model"][k], wb["model"][k]), k
    ra, rb = _rows(a / "results.csv"), _rows(b / "results.csv")
    assert len(ra) == len(rb) == 4
    for x, y in zip(ra, rb):
        assert {k: v for k, v in x.items() if k != "time"} == {k: v for k, v in y.items() if k != "time"}


@pytest.mark.slow
def test_a_run_killed_and_resumed_ends_as_an_uninterrupted_one(uninterrupted, tiny_ckpt):
    import signal
    import time

    data, project, a = uninterrupted
    b = project / "b"
    p = _train_cli(f"model={tiny_ckpt}", f"data={data}", *SHORT, f"project={project}", "name=b")
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if (b / "results.csv").is_file() and len(_rows(b / "results.csv")) >= 2:  # epoch 1 is saved
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert sorted(x.name for x in (b / "weights").iterdir()) == ["best.pt", "last.pt"]  # no partial file
    kept = torch.load(b / "weights" / "last.pt", weights_only=True)["train"]
    assert 1 <= kept["epoch"] < 3 and not kept["finished"]
    p = _train_cli("resume=True", f"model={b / 'weights' / 'last.pt'}")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "best (epoch" in out
    _same_run(a, b)


def test_ctrl_c_saves_the_last_step_and_resuming_goes_on_from_it(tiny_data, tiny_ckpt, tmp_path, monkeypatch, caplog):
    from samkit.train import trainer

    data, project = tiny_data, tmp_path
    real, calls = trainer.Trainer._optimizer_step, []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 6:  # in epoch 2 (4 steps an epoch)
            raise KeyboardInterrupt
        return real(self, *args)

    settings = dict(epochs=3, lr0=1e-3, corrections=2, max_clicks=2)
    # the run to match, made in this process: bit-exact sums depend on how buffers are laid out in memory, which
    # differs between a command and a test process (the killed command above is matched to a command)
    fresh = SAM(str(tiny_ckpt), device="cpu", verbose=False)
    fresh.train(data=data, project=project, name="u", verbose=False, **settings)
    monkeypatch.setattr(trainer.Trainer, "_optimizer_step", interrupted)
    model = SAM(str(tiny_ckpt), device="cpu", verbose=False)
    with pytest.raises(KeyboardInterrupt):
        model.train(data=data, project=project, name="c", verbose=False, **settings)
    c = project / "c"
    last = c / "weights" / "last.pt"
    kept = torch.load(last, weights_only=True)["train"]
    assert (kept["epoch"], kept["position"], kept["step"]) == (1, 1, 5)
    assert f"resume with: samkit train resume=True model={last}" in caplog.text
    monkeypatch.setattr(trainer.Trainer, "_optimizer_step", real)
    with pytest.raises(TrainError, match=r"lr0=0\.01 \(the run has 0\.001\)"):
        SAM(str(last), device="cpu", verbose=False).train(resume=True, lr0=0.01, verbose=False)
    SAM(str(last), device="cpu", verbose=False).train(resume=True, verbose=False, **settings)
    _same_run(project / "u", c)
    with pytest.raises(TrainError, match="finished all its 3 epochs"):
        SAM(str(last), device="cpu", verbose=False).train(resume=True)


# ---------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("tiny-data"), train=4, val=2, seed=3)


@pytest.fixture
def tiny(tiny_ckpt):
    return SAM(str(tiny_ckpt), device="cpu", verbose=False)


@pytest.mark.parametrize("settings, match", [
    ({"tune": "none"}, "trains nothing: every weight would stay frozen"),
    ({"tune": "all", "lora": 4}, "choose one"),
    ({"tune": "encoder"}, "tune='encoder' must be one of decoder, prompt_decoder, all, none"),
    ({"epochs": 0}, r"epochs=0 must be an integer in \[1, 100000\]"),
    ({"lr0": -1}, r"lr0=-1 must be a number in \(0, 1\]"),
    ({"val_fraction": 1.0}, "must be below 1"),
    ({"prompts": "text"}, "unknown prompt kind 'text'"),
    ({"epoch": 3}, "unknown train setting 'epoch'.*epochs"),
])
def test_bad_settings_are_named_before_anything_is_read(tiny, settings, match, tmp_path, monkeypatch):
    from samkit.train import data as train_data

    monkeypatch.setattr(train_data, "open_splits", lambda *a, **k: pytest.fail("the dataset was read"))
    with pytest.raises((ValueError, TypeError), match=match):
        tiny.train(data=tmp_path / "nowhere", project=tmp_path, **settings)
    assert not any(tmp_path.iterdir())  # no run folder


def test_bad_datasets_are_named(tiny, tmp_path):
    boxes = tmp_path / "boxes"
    (boxes / "images").mkdir(parents=True)
    (boxes / "labels").mkdir()
    import cv2

    for i in range(3):
        cv2.imwrite(str(boxes / "images" / f"{i}.png"), np.zeros((32, 32, 3), np.uint8))
        (boxes / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match="boxes only.*need masks"):
        tiny.train(data=boxes, project=tmp_path / "runs")
    empty = make_shapes(tmp_path / "empty", train=2, val=0)
    with pytest.raises(DatasetError, match="holds no images"):
        tiny.train(data=empty, project=tmp_path / "runs")
    one = tmp_path / "one"
    (one / "labels").mkdir(parents=True)
    cv2.imwrite(str(one / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (one / "labels" / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with pytest.raises(DatasetError, match="1 image.*no image to validate on"):
        tiny.train(data=one, project=tmp_path / "runs")
    davis = tmp_path / "davis"
    (davis / "JPEGImages" / "v").mkdir(parents=True)
    (davis / "Annotations" / "v").mkdir(parents=True)
    cv2.imwrite(str(davis / "JPEGImages" / "v" / "00000.jpg"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(davis / "Annotations" / "v" / "00000.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError, match="video dataset.*not available yet"):
        tiny.train(data=davis, project=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_held_out_split_is_seeded_and_written_down(tiny, tmp_path, caplog):
    from samkit.train.data import open_splits
    from samkit.writers.yolo import write_data_yaml

    root = make_shapes(tmp_path / "d", train=10, val=0).parent
    folder = root / "images" / "train"  # a folder of images with labels/ inside, as the app writes
    (folder / "labels").mkdir()
    for f in (root / "labels" / "train").iterdir():
        f.rename(folder / "labels" / f.name)
    a, b, c = (open_splits(folder, 0.3, seed) for seed in (0, 0, 1))
    other = make_shapes(tmp_path / "same", train=4, val=0).parent
    write_data_yaml(other, {0: "disc"}, by="test", train="images/train")  # train and val the same folder
    with caplog.at_level("WARNING", logger="samkit"):
        same = open_splits(other / "data.yaml")
    assert "its val split is its train split (the same 4 images" in caplog.text and len(same.val.items) == 4
    names = [it.name for it in a.val.items]
    assert len(names) == 3 and names == [it.name for it in b.val.items] != [it.name for it in c.val.items]
    assert not {it.name for it in a.train.items} & set(names) and len(a.train.items) == 7
    res = tiny.train(data=folder, epochs=1, val_fraction=0.3, corrections=0, max_clicks=1, project=tmp_path,
                     name="held", verbose=False)
    split = yaml.safe_load((res.save_dir / "split.yaml").read_text())
    assert split["val"] == names and split["val_from"] == "held out: val_fraction=0.3, seed=0"


@pytest.mark.parametrize("layout", ["coco", "png"])
def test_coco_and_png_datasets_train_as_yolo_ones_do(layout, tiny, tiny_data, tmp_path):
    """The same images and masks as COCO instances and as PNG masks: read to the same targets, so the same run."""
    import cv2

    from samkit.val.datasets import open_dataset
    from samkit.writers.coco import CocoBuilder, coco_annotations
    from samkit.writers.formats import write_dataset, write_image

    root = tmp_path / layout
    (root / "images").mkdir(parents=True)
    coco = CocoBuilder()
    src = open_dataset(tiny_data, "train")
    for item in src.items:
        image = cv2.imread(str(item.path))
        objects = item.read(image.shape[:2])
        stem = item.path.stem
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        masks = np.stack([o.mask for o in objects])
        if layout == "png":
            write_image("png", root / "labels", stem, masks, [0] * len(objects), list(range(1, len(objects) + 1)))
        else:
            h, w = image.shape[:2]
            coco.add({"id": coco.next_image_id, "file_name": f"images/{stem}.png", "height": h, "width": w},
                     coco_annotations(masks, [1] * len(objects), None, image_id=0, first_id=None, rle=True))
    if layout == "coco":
        write_dataset("coco", root, {1: "shape"}, by="test", coco=coco)
    kw = dict(epochs=1, corrections=1, max_clicks=1, val_fraction=0.25, project=tmp_path, verbose=False)
    res = tiny.train(data=root, name=layout, **kw)
    split = yaml.safe_load((res.save_dir / "split.yaml").read_text())
    assert len(split["train"]) == 3 and len(split["val"]) == 1
    assert float(res.rows[1]["train/loss"]) > 0 and res.rows[0]["metrics/box_miou"] >= 0


def test_a_nan_loss_stops_naming_the_step_and_keeps_the_last_good_epoch(tiny, tiny_data, tmp_path, monkeypatch):
    from samkit.train import trainer

    real, calls = trainer.multistep_loss, []

    def poisoned(*args, **kw):
        calls.append(1)
        out = real(*args, **kw)
        if len(calls) == 6:  # epoch 2, its second image
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(trainer, "multistep_loss", poisoned)
    with pytest.raises(TrainError, match=r"the loss is nan at step 6 of the run \(epoch 2, image "
                                         r"images/train/train\d+\.png\).*last finished epoch; lower lr0"):
        tiny.train(data=tiny_data, epochs=3, corrections=0, max_clicks=1, project=tmp_path, name="nan",
                   verbose=False)
    kept = torch.load(tmp_path / "nan" / "weights" / "last.pt", weights_only=True)
    assert kept["train"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_out_of_memory_names_the_settings_that_lower_it(tiny, tiny_data, tmp_path, monkeypatch):
    from samkit.families.sam2 import SAM2Network

    def full(*args, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SAM2Network, "decode_heads", full)
    with pytest.raises(TrainError, match=r"out of memory on cpu.*batch=1 \(now 2\) with accumulate=2.*objects=4 "
                                         r"\(now 8\).*corrections=3 \(now 7\)"):
        tiny.train(data=tiny_data, epochs=1, batch=2, project=tmp_path, verbose=False)


def test_families_that_cannot_be_trained_say_so(tmp_path, tiny_data, monkeypatch):
    from samkit.families.sam2 import SAM2Network

    model = SAM.untrained("sam3_test", device="cpu", verbose=False)
    with pytest.raises(ValueError, match="samkit train needs a .*SAM 2.1.* model; .*SAM 3"):
        model.train(data=tiny_data, project=tmp_path)
    monkeypatch.setattr(SAM2Network, "lora_targets", r"image_encoder\.no_such_layer", raising=False)
    tiny = SAM.untrained("sam2_test", device="cpu", verbose=False)
    with pytest.raises(ValueError, match="lora=4: SAM 2.1's image encoder has no attention projections"):
        tiny.train(data=tiny_data, lora=4, project=tmp_path, verbose=False)


# ---------------------------------------------------------------------- LoRA
@pytest.mark.parametrize("arch", ["sam2_test", "sam_test"])
def test_lora_trains_the_encoders_attention_and_saves_plain_merged_weights(arch, tiny_data, tmp_path):
    pytest.importorskip("peft")
    from samkit.nn.build import build_network

    model = SAM.untrained(arch, device="cpu", verbose=False)
    start = {k: v.clone() for k, v in model.net.state_dict().items()}
    res = model.train(data=tiny_data, epochs=1, lora=4, tune="none", lr0=1e-2, corrections=1, max_clicks=1,
                      project=tmp_path, name="lora", verbose=False)
    last = torch.load(res.last, weights_only=True)
    plain = build_network(model.arch, model.version)
    assert set(last["model"]) == set(plain.state_dict())  # no lora_A / base_layer names: a plain checkpoint
    changed = {k for k in start if not torch.equal(start[k], last["model"][k])}
    assert changed and all(".attn." in k and k.startswith("image_encoder.") and k.endswith(".weight")
                           for k in changed)
    assert any(k.endswith("attn.qkv.weight") for k in changed) and any(k.endswith("attn.proj.weight") for k in changed)
    assert not any("lora" in type(m).__module__ for m in model.net.modules())  # the model is plain again
    again = SAM(str(res.last), device="cpu", verbose=False)  # strict load
    for k, v in again.net.state_dict().items():
        assert torch.equal(v, last["model"][k])
    assert last["train"]["network"] is not None and any("lora_A" in k for k in last["train"]["network"])


def test_the_schedules_by_hand():
    from samkit.train.settings import check
    from samkit.train.trainer import lr_at

    s = check(lr0=1.0, lrf=0.1, schedule="cosine")
    # 2 warm-up steps of 10: 1/3, 2/3, then cosine from 1 (step 2) to 0.1 (step 10)
    assert [round(lr_at(k, 10, 2, s), 6) for k in (0, 1, 2)] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert lr_at(6, 10, 2, s) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: the mean of 1 and 0.1
    assert lr_at(10, 10, 2, s) == pytest.approx(0.1)
    meta = check(lr0=1.0, schedule="meta")  # Meta's CosineParamScheduler(start, start / 10), no warm-up
    assert [lr_at(k, 4, 2, meta) for k in (0, 2, 4)] == pytest.approx([1.0, 0.55, 0.1])
    assert lr_at(3, 4, 2, check(lr0=0.5, schedule="constant")) == 0.5


def test_accumulated_steps_equal_one_bigger_batch(tiny_ckpt, tiny_data, tmp_path):
    kw = dict(data=tiny_data, epochs=1, objects=1, corrections=1, val=False, lr0=1e-3, project=tmp_path,
              verbose=False)
    a = SAM(str(tiny_ckpt), device="cpu", verbose=False).train(batch=2, name="batch", **kw)
    b = SAM(str(tiny_ckpt), device="cpu", verbose=False).train(batch=1, accumulate=2, name="accumulate", **kw)
    la, lb = (torch.load(r.last, weights_only=True) for r in (a, b))
    assert la["train"]["step"] == lb["train"]["step"] == 2  # 4 images, 2 a step
    start = torch.load(tiny_ckpt, weights_only=True)["model"]
    moved = [k for k in start if not torch.equal(start[k], la["model"][k])]
    assert moved
    for k in moved:
        assert torch.allclose(la["model"][k], lb["model"][k], atol=1e-6), k
    assert float(a.rows[-1]["train/loss"]) == pytest.approx(float(b.rows[-1]["train/loss"]), rel=1e-5)


def test_a_lora_run_resumes_exactly(tiny_ckpt, tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("peft")
    from samkit.train import trainer

    kw = dict(data=tiny_data, epochs=2, lora=2, corrections=1, max_clicks=1, lr0=1e-2, project=tmp_path,
              verbose=False)
    SAM(str(tiny_ckpt), device="cpu", verbose=False).train(name="whole", **kw)
    real, calls = trainer.Trainer._optimizer_step, []

    def interrupted(self, *args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(trainer.Trainer, "_optimizer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SAM(str(tiny_ckpt), device="cpu", verbose=False).train(name="cut", **kw)
    monkeypatch.setattr(trainer.Trainer, "_optimizer_step", real)
    last = tmp_path / "cut" / "weights" / "last.pt"
    SAM(str(last), device="cpu", verbose=False).train(resume=True, verbose=False)
    whole = torch.load(tmp_path / "whole" / "weights" / "last.pt", weights_only=True)["model"]
    cut = torch.load(last, weights_only=True)["model"]
    for k in whole:
        assert torch.equal(whole[k], cut[k]), k


# ---------------------------------------------------------------------- several processes
@pytest.mark.slow
def test_two_gloo_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(tiny_ckpt, tiny_data, tmp_path):
    import subprocess
    import sys

    common = [f"model={tiny_ckpt}", f"data={tiny_data}", "epochs=2", "lr0=0.001", "corrections=2", "max_clicks=2",
              "verbose=False"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "samkit", "train", *common, "batch=2", f"project={tmp_path / 'one'}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "samkit", "train", *common, "batch=1", f"project={tmp_path / 'two'}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("best (epoch") == 1  # rank 0 reports, alone
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["exp"]  # and writes, alone
    ra, rb = _rows(tmp_path / "one" / "exp" / "results.csv"), _rows(tmp_path / "two" / "exp" / "results.csv")
    assert len(ra) == len(rb) == 3
    for x, y in zip(ra[1:], rb[1:]):
        for k in ("train/focal", "train/dice", "train/iou", "train/class", "train/loss"):
            assert float(y[k]) == pytest.approx(float(x[k]), rel=1e-3, abs=1e-5), k
    wa = torch.load(tmp_path / "one" / "exp" / "weights" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "two" / "exp" / "weights" / "last.pt", weights_only=True)["model"]
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa if wa[k].is_floating_point()) < 1e-4


# ---------------------------------------------------------------------- real size, Meta's loader
@pytest.mark.slow
def test_a_fine_tuned_sam21_tiny_loads_in_metas_build_sam2_and_predicts_the_same(tmp_path, monkeypatch):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from tests.helpers import patch_sam2_reference_for_cpu, sam2_reference, save_random

    ckpt = tmp_path / "sam2.1_t.pt"
    save_random(ckpt, "sam2_t", "2.1")
    data = make_shapes(tmp_path / "shapes", train=2, val=1, size=(320, 240))
    model = SAM(str(ckpt), device="cpu", verbose=False)
    res = model.train(data=data, epochs=1, lr0=1e-3, corrections=1, max_clicks=1, project=tmp_path, verbose=False)
    start = torch.load(ckpt, weights_only=True)["model"]
    best = torch.load(res.last, weights_only=True)["model"]
    assert any(not torch.equal(start[k], best[k]) for k in start)  # trained
    patch_sam2_reference_for_cpu(monkeypatch)
    ref = sam2_reference(res.last, "sam2_t", "2.1", "cpu")  # strict: Meta's builder refuses a key out of place
    for k, v in ref.state_dict().items():
        assert torch.equal(v, best[k]), k
    import cv2

    image = cv2.imread(str(next((tmp_path / "shapes" / "images" / "val").iterdir())))
    predictor = SAM2ImagePredictor(ref)
    predictor.set_image(image[..., ::-1].copy())
    want, _, _ = predictor.predict(box=np.array([40, 30, 200, 180]), multimask_output=False)
    got = SAM(str(res.last), device="cpu", verbose=False)(image, bboxes=[40, 30, 200, 180], verbose=False)[0]
    inter = (got.masks.data[0].numpy() & want[0].astype(bool)).sum()
    union = (got.masks.data[0].numpy() | want[0].astype(bool)).sum()
    assert union > 0 and inter / union > 0.99
