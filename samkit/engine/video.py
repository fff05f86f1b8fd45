"""Interactive video sessions for SAM 2 / 2.1: prompts on any frame, forward and reverse propagation.

The memory logic is the network's own (``SAM2Model.track_step``: conditioning frames, recent memories, object
pointers, temporal encodings); the session feeds it the same inputs as Meta's ``SAM2VideoPredictor``:

- frames resized to a square with PIL's bicubic filter, as the reference's frame loader does;
- clicks and boxes scaled to the network input; clicks added to a frame's earlier clicks unless ``clear=True``;
  a refinement on an already tracked frame is decoded together with that frame's previous mask logits;
- prompted frames get their memory encoded (from the binarised mask) when propagation starts;
- small holes (<= ``fill_hole_area`` low-resolution pixels) are filled in every predicted mask, on the CPU too
  (the reference needs a CUDA extension for that and skips it elsewhere).

Unlike the reference, frames are decoded from the source on demand and the session keeps only what the model
can attend to: every prompted frame's output, and the outputs of the frames within ``window`` frames of the
frame being tracked or of a prompted frame (the memory and object-pointer reach). Memory therefore stays flat
with video length. A refinement click on a frame whose output was dropped is decoded without the previous mask
logits of that frame (the reference would feed them in); clicks near prompted frames or near the current frame
are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.video import READ_AHEAD, VideoSource, _prefetch, open_video
from samkit.engine.everything import _small_components
from samkit.engine.image import SAM2_MEAN, SAM2_STD

NO_OBJ_SCORE = -1024.0  # the reference's logit for "no mask on this frame"


@dataclass
class _Object:
    """One tracked object's prompts and outputs."""

    obj_id: int
    clicks: dict[int, dict] = field(default_factory=dict)  # frame -> {"point_coords", "point_labels"} (input px)
    outputs: dict = field(default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
    pending: dict[int, tuple[dict, bool]] = field(default_factory=dict)  # frame -> (output, is_cond), no memory
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output_at(self, frame: int) -> dict | None:
        if frame in self.pending:
            return self.pending[frame][0]
        return self.outputs["cond_frame_outputs"].get(frame) or self.outputs["non_cond_frame_outputs"].get(frame)


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background regions of at most ``max_area`` pixels inside (n, 1, r, r) mask logits get logit 0.1."""
    if max_area <= 0:
        return logits
    out = logits.detach().float().cpu().numpy().copy()
    for m in out[:, 0]:
        m[_small_components(m <= 0, max_area)] = 0.1
    return torch.from_numpy(out).to(device=logits.device, dtype=logits.dtype)


class VideoSession:
    """Prompt and track objects through one video (use through :meth:`samkit.SAM.video`).

    Args:
        model: A loaded SAM 2 / 2.1 :class:`~samkit.SAM`.
        source: Anything :func:`~samkit.data.video.open_video` takes.
        fill_hole_area: Fill mask holes up to this many low-resolution pixels (the reference's video default, 8).
    """

    def __init__(self, model, source, fill_hole_area: int = 8):
        if model.arch.family != "sam2":
            raise ValueError(f"video tracking needs a SAM 2 / 2.1 model; {model.family} has no memory")
        self.model = model
        self.net = model.net
        self.video: VideoSource = source if isinstance(source, VideoSource) else open_video(source)
        self.size = model.arch.image_size
        self.fill_hole_area = fill_hole_area
        self.window = max(self.net.num_maskmem, self.net.max_obj_ptrs_in_encoder)
        self.objects: dict[int, _Object] = {}
        self._features: tuple[int, dict] | None = None  # the most recent frame's backbone output
        self._last_frame: tuple[int, np.ndarray] | None = None
        self._prepared: tuple[int, tuple[np.ndarray, torch.Tensor]] | None = None  # from the read-ahead thread
        self.frames_encoded = 0

    # ------------------------------------------------------------------ frames
    @property
    def num_frames(self) -> int | None:
        return self.video.length

    def _prepare(self, index: int, bgr: np.ndarray | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Frame ``index`` (BGR) and its network input on the CPU: RGB, bicubic square resize (PIL), /255,
        ImageNet normalisation, (1, 3, S, S) float32 -- the reference's frame loading."""
        from PIL import Image
        from torchvision.transforms import functional as TF

        bgr = self.video.read(index) if bgr is None else bgr
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        resized = np.asarray(Image.fromarray(rgb).resize((self.size, self.size), Image.BICUBIC))
        x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0
        return bgr, TF.normalize(x, SAM2_MEAN, SAM2_STD)[None]

    def _frame_input(self, index: int) -> torch.Tensor:
        if self._prepared is not None and self._prepared[0] == index:
            bgr, x = self._prepared[1]
        else:
            bgr, x = self._prepare(index)
        self._last_frame = (index, bgr)
        return x.to(self.model.device)

    def _frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (BGR), decoded once for its features and its Results."""
        if self._last_frame is None or self._last_frame[0] != index:
            if self._prepared is not None and self._prepared[0] == index:
                self._last_frame = (index, self._prepared[1][0])
            else:
                self._last_frame = (index, self.video.read(index))
        return self._last_frame[1]

    def _feats(self, index: int):
        """(vision_feats, vision_pos_embeds, feat_sizes) of frame ``index``; the last frame's are kept."""
        if self._features is None or self._features[0] != index:
            with self.model.engine.autocast():
                backbone_out = self.net.forward_image(self._frame_input(index))
            self._features = (index, backbone_out)
            self.frames_encoded += 1
        backbone_out = dict(self._features[1])
        backbone_out["backbone_fpn"] = list(backbone_out["backbone_fpn"])
        backbone_out["vision_pos_enc"] = list(backbone_out["vision_pos_enc"])
        _, feats, pos, sizes = self.net._prepare_backbone_features(backbone_out)
        return feats, pos, sizes

    def _check_frame(self, frame: int) -> int:
        return self.video.check_index(frame)

    # ------------------------------------------------------------------ prompts
    def add(self, frame: int, obj_id: int, points=None, labels=None, box=None, clear: bool = False):
        """Add clicks and/or a box for object ``obj_id`` on ``frame``; returns that frame's Results (all objects).

        Args:
            frame: Frame index.
            obj_id: Any integer; a new id starts a new object (also after propagation has started).
            points: (P, 2) xy pixel clicks; labels: (P,) 1 positive / 0 negative (default all positive).
            box: xyxy pixel box. A box replaces the frame's earlier prompts for this object (it must come first).
            clear: Replace the object's earlier clicks on this frame instead of adding to them.
        """
        frame = self._check_frame(frame)
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise TypeError(f"obj_id {obj_id!r} must be an integer")
        pts, labs = self._prompt_tensors(points, labels, box)
        obj = self.objects.setdefault(int(obj_id), _Object(int(obj_id)))
        if not clear and box is None and frame in obj.clicks:
            old = obj.clicks[frame]
            pts = torch.cat([old["point_coords"], pts], 1)
            labs = torch.cat([old["point_labels"], labs], 1)
        obj.clicks[frame] = {"point_coords": pts, "point_labels": labs}
        is_init = frame not in obj.tracked
        reverse = False if is_init else obj.tracked[frame]
        prev = obj.output_at(frame)
        prev_logits = None if prev is None else torch.clamp(prev["pred_masks"], -32.0, 32.0)
        feats, pos, sizes = self._feats(frame)
        with torch.inference_mode(), self.model.engine.autocast():
            out = self.net.track_step(
                frame_idx=frame, is_init_cond_frame=is_init, current_vision_feats=feats,
                current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=obj.clicks[frame], mask_inputs=None,
                output_dict=obj.outputs, num_frames=self._num_frames_for_memory(), track_in_reverse=reverse,
                run_mem_encoder=False, prev_sam_mask_logits=prev_logits,
            )
        obj.pending[frame] = (self._compact(out), is_init)
        return self._results(frame)

    def _prompt_tensors(self, points, labels, box):
        h, w = self.video.height, self.video.width
        scale = torch.tensor([w, h], dtype=torch.float32)
        if points is None and box is None:
            raise ValueError("add() needs points= (with labels=) or box=")
        pts = torch.zeros((0, 2)) if points is None else torch.as_tensor(np.asarray(points, np.float32)).reshape(-1, 2)
        if labels is None:
            labs = torch.ones(len(pts), dtype=torch.int32)
        else:
            labs = torch.as_tensor(np.asarray(labels)).reshape(-1).to(torch.int32)
            if len(labs) != len(pts):
                raise ValueError(f"{len(labs)} labels for {len(pts)} points: give one label per point")
            if not set(labs.tolist()) <= {0, 1}:
                raise ValueError(f"labels {labs.tolist()} must be 1 (positive) or 0 (negative)")
        if box is not None:
            b = torch.as_tensor(np.asarray(box, np.float32)).reshape(-1)
            if len(b) != 4 or b[2] < b[0] or b[3] < b[1]:
                raise ValueError(f"box {np.asarray(box).tolist()} must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1")
            pts = torch.cat([b.reshape(2, 2), pts])
            labs = torch.cat([torch.tensor([2, 3], dtype=torch.int32), labs])
        if not torch.isfinite(pts).all():
            raise ValueError("prompt coordinates must be finite numbers")
        pts = (pts / scale * self.size)[None].to(self.model.device)
        return pts, labs[None].to(self.model.device)

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
            raise KeyError(f"no object with id {obj_id!r}; known ids: {sorted(self.objects)}")
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
                    feats, _, sizes = self._feats(frame)
                    high = F.interpolate(out["pred_masks"], size=(self.size, self.size), mode="bilinear",
                                         align_corners=False)
                    with torch.inference_mode(), self.model.engine.autocast():
                        mem, mem_pos = self.net._encode_new_memory(
                            current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=high,
                            object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
                    out["maskmem_features"], out["maskmem_pos_enc"] = mem, mem_pos
                key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
                obj.outputs[key][frame] = out
            obj.pending.clear()
            for frame in obj.outputs["cond_frame_outputs"]:
                obj.outputs["non_cond_frame_outputs"].pop(frame, None)

    def propagate(self, start: int | None = None, reverse: bool = False, max_frames: int | None = None):
        """Track every object frame by frame; yields one Results per frame.

        Args:
            start: First frame (default: the earliest prompted frame).
            reverse: Go towards frame 0 instead of the end.
            max_frames: Stop after this many frames after ``start``.
        """
        if not self.objects:
            raise ValueError("no objects to track: add prompts with add() first")
        self._encode_pending()
        if start is None:
            start = min(f for o in self.objects.values() for f in o.outputs["cond_frame_outputs"])
        start = self._check_frame(start)
        n = self.num_frames
        limit = max_frames if max_frames is not None else (n if n is not None else 2**62)
        if reverse:
            frames = self.video.frames(start, reverse=True, stop=max(start - limit, 0) - 1) if start > 0 else iter(())
        else:
            stop = None if n is None else min(start + limit, n - 1) + 1
            if stop is None and max_frames is not None:
                stop = start + max_frames + 1
            frames = self.video.frames(start, stop=stop)
        # Frames are read, resized and normalised a few frames ahead in a background thread.
        ahead = _prefetch(((t, self._prepare(t, f)) for t, f in frames), READ_AHEAD)
        try:
            for t, prepared in ahead:
                self._prepared = (t, prepared)
                todo = [o for o in self.objects.values() if t not in o.outputs["cond_frame_outputs"]]
                for group in _memory_groups(todo):
                    self._track_group(group, t, reverse)
                for obj in self.objects.values():
                    obj.tracked[t] = reverse
                    self._forget_far(obj, t)
                yield self._results(t)
        finally:
            ahead.close()
            self._prepared = None

    def _track_group(self, group: list[_Object], t: int, reverse: bool) -> None:
        """Track frame ``t`` for objects whose memories sit on the same frames, as one batch: memory attention
        and the decoder run once for all of them (each row attends only to its own object's memory)."""
        b = len(group)
        feats, pos, sizes = self._feats(t)
        if b > 1:
            feats = [f.expand(-1, b, -1) for f in feats]
            pos = [p.expand(-1, b, -1) for p in pos]
        outputs = group[0].outputs if b == 1 else _stack_outputs([o.outputs for o in group])
        with torch.inference_mode(), self.model.engine.autocast():
            out = self.net.track_step(
                frame_idx=t, is_init_cond_frame=False, current_vision_feats=feats, current_vision_pos_embeds=pos,
                feat_sizes=sizes, point_inputs=None, mask_inputs=None, output_dict=outputs,
                num_frames=self._num_frames_for_memory(), track_in_reverse=reverse, run_mem_encoder=True,
            )
        out = self._compact(out)
        for i, obj in enumerate(group):
            obj.outputs["non_cond_frame_outputs"][t] = out if b == 1 else _row(out, i)

    def _forget_far(self, obj: _Object, t: int) -> None:
        """Drop non-prompted outputs farther than ``window`` frames from ``t`` and from every prompted frame.

        Tracking from ``t`` cannot reach them; outputs around prompted frames stay, because a pass in the other
        direction from a prompted frame starts from them (as it would in the reference, which keeps all).
        """
        cond = obj.outputs["cond_frame_outputs"]
        far = [f for f in obj.outputs["non_cond_frame_outputs"]
               if abs(f - t) > self.window and all(abs(f - c) > self.window for c in cond)]
        for f in far:
            del obj.outputs["non_cond_frame_outputs"][f]

    # ------------------------------------------------------------------ results
    def _results(self, frame: int):
        from samkit.results import Results

        h, w = self.video.height, self.video.width
        ids, logits, scores = [], [], []
        for obj in self.objects.values():
            out = obj.output_at(frame)
            ids.append(obj.obj_id)
            if out is None:
                side = self.size // 4
                logits.append(torch.full((1, 1, side, side), NO_OBJ_SCORE, device=self.model.device))
                scores.append(torch.tensor(float("-inf")))
            else:
                logits.append(out["pred_masks"].float())
                scores.append(out["object_score_logits"].float().reshape(-1)[0].cpu())
        low = torch.cat(logits) if logits else torch.zeros((0, 1, self.size // 4, self.size // 4))
        masks = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0] > 0.0
        presence = torch.sigmoid(torch.stack(scores)) if scores else torch.zeros(0)
        res = Results(self._frame(frame), path=f"{self.video.name}#{frame}", masks=masks, iou=presence,
                      obj_ids=torch.tensor(ids, dtype=torch.long), low_res_logits=low[:, 0])
        res.frame = frame
        res.presence = presence
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
