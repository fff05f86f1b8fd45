"""Images: prompted objects, segment-everything and concept prompts on a call's images.

:class:`Images` reads a call's source lazily (unreadable images skipped with a warning and listed in ``skipped``; the
call fails only when none could be read); :func:`segment_images` checks every prompt before any network work, runs
the encoder once per batch of images that have objects, then decodes; :func:`detect_concepts` is SAM 3's phrases and
exemplars.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from samkit.prompts import boxes_per_image
from samkit.runners.settings import CALL_KEYS, unknown_keyword
from samkit.utils import LOGGER


class Images:
    """The images of one call: ``items`` (:func:`samkit.data.sources.iter_images`), or None for the image kept by
    ``set_image`` (``kept``: its ``(image, path, embedding, runtime generation)``, or None; its embedding is used
    when that very image comes first)."""

    def __init__(self, items, max_pixels: float | None = None, kept=None):
        self.items, self.max_pixels, self.kept = items, max_pixels, kept
        self.skipped: list[tuple[str, str]] = []  # (image, reason) of the unreadable ones

    def chunks(self, size: int | None):
        """Frames as lists of ``(index, image, path)`` (``size`` at a time; None: all at once)."""
        from samkit.data.sources import SourceError, load_frame

        if self.items is None:
            yield [(0, self.kept[0], self.kept[1])]
            return
        chunk = []
        for i, item in enumerate(self.items):
            try:
                f = load_frame(item, i, max_pixels=self.max_pixels)
            except SourceError as e:
                name = item if isinstance(item, (str, Path)) else f"image {i} of the source"
                self.skipped.append((str(name), str(e)))
                LOGGER.warning("skipped %s: %s", name, e)
                continue
            chunk.append((i, f.image, f.path))
            if size is not None and len(chunk) == size:
                yield chunk
                chunk = []
        if chunk or size is None:
            yield chunk

    def raise_unreadable(self) -> None:
        from samkit.data.sources import SourceError

        if len(self.items) == 1:
            raise SourceError(self.skipped[0][1])
        raise SourceError(f"none of the {len(self.items)} images could be read (first: {self.skipped[0][0]}: "
                          f"{self.skipped[0][1]})")

    def checked(self, results):
        """``results`` passed through; at their end, an error when no image could be read."""
        n = 0
        for r in results:
            n += 1
            yield r
        if not n and self.skipped:
            self.raise_unreadable()


def _is_yolo_results(value) -> bool:
    return hasattr(value, "boxes") and hasattr(value, "names") and hasattr(value, "orig_shape")


def per_image_boxes(bboxes, n_images: int, source_is_list: bool):
    """Boxes given image by image -> one entry per image; anything else -> None (the same prompts for every image).

    Per image: a list of YOLO Results (what ``YOLO(...)(images)`` returns), or, when the source is a list, a list
    holding one list of boxes per image (``[[b1], [b2, b3], []]``, any lengths; an (N, K, 4) array too)."""
    if not isinstance(bboxes, (list, tuple, np.ndarray)) and not hasattr(bboxes, "detach"):
        return None
    if isinstance(bboxes, (list, tuple)) and bboxes and all(_is_yolo_results(b) for b in bboxes):
        if len(bboxes) != n_images:
            raise ValueError(f"bboxes= holds {len(bboxes)} YOLO Results but the source has {n_images} image(s): give "
                             "one Results per image, in the source's order")
        return list(bboxes)
    if not boxes_per_image(bboxes) or (not source_is_list and all(len(b) == 0 for b in bboxes)):
        return None
    if not source_is_list:
        raise ValueError("bboxes= holds one list of boxes per image, but the source is not a list of images: give a "
                         "list of images (one list of boxes each), or [[x1, y1, x2, y2], ...] for every image")
    if len(bboxes) != n_images:
        raise ValueError(f"bboxes= holds {len(bboxes)} lists of boxes (one per image) but the source has {n_images} "
                         "image(s): give one list per image, in the source's order ([] for an image without boxes)")
    return list(bboxes)


def everything_cfg(options: dict, multimask: bool | None, prompted: bool):
    """The automatic mask generator's settings, or None when prompts were given."""
    from samkit.engine.everything import EverythingConfig

    known = EverythingConfig.keys()
    for key in options:
        if key not in known or key == "multimask":
            raise TypeError(unknown_keyword("predict", key, (*known, *CALL_KEYS)))
    if prompted:
        if options:
            raise ValueError(f"{', '.join(options)} only apply to segment-everything (no prompt), but prompts "
                             "were given")
        return None
    return EverythingConfig(**options, multimask=True if multimask is None else multimask)


