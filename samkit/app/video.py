"""What the app's page does on a video, without HTTP: prompts on any frame, propagation both ways, every tracked
frame saved as it comes (requests name their frame, never a path; see :mod:`samkit.app.session` for images)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from samkit.app.session import check_int, check_positive, check_prompt, page_object, sam_prompt
from samkit.app.store import AppError, Dataset, encode_mask


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
