"""The facade's settings checks, written once: every runner calls these before it reads a frame or runs the network."""

from __future__ import annotations

import numpy as np

from samkit.cfg import OUTPUT_KEYS

#: Per-call settings of predict() / track(), for close-match suggestions.
CALL_KEYS = ("source", "bboxes", "points", "labels", "masks", "prompts", "multimask", "batch", "stream",
             *OUTPUT_KEYS, "verbose", "device", "show", "max_pixels")
#: Ultralytics predict settings that have no meaning for SAM, and why (their errors say so).
NOT_FOR_SAM = {
    "imgsz": "SAM models resize every image to their own input size: imgsz= equal to it is accepted",
    "conf": "SAM returns one mask per prompt; filter by r.iou, or give YOLO's boxes (bboxes=yolo(img))",
    "iou": "there is no NMS on prompted masks (segment-everything has box_nms_thresh=)",
    "classes": "SAM has no classes; give YOLO's boxes (bboxes=yolo(img)) to keep theirs",
    "max_det": "SAM returns one mask per prompt",
    "half": "set it on the model: SAM(..., half=True) or model.half = True",
    "augment": "there is no test-time augmentation",
    "agnostic_nms": "there is no NMS on prompted masks",
    "vid_stride": "video is tracked frame by frame (max_frames= bounds a run)",
    "save_conf": "COCO files hold each mask's score",
    "save_crop": "masks are saved whole (save_masks=True)",
}
#: max_det's default in predict() / track(): any other value asks for concepts (or a detector).
MAX_DET = 300


def unknown_keyword(method: str, key: str, known) -> str:
    """The error text for an unknown keyword: why, for Ultralytics settings that do not apply to SAM; else the
    closest known settings."""
    from samkit.cfg import suggest

    if key in NOT_FOR_SAM:
        return f"{method}() got an unknown keyword argument {key!r}: Ultralytics' {key}= does not apply to SAM " \
               f"({NOT_FOR_SAM[key]})"
    return f"{method}() got an unknown keyword argument {key!r}{suggest(key, known)}"


def check_known(method: str, settings: dict, known, also=()) -> None:
    """A TypeError naming the first key of ``settings`` not in ``known`` (suggesting from ``known`` and ``also``)."""
    for key in settings:
        if key not in known:
            raise TypeError(unknown_keyword(method, key, (*known, *CALL_KEYS, *also)))


def check_conf(conf) -> float:
    """A detection score threshold in [0, 1)."""
    if isinstance(conf, bool) or not isinstance(conf, (int, float, np.floating, np.integer)) or not 0.0 <= conf < 1.0:
        raise ValueError(f"conf={conf!r} must be a number in [0, 1) (a detection score)")
    return float(conf)


def check_max_det(max_det) -> int | None:
    """A positive count of detections, or None (no limit)."""
    if max_det is None:
        return None
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise ValueError(f"max_det={max_det!r} must be a positive integer or None")
    return int(max_det)


def check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch={batch!r} must be a positive integer (images per encoder pass)")
    return int(batch)


def check_every(every) -> int:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"det_every={every!r} must be a positive integer (frames between detector runs)")
    return int(every)


def ultralytics_settings(method: str, extra: dict, multimask, image_size: int, family: str):
    """Ultralytics' SAM settings that mean what samkit does anyway, taken out of ``extra`` (the call's other
    keywords): ``imgsz`` equal to the network's input size, ``retina_masks=True`` (masks are at the image's
    resolution), ``multimask_output`` (``multimask``'s other name, on images). Any other value of them is an error
    saying what samkit does instead. Returns ``multimask``, checked."""
    if "imgsz" in extra:
        v = extra.pop("imgsz")
        sizes = list(v) if isinstance(v, (list, tuple)) else [v]
        if not sizes or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x != image_size
                            for x in sizes):
            raise ValueError(f"imgsz={v!r}: {family} runs at its own input size {image_size} (every image is "
                             f"resized to it, and masks come back at the image's size); imgsz= is accepted only "
                             f"as {image_size}")
    if "retina_masks" in extra:
        v = extra.pop("retina_masks")
        if v is not True:
            raise ValueError(f"retina_masks={v!r}: samkit's masks are always at the image's resolution (what "
                             "retina_masks=True asks for); the network's low-resolution logits are "
                             "r.low_res_logits")
    if "multimask_output" in extra:
        v = extra.pop("multimask_output")
        if method != "predict":
            raise TypeError(f"{method}() got multimask_output={v!r}: a tracked object has one mask per frame")
        if multimask is not None and v is not None and bool(v) != bool(multimask):
            raise ValueError(f"multimask={multimask!r} and multimask_output={v!r} disagree: they are one "
                             "setting (give multimask=)")
        multimask = v if multimask is None else multimask
    if multimask is not None and not isinstance(multimask, (bool, np.bool_)):
        raise TypeError(f"multimask={multimask!r} must be True, False or None (the default)")
    return multimask


def concept_keys_used(conf, max_det) -> str | None:
    """The concept-only setting a call gave (``"conf"`` / ``"max_det"``), or None."""
    if conf is not None:
        return "conf"
    return "max_det" if max_det != MAX_DET else None
