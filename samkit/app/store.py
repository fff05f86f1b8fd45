"""The app's dataset folder: every object of every image (or video frame), saved as it is edited.

Layout of the output folder ``out`` (under the folder the app was started on):

- ``.samkit/project.json``: the dataset format chosen at start and the class names;
- ``.samkit/objects/<stem>.json``: one image's objects, each with its prompts (clicks and box, so it can be edited
  further after a restart) and its mask as COCO RLE (lossless); for a video, ``.samkit/objects/<video>/`` holds
  ``prompts.json`` (every object's prompts on every frame) and ``<frame>.json`` (the tracked masks of one frame);
- the dataset itself, in the format chosen at start: ``format="yolo"``: ``<stem>.txt`` YOLO-seg rows (in the
  ``labels`` folder: ``out`` itself, or ``out/labels`` beside an ``images`` folder) and ``data.yaml`` naming the
  classes (and ``train: images`` beside one); ``format="coco"``: one ``annotations.json``; ``format="png"``:
  ``<stem>_<object id>.png`` masks (0 / 255) in the labels folder;
- a video file's tracked frames, ``out/images/<video>_<frame>.jpg`` (``frames``), the dataset's images;
- ``.samkit/lock``: held while an app has the folder open (one app per folder).

Each edit's record is written (atomically, :mod:`samkit.writers.atomic`) before the page is answered; the dataset
files follow in a background thread (polygons and a whole COCO document take longer than a click should wait),
also atomically, the latest state of each item winning when edits come faster than they are written. A crash
therefore loses at most the edit in flight: on start the dataset files are brought up to date with the records
(:meth:`Dataset.sync`), and :meth:`Dataset.flush` waits for the writer (the app calls it when it stops).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from samkit.utils import LOGGER
from samkit.utils.lru import LRU
from samkit.writers.atomic import atomic_write_text, make_dirs
from samkit.writers.coco import CocoBuilder, HoleWarning, coco_annotations, mask_to_rle
from samkit.writers.formats import check_format, image_files, write_dataset, write_image
from samkit.writers.yolo import mask_polygons

WRITE_DELAY = 0.3  # seconds an item's dataset files wait for its next edit (records are written at once)


class AppError(ValueError):
    """A request the app refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def rle_decode(rle: dict) -> np.ndarray:
    """(H, W) bool mask of a COCO compressed RLE (as :func:`~samkit.writers.coco.mask_to_rle` writes it)."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def row_runs(mask: np.ndarray) -> str:
    """Row-major run lengths of a binary mask, starting with a run of zeros (possibly empty), as base64 of
    little-endian uint32: what the page paints from (compact and quick to parse, however ragged the mask)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if not flat.size:
        return ""
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return base64.b64encode(runs.astype("<u4").tobytes()).decode("ascii")


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (resolved, symbolic links followed) lies in ``root`` (resolved)."""
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OSError(f"{path} cannot be read ({e}); move it away to start that item afresh") from e


def _digest(rle: dict) -> str:
    """A short content hash of a COCO RLE mask (its size and counts)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{rle['size']}".encode())
    h.update(rle["counts"].encode("ascii"))
    return h.hexdigest()


def _write_json(path: Path, data: dict) -> Path:
    return atomic_write_text(path, json.dumps(data, separators=(",", ":")))


