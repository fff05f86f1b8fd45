"""Concept tracking through video (SAM 3): every instance of a phrase, found on every frame, carried by the tracker.

The algorithm is Meta's SAM 3 video model's (``Sam3VideoInferenceWithInstanceInteractivity`` with the settings of
``build_sam3_video_model``), so that the same weights give the same ids and masks. Each frame:

1. The detector runs on the frame (one backbone pass and one batched grounding call for every phrase). Detections
   scoring above ``score_threshold`` go through mask non-maximum suppression (mask IoU above ``nms_iou`` with a
   better detection removes one) and stay in query order.
2. Every *bucket* of objects (the objects born together on one frame) is tracked one frame by SAM 3's memory
   tracker (:mod:`samkit.families.sam3_net`: memory selection, at most 4 conditioning frames). Small holes and
   specks in the low-resolution masks are cleaned (``fill_hole_area``).
3. Planning: tracks and detections are matched by mask IoU; a detection overlapping no track (IoU below
   ``assoc_iou``) and scoring at least ``new_threshold`` starts a new object (on a frame with no tracks, every
   detection does); ids are never reused. An object in its first ``hotstart_delay`` frames is removed when it was
   unmatched (IoU below ``match_iou`` with every detection) on ``hotstart_unmatched`` frames, or duplicated
   an older object on ``hotstart_duplicate`` frames. Every ``recondition_every``-th frame, tracks matched by a
   confident detection (score and IoU >= 0.8) take its mask as a new conditioning frame. Of two tracks
   overlapping by ``occlusion_iou``, the one occluded more recently is suppressed on that frame. Then every
   track's memory is encoded from the cleaned masks (pixel-wise non-overlapping, objects that lose 70% of their
   area suppressed).
4. New objects get their bucket, from the detector's masks; removed objects leave theirs.
5. Output: the tracks' masks and the newborns' detector masks at video size; where objects overlap the pixel goes
   to the object the tracker is most sure of on that frame.

Results are held back ``hotstart_delay`` frames (15), as the reference does, so that an object removed during its
first frames is hidden on every frame it was shown on: a frame's ids are final when it is yielded.

Phrases are independent: each has its own objects and planner (the reference takes one phrase per session), one
detector pass serves all; ids are unique across phrases, ``cls`` is the phrase's index. Masks of different phrases
may overlap (a "person" and their "backpack").

Unlike the reference, the session keeps only what the tracker can still attend to (see :meth:`_forget`), so
memory stays flat with video length, and frames are decoded as they are needed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.video import READ_AHEAD, VideoSource, open_video, prefetch
from samkit.engine.concepts import ConceptEngine, ConceptQuery, concept_query
from samkit.engine.transforms import transforms_for
from samkit.engine.video import UnknownObjectError, check_max_frames
from samkit.families import require_capability
from samkit.nn.runtime import Runtime
from samkit.ops import fill_holes
from samkit.results import Results
from samkit.utils.requirements import require_phrases

NO_OBJ = -1024.0  # the tracker's logit for "not on this frame"
REMOVED_SCORE = -1e4
HIGH_CONF = 0.8  # re-conditioning: detection score and IoU (the reference's constants)
NEVER_OCCLUDED, ALWAYS_OCCLUDED = -1, 100000


@dataclass(frozen=True)
class ConceptTracking:
    """Settings of concept tracking; the defaults are those of Meta's ``build_sam3_video_model``."""

    score_threshold: float = 0.5  # detections kept (and suppressed against each other above this)
    new_threshold: float = 0.7  # a detection overlapping no track starts an object at this score
    nms_iou: float = 0.1  # mask IoU above which the better detection removes the other
    assoc_iou: float = 0.1  # a detection with this IoU to a track is that track's (not new)
    match_iou: float = 0.5  # a track with this IoU to some detection is matched on the frame
    hotstart_delay: int = 15  # frames an object is on probation; results are held back this many frames
    hotstart_unmatched: int = 8  # unmatched frames that remove an object on probation
    hotstart_duplicate: int = 8  # frames duplicating an older object that remove one on probation
    occlusion_iou: float = 0.7  # overlap at which the more recently occluded of two tracks is suppressed
    fill_hole_area: int = 16  # holes and specks (low-resolution pixels) cleaned from every mask
    recondition_every: int = 16  # frames between re-conditionings on confident detections (0: never)
    max_objects: int = 10000  # objects tracked at once per phrase (the lowest-scoring newcomers are dropped)

    def __post_init__(self):
        for name in ("score_threshold", "new_threshold", "nms_iou", "assoc_iou", "match_iou", "occlusion_iou"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r} must be a number in [0, 1]")
        for name in ("hotstart_delay", "hotstart_unmatched", "hotstart_duplicate", "fill_hole_area",
                     "recondition_every", "max_objects"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name}={v!r} must be an integer >= 0")


@dataclass
class _Frame:
    """One frame's detector outputs (per phrase) and the tracker's view of it."""

    index: int
    image: np.ndarray  # BGR
    fpn: list  # the tracker's feature maps (B=1), bf16-rounded then projected, as the reference
    pos: list
    dets: list  # per phrase: (probs (D,) float32 numpy, masks (D, r, r) logits), query order, after NMS
    generation: int = -1  # the runtime generation the features were computed under

    def tracker_inputs(self, tracker, batch: int):
        out = {"backbone_fpn": list(self.fpn), "vision_pos_enc": list(self.pos)}
        _, feats, pos, sizes = tracker._prepare_backbone_features(out, batch=batch)
        return feats, pos, sizes


