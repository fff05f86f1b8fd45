"""Video: prompted objects tracked with a memory, phrases found and tracked (concept video), and an
open-vocabulary detector's boxes tracked (detector + tracker). Each runner checks its settings, opens its session,
adds the prompts (closing the session on any error) and returns the frames' Results as a generator that closes the
session at its end."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from samkit.runners.settings import check_conf, check_every, check_known, check_max_det, concept_keys_used
from samkit.utils.requirements import require_phrases

NEW_OBJECT_IOU = 0.5  # a detector box overlapping a tracked object's box this much is that object (Grounded SAM 2)
#: VideoSession settings a track() call may give.
SESSION_KEYS = ("fill_hole_area", "correct_as_cond", "max_prompt_frames")


def _both_ways(session, frame: int, max_frames: int | None, discover=None):
    """Forward from ``frame``, then backward from ``frame - 1`` to 0 (every frame of a video file once); closes the
    session at the end."""
    try:
        yield from session.propagate(start=frame, max_frames=max_frames, discover=discover)
        if frame > 0 and not session.video.live and (max_frames is None or max_frames > 0):
            back = None if max_frames is None else max_frames - 1  # frames frame-1 .. frame-max_frames
            yield from session.propagate(start=frame - 1, reverse=True, max_frames=back, discover=discover)
    finally:
        session.close()


def _concepts_both_ways(session, frame: int, max_frames: int | None):
    """SAM 3: forward from ``frame``, then backward from it (the reference's "both" direction: frames ``frame - 1``
    down to 0); closes the session at the end."""
    back = frame > 0 and not session.video.live and (max_frames is None or max_frames > 0)
    if back:
        session.anchors.add(frame)  # a one-way session keeps what the backward pass will attend to
    try:
        yield from session.propagate(start=frame, max_frames=max_frames)
        if back:
            yield from session.propagate(start=frame, reverse=True, max_frames=max_frames)
    finally:
        session.close()


def _opened(session, add):
    """``session`` after ``add(session)``; closed when that fails."""
    try:
        add(session)
    except BaseException:
        session.close()
        raise
    return session


def track_prompts(runtime, source, given: dict, frame: int, max_frames, settings: dict):
    """Objects prompted on ``frame`` tracked with the family's memory (capability ``video``)."""
    from samkit.engine.video import VideoSession, check_max_frames
    from samkit.prompts import normalize_prompts

    check_known("track", settings, (*SESSION_KEYS, "names"), ("frame", "max_frames"))
    max_frames = check_max_frames(max_frames)

    def add(session):
        obj = normalize_prompts(session.frame_hw(frame), **given, low_res=None)
        if obj is None:
            raise ValueError("tracking needs prompts: bboxes=, points= (with labels=), masks= or prompts=")
        if not len(obj):
            raise ValueError("tracking needs at least one object, but the prompts given are empty (an empty "
                             "list of boxes or points)")
        if obj.names:
            session.names = dict(obj.names)
        ids = np.where(obj.track_id >= 0, obj.track_id, np.arange(len(obj)))
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"object id {int(values[counts > 1][0])} is given to {int(counts.max())} objects: "
                             "each tracked object needs its own id (prompts' 'id', YOLO track ids, or their order)")
        session.add_prompts(frame, obj, ids)

    session = _opened(VideoSession(runtime, source, **settings), add)
    return _both_ways(session, frame, max_frames)


def concept_tracking(conf, max_det, settings: dict):
    """SAM 3's concept-tracking settings from a call's ``conf`` (the detection score; newcomers need at least
    0.7 or ``conf``), ``max_det`` (objects per phrase at once) and the rest of ``settings``."""
    from samkit.engine.concept_video import ConceptTracking

    check_known("track", settings, [f.name for f in fields(ConceptTracking)],
                ("frame", "max_frames", "texts", "conf", "max_det"))
    settings = dict(settings)
    if conf is not None:
        settings["score_threshold"] = check_conf(conf)
        settings["new_threshold"] = max(float(conf), settings.get("new_threshold", 0.7))
    if max_det is not None:
        settings["max_objects"] = check_max_det(max_det)
    return ConceptTracking(**settings)


