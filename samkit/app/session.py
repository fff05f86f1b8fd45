"""What the app's page does, without HTTP: images and a video, their objects, prompts, undo and saving.

Everything is keyed by the item (an image's index, a video frame's index) the request names, never by a "current"
item on the server, so two tabs on different images cannot mix state. The page never names a file: items are
indexes into the list made at start, and the model is the one the app was started with.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from samkit.app.store import AppError, Dataset, encode_mask, rle_decode, row_runs
from samkit.utils.lru import LRU

MAX_POINTS = 64  # clicks per object on one image or frame
MAX_TEXT = 200  # characters of a phrase
HISTORY = 100  # undo steps kept per image
IMAGES_KEPT = 4  # decoded images kept in memory (the embeddings are the engine's cache)


# ---------------------------------------------------------------------- request checking
def check_keys(body, allowed: tuple[str, ...], what: str) -> dict:
    if not isinstance(body, dict):
        raise AppError(f"{what}: the request body must be a JSON object")
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise AppError(f"{what}: unknown field(s) {', '.join(map(repr, extra))}; it takes {', '.join(allowed)}")
    return body


def check_int(value, what: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AppError(f"{what}={value!r} must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        raise AppError(f"{what}={value!r} is out of range [{low}, {high}]")
    return value


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise AppError(f"{what}: {v!r} must be a finite number")
    return float(v)


def check_prompt(points, box, hw: tuple[int, int]) -> tuple[list[list[float]], list[float] | None]:
    """Clicks ``[[x, y, label], ...]`` (label 1 positive, 0 negative) and an xyxy box inside an image of size
    ``hw``; returns them as floats."""
    h, w = hw
    if points is None:
        points = []
    if not isinstance(points, list) or len(points) > MAX_POINTS:
        raise AppError(f"points must be a list of at most {MAX_POINTS} [x, y, label] clicks")
    out = []
    for p in points:
        if not isinstance(p, list) or len(p) != 3:
            raise AppError(f"click {p!r} must be [x, y, label]")
        x, y = _number(p[0], "click x"), _number(p[1], "click y")
        if p[2] not in (0, 1) or isinstance(p[2], bool):
            raise AppError(f"click label {p[2]!r} must be 1 (positive) or 0 (negative)")
        if not (0 <= x <= w and 0 <= y <= h):
            raise AppError(f"click ({x:g}, {y:g}) is outside the {w}x{h} image")
        out.append([x, y, int(p[2])])
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise AppError(f"box {box!r} must be [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (_number(v, "box") for v in box)
        x1, x2 = sorted((min(max(x1, 0), w), min(max(x2, 0), w)))
        y1, y2 = sorted((min(max(y1, 0), h), min(max(y2, 0), h)))
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise AppError(f"box {box!r} is empty inside the {w}x{h} image")
        box = [x1, y1, x2, y2]
    return out, box


def check_positive(points: list, box) -> None:
    """An object is what its positive clicks or its box say; negative clicks alone name nothing."""
    if box is None and not any(p[2] == 1 for p in points):
        raise AppError("an object needs a positive click (left click) or a box; negative clicks alone do not say "
                       "which object")


def sam_prompt(points: list, box) -> dict:
    prompt: dict = {}
    if points:
        prompt["points"] = [[p[0], p[1]] for p in points]
        prompt["labels"] = [p[2] for p in points]
    if box is not None:
        prompt["box"] = box
    return prompt


_RUNS = LRU(256)  # RLE counts -> the page's runs (recent masks)
_RUNS_LOCK = threading.Lock()


def remember_runs(rle: dict | None, mask: np.ndarray) -> None:
    """Keep the page's runs of a mask just decoded (so answering does not decode its RLE again)."""
    if rle is not None:
        runs = row_runs(mask)
        with _RUNS_LOCK:
            _RUNS.put(rle["counts"], runs)


def page_object(obj: dict, with_mask: bool = True) -> dict:
    """An object as the page gets it: its record without the RLE, plus its mask's row-major runs (base64 uint32,
    zeros first) to paint."""
    out = {k: v for k, v in obj.items() if k != "mask"}
    if with_mask:
        rle = obj.get("mask")
        if rle is None:
            out["runs"] = ""
        else:
            with _RUNS_LOCK:
                runs = _RUNS.get(rle["counts"])
            out["runs"] = runs if runs is not None else row_runs(rle_decode(rle))
    return out