@dataclass
class _Bucket:
    """Objects born together (one frame's new detections, or one clicked object): tracked as one batch."""

    obj_ids: list[int]
    outputs: dict = field(default_factory=lambda: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}})
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse
    masks: dict[int, set] = field(default_factory=lambda: defaultdict(set))  # object -> frames given a mask
    points: dict[int, dict] = field(default_factory=lambda: defaultdict(dict))  # object -> frame -> point inputs
    cleared: set = field(default_factory=set)  # frames whose output a lone object may not use for a click

    def has_input(self, frame: int) -> bool:
        return any(frame in f for f in self.masks.values()) or any(frame in f for f in self.points.values())

    def own_output(self, obj: int, frame: int) -> dict | None:
        """Object ``obj``'s stored output on ``frame`` (a row of the batch), as the reference keeps per object."""
        j = self.obj_ids.index(obj)
        out = self.outputs["cond_frame_outputs"].get(frame)
        if out is None and frame not in self.cleared:
            out = self.outputs["non_cond_frame_outputs"].get(frame)
        return None if out is None else {k: (v[j : j + 1] if torch.is_tensor(v) and v.dim() else v)
                                         for k, v in out.items() if k != "maskmem_pos_enc"}


@dataclass
class _FrameOut:
    """A phrase's objects on one frame before the output step: low-resolution logits (a full step) or masks at
    video size (corrections and stored frames), and the confidence each object has on the frame."""

    obj_ids: list[int]
    probs: list[float]  # the tracker's (the detector's for newborns, 1.0 for a click) confidence on this frame
    logits: torch.Tensor | None = None  # (N, r, r)
    masks: torch.Tensor | None = None  # (N, H, W) bool
    hide_removed: bool = True  # full steps hide the objects removed on probation (stored frames no longer hold them)

    def video(self, hw: tuple[int, int]) -> torch.Tensor:
        if self.masks is not None:
            return self.masks
        if not self.obj_ids:
            return torch.zeros((0, *hw), dtype=torch.bool)
        return F.interpolate(self.logits[:, None].float(), size=hw, mode="bilinear", align_corners=False)[:, 0] > 0


class _Phrase:
    """One phrase's objects and the planner's bookkeeping (Meta's tracker metadata, as counters); ``phrase`` None
    holds objects added by clicks alone (nothing is detected for them)."""

    def __init__(self, index: int, phrase: str | None):
        self.index, self.phrase = index, phrase
        self.buckets: list[_Bucket] = []
        self.first_frame: dict[int, int] = {}
        self.unmatched: dict[int, int] = defaultdict(int)
        self.duplicates: dict[tuple[int, int], int] = defaultdict(int)
        self.removed: set[int] = set()
        self.last_occluded: dict[int, int] = {}
        self.score: dict[int, float] = {}  # birth score (1.0 once clicked)
        self.history: list[tuple[str, int | None, list | None]] = []  # prompts and passes, as the reference logs
        self.frame_scores: dict[int, dict[int, float]] = defaultdict(dict)  # frame -> object -> confidence
        self.stored: dict[int, dict[int, tuple]] = {}  # frame -> object -> packed mask (interactive sessions)

    @property
    def obj_ids(self) -> list[int]:
        return [i for b in self.buckets for i in b.obj_ids]

    def bucket_of(self, obj_id: int) -> _Bucket | None:
        return next((b for b in self.buckets if obj_id in b.obj_ids), None)

    def next_pass(self, num_frames: int | None) -> tuple[str, list | None]:
        """What the next propagation does for this phrase (the reference's ``parse_action_history``): "full"
        (detect and track), "partial" (re-track the corrected objects with the tracker alone) or "fetch" (the stored
        results)."""
        h = self.history
        if not h:
            return "full", None
        kind, frame, ids = h[-1]
        if kind in ("full", "partial", "fetch"):
            if kind == "fetch":
                return "fetch", None
            ends = (0, num_frames - 1) if num_frames else (0,)
            if (len(h) > 1 and h[-2][0] in ("partial", "full")) or frame in ends:
                return "fetch", None
            return kind, ids
        touched = []
        for kind, _, ids in reversed(h):
            if kind in ("full", "partial", "fetch"):
                break
            if kind in ("add", "refine"):
                touched.extend(ids)
        return ("partial", sorted(set(touched))) if touched else ("fetch", None)


def _pack(mask: torch.Tensor) -> tuple:
    m = mask.cpu().numpy()
    return np.packbits(m, axis=None), m.shape


def _unpack(packed: tuple) -> torch.Tensor:
    bits, shape = packed
    return torch.from_numpy(np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool))