class Dataset:
    """The output folder: class names, per-item records and the dataset files of one format.

    Args:
        out: The output folder (created on the first write).
        fmt: ``"yolo"``, ``"coco"`` or ``"png"``.
        names: Class id -> name given at start; names already saved in the folder are kept, these win.
        rle: COCO segmentations as RLE (keeps holes) instead of polygons.
    """

    def __init__(self, out: Path, fmt: str, names: dict[int, str] | None = None, rle: bool = False,
                 labels: Path | None = None, frames: Path | None = None, train: str | None = None):
        self.out = Path(out)
        self.labels = Path(labels) if labels is not None else self.out
        self.frames = Path(frames) if frames is not None else None
        self.train = train
        self.meta = self.out / ".samkit"
        self.records = self.meta / "objects"
        self.fmt = check_format(fmt)
        self.rle = bool(rle)
        self.lock = threading.RLock()  # records and names: one writer at a time (the server's threads)
        # The dataset files (labels, annotations.json, data.yaml): written by the background writer, sync and export.
        # Apart from ``lock``, so that saving an edit's record never waits for another item's label files.
        self.files_lock = threading.RLock()
        self.masks = self.meta / "masks"
        project = _read_json(self.meta / "project.json") or {}
        saved_fmt = project.get("format")
        if saved_fmt and saved_fmt != fmt:
            raise AppError(f"{self.out} holds {saved_fmt} labels; start with format={saved_fmt}, or give another "
                           f"out= folder for {fmt} (the page's Export writes other formats)")
        self._lock_file = self._claim()
        saved = {int(k): str(v) for k, v in project.get("names", {}).items()}
        self.names: dict[int, str] = {**saved, **(names or {})} or {0: "object"}
        self._coco: dict[str, tuple[dict, list[dict]]] = {}  # key -> (image entry, annotations)
        self._holes = HoleWarning()
        self._ann_cache = LRU(4096)  # (mask, class, score, id, rle) -> the object's COCO annotation
        self._poly_cache = LRU(1024)  # an object's mask (its digest) -> its YOLO polygons
        self._pending: dict[str, tuple[dict, list[dict]]] = {}  # dataset files still to write, by item
        self._writing = 0
        self._hurry = 0  # flush() callers waiting: no delay
        self._cv = threading.Condition()
        self._writer: threading.Thread | None = None
        self.last_error: str | None = None  # the background writer's last failure, shown on the page

    def _claim(self) -> int | None:
        """Hold ``.samkit/lock`` while the app runs: a second app on the same folder would overwrite this one's
        edits (each keeps its objects in memory), so it is refused."""
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): one app per folder is the user's to keep
            return None
        make_dirs(self.meta)
        fd = os.open(self.meta / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AppError(f"{self.out} is being edited by another samkit app ({holder}); stop it, or give another "
                           "out= folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        return fd

    def close(self) -> None:
        """Write what is pending and let another app open the folder."""
        self.flush()
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the lock
            self._lock_file = None

    # ------------------------------------------------------------------ names
    def add_name(self, name: str) -> int:
        """The class id of ``name``, added as a new class when it is not one yet (saved at once)."""
        name = str(name).strip()
        if not name or len(name) > 100 or any(c in name for c in "\n\r\t"):
            raise AppError(f"class name {name!r} must be 1-100 characters on one line")
        with self.lock:
            for k, v in self.names.items():
                if v == name:
                    return k
            k = max(self.names, default=-1) + 1
            self.names[k] = name
            self.save_project()
            return k

    def check_cls(self, cls) -> int:
        if isinstance(cls, bool) or not isinstance(cls, int) or cls not in self.names:
            raise AppError(f"class {cls!r} is not one of this dataset's classes {sorted(self.names)}")
        return cls

    def save_project(self) -> None:
        with self.lock:
            _write_json(self.meta / "project.json", {"format": self.fmt, "names": self.names})
        with self.files_lock:
            if self.fmt != "coco":
                self.write_data_yaml(self.out, self.train)
            elif self._coco:
                self.write_coco()

    def write_data_yaml(self, folder: Path, train: str | None) -> Path:
        """``data.yaml`` naming the classes; with ``train`` (the images folder beside ``labels/``), a dataset file
        Ultralytics trains on."""
        return write_dataset(self.fmt, folder, self.names, by="samkit app", train=train)

    def save_frame(self, name: str, image: np.ndarray) -> None:
        """A video frame as the dataset's image ``frames/<name>`` (written once)."""
        if self.frames is None or (self.frames / name).exists():
            return
        import cv2

        from samkit.writers.atomic import atomic_write_bytes

        ok, buf = cv2.imencode(Path(name).suffix, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise OSError(f"cannot encode frame {name}")
        make_dirs(self.frames)
        atomic_write_bytes(self.frames / name, buf.tobytes())

    # ------------------------------------------------------------------ records
    def record_path(self, key: str) -> Path:
        return self.records / f"{key}.json"

    def read_record(self, key: str) -> dict | None:
        """An item's record with every object's mask (a record whose masks are kept in files of their own, see
        :meth:`write_item`, has them read back)."""
        rec = _read_json(self.record_path(key))
        if rec is not None and isinstance(rec.get("objects"), list):  # an item (a video's prompts map ids instead)
            rec["objects"] = [self._with_mask(key, o) for o in rec["objects"]]
        return rec

    def _with_mask(self, key: str, obj: dict) -> dict:
        name = obj.get("mask_file")
        if name is None:
            return obj
        out = {k: v for k, v in obj.items() if k != "mask_file"}
        out["mask"] = _read_json(self.masks / key / name)
        if out["mask"] is None:
            raise OSError(f"{self.masks / key / name} is missing: the record {self.record_path(key)} refers to it; "
                          "move the record away to start that item afresh")
        return out

    def _mask_files(self, key: str, objects: list[dict]) -> list[dict]:
        """``objects`` with each mask written to a file of its own (named by the object and the mask's content, so
        an unchanged mask is not written again) and referred to by name: an edit writes the objects it changed and a
        small record, however many objects the image holds."""
        folder = self.masks / key
        out = []
        for o in objects:
            rle = o.get("mask")
            if rle is None:
                out.append(o)
                continue
            name = f"{int(o['id'])}-{_digest(rle)}.json"
            if not (folder / name).exists():
                make_dirs(folder)
                _write_json(folder / name, rle)
            out.append({**{k: v for k, v in o.items() if k != "mask"}, "mask_file": name})
        return out

    def _drop_mask_files(self, key: str, objects: list[dict]) -> None:
        """Remove the mask files of ``key`` that its record (``objects``) no longer names."""
        folder = self.masks / key
        if not folder.is_dir():
            return
        named = {o.get("mask_file") for o in objects}
        for f in folder.iterdir():
            if f.suffix == ".json" and f.name not in named:
                try:
                    f.unlink()
                except OSError:
                    pass

    def write_record(self, key: str, data: dict) -> Path:
        """A record that is not an item (a video's prompts)."""
        with self.lock:
            make_dirs(self.record_path(key).parent)
            return _write_json(self.record_path(key), data)

    def write_item(self, key: str, item: dict, objects: list[dict], masks_apart: bool = False) -> None:
        """Save one image's (or frame's) objects: the record, then the dataset files.

        Args:
            key: The item's name in the folder (``<stem>`` or ``<video>/<frame>``).
            item: ``file_name``, ``height``, ``width`` and, for a frame, ``label`` (its label files' stem).
            objects: Each with ``id``, ``cls``, ``mask`` (COCO RLE or None) and anything else the record keeps.
            masks_apart: Keep each mask in a file of its own (images, edited object by object), written before the
                record that names it; else in the record (video frames, written once per tracking pass).
        """
        with self.lock:
            make_dirs(self.record_path(key).parent)
            saved = self._mask_files(key, objects) if masks_apart else objects
            _write_json(self.record_path(key), {**item, "objects": saved})
            if masks_apart:
                self._drop_mask_files(key, saved)
        with self._cv:
            self._pending.pop(key, None)  # re-queued last: items are written in the order they changed
            self._pending[key] = (item, objects, time.monotonic())
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_pending, name="samkit-app-writer", daemon=True)
                self._writer.start()
            self._cv.notify_all()

    def _write_pending(self) -> None:
        while True:
            with self._cv:
                if not self._pending:
                    self._writer = None
                    self._cv.notify_all()
                    return
                key = next(iter(self._pending))
                quiet = self._pending[key][2] + WRITE_DELAY - time.monotonic()
                if quiet > 0 and not self._hurry:  # let a burst of clicks settle: the model runs first
                    self._cv.wait(quiet)
                    continue
                item, objects, _ = self._pending.pop(key)
                self._writing += 1
                last = not self._pending
            try:
                with self.files_lock:  # not the records' lock: edits are saved meanwhile
                    if self.fmt == "coco":  # one document for every item: written once the queue is empty
                        self._coco[key] = self.coco_entry(item, objects)
                        if last:
                            self.write_coco()
                    else:
                        self.write_labels(key, item, objects)
            except Exception as e:  # the record is saved; the next start rewrites the dataset files from it
                self.last_error = f"{key}: {type(e).__name__}: {e}"
                LOGGER.warning("samkit app: cannot write the dataset files of %s", self.last_error)
            finally:
                with self._cv:
                    self._writing -= 1
                    self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every edit's dataset files are written; False when ``timeout`` ran out first."""
        with self._cv:
            self._hurry += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: not self._pending and not self._writing, timeout)
            finally:
                self._hurry -= 1

    def write_labels(self, key: str, item: dict, objects: list[dict], out: Path | None = None,
                     fmt: str | None = None) -> None:
        """The dataset files of one item (``out`` / ``fmt``: another folder and format, for exports; COCO items
        of another folder are not written here, see :meth:`coco_entry`)."""
        own = out is None
        out = self.labels if own else out
        fmt = fmt or self.fmt
        if fmt == "coco":
            if own:
                self._coco[key] = self.coco_entry(item, objects)
                self.write_coco()
            return
        stem = item.get("label") or Path(item["file_name"]).stem
        kept = [o for o in objects if o.get("mask") is not None]
        cls, ids = [int(o["cls"]) for o in kept], [int(o["id"]) for o in kept]
        if fmt == "yolo":  # each object's polygons computed once for each mask it has
            polygons = []
            for o in kept:
                digest = _digest(o["mask"])
                poly = self._poly_cache.get(digest)
                if poly is None:
                    poly = self._poly_cache.put(digest, mask_polygons(rle_decode(o["mask"])[None])[0])
                polygons.append(poly)
            write_image(fmt, out, stem, None, cls, ids, polygons=polygons)
        else:
            write_image(fmt, out, stem, self._masks(item, objects)[1], cls, ids)

    @staticmethod
    def _masks(item: dict, objects: list[dict]) -> tuple[list[dict], np.ndarray]:
        kept = [o for o in objects if o.get("mask") is not None]
        hw = (item["height"], item["width"])
        return kept, (np.stack([rle_decode(o["mask"]) for o in kept]) if kept else np.zeros((0, *hw), bool))

    def coco_entry(self, item: dict, objects: list[dict]) -> tuple[dict, list[dict]]:
        """One item's COCO image entry and annotations (``track_id`` = object id); an object's annotation is
        computed once for each mask, class and score it has (an edit recomputes only the objects it changed)."""
        anns = []
        for o in objects:
            if o.get("mask") is None:
                continue
            key = (_digest(o["mask"]), int(o["cls"]), o.get("score", 1.0), int(o["id"]), self.rle)
            ann = self._ann_cache.get(key)
            if ann is None:
                got = coco_annotations(rle_decode(o["mask"])[None], [key[1]], [key[2]], image_id=0, first_id=None,
                                       rle=self.rle, track_ids=[key[3]], holes=self._holes, where=item["file_name"])
                if not got:  # an empty mask has no annotation
                    continue
                ann = self._ann_cache.put(key, got[0])
            anns.append(ann)
        return {k: v for k, v in item.items() if k != "label"}, anns

    def write_coco(self, path: Path | None = None, entries: dict | None = None) -> Path:
        """``annotations.json``: every saved item, images numbered in the items' order."""
        coco = CocoBuilder()
        entries = self._coco if entries is None else entries
        for key in sorted(entries, key=self.order):
            image, anns = entries[key]
            coco.add({**image, "id": coco.next_image_id}, anns)
        return coco.write(path or self.out / "annotations.json", self.names, name_all=True)

    def order(self, key: str):
        """Sort key of an item key (set by the app to the items' order)."""
        return key

    def keys(self) -> list[str]:
        """Every item with a record."""
        if not self.records.is_dir():
            return []
        return sorted(str(p.relative_to(self.records).with_suffix("")) for p in self.records.rglob("*.json")
                      if p.name != "prompts.json")

    def sync(self) -> int:
        """Bring the dataset files up to date with the records (after a crash between the two, or a first start
        on a folder whose records predate its labels); returns how many items were rewritten."""
        with self.lock, self.files_lock:
            self.save_project()
            n = 0
            keys = self.keys()
            if self.fmt == "coco":
                doc = self.out / "annotations.json"
                newest = max((self.record_path(k).stat().st_mtime for k in keys), default=0.0)
                current = doc.exists() and doc.stat().st_mtime >= newest and self._load_coco(doc, keys)
                if not current:
                    for key in keys:
                        rec = self.read_record(key)
                        self._coco[key] = self.coco_entry({k: v for k, v in rec.items() if k != "objects"},
                                                          rec["objects"])
                    if keys:
                        self.write_coco()
                    n = len(keys)
                return n
            for key in keys:
                rec = self.read_record(key)
                item = {k: v for k, v in rec.items() if k != "objects"}
                if not self._lagging(key, item, rec["objects"]):
                    continue
                self.write_labels(key, item, rec["objects"])
                n += 1
            return n

    def _lagging(self, key: str, item: dict, objects: list[dict]) -> bool:
        """Whether an item's dataset files are missing or older than its record."""
        stem = item.get("label") or Path(item["file_name"]).stem
        since = self.record_path(key).stat().st_mtime
        files = image_files(self.fmt, self.labels, stem, [o["id"] for o in objects if o.get("mask")])
        return any(not f.exists() or f.stat().st_mtime < since for f in files)

    def _load_coco(self, doc: Path, keys: list[str]) -> bool:
        """Take the items' entries from an up-to-date ``annotations.json`` (no polygons computed again); False
        when it does not hold every item."""
        try:
            data = json.loads(doc.read_text(encoding="utf-8"))
            by_name = {im["file_name"]: im for im in data["images"]}
            anns: dict[int, list[dict]] = {}
            for a in data["annotations"]:
                anns.setdefault(a["image_id"], []).append({k: v for k, v in a.items() if k not in ("id", "image_id")})
            entries = {}
            for key in keys:
                rec = self.read_record(key)
                im = by_name[rec["file_name"]]
                entries[key] = ({k: v for k, v in im.items() if k != "id"}, anns.get(im["id"], []))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self._coco.update(entries)
        return True

    def export(self, fmt: str, out: Path) -> dict:
        """Write every saved item in format ``fmt`` to ``out``; returns what was written."""
        check_format(fmt)
        with self.lock, self.files_lock:
            make_dirs(out)
            coco = {}
            for key in self.keys():
                rec = self.read_record(key)
                item = {k: v for k, v in rec.items() if k != "objects"}
                if fmt == "coco":
                    coco[key] = self.coco_entry(item, rec["objects"])
                else:
                    self.write_labels(key, item, rec["objects"], out=out, fmt=fmt)
            if fmt == "coco":
                self.write_coco(out / "annotations.json", coco)
            else:
                write_dataset(fmt, out, self.names, by="samkit app")
            return {"format": fmt, "items": len(self.keys()), "folder": str(out)}


def encode_mask(mask: np.ndarray) -> dict | None:
    """COCO RLE of a mask, or None for an empty one."""
    return mask_to_rle(mask) if mask.any() else None