# ---------------------------------------------------------------------- images
class ImageProject:
    """The images of a folder, their objects (each: ``id``, ``cls``, ``points``, ``box``, ``mask``, ``score``),
    undo / redo per image, and the background encoder that computes the neighbours' embeddings.

    Args:
        model: A loaded :class:`~samkit.SAM`.
        root: The folder the app serves.
        files: The image files (under ``root``), in the order the page shows them.
        dataset: Where the objects are saved.
        everything: Segment-everything settings (``points_per_side``, ``pred_iou_thresh``...; see
            :meth:`samkit.SAM.predict`) for the page's "Segment everything".
        conf, max_det: SAM 3's phrase search: the detection score to keep (None: the model's 0.5) and the most
            instances per phrase.
    """

    kind = "images"

    def __init__(self, model, root: Path, files: list[Path], dataset: Dataset, everything: dict | None = None,
                 conf: float | None = None, max_det: int = 300):
        self.model = model
        self.everything_settings = dict(everything or {})
        self.concept_settings = {"conf": conf, "max_det": max_det}
        self.root = root
        self.files = files
        self.dataset = dataset
        self.keys = [self._key(f) for f in files]
        order = {k: i for i, k in enumerate(self.keys)}
        dataset.order = lambda key: order.get(key, len(order))
        self._objects: dict[int, list[dict]] = {}
        self._undo: dict[int, list[list[dict]]] = {}
        self._redo: dict[int, list[list[dict]]] = {}
        self._images = LRU(IMAGES_KEPT)  # index -> decoded image
        self._lock = threading.RLock()  # item state
        self._model_lock = threading.Lock()  # the network runs one request at a time
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="samkit-encode")
        self._encoding: dict[int, Future] = {}
        self._encoded = LRU(model.engine.cache_size)  # images the engine has embedded (its cache's size)

    def _key(self, f: Path) -> str:
        return f.stem

    def __len__(self) -> int:
        return len(self.files)

    def check_index(self, i) -> int:
        return check_int(i, "image", 0, len(self.files) - 1)

    def info(self) -> dict:
        return {"kind": self.kind, "items": [f.relative_to(self.root).as_posix() for f in self.files]}

    # ---------------------------------------------------------------- pixels and embeddings
    def image(self, i: int) -> np.ndarray:
        with self._lock:
            im = self._images.get(i)
            if im is not None:
                return im
        from samkit.data.sources import read_image

        im = read_image(self.files[i])
        with self._lock:
            return self._images.put(i, im)

    def _encode(self, i: int):
        image = self.image(i)
        with self._model_lock:
            emb = self.model.engine.encode([image])[0]
        with self._lock:
            self._encoded.put(i, True)
        return emb

    def ensure_encoded(self, i: int, wait: bool = True) -> None:
        """Encode image ``i`` in the background (waiting for it with ``wait``)."""
        with self._lock:
            if i in self._encoded:
                return
            fut = self._encoding.get(i)
            if fut is None or fut.done():
                fut = self._encoding[i] = self._encoder.submit(self._encode, i)
        if wait:
            fut.result()

    def prefetch(self, i: int) -> None:
        """Compute the embeddings of the images after and before ``i`` while the user works on ``i``."""
        for j in (i + 1, i - 1):
            if 0 <= j < len(self.files) and self.model.engine.cache_size > 2:
                self.ensure_encoded(j, wait=False)

    def busy(self) -> bool:
        """Whether the background encoder is working."""
        with self._lock:
            return any(not f.done() for f in self._encoding.values())

    # ---------------------------------------------------------------- state
    def objects(self, i: int) -> list[dict]:
        with self._lock:
            objs = self._objects.get(i)
            if objs is None:
                rec = self.dataset.read_record(self.keys[i])
                objs = self._objects[i] = rec["objects"] if rec else []
            return objs

    def state(self, i: int, encode: bool = True) -> dict:
        i = self.check_index(i)
        h, w = self.image(i).shape[:2]
        if encode:
            self.ensure_encoded(i)
            self.prefetch(i)
        with self._lock:
            return {"index": i, "name": self.files[i].relative_to(self.root).as_posix(), "width": w, "height": h,
                    "objects": [page_object(o) for o in self.objects(i)], **self._history(i)}

    def _history(self, i: int) -> dict:
        return {"undo": len(self._undo.get(i, [])), "redo": len(self._redo.get(i, []))}

    def _commit(self, i: int, objects: list[dict]) -> None:
        """Make ``objects`` image ``i``'s objects (undoable) and save them."""
        before = self.objects(i)
        self._undo.setdefault(i, []).append(before)
        del self._undo[i][:-HISTORY]
        self._redo.pop(i, None)
        self._save(i, objects)

    def _save(self, i: int, objects: list[dict]) -> None:
        h, w = self.image(i).shape[:2]
        item = {"file_name": self.files[i].relative_to(self.root).as_posix(), "height": h, "width": w,
                "label": self.keys[i]}
        self.dataset.write_item(self.keys[i], item, objects, masks_apart=True)
        self._objects[i] = objects

    def _reply(self, i: int, changed: list[int] | None = None) -> dict:
        """The page's answer: every object (masks only of the ``changed`` ids, default all) and the history."""
        objs = self.objects(i)
        return {"index": i, "objects": [page_object(o, changed is None or o["id"] in changed) for o in objs],
                "changed": changed, "save_error": self.dataset.last_error, **self._history(i)}

    # ---------------------------------------------------------------- edits
    def _decode(self, i: int, points: list, box) -> tuple[dict | None, float]:
        if not points and box is None:
            return None, 0.0
        image = self.image(i)
        self.ensure_encoded(i)
        single = len(points) == 1 and box is None  # one click is ambiguous: take the best of three masks
        with self._model_lock:
            r = self.model.predict(image, prompts=[sam_prompt(points, box)], multimask=single, verbose=False)[0]
        masks = r.masks.data.cpu().numpy()
        scores = r.iou.float().cpu().numpy()
        k = int(np.argmax(scores)) if single else 0
        rle = encode_mask(masks[k])
        remember_runs(rle, masks[k])
        return rle, round(float(scores[k]), 4)

    def set_object(self, i: int, obj_id=None, cls=None, points=None, box=None) -> dict:
        """Give object ``obj_id`` (a new one when None) these prompts; its mask is decoded and saved."""
        i = self.check_index(i)
        im = self.image(i)
        points, box = check_prompt(points, box, im.shape[:2])
        check_positive(points, box)
        with self._lock:
            objs = self.objects(i)
            old = next((o for o in objs if o["id"] == obj_id), None) if obj_id is not None else None
            if obj_id is not None:
                check_int(obj_id, "object id", 0, 2**31)
            cls = self.dataset.check_cls(cls) if cls is not None else (old["cls"] if old else 0)
            if cls not in self.dataset.names:
                cls = self.dataset.check_cls(cls)
        mask, score = self._decode(i, points, box)
        with self._lock:
            objs = self.objects(i)
            if obj_id is None:
                obj_id = max((o["id"] for o in objs), default=0) + 1
            new = {"id": obj_id, "cls": cls, "points": points, "box": box, "mask": mask, "score": score}
            if any(o["id"] == obj_id for o in objs):
                objs = [new if o["id"] == obj_id else o for o in objs]
            else:
                objs = [*objs, new]
            self._commit(i, objs)
            return self._reply(i, [obj_id])

    def set_class(self, i: int, obj_id, cls) -> dict:
        i = self.check_index(i)
        with self._lock:
            cls = self.dataset.check_cls(cls)
            objs = self.objects(i)
            self._find(objs, obj_id)
            self._commit(i, [{**o, "cls": cls} if o["id"] == obj_id else o for o in objs])
            return self._reply(i, [])

    def delete(self, i: int, obj_id) -> dict:
        i = self.check_index(i)
        with self._lock:
            objs = self.objects(i)
            self._find(objs, obj_id)
            self._commit(i, [o for o in objs if o["id"] != obj_id])
            return self._reply(i, [])

    @staticmethod
    def _find(objs: list[dict], obj_id) -> dict:
        for o in objs:
            if o["id"] == obj_id:
                return o
        raise AppError(f"object {obj_id!r} is not on this image (objects: {[o['id'] for o in objs]})", 404)

    def undo(self, i: int, redo: bool = False) -> dict:
        i = self.check_index(i)
        with self._lock:
            src, dst = (self._redo, self._undo) if redo else (self._undo, self._redo)
            if not src.get(i):
                raise AppError(f"nothing to {'redo' if redo else 'undo'} on this image", 409)
            dst.setdefault(i, []).append(self.objects(i))
            self._save(i, src[i].pop())
            return self._reply(i)

    def everything(self, i: int, cls=None) -> dict:
        """Segment everything on image ``i``: each mask becomes an object (of class ``cls``)."""
        i = self.check_index(i)
        cls = self.dataset.check_cls(cls if cls is not None else 0)
        image = self.image(i)
        self.ensure_encoded(i)
        with self._model_lock:
            r = self.model.predict(image, verbose=False, **self.everything_settings)[0]
        return self._add_found(i, r, lambda k: cls)

    def text(self, i: int, text) -> dict:
        """Every instance of a phrase (SAM 3): one object each, its class the phrase (added as a class)."""
        i = self.check_index(i)
        if "concepts" not in self.model.capabilities:
            raise AppError(f"phrases need a SAM 3 model (one that finds concepts); this app runs {self.model.family}")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise AppError(f"text must be a phrase of 1-{MAX_TEXT} characters")
        cls = self.dataset.add_name(text.strip())
        image = self.image(i)
        with self._model_lock:
            r = self.model.predict(image, texts=[text.strip()], verbose=False, **self.concept_settings)[0]
        return self._add_found(i, r, lambda k: cls, boxes=True)

    def _add_found(self, i: int, r, cls_of, boxes: bool = False) -> dict:
        """Objects from found masks (each its own undo step as one). With ``boxes``, each keeps the box it was
        found in as its prompt, so a click on it refines that instance (box and click decoded together)."""
        masks = r.masks.data.cpu().numpy() if r.masks is not None else np.zeros((0, 1, 1), bool)
        scores = r.boxes.conf.float().cpu().numpy() if len(masks) else []
        xyxy = r.boxes.xyxy.float().cpu().numpy() if len(masks) else []
        with self._lock:
            objs = self.objects(i)
            start = max((o["id"] for o in objs), default=0) + 1
            found = [{"id": start + k, "cls": cls_of(k), "points": [],
                      "box": [round(float(v), 1) for v in b] if boxes else None, "mask": encode_mask(m),
                      "score": round(float(s), 4)} for k, (m, s, b) in enumerate(zip(masks, scores, xyxy)) if m.any()]
            self._commit(i, [*objs, *found])
            return self._reply(i, [o["id"] for o in found])

    def close(self) -> None:
        self._encoder.shutdown(wait=False, cancel_futures=True)
        self.dataset.close()


