"""SAM masks for YOLO detections: as a function on YOLO results, or as a callback inside a YOLO predict / track loop.

Boxes keep what the detector said: class ids, names, confidences and tracker ids (``boxes.id``) carry over, so a
tracked object keeps its id frame to frame and the masks line up with the boxes one to one.

Examples:
    >>> from ultralytics import YOLO
    >>> from samkit import SAM
    >>> from samkit.integrations.yolo import add_sam_masks, segment
    >>> yolo, sam = YOLO("yolo11n.pt"), SAM("sam2.1_b.pt")
    >>> masks = segment(yolo("bus.jpg"), sam)           # samkit Results, one per image
    >>> add_sam_masks(yolo, sam)                        # every later yolo(...) / yolo.track(...) result has masks
    >>> for r in yolo.track("clip.mp4", stream=True): r.masks, r.boxes.id
"""

from __future__ import annotations

import torch


def segment(yolo_results, sam, **kwargs) -> list:
    """SAM masks for the boxes of each YOLO ``Results``.

    Args:
        yolo_results: One Ultralytics ``Results`` or a list of them (from ``predict`` or ``track``).
        sam: A :class:`~samkit.SAM`.
        **kwargs: More :meth:`~samkit.SAM.predict` arguments (``multimask``, ``save``...).

    Returns:
        One samkit :class:`~samkit.results.Results` per image: masks in box order with the detector's classes,
        names, confidences and track ids (``boxes.id``); an image without detections gives a Results without
        masks.
    """
    from samkit.utils.devices import default_threads

    single = not isinstance(yolo_results, (list, tuple))
    with default_threads():
        out = [_segment_one(det, sam, kwargs) for det in ([yolo_results] if single else yolo_results)]
    return out[0] if single else out


def _segment_one(det, sam, kwargs):
    """One YOLO Results -> one samkit Results (no masks when there is no box)."""
    from samkit.results import Results

    if det.boxes is None or len(det.boxes) == 0:
        h, w = det.orig_shape
        return Results(det.orig_img, path=det.path, masks=torch.zeros((0, h, w), dtype=torch.bool),
                       iou=torch.zeros(0), names=dict(det.names))
    r = sam.predict(det.orig_img, bboxes=det, **kwargs)[0]
    r.path = det.path
    return r


def add_sam_masks(yolo_model, sam) -> None:
    """Make every later ``yolo_model.predict(...)`` / ``yolo_model.track(...)`` return SAM masks in its Results.

    A callback on ``on_predict_postprocess_end`` sets each result's ``masks`` (one per box, in box order; an
    empty set when there is no box) with ``Results.update``; boxes, classes, confidences and track ids are left as
    the detector and tracker made them.
    SAM runs with the CPU thread count the process had before Ultralytics lowered it (see
    :data:`samkit.utils.devices.DEFAULT_THREADS`); YOLO's own count is restored afterwards.
    """
    from samkit.utils.devices import default_threads
    from samkit.utils.requirements import MissingExtra, require_package

    try:
        require_package("lap")
    except MissingExtra as e:  # predict works; a later yolo_model.track(...) would pip-install lap itself
        from samkit.utils import LOGGER

        LOGGER.warning("%s (Ultralytics installs it by itself on the first yolo.track(...) call otherwise)", e)

    def callback(predictor) -> None:
        with default_threads():
            for r in predictor.results:
                if r.boxes is None:
                    continue
                if len(r.boxes) == 0:  # no detection: an empty mask set, so r.masks is never None
                    masks = torch.zeros((0, *r.orig_shape), dtype=torch.bool)
                else:
                    masks = sam.predict(r.orig_img, bboxes=r.boxes.xyxy)[0].masks.data
                r.update(masks=masks.to(r.boxes.data.device))

    yolo_model.add_callback("on_predict_postprocess_end", callback)