class ConceptVideoSession:
    """Find and track every instance of phrases through one video, and correct any instance with clicks (use
    through :meth:`samkit.SAM.video` with a SAM 3 model, or ``model(source, texts=[...], stream=True)``).

    Args:
        runtime: A SAM 3 network's :class:`~samkit.nn.runtime.Runtime`.
        source: Anything :func:`~samkit.data.video.open_video` takes.
        engine: The model's :class:`~samkit.engine.concepts.ConceptEngine` (phrase features are shared with it).
        settings: :class:`ConceptTracking` (Meta's defaults).
        interactive: Keep every processed frame's results (packed bits, one per object and frame) and every tracked
            frame's memory, so that corrections can be propagated and merged as the reference does. False (a
            one-way stream): keep only what the tracker can still attend to, so memory stays flat.
    """

    def __init__(self, runtime: Runtime, source, engine: ConceptEngine | None = None,
                 settings: ConceptTracking | None = None, interactive: bool = True):
        require_capability(runtime.arch, "concept_video", "concept tracking")
        self.transforms = transforms_for(runtime.arch)
        self.runtime = runtime
        self.net = runtime.net
        self.tracker = runtime.net.tracker
        self.engine = engine or ConceptEngine(runtime, cache_size=0)
        self.settings = settings or ConceptTracking()
        self.interactive = bool(interactive)
        self.video: VideoSource = source if isinstance(source, VideoSource) else open_video(source)
        self.phrases: list[_Phrase] = []
        self.next_id = 0
        self.low = self.transforms.low_res
        self.first_frame: int | None = None  # the earliest frame with outputs (the default start)
        self.anchors: set[int] = set()  # a one-way session: frames a backward pass will start from
        self._frame: _Frame | None = None
        self._prepared = None
        self.frames_encoded = 0

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def num_frames(self) -> int | None:
        return self.video.length

    @property
    def names(self) -> dict[int, str]:
        return {p.index: (p.phrase or "object") for p in self.phrases} or {0: "object"}

    @property
    def obj_ids(self) -> list[int]:
        return sorted(i for p in self.phrases for i in p.obj_ids)

    def _frames_for_memory(self) -> int:
        n = self.num_frames
        return n if n is not None else 2**31 - 1

    def frame_hw(self, frame: int = 0) -> tuple[int, int]:
        """(height, width) of the video's frames (frame ``frame`` is decoded first for a live source)."""
        if not self.video.height:
            self._read(self.video.check_index(frame))
        return self.video.height, self.video.width

    # ------------------------------------------------------------------ frames and detections
    def _read(self, index: int) -> np.ndarray:
        if self._prepared is not None and self._prepared[0] == index:
            return self._prepared[1]
        if self._frame is not None and self._frame.index == index:
            return self._frame.image
        return self.video.read(index)

    @torch.inference_mode()
    def _frame_data(self, index: int) -> _Frame:
        """Frame ``index``: the backbone once, the grounding of every phrase, NMS; the last frame is kept."""
        rt, det = self.runtime, self.net.detector
        if self._frame is not None and self._frame.index == index and self._frame.generation == rt.generation:
            return self._frame
        image = self._read(index)
        x = self.transforms.image_to_input(image, rt.device)[None]
        with rt.autocast():
            feats = det.backbone.forward_image(rt.encoder_layout(x))
        self.frames_encoded += 1
        sam2 = feats["sam2_backbone_out"]
        fpn = [f.to(torch.bfloat16).float() for f in sam2["backbone_fpn"]]  # the reference rounds them to bf16
        dec = self.tracker.sam_mask_decoder
        with rt.autocast():
            fpn = [dec.conv_s0(fpn[0]), dec.conv_s1(fpn[1]), fpn[2]]
        texts = [p.phrase for p in self.phrases if p.phrase is not None]
        dets, found = [], {}
        if texts:
            query = ConceptQuery(texts, np.zeros((0, 4), np.float32), np.zeros(0, bool))
            out = self.engine.ground(image, query, features=feats)
            joint = out["pred_logits"].float().sigmoid()[..., 0] * out["presence_logit_dec"].float().sigmoid()
            x1, x2 = joint.clamp(min=1e-3), (1 - joint).clamp(min=1e-3)  # as the reference's joint logit
            probs = torch.log(x1 / x2).clamp(-10.0, 10.0).sigmoid()
            for q, text in enumerate(texts):
                found[text] = self._nms(probs[q], out["pred_masks"][q].float())
        empty = (np.zeros(0, np.float32), torch.zeros((0, self.low, self.low), device=self.device))
        dets = [found.get(p.phrase, empty) for p in self.phrases]
        self._frame = _Frame(index, image, fpn, list(sam2["vision_pos_enc"]), dets, rt.generation)
        return self._frame

    def _nms(self, probs: torch.Tensor, masks: torch.Tensor):
        """Detections above the score threshold, greedy mask NMS; (probs numpy, mask logits) in query order."""
        s = self.settings
        all_p = probs.cpu().numpy()
        valid = np.flatnonzero(all_p > s.score_threshold)
        p = all_p[valid]
        if s.nms_iou > 0 and len(valid) > 1:
            binary = masks[torch.from_numpy(valid).to(masks.device)] > 0
            ious = mask_iou(binary, binary).cpu().numpy()
            order = p.argsort()[::-1]
            kept = []
            while order.size:
                i = order[0]
                kept.append(i)
                order = order[1:][ious[i, order[1:]] <= s.nms_iou]
            keep = np.sort(np.asarray(kept, np.int64))
            valid, p = valid[keep], p[keep]
        return p.astype(np.float32), masks[torch.from_numpy(valid).to(masks.device)]

    # ------------------------------------------------------------------ prompts
    def add(self, frame: int = 0, texts=None, obj_id: int | None = None, points=None, labels=None, box=None,
            cls: int | None = None):
        """Prompt on ``frame``; returns that frame's Results.

        - ``texts=`` (a phrase or a list): find and track every instance of each phrase. A phrase already in the
          session starts over (its objects are dropped), as a text prompt resets the reference's session; other
          phrases keep theirs. The frame's detections all become objects (no track exists yet for the phrase), and
          :meth:`propagate` from this frame processes it again, as the reference does.
        - ``obj_id=`` with ``points=`` / ``labels=`` (pixels; 1 positive, 0 negative) or ``box=``: a correction of
          that object on this frame (these clicks replace the object's earlier clicks on the frame), decoded without
          memory and made a conditioning frame; an unknown id adds an object (of phrase ``cls``, default the first).
          The next :meth:`propagate` re-tracks only the corrected objects and keeps every other result.
        """
        frame = self.video.check_index(frame)
        clicked = points is not None or box is not None
        if texts is not None and (clicked or obj_id is not None):
            raise ValueError("give texts= alone, or obj_id= with points= / box= (a correction), not both")
        if texts is not None:
            return self._add_phrases(frame, texts)
        if obj_id is None or not clicked:
            raise ValueError("add() needs texts=[...] (phrases to find), or obj_id= with points= (and labels=) or "
                             "box= (a correction of one object)")
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or obj_id < 0:
            raise ValueError(f"obj_id={obj_id!r} must be an integer >= 0")
        return self._click(frame, int(obj_id), points, labels, box, cls)

    def _add_phrases(self, frame: int, texts):
        query = concept_query(texts=texts)
        require_phrases()
        known = {p.phrase: p for p in self.phrases}
        new = []
        for phrase in query.texts:
            p = known.get(phrase)
            if p is not None:
                p.__init__(p.index, phrase)
            else:
                p = _Phrase(len(self.phrases), phrase)
                self.phrases.append(p)
            new.append(p)
        self._frame = None  # the phrases changed: ground again
        fr = self._frame_data(frame)
        outs = {}
        for p in new:
            outs[p.index] = self._step(p, fr, frame, reverse=False)
            self._store(p, frame, outs[p.index], fr.image.shape[:2])
        self.first_frame = frame if self.first_frame is None else min(self.first_frame, frame)
        return self._results(fr.image, frame, outs)

    def remove(self, obj_id: int) -> None:
        """Forget an object: its memory, its id and its stored results (the next :meth:`propagate` re-tracks no
        one for it)."""
        for p in self.phrases:
            if obj_id in p.obj_ids:
                self._remove_objects(p, {obj_id})
                p.score.pop(obj_id, None)
                for masks in p.stored.values():
                    masks.pop(obj_id, None)
                p.history.append(("remove", None, [obj_id]))
                return
        raise UnknownObjectError(f"no object with id {obj_id!r}; known ids: {self.obj_ids}")

    # ------------------------------------------------------------------ corrections
    @torch.inference_mode()
    def _click(self, t: int, obj: int, points, labels, box, cls):
        from samkit.prompts import object_prompt

        if not self.interactive:
            raise ValueError("corrections need an interactive session (SAM.video(...)), not a one-way stream")
        hw = self.frame_hw(t)
        prompt = object_prompt(hw, points=points, labels=labels, box=box)
        pts, labs = prompt.object_points(0)
        if prompt.has_box[0]:
            pts = np.concatenate([prompt.boxes[0].reshape(2, 2), pts])
            labs = np.concatenate([np.array([2, 3], np.int32), labs])
        xy = self.transforms.coords_to_input(pts, hw)
        point_inputs = {"point_coords": torch.from_numpy(xy[None]).to(self.device),
                        "point_labels": torch.from_numpy(labs.astype(np.int32)[None]).to(self.device)}
        fr = self._frame_data(t)
        p = next((q for q in self.phrases if obj in q.obj_ids), None)
        if p is None:  # a new object, in a bucket of its own
            p = self._phrase_for_click(cls)
            p.buckets.append(_Bucket([obj]))
            self.next_id = max(self.next_id, obj + 1)
            p.history.append(("add", t, [obj]))
        else:
            p.history.append(("refine", t, [obj]))
        b = p.bucket_of(obj)
        p.score[obj] = 1.0
        p.frame_scores[t][obj] = 1.0
        p.removed.discard(obj)
        b.points[obj][t] = point_inputs
        b.masks[obj].discard(t)
        prev = b.own_output(obj, t)
        prev_logits = None if prev is None else prev["pred_masks"].float().clamp(-32.0, 32.0)
        feats, pos, sizes = fr.tracker_inputs(self.tracker, 1)
        with self.runtime.autocast():
            out = self.tracker.track(t, feats, pos, sizes, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                                     self._frames_for_memory(), b.tracked.get(t, False), point_inputs=point_inputs,
                                     prev_logits=prev_logits, no_memory=True)
        video = F.interpolate(out["pred_masks"].float(), size=hw, mode="bilinear", align_corners=False)
        mask = fill_holes(video, self.settings.fill_hole_area, sprinkles=True)[0, 0] > 0
        self._consolidate(b, fr, t, {obj: out}, encode=True)
        self._forget_detector_prompts(b, obj, t)
        masks = self._stored_masks(p, t, hw)
        masks[obj] = mask
        p.stored[t] = {i: _pack(m) for i, m in masks.items()}
        outs = {q.index: self._stored_out(q, t, hw) for q in self.phrases}
        return self._results(fr.image, t, outs)

    def _phrase_for_click(self, cls) -> _Phrase:
        if cls is not None:
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < len(self.phrases):
                raise ValueError(f"cls={cls!r} must name a phrase of the session (0 to {len(self.phrases) - 1})")
            return self.phrases[int(cls)]
        if not self.phrases:
            self.phrases.append(_Phrase(0, None))
        return self.phrases[0]

    def _forget_detector_prompts(self, b: _Bucket, obj: int, t: int) -> None:
        """A correction on frame ``t`` turns the detector's masks given to the bucket within 16 frames of it into
        ordinary tracked frames (the reference's ``clear_detector_added_cond_frame_in_tracker``)."""
        near = [f for f in b.masks[obj] if f not in b.points[obj] and abs(f - t) <= 16]
        for f in near:
            for o in b.obj_ids:
                b.points[o].pop(f, None)
                b.masks[o].discard(f)
            if not b.has_input(f):
                self._demote(b, f)

    def _demote(self, b: _Bucket, f: int) -> None:
        """Frame ``f`` stops being a conditioning frame of ``b`` (its output stays, as a tracked frame's)."""
        out = b.outputs["cond_frame_outputs"].pop(f, None)
        if out is not None:
            b.outputs["non_cond_frame_outputs"][f] = out
            b.tracked.pop(f, None)
            b.cleared.discard(f)
        if not b.outputs["cond_frame_outputs"]:  # nothing left to track from: the bucket starts over
            b.outputs = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
            b.tracked.clear()
            b.points.clear()
            b.masks.clear()

    # ------------------------------------------------------------------ tracking
    def propagate(self, start: int | None = None, reverse: bool = False, max_frames: int | None = None):
        """Track every phrase's objects and find new ones, frame by frame; yields one Results per frame.

        Results come ``hotstart_delay`` frames after the frame was processed (the rest at the end), so that objects
        removed on probation are hidden on every frame. After corrections, the corrected objects are re-tracked
        (by the tracker alone) and merged into the stored results; after only removals, or a pass over the whole
        video after corrections, the stored results are yielded (as the reference does).

        Args:
            start: First frame (default: the earliest processed frame). Going backward, the pass starts on the frame
                before ``start``.
            reverse: Go towards frame 0.
            max_frames: Stop after this many frames after ``start``.
        """
        max_frames = check_max_frames(max_frames)
        if not self.phrases:
            raise ValueError("nothing to track: add(frame, texts=[...]) first")
        n = self.num_frames
        plan = {}
        for p in self.phrases:
            kind, ids = p.next_pass(n)
            p.history.append((kind, start, ids))
            plan[p.index] = (kind, ids)
        if start is None:
            if self.first_frame is None:
                raise ValueError("no frame has been processed yet: add(frame, texts=[...]) first")
            start = self.first_frame
        start = self.video.check_index(start)
        limit = max_frames if max_frames is not None else (n if n is not None else 2**62)
        if reverse:
            end = max(start - limit, 0)
            frames = self.video.frames(start - 1, reverse=True, stop=end - 1) if start > 0 else iter(())
        else:
            end = min(start + limit, n - 1) if n is not None else start + limit
            frames = self.video.frames(start, stop=end + 1 if (n is not None or max_frames is not None) else None)
        full = any(kind == "full" for kind, _ in plan.values())
        delay = self.settings.hotstart_delay if full else 0
        held: list[tuple] = []
        ahead = prefetch(frames, READ_AHEAD)
        try:
            for t, image in ahead:
                self._prepared = (t, image)
                outs = {}
                for p in self.phrases:
                    kind, ids = plan[p.index]
                    if kind == "full":
                        outs[p.index] = self._step(p, self._frame_data(t), t, reverse)
                    elif kind == "partial":
                        outs[p.index] = self._retrack(p, ids, self._frame_data(t), t, reverse)
                    else:
                        outs[p.index] = self._stored_out(p, t, image.shape[:2])
                if full:
                    self.first_frame = t if self.first_frame is None else min(self.first_frame, t)
                held.append((image, t, outs))
                while held and len(held) >= delay:  # the reference yields a frame once 15 are held
                    yield self._emit(*held.pop(0))
            while held:
                yield self._emit(*held.pop(0))
        finally:
            ahead.close()
            self._prepared = None

    def _emit(self, image: np.ndarray, t: int, outs: dict) -> Results:
        if self.interactive:
            for q, o in outs.items():
                if o.hide_removed:  # a full step: store what is shown
                    self._store(self.phrases[q], t, o, image.shape[:2])
        return self._results(image, t, outs)

    # ------------------------------------------------------------------ stored results (interactive sessions)
    def _store(self, p: _Phrase, t: int, o: _FrameOut, hw) -> None:
        if not self.interactive:
            return
        video = o.video(hw)
        p.stored[t] = {i: _pack(video[j]) for j, i in enumerate(o.obj_ids) if i not in p.removed}
        p.frame_scores[t].update(zip(o.obj_ids, o.probs))

    def _stored_masks(self, p: _Phrase, t: int, hw) -> dict[int, torch.Tensor]:
        return {i: _unpack(m) for i, m in p.stored.get(t, {}).items()}

    def _stored_out(self, p: _Phrase, t: int, hw) -> _FrameOut:
        masks = self._stored_masks(p, t, hw)
        ids = list(masks)
        scores = p.frame_scores.get(t, {})
        video = torch.stack([masks[i] for i in ids]) if ids else torch.zeros((0, *hw), dtype=torch.bool)
        return _FrameOut(ids, [scores.get(i, 0.0) for i in ids], masks=video, hide_removed=False)

    @torch.inference_mode()
    def _retrack(self, p: _Phrase, ids: list[int], fr: _Frame, t: int, reverse: bool) -> _FrameOut:
        """A partial pass on frame ``t``: the buckets holding corrected objects tracked by the tracker alone (its own
        memory), the corrected objects' masks merged into the stored results."""
        hw = fr.image.shape[:2]
        masks = self._stored_masks(p, t, hw)
        n = self._frames_for_memory()
        for b in p.buckets:
            mine = [i for i in ids if i in b.obj_ids]
            if not mine:
                continue
            with self.runtime.autocast():
                out = self._track(b, fr, t, reverse, n, encode=True)
            low = fill_holes(out["pred_masks"].float(), self.settings.fill_hole_area, sprinkles=True)
            logits = out["object_score_logits"].float().reshape(-1).tolist()
            for i in mine:
                j = b.obj_ids.index(i)
                masks[i] = F.interpolate(low[j : j + 1], size=hw, mode="bilinear", align_corners=False)[0, 0] > 0
                p.frame_scores[t][i] = logits[j]  # the reference keeps the logit here (not a probability)
        p.stored[t] = {i: _pack(m) for i, m in masks.items()}
        return self._stored_out(p, t, hw)

    # ------------------------------------------------------------------ one frame of one phrase
    @torch.inference_mode()
    def _step(self, p: _Phrase, fr: _Frame, t: int, reverse: bool) -> _FrameOut:
        s, n = self.settings, self._frames_for_memory()
        prev_ids = p.obj_ids
        low, scores = [], []
        with self.runtime.autocast():
            for b in p.buckets:
                out = self._track(b, fr, t, reverse, n)
                low.append(out["pred_masks"][:, 0].float())
                scores.append(out["object_score_logits"][:, 0].float())
        r = self.low
        trk = torch.cat(low) if low else torch.zeros(0, r, r, device=self.device)
        trk = fill_holes(trk[:, None], s.fill_hole_area, sprinkles=True)[:, 0] if len(trk) else trk
        trk_scores = torch.cat(scores) if scores else torch.zeros(0, device=self.device)
        det_probs, det_masks = fr.dets[p.index]
        if p.phrase is None:  # no phrase: nothing is detected
            det_probs, det_masks = det_probs[:0], det_masks[:0]

        new_inds, unmatched, det_to_trk, confident, _ = associate(
            det_masks, det_probs, trk, np.asarray(prev_ids, np.int64), s)
        if len(prev_ids) + len(new_inds) > s.max_objects:
            keep = max(s.max_objects - len(prev_ids), 0)
            new_inds = new_inds[np.argsort(det_probs[new_inds])[::-1][:keep]]
        new_ids = list(range(self.next_id, self.next_id + len(new_inds)))
        self.next_id += len(new_inds)
        removed_now = self._hotstart(p, t, reverse, det_to_trk, new_ids, unmatched)

        trk_logit_list = trk_scores.tolist()
        if s.recondition_every > 0 and t % s.recondition_every == 0 and confident:
            self._recondition(p, fr, t, det_masks, confident, dict(zip(prev_ids, trk_logit_list)))
        if len(prev_ids):
            if s.occlusion_iou > 0:
                trk = self._suppress_occluded(p, t, trk, prev_ids, removed_now, reverse)
            self._update_memories(p, fr, t, trk)
        for i, d in zip(new_ids, new_inds):
            p.score[i] = float(det_probs[d])
        probs = dict(zip(prev_ids, torch.sigmoid(trk_scores).tolist()))
        for i, d in zip(new_ids, new_inds):
            probs[i] = float(det_probs[d])
        new_masks = det_masks[torch.from_numpy(new_inds).to(det_masks.device)]
        if new_ids:
            self._add_bucket(p, fr, t, new_ids, new_masks)
        if removed_now:
            self._remove_objects(p, removed_now)
            for i in removed_now:
                p.score[i] = REMOVED_SCORE
                p.last_occluded.pop(i, None)
        new_logits = fill_holes(new_masks[:, None], s.fill_hole_area, sprinkles=True)[:, 0] if new_ids else new_masks
        ids = list(prev_ids) + new_ids
        return _FrameOut(ids, [probs[i] for i in ids], logits=torch.cat([trk, new_logits.float()]))

    def _track(self, b: _Bucket, fr: _Frame, t: int, reverse: bool, n: int, encode: bool = False) -> dict:
        """Bucket ``b`` on frame ``t``: its conditioning output there, or a tracking step (memory encoded from its
        own prediction when ``encode``, else by the planner afterwards)."""
        cond = b.outputs["cond_frame_outputs"]
        if t in cond:
            out = cond[t]
            if len(b.obj_ids) <= 1:  # a lone object's tracked frames near its prompts are not used for clicks
                b.cleared.update(range(t - self.tracker.num_maskmem, t + self.tracker.num_maskmem + 1))
        else:
            feats, pos, sizes = fr.tracker_inputs(self.tracker, len(b.obj_ids))
            out = self.tracker.track(t, feats, pos, sizes, b.outputs, n, reverse, encode_memory=encode)
            out["eff_score"] = float(out["eff_iou_score"])
            if out["maskmem_features"] is not None:
                out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
            b.outputs["non_cond_frame_outputs"][t] = out
            b.cleared.discard(t)
        b.tracked[t] = reverse
        if not self.interactive:
            self._forget(b, t, reverse)
        return out

    def _forget(self, b: _Bucket, t: int, reverse: bool) -> None:
        """A one-way stream: drop the outputs frame ``t + 1`` (``t - 1`` going backward) and every later frame can no
        longer attend to, so memory stays flat: tracked frames behind the 15 most recent with a memory score above
        the threshold (memory selection never reaches further), conditioning frames behind the 4 nearest (the most
        the tracker attends to). Frames a planned backward pass will attend to (:attr:`anchors`) stay."""
        behind = (lambda f: f > t) if reverse else (lambda f: f < t)
        keep_valid = min(self._frames_for_memory(), self.tracker.max_obj_ptrs_in_encoder) - 1
        thr, n_cond = self.tracker.mf_threshold, self.tracker.max_cond_frames_in_attn
        non_cond, cond = b.outputs["non_cond_frame_outputs"], b.outputs["cond_frame_outputs"]

        def valid(frames):
            return [f for f in frames if non_cond[f].get("eff_score", 0.0) > thr][:keep_valid]

        older = sorted((f for f in non_cond if behind(f)), key=lambda f: abs(f - t))
        keep = set(valid(older))
        keep_cond = {f for f in cond if not behind(f)}
        keep_cond |= set(sorted((f for f in cond if behind(f)), key=lambda f: abs(f - t))[:n_cond])
        for a in () if reverse else self.anchors:  # what a backward pass from ``a`` will attend to
            keep |= set(valid(sorted(f for f in non_cond if f >= a))) | {a}
            keep_cond |= set(sorted(f for f in cond if f >= a)[:n_cond])
        for f in older:
            if f not in keep:
                del non_cond[f]
        for f in [f for f in cond if f not in keep_cond]:
            del cond[f]
            for o in b.masks.values():
                o.discard(f)
        for f in [f for f in b.tracked if behind(f) and f not in keep and f not in cond]:
            del b.tracked[f]
        b.cleared = {f for f in b.cleared if not behind(f) or f in keep}

    def _hotstart(self, p: _Phrase, t, reverse, det_to_trk, new_ids, unmatched) -> set[int]:
        """Objects removed on frame ``t``: still on probation and unmatched, or duplicating an older one, too often."""
        s = self.settings
        limit = t + s.hotstart_delay if reverse else t - s.hotstart_delay
        for i in new_ids:
            p.first_frame.setdefault(i, t)

        def on_probation(i):
            first = p.first_frame.get(i)
            return first is not None and (first < limit if reverse else first > limit)

        removed = set()
        for i in unmatched:
            p.unmatched[int(i)] += 1
        for i, count in p.unmatched.items():
            if i not in p.removed and count >= s.hotstart_unmatched and on_probation(i):
                removed.add(i)
        for matched in det_to_trk.values():
            if len(matched) < 2:
                continue
            pick = max if reverse else min
            first = pick(matched, key=lambda i: p.first_frame.get(int(i), -1 if reverse else 2**62))
            for i in matched:
                if i != first:
                    p.duplicates[(int(first), int(i))] += 1
        for (_, i), count in p.duplicates.items():
            if i in p.removed or i in removed:
                continue
            if on_probation(i) and count >= s.hotstart_duplicate:
                removed.add(i)
        p.removed.update(removed)
        return removed

    def _suppress_occluded(self, p: _Phrase, t, trk, ids, removed_now, reverse):
        """Of two tracks overlapping by ``occlusion_iou``, the one occluded more recently (if the other was ever
        occluded) gets no mask on this frame; occlusion times are updated."""
        binary = trk > 0
        last = torch.tensor([p.last_occluded.get(i, ALWAYS_OCCLUDED if i in removed_now else NEVER_OCCLUDED)
                             for i in ids], dtype=torch.long, device=trk.device)
        suppress = torch.zeros(len(ids), dtype=torch.bool, device=trk.device)
        if len(ids) > 1:
            pairs = torch.triu(mask_iou(binary, binary) >= self.settings.occlusion_iou, diagonal=1)
            li, lj = last[:, None], last[None, :]
            later = torch.lt if reverse else torch.gt
            suppress = (pairs & later(li, lj) & (lj > -1)).any(1) | (pairs & later(lj, li) & (li > -1)).any(0)
        gone = ~binary.any((1, 2)) | suppress
        last = torch.where(gone, torch.full_like(last, t), last)
        p.last_occluded = dict(zip(ids, last.tolist()))
        if suppress.any():
            trk = trk.clone()
            trk[suppress] = -10.0
        return trk

    def _update_memories(self, p: _Phrase, fr: _Frame, t: int, trk: torch.Tensor) -> None:
        """Encode frame ``t``'s memory for every bucket from the cleaned masks: upsampled, pixel-wise non-overlapping
        across all objects (an object keeping under 30% of its area is suppressed), object scores +-10 by area."""
        size = self.tracker.memory_encoder.mask_downsampler.interpol_size
        high = F.interpolate(trk[:, None], size=tuple(size), mode="bilinear", align_corners=False)
        kept = non_overlapping(high)
        before = (high > 0).sum((-1, -2)).clamp(min=1.0)
        ratio = (kept > 0).sum((-1, -2)) / before
        high = torch.where((ratio >= 0.3)[..., None, None], high, high.clamp(max=-10.0))
        scores = torch.where((high > 0).any((-1, -2)), 10.0, -10.0)
        i = 0
        for b in p.buckets:
            k = len(b.obj_ids)
            feats, _, sizes = fr.tracker_inputs(self.tracker, k)
            with self.runtime.autocast():
                mem, pos = self.tracker._encode_new_memory(feats, sizes, high[i : i + k], scores[i : i + k], False)
            for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
                out = b.outputs[key].get(t)
                if out is not None:
                    out["maskmem_features"], out["maskmem_pos_enc"] = mem.to(torch.bfloat16), list(pos)
            i += k

    def _mask_inputs(self, det_logits: torch.Tensor) -> torch.Tensor:
        """Detector mask logits (K, r, r) -> (K, 1, 4r, 4r) binary mask prompts (the tracker's mask input size)."""
        up = F.interpolate(det_logits.float()[:, None], size=(4 * self.low, 4 * self.low), mode="bilinear",
                           align_corners=False)
        return (up > 0).float()

    def _mask_outputs(self, fr: _Frame, t: int, masks: torch.Tensor) -> list[dict]:
        """Each (1, 1, 4r, 4r) mask prompt taken as an object's output on frame ``t`` (object pointer from the SAM
        heads, scores +-10), with its mask at video size as +-1024 logits; later masks win overlaps."""
        feats, pos, sizes = fr.tracker_inputs(self.tracker, 1)
        hw = fr.image.shape[:2]
        outs = []
        for m in masks:
            with self.runtime.autocast():
                sam, _, _ = self.tracker._track_step(t, True, feats, pos, sizes, None, m[None], {},
                                                     self._frames_for_memory(), False, None)
            _, _, ious, _, _, obj_ptr, obj_scores = sam
            video = F.interpolate(m[None], size=hw, mode="bilinear", align_corners=False, antialias=True) > 0.5
            for o in outs:
                o["video"] = torch.where(video, NO_OBJ, o["video"])
            outs.append({"obj_ptr": obj_ptr, "object_score_logits": obj_scores, "iou_score": ious.max(-1)[0],
                         "video": torch.where(video, -NO_OBJ, NO_OBJ)})
        return outs

    def _consolidate(self, b: _Bucket, fr: _Frame, t: int, temp: dict[int, dict], encode: bool) -> dict:
        """Bucket ``b``'s conditioning output on frame ``t``: the objects given masks or clicks (``temp``) from those,
        the others as stored there; memory encoded from the binarised, pixel-wise non-overlapping masks when
        ``encode``. A lone object's tracked frames within 7 frames are then not used for its clicks."""
        k, r = len(b.obj_ids), self.low
        masks = torch.full((k, 1, r, r), NO_OBJ, device=self.device)
        ptr = torch.full((k, self.tracker.hidden_dim), NO_OBJ, device=self.device)
        scores = torch.full((k, 1), 10.0, device=self.device)
        iou = torch.zeros((k, 1), device=self.device)
        for j, obj in enumerate(b.obj_ids):
            o = temp.get(obj)
            if o is not None and "video" in o:  # a mask given at video size, downsampled with antialiasing
                masks[j] = F.interpolate(o["video"].float(), size=(r, r), mode="bilinear", align_corners=False,
                                         antialias=True)[0]
            elif o is not None:
                masks[j] = o["pred_masks"][0].float()
            else:
                o = b.own_output(obj, t)
                if o is None:
                    if encode:
                        ptr[j] = self.tracker.no_obj_ptr[0]  # the pointer of an empty mask
                    continue
                masks[j] = o["pred_masks"][0].float()
            ptr[j] = o["obj_ptr"][0].float()
            scores[j] = o["object_score_logits"][0].float()
            iou[j] = o["iou_score"].reshape(-1)[0].float()
        out = {"pred_masks": masks, "obj_ptr": ptr, "object_score_logits": scores, "iou_score": iou,
               "maskmem_features": None, "maskmem_pos_enc": None}
        if encode:
            size = self.tracker.image_size
            high = non_overlapping(F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False))
            feats, _, sizes = fr.tracker_inputs(self.tracker, k)
            with self.runtime.autocast():
                mem, pos = self.tracker._encode_new_memory(feats, sizes, high, scores, True)
            out["maskmem_features"], out["maskmem_pos_enc"] = mem.to(torch.bfloat16), list(pos)
        b.outputs["cond_frame_outputs"][t] = out
        b.outputs["non_cond_frame_outputs"].pop(t, None)
        b.cleared.discard(t)
        if k <= 1:
            b.cleared.update(range(t - self.tracker.num_maskmem, t + self.tracker.num_maskmem + 1))
        return out

    def _add_bucket(self, p: _Phrase, fr: _Frame, t: int, ids: list[int], det_logits: torch.Tensor) -> None:
        b = _Bucket(list(ids))
        outs = self._mask_outputs(fr, t, self._mask_inputs(det_logits))
        for i in ids:
            b.masks[i].add(t)
        self._consolidate(b, fr, t, dict(zip(ids, outs)), encode=True)
        p.buckets.append(b)

    def _recondition(self, p: _Phrase, fr: _Frame, t: int, det_masks, confident: dict, trk_logits: dict) -> None:
        """Tracks matched by a confident detection whose object score logit is above 0.8 take the detection's mask
        as a conditioning frame (for their whole bucket; the frame's memory is encoded afterwards)."""
        touched: dict[int, dict] = {}
        for obj, d in confident.items():
            if trk_logits[obj] <= HIGH_CONF:
                continue
            for bi, b in enumerate(p.buckets):
                if obj in b.obj_ids:
                    out = self._mask_outputs(fr, t, self._mask_inputs(det_masks[d : d + 1]))[0]
                    temp = touched.setdefault(bi, {})
                    for o in temp.values():
                        o["video"] = torch.where(out["video"] > 0, NO_OBJ, o["video"])
                    temp[obj] = out
                    b.masks[obj].add(t)
                    b.points[obj].pop(t, None)
        for bi, temp in touched.items():
            self._consolidate(p.buckets[bi], fr, t, temp, encode=False)  # its memory is encoded next

    def _remove_objects(self, p: _Phrase, ids: set[int]) -> None:
        """Drop objects from their buckets (every stored frame sliced, memory scores recomputed)."""
        from samkit.families.sam3_net import memory_score

        for b in list(p.buckets):
            gone = [j for j, i in enumerate(b.obj_ids) if i in ids]
            if not gone:
                continue
            keep = [j for j in range(len(b.obj_ids)) if j not in gone]
            if not keep:
                p.buckets.remove(b)
                continue
            for i in (b.obj_ids[j] for j in gone):
                frames = set(b.masks.pop(i, set())) | set(b.points.pop(i, {}))
                for f in frames:
                    if not b.has_input(f):  # no object prompted there any more: an ordinary tracked frame
                        self._demote(b, f)
            idx = torch.tensor(keep, device=self.device)
            for key in ("cond_frame_outputs", "non_cond_frame_outputs"):
                for out in b.outputs[key].values():
                    for name in ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits", "iou_score"):
                        if out.get(name) is not None:
                            out[name] = out[name][idx]
                    if out.get("maskmem_pos_enc") is not None:
                        out["maskmem_pos_enc"] = [x[idx] for x in out["maskmem_pos_enc"]]
                    out["eff_iou_score"] = memory_score(out["object_score_logits"], out["iou_score"])
                    out["eff_score"] = float(out["eff_iou_score"])
            b.obj_ids = [b.obj_ids[j] for j in keep]

    # ------------------------------------------------------------------ results
    def _results(self, image: np.ndarray, t: int, outs: dict[int, _FrameOut]) -> Results:
        hw = image.shape[:2]
        ids, masks, conf, cls = [], [], [], []
        for q, o in outs.items():
            p = self.phrases[q]
            if not o.obj_ids:
                continue
            video = o.video(hw)
            order = np.argsort(o.obj_ids, kind="stable")
            sel = [j for j in order if video[j].any() and not (o.hide_removed and o.obj_ids[j] in p.removed)]
            if not sel:
                continue
            m = video[torch.tensor(sel, device=video.device)]
            probs = torch.tensor([o.probs[j] for j in sel], device=m.device)
            if len(sel) > 1:  # each pixel to the object the tracker is most sure of on this frame
                score = torch.where(m, probs[:, None, None], torch.zeros((), device=m.device))
                m = m & (score.argmax(0, keepdim=True) == torch.arange(len(sel), device=m.device)[:, None, None])
                m &= score > 0
            ids += [o.obj_ids[j] for j in sel]
            masks.append(m)
            conf += [p.score.get(o.obj_ids[j], 0.0) for j in sel]
            cls += [q] * len(sel)
        mask = torch.cat(masks) if masks else torch.zeros((0, *hw), dtype=torch.bool)
        conf_t = torch.tensor(conf, dtype=torch.float32)
        res = Results(image, path=self.video.name, masks=mask, iou=conf_t, conf=conf_t,
                      obj_ids=torch.tensor(ids, dtype=torch.long), cls=torch.tensor(cls, dtype=torch.float32),
                      names=self.names, tracked=True, concepts=True, frame=t, fps=self.video.fps)
        return res

    def close(self) -> None:
        self.video.close()

    def __enter__(self) -> ConceptVideoSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoU of (N, h, w) and (M, h, w) bool masks (an empty union counts as 1 pixel)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return inter / union.clamp(min=1)


