"""Concept tracking's settings and state (SAM 3 video): a frame's detector outputs, the buckets of objects
tracked together, a phrase's objects and bookkeeping, and the matching of detections to tracks. Used by
:class:`samkit.engine.concept_video.ConceptVideoSession`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from samkit.families.network import FrameFeatures

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
class Frame:
    """One frame's detector outputs (per phrase) and the tracker's view of it."""

    index: int
    image: np.ndarray  # BGR
    fpn: list  # the tracker's feature maps (B=1), bf16-rounded then projected, as the reference
    pos: list
    dets: list  # per phrase: (probs (D,) float32 numpy, masks (D, r, r) logits), query order, after NMS
    generation: int = -1  # the runtime generation the features were computed under

    def tracker_inputs(self, network, batch: int) -> FrameFeatures:
        return network.frame_features(self.fpn, self.pos, batch)


@dataclass
class Bucket:
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
class FrameOut:
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


class Phrase:
    """One phrase's objects and the planner's bookkeeping (Meta's tracker metadata, as counters); ``phrase`` None
    holds objects added by clicks alone (nothing is detected for them)."""

    def __init__(self, index: int, phrase: str | None):
        self.index, self.phrase = index, phrase
        self.buckets: list[Bucket] = []
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

    def bucket_of(self, obj_id: int) -> Bucket | None:
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


def pack_mask(mask: torch.Tensor) -> tuple:
    m = mask.cpu().numpy()
    return np.packbits(m, axis=None), m.shape


def unpack_mask(packed: tuple) -> torch.Tensor:
    bits, shape = packed
    return torch.from_numpy(np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool))


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
