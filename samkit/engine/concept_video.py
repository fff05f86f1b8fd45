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

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.video import READ_AHEAD, VideoSource, open_video, prefetch
from samkit.engine.concept_memory import ConceptMemory
from samkit.engine.concept_state import (
    REMOVED_SCORE,
    Bucket,
    ConceptTracking,
    Frame,
    FrameOut,
    Phrase,
    associate,
    mask_iou,
    non_overlapping,
    pack_mask,
    unpack_mask,
)
from samkit.engine.concepts import ConceptEngine, ConceptQuery, concept_query
from samkit.engine.transforms import transforms_for
from samkit.engine.video import UnknownObjectError, check_max_frames
from samkit.families import require_capability
from samkit.nn.runtime import Runtime
from samkit.ops import fill_holes
from samkit.results import Results
from samkit.utils.requirements import require_phrases


class ConceptVideoSession(ConceptMemory):
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
        self.network = runtime.network  # the family's ConceptTracker adapter
        self.engine = engine or ConceptEngine(runtime, cache_size=0)
        self.settings = settings or ConceptTracking()
        self.interactive = bool(interactive)
        self.video: VideoSource = source if isinstance(source, VideoSource) else open_video(source)
        self.phrases: list[Phrase] = []
        self.next_id = 0
        self.low = self.transforms.low_res
        self.first_frame: int | None = None  # the earliest frame with outputs (the default start)
        self.anchors: set[int] = set()  # a one-way session: frames a backward pass will start from
        self._frame: Frame | None = None
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
    def _frame_data(self, index: int) -> Frame:
        """Frame ``index``: the backbone once, the grounding of every phrase, NMS; the last frame is kept."""
        rt = self.runtime
        if self._frame is not None and self._frame.index == index and self._frame.generation == rt.generation:
            return self._frame
        image = self._read(index)
        x = self.transforms.image_to_input(image, rt.device)[None]
        with rt.autocast():
            feats = self.network.encode_concept_image(rt.encoder_layout(x))
            fpn, fpn_pos = self.network.tracker_maps(feats)
        self.frames_encoded += 1
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
        self._frame = Frame(index, image, fpn, fpn_pos, dets, rt.generation)
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
                p = Phrase(len(self.phrases), phrase)
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
            p.buckets.append(Bucket([obj]))
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
        features = fr.tracker_inputs(self.network, 1)
        with self.runtime.autocast():
            out = self.network.track(t, features, {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
                                     self._frames_for_memory(), b.tracked.get(t, False), points=point_inputs,
                                     prev_logits=prev_logits, no_memory=True)
        video = F.interpolate(out["pred_masks"].float(), size=hw, mode="bilinear", align_corners=False)
        mask = fill_holes(video, self.settings.fill_hole_area, sprinkles=True)[0, 0] > 0
        self._consolidate(b, fr, t, {obj: out}, encode=True)
        self._forget_detector_prompts(b, obj, t)
        masks = self._stored_masks(p, t, hw)
        masks[obj] = mask
        p.stored[t] = {i: pack_mask(m) for i, m in masks.items()}
        outs = {q.index: self._stored_out(q, t, hw) for q in self.phrases}
        return self._results(fr.image, t, outs)

    def _phrase_for_click(self, cls) -> Phrase:
        if cls is not None:
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < len(self.phrases):
                raise ValueError(f"cls={cls!r} must name a phrase of the session (0 to {len(self.phrases) - 1})")
            return self.phrases[int(cls)]
        if not self.phrases:
            self.phrases.append(Phrase(0, None))
        return self.phrases[0]

    def _forget_detector_prompts(self, b: Bucket, obj: int, t: int) -> None:
        """A correction on frame ``t`` turns the detector's masks given to the bucket within 16 frames of it into
        ordinary tracked frames (the reference's ``clear_detector_added_cond_frame_in_tracker``)."""
        near = [f for f in b.masks[obj] if f not in b.points[obj] and abs(f - t) <= 16]
        for f in near:
            for o in b.obj_ids:
                b.points[o].pop(f, None)
                b.masks[o].discard(f)
            if not b.has_input(f):
                self._demote(b, f)

    def _demote(self, b: Bucket, f: int) -> None:
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
    def _store(self, p: Phrase, t: int, o: FrameOut, hw) -> None:
        if not self.interactive:
            return
        video = o.video(hw)
        p.stored[t] = {i: pack_mask(video[j]) for j, i in enumerate(o.obj_ids) if i not in p.removed}
        p.frame_scores[t].update(zip(o.obj_ids, o.probs))

    def _stored_masks(self, p: Phrase, t: int, hw) -> dict[int, torch.Tensor]:
        return {i: unpack_mask(m) for i, m in p.stored.get(t, {}).items()}

    def _stored_out(self, p: Phrase, t: int, hw) -> FrameOut:
        masks = self._stored_masks(p, t, hw)
        ids = list(masks)
        scores = p.frame_scores.get(t, {})
        video = torch.stack([masks[i] for i in ids]) if ids else torch.zeros((0, *hw), dtype=torch.bool)
        return FrameOut(ids, [scores.get(i, 0.0) for i in ids], masks=video, hide_removed=False)

    @torch.inference_mode()
    def _retrack(self, p: Phrase, ids: list[int], fr: Frame, t: int, reverse: bool) -> FrameOut:
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
        p.stored[t] = {i: pack_mask(m) for i, m in masks.items()}
        return self._stored_out(p, t, hw)

    # ------------------------------------------------------------------ one frame of one phrase
    @torch.inference_mode()
    def _step(self, p: Phrase, fr: Frame, t: int, reverse: bool) -> FrameOut:
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
        return FrameOut(ids, [probs[i] for i in ids], logits=torch.cat([trk, new_logits.float()]))

    # ------------------------------------------------------------------ results
    def _results(self, image: np.ndarray, t: int, outs: dict[int, FrameOut]) -> Results:
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


__all__ = ["ConceptTracking", "ConceptVideoSession", "associate", "mask_iou", "non_overlapping"]