def non_overlapping(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1, h, w) logits with every pixel left only to its highest-scoring object (the others clamped to -10)."""
    if len(logits) < 2:
        return logits
    top = logits.argmax(0, keepdim=True)
    mine = top == torch.arange(len(logits), device=logits.device)[:, None, None, None]
    return torch.where(mine, logits, logits.clamp(max=-10.0))


def associate(det_masks: torch.Tensor, det_probs: np.ndarray, trk_masks: torch.Tensor, trk_ids: np.ndarray,
              s: ConceptTracking):
    """Match one frame's detections with the tracks: (indices of new detections, unmatched non-empty track ids,
    detection -> ids of the tracks it overlaps, track id -> its confident detection, empty track ids)."""
    if len(trk_ids) == 0:
        return np.arange(len(det_probs)), np.zeros(0, np.int64), {}, {}, np.zeros(0, np.int64)
    nonempty = (trk_masks > 0).any(-1).any(-1).cpu().numpy()
    if len(det_probs) == 0:
        return np.zeros(0, np.int64), trk_ids[nonempty], {}, {}, trk_ids[~nonempty]
    ious = mask_iou(det_masks > 0, trk_masks > 0).cpu().numpy()
    matched = (ious >= s.match_iou).any(0)
    unmatched = trk_ids[nonempty & ~matched]
    new = (det_probs >= s.new_threshold) & ~(ious >= s.assoc_iou).any(1)
    det_to_trk, confident = {}, {}
    best = ious.argmax(1)
    sure = (det_probs >= HIGH_CONF) & ~new & (ious.max(1) >= HIGH_CONF)
    for d in range(len(det_probs)):
        det_to_trk[d] = trk_ids[ious[d] >= s.assoc_iou]
        if sure[d]:
            confident[int(trk_ids[best[d]])] = d
    return np.flatnonzero(new), unmatched, det_to_trk, confident, trk_ids[~nonempty]
