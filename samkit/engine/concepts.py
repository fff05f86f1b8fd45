"""Concept prompts (SAM 3): every instance of a short noun phrase, or of what example boxes show, on an image.

The arithmetic is Meta's ``Sam3Processor``'s, so that the same weights give the same detections:

- the image is stretched to the square input (see :class:`~samkit.engine.transforms.SAM3Transforms`);
- each phrase is one grounding query; a text-only query carries an empty geometric prompt, as Meta's processor
  always passes one (the geometry encoder adds a token the decoder attends to: leaving it out, as Ultralytics'
  predictor does, changes the scores);
- exemplar boxes (normalised centre form, label positive / negative) join every phrase's query; without a phrase
  the query's text is ``"visual"``, as in Meta's processor;
- a detection's score is ``sigmoid(class logit) * sigmoid(presence logit)``; those above ``conf`` (0.5) are kept,
  with no non-maximum suppression; boxes go back to image pixels, masks are upsampled bilinearly and thresholded.

Image features are computed once per image (an LRU cache keyed by content and by the runtime's generation, as for
the other families), and each phrase's text features once per phrase: a second phrase on an image already seen
runs only the grounding, and a phrase already seen skips the text encoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from samkit.cfg import preview
from samkit.engine.image import image_key
from samkit.engine.transforms import transforms_for
from samkit.nn.runtime import Runtime
from samkit.utils.devices import upload
from samkit.utils.lru import LRU

VISUAL = "visual"  # the text of an exemplar-only query (Meta's processor)
MAX_PHRASES = 256  # phrases per call
MAX_PHRASE_CHARS = 500
DEFAULT_CONF = 0.5  # Meta's processor's confidence threshold


@dataclass
class ConceptQuery:
    """Checked concept prompts for one call: the phrases (or none) and the exemplar boxes with their labels."""

    texts: list[str]
    boxes: np.ndarray  # (E, 4) xyxy pixels
    labels: np.ndarray  # (E,) bool, True = more like this

    @property
    def names(self) -> dict[int, str]:
        return {i: t for i, t in enumerate(self.texts)} if self.texts else {0: "object"}


def concept_query(texts=None, exemplars=None, exemplar_labels=None) -> ConceptQuery | None:
    """Check ``texts`` (a phrase, or a list of phrases: a string is one phrase, commas included) and
    ``exemplars`` (xyxy pixel boxes) with their labels (1 / True positive, 0 / False negative; default all
    positive); None when neither is given."""
    if exemplar_labels is not None and exemplars is None:
        raise ValueError("exemplar_labels= needs exemplars= (the boxes they label)")
    if texts is None and exemplars is None:
        return None
    phrases: list[str] = []
    if texts is not None:
        if isinstance(texts, str) and not texts.strip():
            raise ValueError(f"texts={texts!r} is empty: give a phrase naming what to find, e.g. texts='person'")
        items = [texts] if isinstance(texts, str) else texts
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"texts={preview(texts)} must be a phrase or a list of phrases (strings)")
        if not items:
            raise ValueError("texts=[] names no phrase: give at least one, e.g. texts=['person']")
        if len(items) > MAX_PHRASES:
            raise ValueError(f"texts has {len(items)} phrases; at most {MAX_PHRASES} per call (split the list)")
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] = {preview(t)} is a {type(t).__name__}, not a string")
            if not t.strip():
                raise ValueError(f"texts[{i}] is empty: each phrase names what to find, e.g. 'person'")
            if len(t) > MAX_PHRASE_CHARS:
                raise ValueError(f"texts[{i}] has {len(t)} characters; a phrase is a short noun phrase (at most "
                                 f"{MAX_PHRASE_CHARS}; the text encoder reads 32 tokens)")
            phrase = " ".join(t.split())
            if phrase in phrases:
                raise ValueError(f"texts names {phrase!r} twice (texts[{phrases.index(phrase)}] and texts[{i}]): "
                                 "each phrase once, its index is its class id")
            phrases.append(phrase)
    boxes = np.zeros((0, 4), np.float32)
    if exemplars is not None:
        boxes = np.asarray(exemplars, dtype=np.float64)
        if boxes.ndim == 1:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes):
            raise ValueError(f"exemplars={preview(exemplars)} must be xyxy pixel boxes: [x1, y1, x2, y2] or a list")
        if not np.isfinite(boxes).all() or ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise ValueError(f"exemplars={preview(exemplars)}: every box needs finite x1 < x2 and y1 < y2")
        boxes = boxes.astype(np.float32)
    labels = np.ones(len(boxes), bool)
    if exemplar_labels is not None:
        lab = np.asarray(exemplar_labels).reshape(-1)
        if len(lab) != len(boxes):
            raise ValueError(f"exemplar_labels has {len(lab)} labels for {len(boxes)} exemplar boxes: one each "
                             "(1 more like this, 0 not like this)")
        if not np.isin(lab, (0, 1)).all():
            raise ValueError(f"exemplar_labels={preview(exemplar_labels)} must be 1 (positive) or 0 (negative)")
        labels = lab.astype(bool)
    return ConceptQuery(phrases, boxes, labels)


def on_image(query: ConceptQuery, hw: tuple[int, int]) -> ConceptQuery:
    """``query`` with its exemplar boxes clipped to an image of size ``hw`` (a warning says so); a box entirely
    outside the image is an error naming it."""
    from samkit.prompts import boxes_outside

    outside = boxes_outside(query.boxes, np.ones(len(query.boxes), bool), hw, "exemplars[{i}]")
    if not outside.any():
        return query
    from samkit.utils import LOGGER

    h, w = hw
    LOGGER.warning("%d exemplar box(es) reach outside the %dx%d image; clipped to it", int(outside.sum()), w, h)
    clipped = query.boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
    return ConceptQuery(query.texts, clipped, query.labels)


class ConceptEngine:
    """Detect and segment the instances of concepts on images, for one SAM 3 network.

    Args:
        runtime: The network and how it runs.
        cache_size: Image features kept (least recently used dropped first); 0 disables caching. Text features are
            kept per phrase (up to ``text_cache_size``).
    """

    def __init__(self, runtime: Runtime, cache_size: int = 8, text_cache_size: int = 1024):
        self.runtime = runtime
        self.transforms = transforms_for(runtime.arch)
        self.cache_size = cache_size
        self.text_cache_size = text_cache_size
        self._images = LRU(cache_size)  # (image key, runtime generation) -> backbone outputs
        self._texts = LRU(text_cache_size)  # (phrase, runtime generation) -> its text features
        self.images_encoded = 0
        self.texts_encoded = 0

    @property
    def network(self):
        """The family's network adapter (:class:`~samkit.families.network.ConceptNetwork`)."""
        return self.runtime.network

    def clear_cache(self) -> None:
        self._images.clear()
        self._texts.clear()

    # ------------------------------------------------------------------ features
    @torch.inference_mode()
    def image_features(self, image: np.ndarray) -> dict:
        """The vision backbone's outputs for ``image`` (BGR), cached."""
        rt = self.runtime
        key = (image_key(image), rt.generation)
        cached = self._images.get(key)
        if cached is not None:
            return cached
        x = self.transforms.image_to_input(image, rt.device)[None]
        with rt.autocast():
            out = self.network.encode_concept_image(rt.encoder_layout(x))
        self.images_encoded += 1
        return self._images.put(key, out)

    @torch.inference_mode()
    def text_features(self, phrases: list[str]) -> dict:
        """``language_features`` (L, B, D), ``language_mask`` (B, L) and ``language_embeds`` (L, B, D) for the
        phrases, each phrase encoded once (cached)."""
        rt = self.runtime
        found = {p: self._texts.get((p, rt.generation)) for p in dict.fromkeys(phrases)}
        todo = [p for p, f in found.items() if f is None]
        if todo:
            with rt.autocast():
                out = self.network.encode_text(todo)
            for i, p in enumerate(todo):
                found[p] = self._texts.put((p, rt.generation), {
                    "language_features": out["language_features"][:, i : i + 1],
                    "language_mask": out["language_mask"][i : i + 1],
                    "language_embeds": out["language_embeds"][:, i : i + 1],
                })
            self.texts_encoded += len(todo)
        parts = [found[p] for p in phrases]
        return {"language_features": torch.cat([d["language_features"] for d in parts], 1),
                "language_mask": torch.cat([d["language_mask"] for d in parts], 0),
                "language_embeds": torch.cat([d["language_embeds"] for d in parts], 1)}

    # ------------------------------------------------------------------ detection
    @torch.inference_mode()
    def ground(self, image: np.ndarray, query: ConceptQuery, features: dict | None = None) -> dict:
        """The detector's raw outputs for every query of ``query`` (one per phrase, or one ``"visual"`` query
        for exemplars alone): ``pred_logits`` (Q, N, 1), ``presence_logit_dec`` (Q, 1), ``pred_boxes`` (Q, N, 4)
        normalised centre form, ``pred_masks`` (Q, N, r, r). ``features``: the image's backbone outputs when the
        caller has them (video frames: not cached)."""
        rt = self.runtime
        phrases = query.texts or [VISUAL]
        q = len(phrases)
        feats = self.image_features(image) if features is None else features
        text = self.text_features(phrases)
        e = len(query.boxes)
        boxes = labels = None
        if e:
            boxes = upload(self.transforms.boxes_to_input(query.boxes, image.shape[:2]), rt.device)
            labels = upload(torch.from_numpy(query.labels.astype(np.int64)), rt.device)
            boxes, labels = boxes[:, None].expand(e, q, 4), labels[:, None].expand(e, q)
        with rt.autocast():
            return self.network.ground(feats, text, boxes, labels)

    def detect(self, image: np.ndarray, path: str, query: ConceptQuery, conf: float = DEFAULT_CONF,
               max_det: int | None = None):
        """Results for ``query`` on ``image``: every instance scoring above ``conf``, best first (at most
        ``max_det``), class = the phrase's index. Boxes are clipped to the image (the detector's may reach past
        it)."""
        from samkit.results import Results

        t0 = time.perf_counter()
        query = on_image(query, image.shape[:2])
        t1 = time.perf_counter()
        out = self.ground(image, query)
        t2 = time.perf_counter()
        scores = (out["pred_logits"].float().sigmoid()[..., 0]
                  * out["presence_logit_dec"].float().sigmoid().reshape(-1, 1))  # (Q, N)
        keep = scores > conf
        qi, ni = keep.nonzero(as_tuple=True)  # one wait for the device per image: how many were found
        s = scores[qi, ni]
        order = torch.argsort(s, descending=True, stable=True)
        if max_det is not None:
            order = order[:max_det]
        qi, ni, s = qi[order], ni[order], s[order]
        hw = image.shape[:2]
        boxes = self.transforms.boxes_to_image(out["pred_boxes"][qi, ni], hw)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, hw[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, hw[0])
        masks = self.transforms.masks_to_image(out["pred_masks"][qi, ni], hw)
        speed = {"preprocess": (t1 - t0) * 1000, "inference": (t2 - t1) * 1000,
                 "postprocess": (time.perf_counter() - t2) * 1000}
        res = Results(image, path=path, masks=masks, iou=s, conf=s, cls=qi.float(), names=query.names,
                      boxes=boxes, speed=speed, concepts=True)
        return res