def track_concepts(runtime, concepts, source, given: dict, texts, conf, max_det, frame: int, max_frames,
                   settings: dict):
    """Capability ``concept_video`` (SAM 3): phrases found and tracked, or clicked / boxed objects through its
    tracker."""
    from samkit.engine.concept_video import ConceptVideoSession
    from samkit.engine.video import check_max_frames
    from samkit.prompts import normalize_prompts

    max_frames = check_max_frames(max_frames)
    prompted = [k for k, v in given.items() if v is not None]
    if texts is not None and prompted:
        raise ValueError(f"give texts= or {', '.join(prompted)}, not both: phrases find their own instances")
    if texts is None and not prompted:
        raise ValueError("tracking needs prompts: texts= (SAM 3 phrases), bboxes=, points= (with labels=) or "
                         "prompts=")
    if given["masks"] is not None:
        raise ValueError("SAM 3's video tracker takes clicks and boxes (points=, bboxes=), not masks=")
    if texts is None and concept_keys_used(conf, max_det):
        raise ValueError("conf= and max_det= apply to phrases (texts=); clicks and boxes give one object each")
    tracking = concept_tracking(conf, max_det, settings)
    if texts is not None:
        require_phrases()

    def add(session):
        if texts is not None:
            session.add(frame, texts=texts)
            return
        obj = normalize_prompts(session.frame_hw(frame), **given, low_res=None)
        ids = np.where(obj.track_id >= 0, obj.track_id, np.arange(len(obj)))
        for i in range(len(obj)):
            pts, labs = obj.object_points(i)
            box = obj.boxes[i] if obj.has_box[i] else None
            session.add(frame, obj_id=int(ids[i]), points=pts if len(pts) else None,
                        labels=labs if len(pts) else None, box=box)

    session = _opened(ConceptVideoSession(runtime, source, engine=concepts, settings=tracking,
                                          interactive=texts is None), add)
    return _concepts_both_ways(session, frame, max_frames)


def track_detections(runtime, source, texts, det_model, every, conf, max_det, frame: int, max_frames,
                     settings: dict):
    """Detector + tracker ("Grounded SAM 2"): an open-vocabulary detector's boxes start objects on keyframes (the
    prompted frame and every ``every``-th from it, both ways) where no tracked object's box overlaps them."""
    from samkit.engine.concepts import concept_query
    from samkit.engine.video import VideoSession, check_max_frames
    from samkit.prompts import normalize_prompts
    from samkit.utils.detectors import check_phrase_detector, load_detector, set_detector_classes

    check_phrase_detector(det_model)  # before the detector loads (or downloads)
    max_frames = check_max_frames(max_frames)
    every = check_every(every)
    phrases = concept_query(texts=texts).texts
    check_known("track", settings, SESSION_KEYS, ("frame", "max_frames", "texts", "det_model", "det_every", "conf",
                                                  "max_det"))
    det = load_detector(det_model)
    set_detector_classes(det, phrases)
    session = VideoSession(runtime, source, names=dict(enumerate(phrases)), **settings)
    count = [0]
    args = {k: v for k, v in (("conf", conf), ("max_det", max_det)) if v is not None}

    def discover(res):
        if abs(res.frame - frame) % every:
            return None
        found = det.predict(res.orig_img, verbose=False, **args)[0].boxes.cpu()
        tracked = res.boxes.xyxy.float().cpu()[res.masks.data.flatten(1).any(1).cpu()] if len(res) else None
        if len(found) and tracked is not None and len(tracked):
            from ultralytics.utils.metrics import box_iou

            found = found[box_iou(found.xyxy.float(), tracked).amax(1) < NEW_OBJECT_IOU]
        if not len(found):
            return None
        prompts = normalize_prompts(res.orig_img.shape[:2], bboxes=found, low_res=None)
        ids = list(range(count[0], count[0] + len(prompts)))
        count[0] += len(prompts)
        return prompts, ids

    _opened(session, lambda s: s.frame_hw(frame))  # a bad source or frame fails here, before any output
    return _both_ways(session, frame, max_frames, discover)
