"""The tracker side of a concept video session (SAM 3): one tracking step per bucket of objects, what a one-way
stream forgets, the planner's probation (hotstart) and occlusion rules, and every memory encoding (from the cleaned
masks, from mask prompts, from clicks). :class:`ConceptMemory` is a base of
:class:`~samkit.engine.concept_video.ConceptVideoSession`; every network call goes through ``self.network``, the
family's :class:`~samkit.families.network.ConceptTracker`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samkit.engine.concept_state import (
    ALWAYS_OCCLUDED,
    HIGH_CONF,
    NEVER_OCCLUDED,
    NO_OBJ,
    Bucket,
    Frame,
    Phrase,
    mask_iou,
    non_overlapping,
)


class ConceptMemory:
    """Methods of :class:`~samkit.engine.concept_video.ConceptVideoSession` that run SAM 3's tracker and keep its
    memories (the session holds ``network``, ``settings``, ``device``, ``low``, ``interactive``)."""

    def _track(self, b: Bucket, fr: Frame, t: int, reverse: bool, n: int, encode: bool = False) -> dict:
        """Bucket ``b`` on frame ``t``: its conditioning output there, or a tracking step (memory encoded from its
        own prediction when ``encode``, else by the planner afterwards)."""
        cond = b.outputs["cond_frame_outputs"]
        if t in cond:
            out = cond[t]
            if len(b.obj_ids) <= 1:  # a lone object's tracked frames near its prompts are not used for clicks
                b.cleared.update(range(t - self.network.memory_frames, t + self.network.memory_frames + 1))
        else:
            out = self.network.track(t, fr.tracker_inputs(self.network, len(b.obj_ids)), b.outputs, n, reverse,
                                     encode_memory=encode)
            out["eff_score"] = float(out["eff_iou_score"])
            if out["maskmem_features"] is not None:
                out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
            b.outputs["non_cond_frame_outputs"][t] = out
            b.cleared.discard(t)
        b.tracked[t] = reverse
        if not self.interactive:
            self._forget(b, t, reverse)
        return out

    def _forget(self, b: Bucket, t: int, reverse: bool) -> None:
        """A one-way stream: drop the outputs frame ``t + 1`` (``t - 1`` going backward) and every later frame can no
        longer attend to, so memory stays flat: tracked frames behind the 15 most recent with a memory score above
        the threshold (memory selection never reaches further), conditioning frames behind the 4 nearest (the most
        the tracker attends to). Frames a planned backward pass will attend to (:attr:`anchors`) stay."""
        behind = (lambda f: f > t) if reverse else (lambda f: f < t)
        keep_valid = min(self._frames_for_memory(), self.network.pointer_frames) - 1
        thr, n_cond = self.network.memory_threshold, self.network.cond_frames_in_attention
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

    def _hotstart(self, p: Phrase, t, reverse, det_to_trk, new_ids, unmatched) -> set[int]:
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

    def _suppress_occluded(self, p: Phrase, t, trk, ids, removed_now, reverse):
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

    def _update_memories(self, p: Phrase, fr: Frame, t: int, trk: torch.Tensor) -> None:
        """Encode frame ``t``'s memory for every bucket from the cleaned masks: upsampled, pixel-wise non-overlapping
        across all objects (an object keeping under 30% of its area is suppressed), object scores +-10 by area."""
        size = self.network.memory_mask_size
        high = F.interpolate(trk[:, None], size=tuple(size), mode="bilinear", align_corners=False)
        kept = non_overlapping(high)
        before = (high > 0).sum((-1, -2)).clamp(min=1.0)
        ratio = (kept > 0).sum((-1, -2)) / before
        high = torch.where((ratio >= 0.3)[..., None, None], high, high.clamp(max=-10.0))
        scores = torch.where((high > 0).any((-1, -2)), 10.0, -10.0)
        i = 0
        for b in p.buckets:
            k = len(b.obj_ids)
            features = fr.tracker_inputs(self.network, k)
            with self.runtime.autocast():
                mem, pos = self.network.encode_memory(features, high[i : i + k], scores[i : i + k], False)
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

    def _mask_outputs(self, fr: Frame, t: int, masks: torch.Tensor) -> list[dict]:
        """Each (1, 1, 4r, 4r) mask prompt taken as an object's output on frame ``t`` (object pointer from the SAM
        heads, scores +-10), with its mask at video size as +-1024 logits; later masks win overlaps."""
        features = fr.tracker_inputs(self.network, 1)
        hw = fr.image.shape[:2]
        outs = []
        for m in masks:
            with self.runtime.autocast():
                ious, obj_ptr, obj_scores = self.network.mask_output(t, features, m[None], self._frames_for_memory())
            video = F.interpolate(m[None], size=hw, mode="bilinear", align_corners=False, antialias=True) > 0.5
            for o in outs:
                o["video"] = torch.where(video, NO_OBJ, o["video"])
            outs.append({"obj_ptr": obj_ptr, "object_score_logits": obj_scores, "iou_score": ious.max(-1)[0],
                         "video": torch.where(video, -NO_OBJ, NO_OBJ)})
        return outs

    def _consolidate(self, b: Bucket, fr: Frame, t: int, temp: dict[int, dict], encode: bool) -> dict:
        """Bucket ``b``'s conditioning output on frame ``t``: the objects given masks or clicks (``temp``) from those,
        the others as stored there; memory encoded from the binarised, pixel-wise non-overlapping masks when
        ``encode``. A lone object's tracked frames within 7 frames are then not used for its clicks."""
        k, r = len(b.obj_ids), self.low
        masks = torch.full((k, 1, r, r), NO_OBJ, device=self.device)
        ptr = torch.full((k, self.network.pointer_dim), NO_OBJ, device=self.device)
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
                        ptr[j] = self.network.empty_pointer()
                    continue
                masks[j] = o["pred_masks"][0].float()
            ptr[j] = o["obj_ptr"][0].float()
            scores[j] = o["object_score_logits"][0].float()
            iou[j] = o["iou_score"].reshape(-1)[0].float()
        out = {"pred_masks": masks, "obj_ptr": ptr, "object_score_logits": scores, "iou_score": iou,
               "maskmem_features": None, "maskmem_pos_enc": None}
        if encode:
            size = self.network.image_size
            high = non_overlapping(F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False))
            features = fr.tracker_inputs(self.network, k)
            with self.runtime.autocast():
                mem, pos = self.network.encode_memory(features, high, scores, True)
            out["maskmem_features"], out["maskmem_pos_enc"] = mem.to(torch.bfloat16), list(pos)
        b.outputs["cond_frame_outputs"][t] = out
        b.outputs["non_cond_frame_outputs"].pop(t, None)
        b.cleared.discard(t)
        if k <= 1:
            b.cleared.update(range(t - self.network.memory_frames, t + self.network.memory_frames + 1))
        return out

    def _add_bucket(self, p: Phrase, fr: Frame, t: int, ids: list[int], det_logits: torch.Tensor) -> None:
        b = Bucket(list(ids))
        outs = self._mask_outputs(fr, t, self._mask_inputs(det_logits))
        for i in ids:
            b.masks[i].add(t)
        self._consolidate(b, fr, t, dict(zip(ids, outs)), encode=True)
        p.buckets.append(b)

    def _recondition(self, p: Phrase, fr: Frame, t: int, det_masks, confident: dict, trk_logits: dict) -> None:
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

    def _remove_objects(self, p: Phrase, ids: set[int]) -> None:
        """Drop objects from their buckets (every stored frame sliced, memory scores recomputed)."""
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
                    out["eff_iou_score"] = self.network.memory_score(out["object_score_logits"], out["iou_score"])
                    out["eff_score"] = float(out["eff_iou_score"])
            b.obj_ids = [b.obj_ids[j] for j in keep]
