"""Low-level writers: atomic files (modes, syncing, clean failures, plain-word errors) and COCO polygons (holes)."""

from __future__ import annotations

import errno
import logging
import os
import stat

import numpy as np
import pytest

from samkit.writers import atomic, coco
from samkit.writers.atomic import OutputError, atomic_write_bytes, atomic_write_text
from samkit.writers.coco import CocoBuilder, HoleWarning, coco_annotations, mask_has_holes, mask_to_polygons
from samkit.writers.masks import save_mask_pngs
from samkit.writers.yolo import box_polygon, mask_polygons, write_yolo_seg
from tests.helpers import disc

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------- atomic writes


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_write_mode_is_that_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
        assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask
        # a replaced file gets a new file's mode, not the old one's
        old_file = tmp_path / "old.txt"
        old_file.write_text("old")
        os.chmod(old_file, 0o600)
        atomic_write_text(old_file, "new")
        assert _mode(old_file) == 0o666 & ~umask and old_file.read_text() == "new"
    finally:
        os.umask(old)


def test_atomic_write_content_is_exact_and_leaves_no_temporary(tmp_path):
    data = bytes(range(256)) + b"\r\n\n\x00end"
    assert atomic_write_bytes(tmp_path / "a.bin", data) == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == data
    atomic_write_bytes(tmp_path / "a.bin", b"shorter")
    assert (tmp_path / "a.bin").read_bytes() == b"shorter"
    atomic_write_text(tmp_path / "deep" / "er" / "t.txt", "déjà vu\nline 2\n")
    assert (tmp_path / "deep" / "er" / "t.txt").read_bytes() == "déjà vu\nline 2\n".encode("utf-8")
    assert _names(tmp_path) == ["a.bin", "deep"] and _names(tmp_path / "deep" / "er") == ["t.txt"]


def test_atomic_write_of_a_very_long_name(tmp_path):
    name = "n" * 250 + ".txt"  # 254 bytes: the temporary name must not grow past the file-name limit
    atomic_write_text(tmp_path / name, "ok")
    assert (tmp_path / name).read_text() == "ok" and _names(tmp_path) == [name]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def fail(src, dst):
        raise OSError(errno.EIO, "Input/output error", src)

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OutputError) as e:
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert str(path) in str(e.value) and ".tmp" not in str(e.value)
    assert isinstance(e.value, OSError) and e.value.errno == errno.EIO and isinstance(e.value.__cause__, OSError)
    assert path.read_text() == "old" and _names(tmp_path) == ["a.txt"]