# ---------------------------------------------------------------------- video
class VideoProject:
    """One video (a file or a folder of frames): prompts on any frame, propagation both ways, every tracked
    frame saved as it comes, and the tracker's memory window kept by :class:`~samkit.engine.video.VideoSession`
    (its memory does not grow with the video's length; masks live in the dataset folder, not in memory).

    Args:
        model: A loaded SAM 2 / 2.1 :class:`~samkit.SAM`.
        root: The folder the app serves.
        source: The video file or frame folder (under ``root``).
        dataset: Where the frames' objects are saved.
    """

    kind = "video"

    def __init__(self, model, root: Path, source: Path, dataset: Dataset):
        from samkit.data.video import FolderVideo, open_video
        from samkit.writers.run import safe_stem

        if "video" not in model.capabilities:
            raise AppError(f"the app tracks videos with a memory tracker (SAM 2 / 2.1); {model.family} has none")
        self.model = model
        self.root = root
        self.source = source
        self.dataset = dataset
        self.name = safe_stem(source.name if source.is_dir() else source.stem)
        self.reader = open_video(str(source))  # frames for the page (the session has its own reader)
        if not self.reader.length:
            raise AppError(f"{source} has no frames")
        self.frame_files = list(self.reader.files) if isinstance(self.reader, FolderVideo) else None
        dataset.order = lambda key: key
        self.session = None
        self._lock = threading.RLock()  # the session and the prompts
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        self.prompts: dict[int, dict] = {}  # id -> {"cls": c, "frames": {frame: {"points": [...], "box": b}}}
        saved = dataset.read_record(f"{self.name}/prompts") or {}
        for k, v in saved.get("objects", {}).items():
            self.prompts[int(k)] = {"cls": v["cls"], "frames": {int(f): p for f, p in v["frames"].items()}}
        self.running = False

    @property
    def length(self) -> int:
        return self.reader.length

    def check_frame(self, frame) -> int:
        return check_int(frame, "frame", 0, self.length - 1)

    def info(self) -> dict:
        return {"kind": self.kind, "name": self.source.name, "frames": self.length, "fps": self.reader.fps,
                "width": self.reader.width, "height": self.reader.height,
                "objects": [{"id": k, "cls": v["cls"], "frames": sorted(v["frames"])}
                            for k, v in sorted(self.prompts.items())]}

    def frame_image(self, frame: int) -> np.ndarray:
        with self._read_lock:
            return self.reader.read(self.check_frame(frame))

    def _key(self, frame: int) -> str:
        return f"{self.name}/{frame:06d}"

    def _item(self, frame: int) -> dict:
        if self.frame_files is not None:
            f = Path(self.frame_files[frame])
            return {"file_name": f.resolve().relative_to(self.root).as_posix(),
                    "height": self.reader.height, "width": self.reader.width, "label": f.stem, "frame": frame,
                    "video": self.source.name}
        return {"file_name": f"images/{self.name}_{frame:06d}.jpg", "height": self.reader.height,
                "width": self.reader.width, "label": f"{self.name}_{frame:06d}", "frame": frame,
                "video": self.source.name}

    def masks(self, frame) -> dict:
        """The saved objects of ``frame`` (what the last prompt or propagation over it gave)."""
        frame = self.check_frame(frame)
        rec = self.dataset.read_record(self._key(frame))
        objs = rec["objects"] if rec else []
        return {"frame": frame, "objects": [page_object(o) for o in objs if o["id"] in self.prompts],
                "prompts": self._frame_prompts(frame)}

    def _frame_prompts(self, frame: int) -> list[dict]:
        return [{"id": k, **v["frames"][frame]} for k, v in sorted(self.prompts.items()) if frame in v["frames"]]

    def _session(self):
        """The tracking session, made on first use; after a restart, the saved prompts are given to it again."""
        if self.session is None:
            self.session = self.model.video(str(self.source), names=self.dataset.names)
            for obj_id, v in sorted(self.prompts.items()):
                for frame, p in sorted(v["frames"].items()):
                    self._add(frame, obj_id, v["cls"], p["points"], p["box"])
        return self.session

    def _add(self, frame: int, obj_id: int, cls: int, points, box):
        kw = sam_prompt(points, box)
        return self.session.add(frame, obj_id, points=kw.get("points"), labels=kw.get("labels"),
                                box=kw.get("box"), clear=True, cls=cls)

    def _save_frame(self, res) -> dict:
        frame = int(res.frame)
        masks = res.masks.data.cpu().numpy() if res.masks is not None else np.zeros((0, 1, 1), bool)
        ids = res.boxes.id.int().tolist() if len(masks) else []
        pres = res.presence.float().cpu().numpy() if len(masks) else []
        objects = [{"id": int(i), "cls": int(self.prompts[int(i)]["cls"]), "mask": encode_mask(m),
                    "score": round(float(s), 4)} for i, m, s in zip(ids, masks, pres) if int(i) in self.prompts]
        item = self._item(frame)
        if self.frame_files is None:  # a video file: its frames become the dataset's images
            self.dataset.save_frame(Path(item["file_name"]).name, res.orig_img)
        self.dataset.write_item(self._key(frame), item, objects)
        return {"frame": frame, "objects": [page_object(o) for o in objects], "prompts": self._frame_prompts(frame)}

    def prompt(self, frame, obj_id=None, cls=None, points=None, box=None) -> dict:
        """Set object ``obj_id``'s prompts on ``frame`` (a new object when None); returns the frame's objects."""
        frame = self.check_frame(frame)
        points, box = check_prompt(points, box, (self.reader.height, self.reader.width))
        if not points and box is None:
            raise AppError("give clicks or a box")
        if obj_id is None or obj_id not in self.prompts:  # a tracked object may be corrected by a negative click
            check_positive(points, box)
        with self._lock:
            self._idle()
            if obj_id is None:
                obj_id = max(self.prompts, default=0) + 1
            check_int(obj_id, "object id", 1, 2**31)
            old = self.prompts.get(obj_id)
            cls = self.dataset.check_cls(cls) if cls is not None else (old["cls"] if old else 0)
            self._session()
            res = self._add(frame, obj_id, cls, points, box)
            entry = self.prompts.setdefault(obj_id, {"cls": cls, "frames": {}})
            entry["cls"] = cls
            entry["frames"][frame] = {"points": points, "box": box}
            self._write_prompts()
            return {**self._save_frame(res), "id": obj_id, "info": self.info()}

    def _write_prompts(self) -> None:
        data = {"objects": {str(k): {"cls": v["cls"], "frames": {str(f): p for f, p in v["frames"].items()}}
                            for k, v in self.prompts.items()}}
        self.dataset.write_record(f"{self.name}/prompts", data)

    def _idle(self) -> None:
        if self.running:
            raise AppError("the video is being tracked; stop it first", 409)

    def delete(self, obj_id) -> dict:
        with self._lock:
            self._idle()
            if obj_id not in self.prompts:
                raise AppError(f"object {obj_id!r} is not in this video (objects: {sorted(self.prompts)})", 404)
            if self.session is not None and obj_id in self.session.objects:
                self.session.remove(obj_id)
            del self.prompts[obj_id]
            self._write_prompts()
            self._rewrite_frames(lambda objs: [o for o in objs if o["id"] != obj_id])
            return self.info()

    def set_class(self, obj_id, cls) -> dict:
        with self._lock:
            self._idle()
            cls = self.dataset.check_cls(cls)
            if obj_id not in self.prompts:
                raise AppError(f"object {obj_id!r} is not in this video (objects: {sorted(self.prompts)})", 404)
            self.prompts[obj_id]["cls"] = cls
            if self.session is not None and obj_id in self.session.objects:
                self.session.objects[obj_id].cls = cls
            self._write_prompts()
            self._rewrite_frames(lambda objs: [{**o, "cls": cls} if o["id"] == obj_id else o for o in objs])
            return self.info()

    def _rewrite_frames(self, change) -> None:
        for key in self.dataset.keys():
            if not key.startswith(self.name + "/"):
                continue
            rec = self.dataset.read_record(key)
            objs = change(rec["objects"])
            if objs != rec["objects"]:
                self.dataset.write_item(key, {k: v for k, v in rec.items() if k != "objects"}, objs)

    def propagate(self, start=None, reverse: bool = False, max_frames=None):
        """Track every object from ``start``; yields progress events (each tracked frame's objects, saved first)."""
        if not isinstance(reverse, bool):
            raise AppError(f"reverse={reverse!r} must be true or false")
        if max_frames is not None:
            check_int(max_frames, "max_frames", 1)
        if start is not None:
            start = self.check_frame(start)
        if not self._lock.acquire(blocking=False):
            raise AppError("the video is being tracked already", 409)
        try:
            self._idle()
            if not self.prompts:
                raise AppError("no objects to track: click on a frame first")
            self.running = True
            self._stop.clear()
        finally:
            self._lock.release()
        return self._run(start, reverse, max_frames)

    def _run(self, start, reverse: bool, max_frames):
        # No lock is held across a yield (the server may step this generator from different threads): the
        # ``running`` flag keeps every other change out until it ends.
        t0, n = time.perf_counter(), 0
        try:
            with self._lock:
                session = self._session()
            if start is None:
                start = min(f for v in self.prompts.values() for f in v["frames"])
            end = 0 if reverse else self.length - 1
            total = abs(end - start) + 1 if max_frames is None else min(abs(end - start), max_frames) + 1
            yield {"event": "start", "start": start, "reverse": reverse, "total": total}
            frames = session.propagate(start=start, reverse=reverse, max_frames=max_frames)
            try:
                for res in frames:
                    n += 1
                    yield {"event": "frame", "done": n, "total": total, **self._save_frame(res)}
                    if self._stop.is_set():
                        yield {"event": "stopped", "done": n}
                        return
            finally:
                frames.close()
            yield {"event": "done", "done": n, "seconds": round(time.perf_counter() - t0, 3)}
        finally:
            self.running = False

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.dataset.close()
        with self._read_lock:
            self.reader.close()
        if self.session is not None:
            self.session.close()
