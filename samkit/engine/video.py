"""Interactive video sessions for SAM 2 / 2.1: prompts on any frame, forward and reverse propagation.

The memory logic is the network's own (``SAM2Model.track_step``: conditioning frames, recent memories, object
pointers, temporal encodings); the session feeds it the same inputs as Meta's ``SAM2VideoPredictor``:

- frames resized to a square with PIL's bicubic filter, as the reference's frame loader does;
- clicks and boxes scaled to the network input; clicks added to a frame's earlier clicks unless ``clear=True``;
  a refinement on an already tracked frame is decoded together with that frame's previous mask logits;
- mask prompts resized to the network input (bilinear with antialiasing, then >= 0.5) and used as the output;
- prompted frames get their memory encoded (from the binarised mask) when propagation starts;
- small holes (<= ``fill_hole_area`` low-resolution pixels) are filled in every predicted mask, on the CPU too
  (the reference needs a CUDA extension for that and skips it elsewhere).

Unlike the reference, frames are decoded from the source on demand and the session keeps only what the model
can attend to: every prompted frame's output, and the outputs of the frames within ``window`` frames of the
frame being tracked or of a prompted frame (the memory and object-pointer reach; for live sources, which cannot
be read backwards, only the window behind the current frame). Memory therefore stays flat with video length;
``max_prompt_frames`` also bounds the prompted frames kept per object behind the current frame (the farthest
behind go), for streams prompted again and again.

One deliberate difference in defaults: a correction (clicks or a mask on a frame the object was already tracked
on) becomes a conditioning frame, so it stays when propagation passes over that frame again and every later
frame attends to it. The reference's default (``add_all_frames_to_correct_as_cond=False``) keeps a correction only
until the next propagation recomputes that frame; ``correct_as_cond=False`` gives that behaviour.

A refinement click on a frame whose output was dropped is decoded without the previous mask logits of that frame
(the reference would feed them in); clicks near prompted frames or near the current frame are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.video import READ_AHEAD, VideoSource, open_video, prefetch
from samkit.engine.transforms import transforms_for
from samkit.families import require_capability
from samkit.families.network import FrameFeatures
from samkit.nn.runtime import Runtime
from samkit.ops import fill_holes
from samkit.prompts import ObjectPrompts, object_prompt
from samkit.results import Results
from samkit.utils.devices import upload


class UnknownObjectError(KeyError, ValueError):
    """An object id the session does not know (a ``KeyError``, and a ``ValueError`` like samkit's other
    refusals); its message prints as written."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_ABSENT = object()  # "no value" in an object's saved state (None is a value)
NO_OBJ_SCORE = -1024.0  # the reference's logit for "no mask on this frame"
#: Objects tracked together through memory attention on the CPU. The CPU's fused attention is ~7% slower on a
#: batch of 3 than on 3 single objects (the work per object is the same; the batch leaves the caches), so the CPU
#: tracks one object at a time; accelerators batch every object with the same memory frames.
CPU_OBJECTS_PER_BATCH = 1