def test_temporary_name_is_retried_when_taken(tmp_path, monkeypatch):
    tokens = iter(["aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".a.txt.aaaaaaaaaaaa.tmp").write_text("someone else's")
    atomic_write_text(tmp_path / "a.txt", "mine")
    assert (tmp_path / "a.txt").read_text() == "mine"
    assert (tmp_path / ".a.txt.aaaaaaaaaaaa.tmp").read_text() == "someone else's"
    assert _names(tmp_path) == [".a.txt.aaaaaaaaaaaa.tmp", "a.txt"]


def test_file_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(st.st_mode) else st.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    path = atomic_write_text(tmp_path / "a.txt", "data")
    monkeypatch.undo()
    ino = os.stat(path).st_ino
    assert events[:2] == [("fsync", ino), ("replace", ino)], events
    if os.name != "nt":
        assert events[2:] == [("fsync", "folder")], "the folder is not synced after the rename"


# ---------------------------------------------------------------------------------------------- output errors


def _expect_output_error(path, match: str):
    with pytest.raises(OutputError) as e:
        atomic_write_text(path, "x")
    msg = str(e.value)
    assert msg.startswith(f"cannot write {path}: ") and match in msg, msg
    assert ".tmp" not in msg and isinstance(e.value, OSError) and isinstance(e.value.__cause__, OSError)
    return e.value


def test_file_where_a_folder_is_needed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs/predict/exp")
    with open("runs/predict/exp/labels", "w") as f:
        f.write("not a folder")
    path = os.path.join("runs", "predict", "exp", "labels", "bus.txt")
    err = _expect_output_error(path, "exists and is a file, not a folder")
    labels = os.path.join("runs", "predict", "exp", "labels")
    assert str(err) == f"cannot write {path}: {labels} exists and is a file, not a folder"
    # deeper: the file sits above a missing folder
    _expect_output_error(os.path.join(labels, "sub", "bus.txt"), f"{labels} exists and is a file, not a folder")
    assert _names(tmp_path / "runs" / "predict" / "exp") == ["labels"]


def test_folder_as_the_target(tmp_path):
    (tmp_path / "out").mkdir()
    _expect_output_error(tmp_path / "out", f"{tmp_path / 'out'} is a folder")
    assert _names(tmp_path) == ["out"] and _names(tmp_path / "out") == []


@pytest.mark.skipif(os.name == "nt" or IS_ROOT, reason="folder permissions do not stop root (or Windows) from writing")
def test_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        _expect_output_error(ro / "a.txt", f"permission denied on folder {ro}")
        _expect_output_error(ro / "labels" / "a.txt", f"permission denied on folder {ro}")
        assert _names(ro) == []
    finally:
        os.chmod(ro, 0o755)


def _fail_open_in(monkeypatch, folder, error: OSError):
    real_open = os.open

    def fake_open(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise error
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", fake_open)


def test_permission_denied_runs_everywhere(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _fail_open_in(monkeypatch, out, PermissionError(errno.EACCES, "Permission denied", str(out / ".a.txt.x.tmp")))
    err = _expect_output_error(out / "a.txt", f"permission denied on folder {out}")
    assert err.errno == errno.EACCES and isinstance(err.__cause__, PermissionError)
    monkeypatch.undo()
    assert _names(out) == []


def test_read_only_file_system(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _fail_open_in(monkeypatch, out, OSError(errno.EROFS, "Read-only file system", str(out / ".a.txt.x.tmp")))
    _expect_output_error(out / "a.txt", f"{out} is on a read-only file system")


def test_disk_full(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    err = _expect_output_error(path, f"no space left on the disk holding {tmp_path}")
    monkeypatch.undo()
    assert err.errno == errno.ENOSPC and path.read_text() == "old" and _names(tmp_path) == ["a.txt"]


def test_output_error_is_caught_as_os_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "f" / "a.bin", b"")


# ---------------------------------------------------------------------------------------------- COCO polygons


def _ring(h=100, w=100):
    return disc(h, w, 50, 50, 30) & ~disc(h, w, 50, 50, 12)


def _polygon_area(polys, h, w) -> int:
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))))


def test_polygons_of_a_ring_lose_the_hole():
    ring = _ring()
    assert mask_has_holes(ring) and not mask_has_holes(disc(100, 100, 50, 50, 30))
    polys = mask_to_polygons(ring)
    assert len(polys) == 1, "the hole must not become a polygon of its own"
    filled = _polygon_area(polys, 100, 100)
    assert abs(filled - disc(100, 100, 50, 50, 30).sum()) < 0.05 * filled, "the polygon is not the filled disc"


def test_one_pixel_hole_counts():
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    assert not mask_has_holes(m)
    m[4, 4] = False
    assert mask_has_holes(m)
    assert not mask_has_holes(np.zeros((9, 9), bool))


def test_two_outer_components_give_two_polygons():
    two = disc(120, 160, 40, 45, 30) | disc(120, 160, 115, 70, 35)
    polys = mask_to_polygons(two)
    assert len(polys) == 2 and not mask_has_holes(two)
    assert abs(_polygon_area(polys, 120, 160) - two.sum()) < 0.05 * two.sum()


@pytest.mark.parametrize("shape", ["disc", "rectangle", "blob"])
def test_polygon_area_is_close_to_the_pixel_count(shape):
    h, w = 120, 160
    if shape == "disc":
        m = disc(h, w, 80, 60, 40)
    elif shape == "rectangle":
        m = np.zeros((h, w), bool)
        m[15:95, 30:140] = True
    else:
        m = disc(h, w, 60, 60, 35) | disc(h, w, 95, 55, 30)
    assert not mask_has_holes(m)
    area = _polygon_area(mask_to_polygons(m), h, w)
    assert abs(area - m.sum()) < 0.05 * m.sum(), (area, int(m.sum()))


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "samkit" and r.levelno == logging.WARNING]


def test_hole_warning_once_per_run(caplog):
    holes = HoleWarning()
    ring, solid = _ring(), disc(100, 100, 50, 50, 30)
    with caplog.at_level(logging.WARNING, logger="samkit"):
        coco_annotations(np.stack([solid, solid]), [0, 1], [0.9, 0.8], image_id=1, holes=holes, where="a.jpg")
        assert _warnings(caplog) == [] and holes.count == 0
        coco_annotations(np.stack([solid, ring, ring]), [0, 1, 2], [1, 1, 1], image_id=2, holes=holes, where="b.jpg")
        anns = coco_annotations(ring[None], [3], [1.0], image_id=3, holes=holes, where="c.jpg")
        assert holes.check(ring, "d.jpg") and not holes.check(solid, "e.jpg") and not holes.check(False, "f.jpg")
    (rec,) = _warnings(caplog)
    msg = rec.getMessage()
    assert "holes" in msg and "b.jpg" in msg and "rle=True" in msg and "c.jpg" not in msg
    assert holes.count == 4 and holes.first == "b.jpg"
    assert anns[0]["area"] == int(ring.sum()), "area must stay the mask's pixel count"


def test_rle_keeps_holes_and_does_not_warn(caplog):
    from pycocotools import mask as mask_utils

    holes = HoleWarning()
    ring = _ring()
    with caplog.at_level(logging.WARNING, logger="samkit"):
        (ann,) = coco_annotations(ring[None], [0], [1.0], image_id=1, rle=True, holes=holes, where="a.jpg")
    assert _warnings(caplog) == [] and holes.count == 0
    rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode("ascii"))
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), ring)


