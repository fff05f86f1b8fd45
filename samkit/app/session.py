"""What the app's page does, without HTTP: images and a video, their objects, prompts, undo and saving.

Everything is keyed by the item (an image's index, a video frame's index) the request names, never by a "current"
item on the server, so two tabs on different images cannot mix state. The page never names a file: items are
indexes into the list made at start, and the model is the one the app was started with.
"""

from __future__ import annotations

import math
import threading
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
