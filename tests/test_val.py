"""samkit val: the measures against independent implementations (vos-benchmark, SciPy, pycocotools, SAM.predict)
and hand-made cases, the datasets in every format, the run folder as users open it, the CLI and bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from samkit import SAM
from samkit.val import DatasetError, open_dataset, run
from samkit.val.clicks import depth, first_click, next_click
from samkit.val.metrics import boundary_f, boundary_map, disk, iou, miou_at, noc
from samkit.writers.coco import CocoBuilder, coco_annotations
from samkit.writers.formats import write_dataset, write_image

vos = pytest.importorskip("vos_benchmark", reason="DAVIS's evaluation code, the J&F oracle (pip install -e '.[dev]')")
from vos_benchmark.evaluator import Evaluator  # noqa: E402
from vos_benchmark.utils import _seg2bmap  # noqa: E402


# ---------------------------------------------------------------------- metrics against vos-benchmark
def _random_masks(rng, n=60):
    for _ in range(n):
        h, w = rng.integers(1, 48, 2)
        density = rng.random()
        yield rng.random((h, w)) < density, rng.random((h, w)) < rng.random()


def test_boundary_map_and_disk_are_davis_ones():
    from skimage.morphology import disk as sk_disk

    rng = np.random.default_rng(0)
    for m, _ in _random_masks(rng, 200):
        assert np.array_equal(boundary_map(m), _seg2bmap(m.copy()))
    for r in range(8):
        assert np.array_equal(disk(r), sk_disk(r))


def test_j_and_f_equal_vos_benchmark_on_random_and_blob_masks():
    rng = np.random.default_rng(1)
    cases = list(_random_masks(rng))
    for _ in range(40):  # blobs, the usual case: overlapping discs
        h, w = rng.integers(16, 90, 2)
        a, b = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
        for m in (a, b):
            cv2.circle(m, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 30)), 1, -1)
        cases.append((a.astype(bool), b.astype(bool)))
    for pred, gt in cases:
        ev = Evaluator()
        ev.feed_frame(pred.astype(np.uint8), gt.astype(np.uint8))
        want_j = ev.object_iou[1][0] if ev.object_iou else None
        want_f = ev.boundary_f[1][0] if ev.boundary_f else None
        if want_j is None:  # neither mask has the object: both empty
            assert iou(pred, gt) == 1.0 and boundary_f(pred, gt) == 1.0
            continue
        assert iou(pred, gt) == pytest.approx(want_j, abs=1e-12)
        assert boundary_f(pred, gt) == pytest.approx(want_f, abs=1e-12)


@pytest.mark.parametrize("pred, gt, j, f", [
    (np.zeros((8, 8), bool), np.zeros((8, 8), bool), 1.0, 1.0),  # both empty
    (np.zeros((8, 8), bool), np.eye(8, dtype=bool), 0.0, 0.0),  # empty prediction
    (np.eye(8, dtype=bool), np.zeros((8, 8), bool), 0.0, 0.0),  # empty ground truth
    (np.ones((8, 8), bool), np.ones((8, 8), bool), 1.0, 1.0),  # the whole image: touching every border
])
def test_edge_cases_by_hand(pred, gt, j, f):
    assert iou(pred, gt) == j and boundary_f(pred, gt) == f


def test_one_pixel_objects_by_hand():
    a = np.zeros((100, 100), bool)
    b = a.copy()
    a[10, 10] = True
    b[10, 11] = True  # one pixel apart: no overlap, but within the boundary tolerance (ceil(0.008 * 141.4) = 2)
    assert iou(a, b) == 0.0 and iou(a, a) == 1.0
    assert boundary_f(a, b) == 1.0
    c = a.copy()
    c[10, 10], c[50, 50] = False, True  # far apart
    assert boundary_f(a, c) == 0.0


def test_noc_and_miou_at_by_hand():
    assert noc([0.5, 0.86, 0.91], 0.85, 20) == 2 and noc([0.5, 0.86, 0.91], 0.90, 20) == 3
    assert noc([0.5, 0.6], 0.85, 20) == 20  # never reached: the budget
    assert miou_at([[0.2, 0.4, 0.6], [0.8]], 3) == pytest.approx((0.6 + 0.8) / 2)  # a stopped object keeps its last


# ---------------------------------------------------------------------- the click robot
def test_depth_is_the_exact_euclidean_distance_to_the_outside():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(2)
    for _ in range(30):
        m = rng.random(tuple(rng.integers(2, 40, 2))) < 0.7
        want = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # the border counts as outside
        assert np.allclose(depth(m), want, atol=1e-4)


def test_clicks_are_the_ones_the_definition_gives():
    square = np.zeros((20, 30), bool)
    square[4:15, 5:16] = True  # 11 x 11: the centre (10, 9) is the one pixel 6 from the outside
    c = first_click(square)
    assert (c.x, c.y, c.positive, c.depth) == (10, 9, True, 6.0)
    gt = np.zeros((20, 30), bool)
    gt[4:15, 5:26] = True  # 11 x 21: columns 10..20 of row 9 are all 6 deep: the first in row-major order
    c = first_click(gt)
    assert (c.x, c.y, c.depth) == (10, 9, 6.0)
    pred = gt.copy()
    pred[4:15, 5:12] = False  # a missed band 7 wide on the left, and a false strip 3 tall above
    pred[0:3, 0:30] = True
    c = next_click(gt, pred)
    assert c.positive and (c.x, c.y, c.depth) == (8, 7, 4.0)  # the band (4 deep) beats the strip (2 deep)
    pred = gt.copy()
    pred[0:3, 0:30] = True  # only false pixels left: a negative click on them, first deepest in row-major order
    c = next_click(gt, pred)
    assert not c.positive and c.y == 1 and c.x == 1
    assert next_click(gt, gt) is None
    tie = np.zeros((9, 20), bool)
    tie[3:6, 2:5] = True  # a missed 3x3 square
    pred = np.zeros_like(tie)
    pred[3:6, 12:15] = True  # and a false one as deep: the missed region wins
    assert next_click(tie, pred).positive


# ---------------------------------------------------------------------- a synthetic dataset in every format
def _scene(rng, h=96, w=128):
    """A textured image with three objects: a ring (a hole), two discs as one object (two components), a square."""
    yy, xx = np.mgrid[:h, :w]
    img = (((xx // 4 + yy // 4) % 2) * 40 + rng.integers(30, 70, (h, w))).astype(np.uint8)
    img = np.repeat(img[..., None], 3, 2)
    ring = np.zeros((h, w), np.uint8)
    cv2.circle(ring, (30, 40), 20, 1, -1)
    cv2.circle(ring, (30, 40), 8, 0, -1)
    pair = np.zeros((h, w), np.uint8)
    cv2.circle(pair, (80, 20), 9, 1, -1)
    cv2.circle(pair, (110, 30), 7, 1, -1)
    square = np.zeros((h, w), np.uint8)
    square[60:90, 70:100] = 1
    masks = [ring.astype(bool), pair.astype(bool), square.astype(bool)]
    for m, colour in zip(masks, ((220, 90, 40), (40, 200, 90), (60, 80, 230))):
        img[m] = colour
    return img, masks


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(3)
    return [_scene(rng) for _ in range(3)]


def _png_dataset(root, scenes):
    for i, (img, masks) in enumerate(scenes):
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), img)
        write_image("png", root / "labels", f"s{i}", np.stack(masks), [0, 0, 0], [1, 2, 3])
    return root


def _coco_dataset(root, scenes):
    coco = CocoBuilder()
    root.mkdir(parents=True, exist_ok=True)
    for i, (img, masks) in enumerate(scenes):
        cv2.imwrite(str(root / f"s{i}.png"), img)
        anns = coco_annotations(np.stack(masks), [1, 1, 2], None, image_id=0, first_id=None, rle=True)
        coco.add({"id": coco.next_image_id, "file_name": f"s{i}.png", "height": 96, "width": 128}, anns)
    coco.add({"id": coco.next_image_id, "file_name": "s0.png", "height": 96, "width": 128},
             [{**coco_annotations(np.stack(scenes[0][1][:1]), [1], None, image_id=0, first_id=None, rle=True)[0],
               "iscrowd": 1}])  # a crowd annotation: skipped
    return write_dataset("coco", root, {1: "thing", 2: "box"}, by="test", coco=coco)


def test_the_formats_read_to_the_same_masks(scenes, tmp_path):
    png = open_dataset(_png_dataset(tmp_path / "png", scenes))
    coco = open_dataset(_coco_dataset(tmp_path / "coco", scenes))
    assert png.kind == "png" and coco.kind == "coco"
    assert [it.name for it in png.items] == ["images/s0.png", "images/s1.png", "images/s2.png"]
    assert any("crowd" in n for n in coco.notes) and len(coco.items) == 4
    for i, (img, masks) in enumerate(scenes):
        for ds in (png, coco):
            got = ds.items[i].read(img.shape[:2])
            assert len(got) == 3
            for o, m in zip(got, masks):
                assert np.array_equal(o.mask, m), (ds.kind, i)
    assert [o.cls for o in coco.items[0].read((96, 128))] == [1, 1, 2] and coco.names == {1: "thing", 2: "box"}
    assert coco.items[3].read((96, 128)) == []  # the crowd-only image
    # YOLO-seg: polygons, as samkit writes them (one outline per object: no hole, largest component)
    yolo = tmp_path / "yolo"
    for i, (img, masks) in enumerate(scenes):
        (yolo / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(yolo / "images" / f"s{i}.png"), img)
        write_image("yolo", yolo / "labels", f"s{i}", np.stack(masks), [0, 1, 1], [0, 1, 2])
    write_dataset("yolo", yolo, {0: "ring", 1: "other"}, by="test", train="images")
    ds = open_dataset(yolo / "data.yaml")
    assert ds.kind == "yolo" and ds.names == {0: "ring", 1: "other"} and ds.split == "val"
    square = ds.items[0].read((96, 128))[2].mask
    assert np.array_equal(square, scenes[0][1][2])  # a polygon without holes comes back exactly
    assert iou(ds.items[0].read((96, 128))[0].mask, scenes[0][1][0]) < 1  # the ring's hole is filled: polygons


@pytest.fixture(scope="module")
def model():
    return SAM.untrained("sam2_test", device="cpu", verbose=False)


def test_val_gives_the_numbers_a_direct_computation_gives(model, scenes, tmp_path):
    data = _png_dataset(tmp_path / "png", scenes)
    res = model.val(data, prompts="box,click", max_clicks=4, project=tmp_path / "runs", worst=4, verbose=False)
    out = res.save_dir
    assert out == tmp_path / "runs" / "exp" and model.save_dir == out
    assert sorted(p.name for p in out.iterdir()) == ["clicks.png", "iou_hist.png", "metrics.json", "per_item.csv",
                                                     "summary.md", "worst.jpg"]
    for name in ("clicks.png", "iou_hist.png", "worst.jpg"):
        assert cv2.imread(str(out / name)) is not None, name
    rows = list(csv.DictReader((out / "per_item.csv").open()))
    assert len(rows) == 9 * 2 and {r["prompt"] for r in rows} == {"box", "click"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["objects"] == 9 and metrics["counts"]["images"] == 3
    # the same prompts through the one-line call, IoU by numpy
    direct_box, direct_clicks = [], []
    for i, (img, masks) in enumerate(scenes):
        for j, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            r = model(img, bboxes=[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])[0]
            direct_box.append(iou(r.masks.data[0].cpu().numpy(), m))
            clicks = [first_click(m)]
            ious, logits = [], None
            for k in range(4):
                pts = [[[c.x, c.y] for c in clicks]]
                labs = [[int(c.positive) for c in clicks]]
                if k == 0:
                    r = model(img, points=pts, labels=labs, multimask=True)[0]
                    best = int(r.iou.argmax())
                else:
                    r = model(img, points=pts, labels=labs, masks=logits)[0]
                    best = 0
                pred = r.masks.data[best].cpu().numpy()
                logits = r.low_res_logits[best : best + 1].float().cpu().numpy()
                ious.append(iou(pred, m))
                c = next_click(m, pred)
                if c is None:
                    break
                clicks.append(c)
            direct_clicks.append(ious)
            row = next(r for r in rows if r["item"] == f"images/s{i}.png" and r["prompt"] == "click"
                       and int(r["object"]) == j + 1)  # the PNGs' object ids
            given = [tuple(c.split(",")) for c in row["clicks"].split()]
            assert [(int(x), int(y), s == "+") for x, y, s in given] == [(c.x, c.y, c.positive) for c in
                                                                         clicks[: len(ious)]]
    assert res.metrics["box"]["miou"] == pytest.approx(np.mean(direct_box), abs=1e-6)
    for k in (1, 3):
        assert res.metrics["click"][f"miou@{k}"] == pytest.approx(miou_at(direct_clicks, k), abs=1e-6)
    assert res.metrics["click"]["noc@85"] == pytest.approx(np.mean([noc(o, 0.85, 4) for o in direct_clicks]))
    assert res.results_dict["metrics/click_noc@90"] == res.metrics["click"]["noc@90"]
    again = model.val(data, prompts="box,click", max_clicks=4, project=tmp_path / "runs", plots=False,
                      verbose=False)
    assert again.save_dir.name == "exp-2" and again.metrics == res.metrics, "deterministic"


def test_video_j_and_f_equal_vos_benchmark(present_ckpt, tmp_path):
    root = tmp_path / "DAVIS"
    for v in ("left", "right"):
        (root / "JPEGImages" / "480p" / v).mkdir(parents=True)
        (root / "Annotations" / "480p" / v).mkdir(parents=True)
        for t in range(5):
            img = np.full((72, 96, 3), 50, np.uint8)
            ids = np.zeros((72, 96), np.uint8)
            for k, (x0, y0) in enumerate([(25, 30), (65, 40)], 1):
                m = np.zeros((72, 96), np.uint8)
                cv2.circle(m, (x0 + (3 * t if v == "right" else -2 * t), y0), 11, 1, -1)
                img[m > 0] = (200, 80 * k, 40)
                ids[m > 0] = k
            cv2.imwrite(str(root / "JPEGImages" / "480p" / v / f"{t:05d}.jpg"), img)
            if t != 3 or v == "left":  # right's frame 3 has no annotation: not measured
                p = Image.fromarray(ids, mode="P")
                p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
                p.save(root / "Annotations" / "480p" / v / f"{t:05d}.png")
    model = SAM(str(present_ckpt), device="cpu", verbose=False)
    res = model.val(root, prompts="mask,click", project=tmp_path / "runs", verbose=False)
    rows = list(csv.DictReader((res.save_dir / "per_item.csv").open()))
    assert len(rows) == 2 * 2 * 2 and any("right" in n and "1 of 5" in n for n in res.runs[0]["notes"])
    for kind in ("mask", "click"):
        js, fs = [], []
        for v in ("left", "right"):
            ev = Evaluator()
            first = np.asarray(Image.open(root / "Annotations" / "480p" / v / "00000.png"))
            prompts = [{"mask": first == k, "id": k} if kind == "mask" else
                       {"points": [[first_click(first == k).x, first_click(first == k).y]], "labels": [1], "id": k}
                       for k in (1, 2)]
            for r in model.track(str(root / "JPEGImages" / "480p" / v), prompts=prompts):
                ann = root / "Annotations" / "480p" / v / f"{r.frame:05d}.png"
                if r.frame in (0, 4) or not ann.exists():
                    continue
                pred = np.zeros((72, 96), np.uint8)
                for m, i in sorted(zip(r.masks.data.cpu().numpy(), r.boxes.id.int().tolist()), key=lambda p: p[1]):
                    pred[m] = i
                ev.feed_frame(pred, np.asarray(Image.open(ann)))
            j, f = ev.conclude()
            js += [j[k] / 100 for k in (1, 2)]
            fs += [f[k] / 100 for k in (1, 2)]
        got = res.metrics[kind]
        assert got["J"] == pytest.approx(np.mean(js), abs=1e-9) and got["F"] == pytest.approx(np.mean(fs), abs=1e-9)
        assert got["J&F"] == pytest.approx((np.mean(js) + np.mean(fs)) / 2, abs=1e-9) and got["objects"] == 4
    assert res.metrics["mask"]["J"] > 0 and res.metrics["mask"]["F"] > 0, "masks to compare (present-head weights)"


# ---------------------------------------------------------------------- bad input
def test_bad_datasets_are_named(tmp_path, scenes, model):
    boxes = tmp_path / "boxes"
    (boxes / "images").mkdir(parents=True)
    (boxes / "labels").mkdir()
    cv2.imwrite(str(boxes / "images" / "a.png"), scenes[0][0])
    (boxes / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match="boxes only"):
        open_dataset(boxes)
    sized = _png_dataset(tmp_path / "sized", scenes[:1])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(sized / "labels" / "s0_001.png")
    with pytest.raises(DatasetError, match=r"s0_001\.png: the mask is 10x10 but its image is 128x96"):
        model.val(sized, prompts="box", project=tmp_path / "runs", verbose=False)
    coco = _coco_dataset(tmp_path / "coco", scenes)
    for p in (tmp_path / "coco").glob("*.png"):
        p.unlink()
    with pytest.raises(DatasetError, match="none of its 4 images was found"):
        open_dataset(coco)
    empty = tmp_path / "empty"
    (empty / "labels").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        open_dataset(empty)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown prompt kind 'scribble'"):
        model.val(_png_dataset(tmp_path / "ok", scenes[:1]), prompts="box,scribble", verbose=False)
    with pytest.raises(ValueError, match=r"max_clicks=0 must be an integer in \[1, 100\]"):
        model.val(tmp_path / "ok", max_clicks=0, verbose=False)
    assert not (tmp_path / "runs").exists(), "a refused or failed run leaves no folder behind"


def test_cli_compares_two_models_in_one_table(tmp_path, scenes, tiny_ckpt, present_ckpt):
    data = _png_dataset(tmp_path / "png", scenes[:2])
    cmd = [sys.executable, "-m", "samkit.cli", "val", f"model={tiny_ckpt},{present_ckpt}", f"data={data}",
           "prompts=box,click", "max_clicks=3", "device=cpu", f"project={tmp_path / 'runs'}", "verbose=False"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "NoC@90" in lines[0] and lines[1].lstrip().startswith(tiny_ckpt.name)
    assert lines[2].lstrip().startswith(present_ckpt.name) and "saved to" in lines[-1]
    doc = json.loads((tmp_path / "runs" / "exp" / "metrics.json").read_text())
    assert [d["model"] for d in doc] == [tiny_ckpt.name, present_ckpt.name]
    assert (tmp_path / "runs" / "exp" / f"per_item_{tiny_ckpt.name}.csv").is_file()
    bad = subprocess.run([*cmd[:4], f"model={tiny_ckpt}", f"data={tmp_path / 'nowhere'}"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    early = subprocess.run([*cmd[:4], "model=no_such_model.pt", f"data={data}", "max_clicks=0"], capture_output=True,
                           text=True, timeout=120)  # the settings fail before any model is looked for
    assert early.returncode == 2 and "max_clicks=0 must be an integer in [1, 100]" in early.stderr
    early = subprocess.run([*cmd[:4], "model=no_such_model.pt", f"data={data}", "prompts=scribble"],
                           capture_output=True, text=True, timeout=120)
    assert early.returncode == 2 and "unknown prompt kind 'scribble'" in early.stderr
    twice = run([SAM(str(tiny_ckpt), device="cpu", verbose=False)] * 2, data, prompts="box", project=tmp_path / "r",
                plots=False, verbose=False)
    assert [r["model"] for r in twice.runs] == [tiny_ckpt.name, f"{tiny_ckpt.name} #2"]
    assert (twice.save_dir / f"per_item_{tiny_ckpt.name}__2.csv").is_file()


# ---------------------------------------------------------------------- SAM 3 concepts: cgF1 and AP
def _cgf1_oracle(tmp_path, points):
    """Meta's cgF1 evaluator (sam3.eval) on datapoints ``[(gt masks, [(det mask, score), ...]), ...]``."""
    from sam3.eval.cgf1_eval import CGF1Evaluator

    from samkit.val.concepts import rle

    images, anns, preds = [], [], []
    for i, (gts, dts) in enumerate(points, 1):
        h, w = (gts[0] if gts else dts[0][0]).shape if gts or dts else (8, 8)
        images.append({"id": i, "height": h, "width": w, "file_name": f"{i}.png", "is_instance_exhaustive": True})
        for g in gts:
            ys, xs = np.nonzero(g)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle(g),
                         "area": float(g.sum()), "iscrowd": 0,
                         "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
        for m, s in dts:
            preds.append({"image_id": i, "category_id": 1, "segmentation": rle(m), "score": s})
    (tmp_path / "gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                  "categories": [{"id": 1, "name": "thing"}]}))
    (tmp_path / "dt.json").write_text(json.dumps(preds))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        out = CGF1Evaluator(str(tmp_path / "gt.json")).evaluate(str(tmp_path / "dt.json"))
    return {k.split("segm_")[1]: v for k, v in out.items()}


def test_cgf1_equals_sam3s_evaluator(tmp_path):
    pytest.importorskip("sam3")
    from samkit.val.concepts import CGF1_THRESHOLD, cgf1, datapoint_counts, rle

    rng = np.random.default_rng(4)

    def disc(h, w):
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(3, 14)), 1, -1)
        return m.astype(bool)

    def jitter(m):  # a detection near a ground truth: shifted by a pixel or a few
        return np.roll(m, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))

    points = []
    for _ in range(40):
        gts = [disc(40, 50) for _ in range(rng.integers(0, 4))]
        dts = [(jitter(g), float(rng.random())) for g in gts if rng.random() < 0.8]
        dts += [(disc(40, 50), float(rng.random())) for _ in range(rng.integers(0, 3))]
        if not gts and not dts:
            gts = []
        points.append((gts, dts))
    mine = cgf1([datapoint_counts([rle(g) for g in gts], [rle(m) for m, s in dts if s >= CGF1_THRESHOLD])
                 for gts, dts in points])
    meta = _cgf1_oracle(tmp_path, points)
    assert mine["cgF1"] == pytest.approx(meta["cgF1"], abs=2e-3)
    assert mine["cgF1@50"] == pytest.approx(meta["cgF1@0.5"], abs=2e-3)
    assert mine["cgF1@75"] == pytest.approx(meta["cgF1@0.75"], abs=2e-3)
    assert mine["pmF1"] == pytest.approx(meta["positive_micro_F1"], abs=2e-3)
    assert mine["IL_MCC"] == pytest.approx(meta["IL_MCC"], abs=2e-3)
    assert 0.05 < mine["cgF1"] < 0.95, "a mix of hits and misses, not a degenerate case"