@dataclass
class _Object:
    """One tracked object's prompts and outputs."""

    obj_id: int
    clicks: dict[int, dict] = field(default_factory=dict)  # frame -> {"points", "labels", "box"}, video pixels
    outputs: dict = field(default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
    pending: dict[int, tuple[dict, bool]] = field(default_factory=dict)  # frame -> (output, is_cond), no memory
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse
    cls: int = 0

    def forget_prompt(self, frame: int) -> None:
        self.outputs["cond_frame_outputs"].pop(frame, None)
        self.clicks.pop(frame, None)

    def output_at(self, frame: int) -> dict | None:
        if frame in self.pending:
            return self.pending[frame][0]
        return self.outputs["cond_frame_outputs"].get(frame) or self.outputs["non_cond_frame_outputs"].get(frame)


def check_max_frames(max_frames) -> int | None:
    """``max_frames`` as given when it is None or an integer >= 0; else a ValueError naming it."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 0):
        raise ValueError(f"max_frames={max_frames!r} must be an integer >= 0 (frames after the first), or None for all")
    return None if max_frames is None else int(max_frames)


class VideoSession:
    """Prompt and track objects through one video (use through :meth:`samkit.SAM.video`).

    Args:
        runtime: A SAM 2 / 2.1 network's :class:`~samkit.nn.runtime.Runtime` (``SAM(...).runtime``).
        source: Anything :func:`~samkit.data.video.open_video` takes.
        fill_hole_area: Fill mask holes up to this many low-resolution pixels (the reference's video default, 8).
        correct_as_cond: A correction on an already tracked frame becomes a conditioning frame (it stays when
            propagation passes over it again). False: the reference's default, where the next propagation
            over that frame recomputes it.
        max_prompt_frames: Keep at most this many prompted frames per object behind the frame being tracked
            (None: all, as the reference); when there are more, the farthest behind are forgotten (prompts and
            memory). Prompted frames ahead stay until tracking passes them.
        names: Class id -> name, for the Results (objects' classes are set with ``add(..., cls=)``).
    """

    def __init__(self, runtime: Runtime, source, fill_hole_area: int = 8, correct_as_cond: bool = True,
                 max_prompt_frames: int | None = None, names: dict[int, str] | None = None):
        if max_prompt_frames is not None and (isinstance(max_prompt_frames, bool) or not isinstance(
                max_prompt_frames, (int, np.integer)) or max_prompt_frames < 1):
            raise ValueError(f"max_prompt_frames={max_prompt_frames!r} must be a positive integer or None")
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, (int, np.integer)) or fill_hole_area < 0:
            raise ValueError(f"fill_hole_area={fill_hole_area!r} must be an integer >= 0")
        require_capability(runtime.arch, "video", "video tracking with a memory (VideoSession)")
        self.transforms = transforms_for(runtime.arch)
        self.runtime = runtime
        self.network = runtime.network  # the family's MemoryNetwork adapter
        self.video: VideoSource = source if isinstance(source, VideoSource) else open_video(source)
        self.size = self.transforms.size
        self.fill_hole_area = int(fill_hole_area)
        self.correct_as_cond = bool(correct_as_cond)
        self.max_prompt_frames = max_prompt_frames
        self.names = dict(names) if names else {0: "object"}
        self.window = max(self.network.memory_frames, self.network.pointer_frames)
        self.objects: dict[int, _Object] = {}
        self._features: tuple[int, int, dict] | None = None  # (frame, runtime generation, backbone output)
        self._last_frame: tuple[int, np.ndarray] | None = None
        self._prepared: tuple[int, tuple[np.ndarray, torch.Tensor]] | None = None  # from the read-ahead thread
        self.frames_encoded = 0

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    # ------------------------------------------------------------------ frames
    @property
    def num_frames(self) -> int | None:
        return self.video.length

    def _prepare(self, index: int, bgr: np.ndarray | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Frame ``index`` (BGR) and its (1, 3, S, S) network input on the CPU (the family's video transform), in
        page-locked memory when the network is on a CUDA device: the read-ahead thread prepares it, and the
        upload then runs without blocking the host (and overlaps the work queued before it)."""
        bgr = self.video.read(index) if bgr is None else bgr
        x = self.transforms.frame_to_input(bgr)
        if self.device.type == "cuda":
            x = x.pin_memory()
        return bgr, x

    def _frame_input(self, index: int) -> torch.Tensor:
        if self._prepared is not None and self._prepared[0] == index:
            bgr, x = self._prepared[1]
        else:
            bgr, x = self._prepare(index, self._frame(index))
        self._last_frame = (index, bgr)
        return x.to(self.device, non_blocking=x.is_pinned())

    def _frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (BGR), decoded once for its features and its Results."""
        if self._last_frame is None or self._last_frame[0] != index:
            if self._prepared is not None and self._prepared[0] == index:
                self._last_frame = (index, self._prepared[1][0])
            else:
                self._last_frame = (index, self.video.read(index))
        return self._last_frame[1]

    def _feats(self, index: int) -> FrameFeatures:
        """The features of frame ``index``; the last frame's encoding is kept."""
        rt = self.runtime
        if self._features is None or self._features[:2] != (index, rt.generation):
            with torch.inference_mode(), rt.autocast():
                encoded = self.network.encode_frame(rt.encoder_layout(self._frame_input(index)))
            self._features = (index, rt.generation, encoded)
            self.frames_encoded += 1
        return self.network.frame_features(self._features[2])

    def frame_image(self, frame: int) -> np.ndarray:
        """Frame ``frame`` (BGR), decoded once for its features and its Results."""
        return self._frame(self._check_frame(frame))

    def frame_hw(self, frame: int = 0) -> tuple[int, int]:
        """(height, width) of the video's frames; frame ``frame`` is decoded first when the size is not known yet
        (a live source knows it only from a frame), and kept for the prompts on it."""
        if not self.video.height:
            self._frame(self._check_frame(frame))
        return self.video.height, self.video.width

    def _check_frame(self, frame: int) -> int:
        return self.video.check_index(frame)

    # ------------------------------------------------------------------ prompts
    def add(self, frame: int, obj_id: int, points=None, labels=None, box=None, mask=None, clear: bool = False,
            cls: int | None = None):
        """Add clicks, a box or a mask for object ``obj_id`` on ``frame``; returns that frame's Results (all objects).

        The prompt is checked by the same normaliser as image prompts (:func:`samkit.prompts.object_prompt`):
        the same errors, coordinates outside the frame clipped with a warning.

        Args:
            frame: Frame index.
            obj_id: Any integer; a new id starts a new object (also after propagation has started).
            points: (P, 2) xy pixel clicks; labels: (P,) 1 positive / 0 negative (default all positive).
            box: xyxy pixel box. A box replaces the frame's earlier prompts for this object (it must come first).
            mask: (H, W) mask at the video's frame size (bool or 0/1). It replaces the frame's earlier prompts for
                this object and is taken as the object's mask there; clicks added later on that frame refine it.
            clear: Replace the object's earlier clicks on this frame instead of adding to them.
            cls: The object's class id (for the Results' ``boxes.cls`` and the label writers); kept until changed.
        """
        frame = self._check_frame(frame)
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise TypeError(f"obj_id {obj_id!r} must be an integer")
        if not -(2**63) <= int(obj_id) < 2**63:
            raise ValueError(f"obj_id {obj_id!r} is out of range (a 64-bit integer)")
        if cls is not None and (isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or cls < 0):
            raise ValueError(f"cls={cls!r} must be a class id (an integer >= 0)")
        prompt = object_prompt(self.frame_hw(frame), points=points, labels=labels, box=box, mask=mask, cls=cls)
        return self.add_prompts(frame, prompt, [int(obj_id)], clear=clear, classes=cls is not None)

    def add_prompts(self, frame: int, prompts: ObjectPrompts, obj_ids, clear: bool = False, classes: bool = True):
        """Add normalised prompts (:func:`samkit.prompts.normalize_prompts`) for several objects on ``frame``, all
        or none; returns that frame's Results.

        Args:
            frame: Frame index.
            prompts: N objects' prompts at the video's frame size; each object's prompt is either a binary mask or
                clicks and / or a box.
            obj_ids: N integer object ids (new ids start new objects).
            clear: Replace each object's earlier clicks on this frame instead of adding to them.
            classes: Set the objects' classes from ``prompts.cls`` (else existing objects keep theirs).
        """
        frame = self._check_frame(frame)
        obj_ids = [int(i) for i in obj_ids]
        if len(obj_ids) != len(prompts):
            raise ValueError(f"{len(obj_ids)} object ids for {len(prompts)} objects")
        if prompts.mask_is_logits and prompts.has_mask.any():
            raise ValueError("video mask prompts must be binary masks at the frame size, not low-resolution logits")
        for i in range(len(prompts)):
            if prompts.has_mask[i] and (prompts.num_points[i] or prompts.has_box[i]):
                raise ValueError("give mask= alone: a mask prompt replaces the frame's clicks and box (object "
                                 f"{obj_ids[i]} has a mask and a box or clicks)")
        self._frame(frame)
        saved = {i: self._snapshot(i, frame) for i in obj_ids}
        try:
            for i, obj_id in enumerate(obj_ids):
                self._add(self.objects.setdefault(obj_id, _Object(obj_id)), frame, prompts, i, clear, classes)
        except BaseException:  # all or nothing: every object is as it was (or not there)
            for obj_id, state in saved.items():
                self._restore(obj_id, frame, state)
            raise
        return self._results(frame)

    def _snapshot(self, obj_id: int, frame: int):
        obj = self.objects.get(obj_id)
        if obj is None:
            return None
        return obj.cls, obj.clicks.get(frame, _ABSENT), obj.pending.get(frame, _ABSENT)

    def _restore(self, obj_id: int, frame: int, state) -> None:
        if state is None:
            self.objects.pop(obj_id, None)
            return
        obj = self.objects[obj_id]
        obj.cls = state[0]
        for store, value in ((obj.clicks, state[1]), (obj.pending, state[2])):
            if value is _ABSENT:
                store.pop(frame, None)
            else:
                store[frame] = value

    def _add(self, obj: _Object, frame: int, prompts: ObjectPrompts, i: int, clear: bool, classes: bool) -> None:
        """Object ``obj``'s prompt ``i`` on ``frame``: decoded (with the frame's earlier clicks), memory pending."""
        if classes:
            obj.cls = int(prompts.cls[i])
        mask_in = point_inputs = None
        if prompts.has_mask[i]:
            obj.clicks.pop(frame, None)
            mask = torch.from_numpy(prompts.masks[i] > 0.5)
            mask_in = self.transforms.frame_mask_prompt(mask, self.device)
        else:
            pts, labs = prompts.object_points(i)
            box = prompts.boxes[i].copy() if prompts.has_box[i] else None
            prompt = {"points": pts.copy(), "labels": labs.copy(), "box": box}
            old = obj.clicks.get(frame)
            if old is not None and not clear and box is None:  # added to the frame's clicks, after its box
                prompt = {"points": np.concatenate([old["points"], pts]),
                          "labels": np.concatenate([old["labels"], labs]), "box": old["box"]}
            obj.clicks[frame] = prompt
            point_inputs = self._point_inputs(prompt)
        is_init = frame not in obj.tracked
        reverse = False if is_init else obj.tracked[frame]
        prev = obj.output_at(frame)
        prev_logits = None if prev is None or mask_in is not None else torch.clamp(prev["pred_masks"], -32.0, 32.0)
        features = self._feats(frame)
        with torch.inference_mode(), self.runtime.autocast():
            out = self.network.track_step(
                frame, features, obj.outputs, self._num_frames_for_memory(), first=is_init, reverse=reverse,
                points=point_inputs, mask=mask_in, prev_logits=prev_logits)
        obj.pending[frame] = (self._compact(out), is_init or self.correct_as_cond)

    def _point_inputs(self, prompt: dict) -> dict:
        """A frame's prompt -> the network's point inputs: box corners first (labels 2, 3), then the clicks, in
        network-input coordinates."""
        pts, labs = prompt["points"], prompt["labels"]
        if prompt["box"] is not None:
            pts = np.concatenate([prompt["box"].reshape(2, 2), pts])
            labs = np.concatenate([np.array([2, 3], np.int32), labs])
        xy = self.transforms.coords_to_input(pts, (self.video.height, self.video.width))
        return {"point_coords": upload(xy[None], self.device),
                "point_labels": upload(labs.astype(np.int32)[None], self.device)}

    def _num_frames_for_memory(self) -> int:
        n = self.num_frames
        return n if n is not None else 2**31 - 1

    def _compact(self, out: dict) -> dict:
        masks = out["pred_masks"]
        if self.fill_hole_area > 0:
            masks = fill_holes(masks, self.fill_hole_area)
        return {
            "maskmem_features": out.get("maskmem_features"),
            "maskmem_pos_enc": out.get("maskmem_pos_enc"),
            "pred_masks": masks,
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
        }

    def remove(self, obj_id: int) -> None:
        """Forget an object, its prompts and its memory."""
        if obj_id not in self.objects:
            raise UnknownObjectError(f"no object with id {obj_id!r}; known ids: {sorted(self.objects)}")
        del self.objects[obj_id]

    def reset(self) -> None:
        """Forget every object (the video stays open)."""
        self.objects.clear()

    # ------------------------------------------------------------------ tracking
    def _encode_pending(self) -> None:
        """Encode the memory of every prompted frame added since the last propagation."""
        for obj in self.objects.values():
            for frame, (out, is_cond) in list(obj.pending.items()):
                if out["maskmem_features"] is None:
                    features = self._feats(frame)
                    high = F.interpolate(out["pred_masks"], size=(self.size, self.size), mode="bilinear",
                                         align_corners=False)
                    with torch.inference_mode(), self.runtime.autocast():
                        mem, mem_pos = self.network.encode_memory(features, high, out["object_score_logits"], True)
                    out["maskmem_features"], out["maskmem_pos_enc"] = mem, mem_pos
                key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
                obj.outputs[key][frame] = out
            obj.pending.clear()
            for frame in obj.outputs["cond_frame_outputs"]:
                obj.outputs["non_cond_frame_outputs"].pop(frame, None)

    def propagate(self, start: int | None = None, reverse: bool = False, max_frames: int | None = None,
                  discover=None):
        """Track every object frame by frame; yields one Results per frame.

        Args:
            start: First frame (default: the earliest prompted frame).
            reverse: Go towards frame 0 instead of the end.
            max_frames: Stop after this many frames after ``start``.
            discover: Called with each frame's Results (the objects tracked so far); it returns None, or
                ``(prompts, obj_ids)`` (:class:`~samkit.prompts.ObjectPrompts` at the frame's size and new ids) of
                objects to start on that frame, which are then tracked from it on (the frame's Results include them).
                With ``discover`` the session may start empty (give ``start``).
        """
        max_frames = check_max_frames(max_frames)
        if not self.objects and discover is None:
            raise ValueError("no objects to track: add prompts with add() first")
        if start is None and not self.objects:
            raise ValueError("give start= to propagate a session without objects")
        self._encode_pending()
        if start is None:
            start = min(f for o in self.objects.values() for f in o.outputs["cond_frame_outputs"])
        start = self._check_frame(start)
        n = self.num_frames
        limit = max_frames if max_frames is not None else (n if n is not None else 2**62)
        if reverse:
            frames = self.video.frames(start, reverse=True, stop=max(start - limit, 0) - 1)
        else:
            stop = None if n is None else min(start + limit, n - 1) + 1
            if stop is None and max_frames is not None:
                stop = start + max_frames + 1
            frames = self.video.frames(start, stop=stop)
        # Frames are read, resized and normalised a few frames ahead in a background thread.
        ahead = prefetch(((t, self._prepare(t, f)) for t, f in frames), READ_AHEAD)
        try:
            for t, prepared in ahead:
                self._prepared = (t, prepared)
                for obj in self.objects.values():
                    self._cap_prompts(obj, t, reverse)
                todo = [o for o in self.objects.values() if t not in o.outputs["cond_frame_outputs"]]
                step = CPU_OBJECTS_PER_BATCH if self.device.type == "cpu" else len(todo) or 1
                for group in _memory_groups(todo):
                    for i in range(0, len(group), step):
                        self._track_group(group[i : i + step], t, reverse)
                for obj in self.objects.values():
                    obj.tracked[t] = reverse
                    self._forget_far(obj, t)
                res = self._results(t)
                found = discover(res) if discover is not None else None
                if found is not None and len(found[0]):
                    prompts, ids = found
                    self.add_prompts(t, prompts, ids)
                    self._encode_pending()
                    for i in ids:
                        self.objects[int(i)].tracked[t] = reverse
                    res = self._results(t)
                yield res
        finally:
            ahead.close()
            self._prepared = None

    def _track_group(self, group: list[_Object], t: int, reverse: bool) -> None:
        """Track frame ``t`` for objects whose memories sit on the same frames, as one batch: memory attention
        and the decoder run once for all of them (each row attends only to its own object's memory)."""
        b = len(group)
        features = self._feats(t).expand(b)
        outputs = group[0].outputs if b == 1 else _stack_outputs([o.outputs for o in group])
        with torch.inference_mode(), self.runtime.autocast():
            out = self.network.track_step(t, features, outputs, self._num_frames_for_memory(), reverse=reverse,
                                          encode_memory=True)
        out = self._compact(out)
        for i, obj in enumerate(group):
            obj.outputs["non_cond_frame_outputs"][t] = out if b == 1 else _row(out, i)

    def _cap_prompts(self, obj: _Object, t: int, reverse: bool) -> None:
        """Keep the ``max_prompt_frames`` prompted frames closest behind frame ``t`` (in the direction of travel);
        the ones farther behind are forgotten. Prompted frames ahead stay: tracking has not reached them yet."""
        cond = obj.outputs["cond_frame_outputs"]
        if self.max_prompt_frames is None:
            return
        behind = sorted((c for c in cond if (c >= t if reverse else c <= t)), key=lambda c: abs(c - t))
        for f in behind[self.max_prompt_frames:]:
            obj.forget_prompt(f)

    def _forget_far(self, obj: _Object, t: int) -> None:
        """Drop non-prompted outputs farther than ``window`` frames from ``t`` and from every prompted frame.

        Tracking from ``t`` cannot reach them; outputs around prompted frames stay, because a pass in the other
        direction from a prompted frame starts from them (as it would in the reference, which keeps all).
        """
        cond = () if self.video.live else obj.outputs["cond_frame_outputs"]  # live: no pass in the other direction
        far = [f for f in obj.outputs["non_cond_frame_outputs"]
               if abs(f - t) > self.window and all(abs(f - c) > self.window for c in cond)]
        for f in far:
            del obj.outputs["non_cond_frame_outputs"][f]

    # ------------------------------------------------------------------ results
    def _results(self, frame: int):
        h, w = self.video.height, self.video.width
        objs = list(self.objects.values())
        ids, logits, scores = [], [], []
        for obj in objs:
            out = obj.output_at(frame)
            ids.append(obj.obj_id)
            if out is None:
                side = self.size // 4
                logits.append(torch.full((1, 1, side, side), NO_OBJ_SCORE, device=self.device))
                scores.append(torch.full((1,), float("-inf"), device=self.device))
            else:
                logits.append(out["pred_masks"].float())
                scores.append(out["object_score_logits"].float().reshape(-1)[:1])
        low = torch.cat(logits) if logits else torch.zeros((0, 1, self.size // 4, self.size // 4))
        masks = self.transforms.logits_to_image(low, (h, w))[:, 0] > 0.0
        presence = torch.sigmoid(torch.cat(scores)) if scores else torch.zeros(0)  # on the device: no wait here
        prompts = None
        if any(frame in o.clicks for o in objs):  # the frame's clicks and boxes, drawn by Results.plot()
            n, p = len(objs), max(len(o.clicks.get(frame, {"labels": ()})["labels"]) for o in objs)
            points, labels = np.zeros((n, p, 2), np.float32), np.full((n, p), -1, np.int32)
            boxes = np.full((n, 4), np.nan, np.float32)
            for i, o in enumerate(objs):
                d = o.clicks.get(frame)
                if d is not None:
                    k = len(d["labels"])
                    points[i, :k], labels[i, :k] = d["points"], d["labels"]
                    if d["box"] is not None:
                        boxes[i] = d["box"]
            prompts = ObjectPrompts(points, labels, boxes, cls=[o.cls for o in objs], track_id=ids,
                                    names=self.names)
        res = Results(self._frame(frame), path=self.video.name, masks=masks, iou=presence,
                      obj_ids=torch.tensor(ids, dtype=torch.long), cls=torch.tensor([o.cls for o in objs]),
                      names=self.names, prompts=prompts, low_res_logits=low[:, 0], tracked=True, frame=frame,
                      presence=presence, fps=self.video.fps)
        return res

    def close(self) -> None:
        self.video.close()

    def __enter__(self) -> VideoSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _memory_groups(objects: list[_Object]) -> list[list[_Object]]:
    """Objects whose stored outputs are on the same frames: the model selects the same memory frames for them,
    so they can be tracked as one batch."""
    groups: dict[tuple, list[_Object]] = {}
    for o in objects:
        key = (tuple(sorted(o.outputs["cond_frame_outputs"])), tuple(sorted(o.outputs["non_cond_frame_outputs"])))
        groups.setdefault(key, []).append(o)
    return list(groups.values())


def _cat(values):
    if values[0] is None:
        return None
    if isinstance(values[0], list):
        return [torch.cat(parts) for parts in zip(*values)]
    return torch.cat(values)


def _stack_outputs(dicts: list[dict]) -> dict:
    """Per-object output dicts with the same frames -> one output dict whose tensors hold every object (batch)."""
    merged = {}
    for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
        merged[key] = {
            f: {k: _cat([d[key][f][k] for d in dicts]) for k in dicts[0][key][f]} for f in dicts[0][key]
        }
    return merged


def _row(out: dict, i: int) -> dict:
    """Object ``i``'s slice of a batched output."""
    def pick(v):
        if v is None:
            return None
        if isinstance(v, list):
            return [x[i : i + 1] for x in v]
        return v[i : i + 1]

    return {k: pick(v) for k, v in out.items()}