def segment_images(engine, images: Images, given: dict, per_image, cfg, multimask: bool, batch: int, stream: bool):
    """Results for ``images`` with the prompts ``given`` (``per_image``: boxes image by image) or everything
    (``cfg``): a generator with ``stream`` (one image read at a time), else a list (every image read, then encoded
    in batches)."""
    if stream:
        return images.checked(r for chunk in images.chunks(1)
                              for r in _chunk(engine, images, chunk, given, per_image, cfg, multimask, batch))
    loaded = list(images.chunks(None))
    results = _chunk(engine, images, loaded[0], given, per_image, cfg, multimask, batch) if loaded else []
    if not results and images.skipped:
        images.raise_unreadable()
    return results


def _chunk(engine, images: Images, frames, given, per_image, cfg, multimask, batch) -> list:
    """Results for ``frames`` (``(index in the source, image, path)``): every image's prompts checked, then one
    encoder pass over the images that have objects, then the prompts decoded."""
    if not frames:
        return []
    from samkit.prompts import check_unique_ids, normalize_prompts

    t0 = time.perf_counter()
    objects: list = [None] * len(frames)
    if cfg is None:  # every prompt is checked before any network work
        for j, (index, image, _) in enumerate(frames):
            prompts = given if per_image is None else {**given, "bboxes": per_image[index]}
            objects[j] = normalize_prompts(image.shape[:2], low_res=engine.low_res, **prompts)
            if objects[j] is not None:
                check_unique_ids(objects[j])
    t_prompts = (time.perf_counter() - t0) * 1000 / len(frames)
    todo = [j for j, obj in enumerate(objects) if cfg is not None or (obj is not None and len(obj))]
    embeddings = {}
    timing = {"preprocess": 0.0, "inference": 0.0}
    kept = images.kept
    if todo and kept is not None and frames[0][0] == 0 and frames[0][1] is kept[0] and \
            kept[3] == engine.runtime.generation:
        embeddings[0] = kept[2]  # the image of set_image: its embedding was kept (same device, precision)
    elif todo:
        for j, emb in zip(todo, engine.encode([frames[j][1] for j in todo], batch=batch)):
            embeddings[j] = emb
        timing = dict(engine.timing)
    timing["preprocess"] += t_prompts
    results = []
    for j, (index, image, path) in enumerate(frames):
        if cfg is not None:
            results.append(_everything(engine, image, path, embeddings[j], cfg, timing))
        elif j not in embeddings:  # no objects on this image (an empty list, a detector that found nothing)
            names = getattr(per_image[index] if per_image is not None else given["bboxes"], "names", None)
            results.append(_no_objects(image, path, names, timing))
        else:
            results.append(_prompted(engine, image, path, embeddings[j], objects[j], multimask, timing))
    return results


def _no_objects(image: np.ndarray, path: str, names, timing: dict):
    from samkit.results import Results

    h, w = image.shape[:2]
    return Results(image, path=path, masks=torch.zeros((0, h, w), dtype=torch.bool), iou=torch.zeros(0),
                   names=dict(names) if names else None, speed={**timing, "postprocess": 0.0})


def _prompted(engine, image: np.ndarray, path: str, emb, obj, multimask: bool, timing: dict):
    """One image's Results for its checked prompts ``obj`` (:class:`~samkit.prompts.ObjectPrompts`)."""
    from samkit.results import Results

    t1 = time.perf_counter()
    dec = engine.decode(emb, obj, multimask=multimask)
    n, k = dec.scores.shape
    tracked = bool(len(obj)) and bool((obj.track_id >= 0).all())
    ids = torch.as_tensor(np.where(obj.track_id >= 0, obj.track_id, np.arange(n)))
    return Results(
        image,
        path=path,
        masks=dec.masks.reshape(n * k, *dec.masks.shape[2:]),
        iou=dec.scores.reshape(-1),
        obj_ids=ids.repeat_interleave(k),
        cls=torch.as_tensor(obj.cls).repeat_interleave(k),
        conf=torch.as_tensor(obj.conf).repeat_interleave(k) if obj.names else None,
        names=obj.names or None,
        prompts=obj,
        low_res_logits=dec.low_res_logits.reshape(n * k, *dec.low_res_logits.shape[2:]),
        speed={**timing, "postprocess": (time.perf_counter() - t1) * 1000},
        tracked=tracked,
    )


def _everything(engine, image: np.ndarray, path: str, emb, cfg, timing: dict):
    from samkit.engine.everything import segment_everything
    from samkit.results import Results

    t1 = time.perf_counter()
    found = segment_everything(engine, image, cfg, embedding=emb)
    return Results(
        image,
        path=path,
        masks=found.masks,
        iou=found.iou,
        stability_score=found.stability_score,
        point_coords=found.point_coords,
        crop_boxes=found.crop_boxes,
        speed={**timing, "postprocess": (time.perf_counter() - t1) * 1000},
    )


def detect_concepts(concepts, images: Images, query, conf: float, max_det: int | None):
    """SAM 3: every instance of ``query``'s phrases / exemplars on each image, one image at a time."""
    return images.checked(concepts.detect(image, path, query, conf, max_det)
                          for chunk in images.chunks(1) for _, image, path in chunk)