def test_ap_of_perfect_detections_is_one_and_of_none_zero():
    from samkit.val.concepts import coco_ap, rle

    m = np.zeros((30, 30), bool)
    m[5:20, 5:25] = True
    images = [{"id": 1, "file_name": "a", "height": 30, "width": 30}]
    gts = [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": rle(m), "area": float(m.sum()),
            "bbox": [5.0, 5.0, 20.0, 15.0], "iscrowd": 0}]
    perfect = [{"image_id": 1, "category_id": 3, "segmentation": rle(m), "score": 0.9}]
    assert coco_ap(images, gts, perfect, {3: "thing"}) == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    wrong = [{"image_id": 1, "category_id": 3, "segmentation": rle(~m), "score": 0.9}]
    assert coco_ap(images, gts, wrong, {3: "thing"})["AP"] == 0.0


def test_sam3_concepts_val_equals_the_oracles_on_its_own_detections(tmp_path, scenes):
    pytest.importorskip("open_clip", reason="the SAM 3 tokenizer is open_clip's (pip install -e '.[dev]')")
    pytest.importorskip("sam3")
    data = _coco_dataset(tmp_path / "coco", scenes)
    from benchmarks.sam3_reference import fill_random_
    from benchmarks.sam3_video_reference import shape_weights_

    sam3 = SAM.untrained("sam3_test", device="cpu", verbose=False)
    fill_random_(sam3.net, seed=0)
    shape_weights_(sam3.net, offset=3.0)  # phrases find objects (random heads find none): detections to score
    res = sam3.val(data, prompts="text", project=tmp_path / "runs", verbose=False)
    got = res.metrics["text"]
    assert got["image_level"]["tp"] + got["image_level"]["fp"] > 0, "detections above 0.5 to score"
    assert sorted(p.name for p in res.save_dir.iterdir()) == ["metrics.json", "per_item.csv", "summary.md"]
    rows = list(csv.DictReader((res.save_dir / "per_item.csv").open()))
    assert len(rows) == 4 * 2 and {r["phrase"] for r in rows} == {"thing", "box"}  # images x category names
    # the same detections through the one-line call, scored by Meta's evaluator
    points = []
    for i in range(4):
        img, masks = scenes[[0, 1, 2, 0][i]]  # the fourth image is s0.png again, with a crowd annotation only
        gt_cls = [1, 1, 2] if i < 3 else []
        r = sam3(img, texts=["thing", "box"], conf=0.05, max_det=100)[0]
        for q, cat in enumerate((1, 2)):
            gts = [m for m, c in zip(masks, gt_cls) if c == cat]
            dts = [(m.cpu().numpy(), float(s)) for m, s, c in zip(r.masks.data, r.boxes.conf, r.boxes.cls) if c == q]
            points.append((gts, dts))
    meta = _cgf1_oracle(tmp_path, points)
    assert got["cgF1"] == pytest.approx(meta["cgF1"], abs=2e-3)
    assert got["IL_MCC"] == pytest.approx(meta["IL_MCC"], abs=2e-3)
    with pytest.raises(ValueError, match="'text' .* is measured on its own"):
        sam3.val(data, prompts="text,box", verbose=False)
    with pytest.raises(ValueError, match="no 'concepts' capability"):
        SAM.untrained("sam2_test", device="cpu", verbose=False).val(data, prompts="text", verbose=False)