def test_without_a_warner_at_most_one_warning_per_process(caplog, monkeypatch):
    monkeypatch.setattr(coco, "_PROCESS_HOLES", HoleWarning())
    ring = _ring()
    with caplog.at_level(logging.WARNING, logger="samkit"):
        coco_annotations(ring[None], [0], [1.0], image_id=7)
        coco_annotations(ring[None], [0], [1.0], image_id=8)
    (rec,) = _warnings(caplog)
    assert "image 7" in rec.getMessage()


# ---------------------------------------------------------------------------------------------- label writers


def test_coco_annotations_without_score_or_id():
    solid = disc(60, 80, 40, 30, 15)
    (ann,) = coco_annotations(solid[None], [4], None, image_id=0, first_id=None, holes=HoleWarning())
    assert list(ann) == ["image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"]
    (scored,) = coco_annotations(solid[None], [4], [0.5], image_id=0, first_id=0, holes=HoleWarning())
    assert scored["id"] == 0 and scored["score"] == 0.5 and {k: scored[k] for k in ann} == ann


def test_coco_builder_numbers_annotations_and_names_categories(tmp_path):
    from pycocotools.coco import COCO

    a, b = disc(60, 80, 20, 20, 10), disc(60, 80, 60, 40, 12)
    coco = CocoBuilder()
    assert (coco.next_image_id, coco.next_annotation_id, len(coco)) == (1, 1, 0)
    coco.add({"id": 3, "file_name": "x.jpg", "height": 60, "width": 80},
             coco_annotations(np.stack([a, b]), [7, 2], None, image_id=0, first_id=None, holes=HoleWarning()))
    coco.add({"id": 5, "file_name": "y.jpg", "height": 60, "width": 80}, [])
    scored = coco_annotations(b[None], [2], [0.9], image_id=9, first_id=40, holes=HoleWarning())
    coco.add({"id": 9, "file_name": "z.jpg", "height": 60, "width": 80}, scored)
    assert (coco.next_image_id, coco.next_annotation_id, len(coco)) == (4, 4, 3)
    assert [(x["id"], x["image_id"]) for x in coco.annotations] == [(1, 3), (2, 3), (3, 9)]
    assert list(coco.annotations[0])[-1] == "id" and list(coco.annotations[2])[0] == "id", "keys keep their place"
    assert scored[0]["id"] == 40, "the annotations given are not changed"
    assert coco.category_ids() == {2, 7}
    assert coco.document({2: "car"})["categories"] == [{"id": 2, "name": "car"}]
    assert coco.document({2: "car", 0: "person"}, name_all=True)["categories"] == [
        {"id": 0, "name": "person"}, {"id": 2, "name": "car"}, {"id": 7, "name": "7"}]
    path = coco.write(tmp_path / "c.json", {2: "car"}, name_all=True)
    loaded = COCO(str(path))
    assert sorted(loaded.getImgIds()) == [3, 5, 9] and len(loaded.getAnnIds(imgIds=[3])) == 2
    assert int(loaded.annToMask(loaded.anns[1]).sum()) == pytest.approx(a.sum(), rel=0.1)


def test_yolo_polygons_and_box_rectangles(tmp_path):
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 30, 5:25] = True  # a line: too thin for a polygon
    polys = mask_polygons(masks)
    assert len(polys) == 3 and len(polys[0]) >= 3 and len(polys[1]) < 3 and len(polys[2]) == 0
    assert mask_polygons(np.zeros((0, 40, 50), bool)) == []
    rect = box_polygon([5, 30, 25, 31], (40, 50))
    np.testing.assert_allclose(rect, [[0.1, 0.75], [0.5, 0.75], [0.5, 0.775], [0.1, 0.775]])
    path = write_yolo_seg(tmp_path / "a.txt", [polys[0], rect, polys[2]], [3, 8, 1], warn_empty=False)
    rows = path.read_text().splitlines()
    assert [r.split()[0] for r in rows] == ["3", "8"]
    assert rows[1] == "8 0.1 0.75 0.5 0.75 0.5 0.775 0.1 0.775"


def test_mask_pngs_clear_the_stems_other_masks(tmp_path):
    import cv2

    masks = np.zeros((3, 20, 30), bool)
    masks[:, 2:8, 3:9] = True
    save_mask_pngs(masks, tmp_path, "a")
    for other in ("a_x.png", "ab_000.png", "a_000.jpg", "a_1.png"):
        (tmp_path / other).write_bytes(b"not mine")
    paths = save_mask_pngs(masks[[1]], tmp_path, "a", obj_ids=[2], clear_others=True)
    assert paths == [tmp_path / "a_002.png"]
    assert _names(tmp_path) == ["a_000.jpg", "a_002.png", "a_1.png", "a_x.png", "ab_000.png"]
    m = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (20, 30) and m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}
    assert save_mask_pngs(masks[:0], tmp_path, "a", obj_ids=[], clear_others=True) == []
    assert "a_002.png" not in _names(tmp_path)
