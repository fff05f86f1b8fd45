"""Measuring video tracking: DAVIS's semi-supervised protocol, J&F.

Every object of a video's first annotated frame is prompted there (its ground-truth mask, its box, or one click at
its interior-most pixel, by prompt kind) and tracked through the video with the model's memory. Each frame's
masks become one map of object ids as the benchmark's PNGs hold them (objects painted in ascending id order, a
later one over an earlier one where they overlap, as Meta's SAM 2 evaluation writes them). Per object, J (region
IoU) and F (boundary F-measure) are averaged over the frames that have an annotation, the first and the last
frame left out (as DAVIS 2017's evaluation does); J&F is the mean of the two, and the dataset's J, F and J&F are
means over every object of every video.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from samkit.val.clicks import first_click
from samkit.val.datasets import DatasetError, VideoDataset
from samkit.val.images import mask_box
from samkit.val.metrics import boundary_f, iou


@dataclass
class VideoScore:
    """One object of one video under one prompt kind: its mean J and F over the measured frames."""

    item: str
    object: int
    prompt: str
    j: float
    f: float
    frames: int

    @property
    def ious(self) -> list[float]:  # the figure the reports sort and draw by
        return [(self.j + self.f) / 2]


def id_map(results_masks: np.ndarray, ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W) masks of objects ``ids`` -> an (H, W) map of object ids (0: none), ascending ids painted last on
    top."""
    out = np.zeros(hw, np.int64)
    for k in np.argsort(ids, kind="stable"):
        out[results_masks[k]] = ids[k]
    return out


def _prompt(kind: str, mask: np.ndarray, obj: int) -> dict:
    if kind == "mask":
        return {"mask": mask, "id": obj}
    if kind == "box":
        return {"box": mask_box(mask), "id": obj}
    c = first_click(mask)
    return {"points": [[c.x, c.y]], "labels": [1], "id": obj}


def measure_video(model, video, kind: str) -> tuple[list[VideoScore], int, float]:
    """One video under one prompt kind: the objects' scores, frames tracked, seconds."""
    from samkit.data.sources import read_image

    hw = read_image(video.frames[0]).shape[:2]
    first = video.annotations[0](hw)
    objs = [int(v) for v in np.unique(first) if v not in (0, 255)]
    if not objs:
        raise DatasetError(f"{video.where[0]}: the first frame's annotation holds no object")
    prompts = [_prompt(kind, first == k, k) for k in objs]
    t0 = time.perf_counter()
    per_obj = {k: ([], []) for k in objs}
    n = 0
    last = len(video.frames) - 1
    for r in model.track(str(video.folder), prompts=prompts, stream=True, verbose=False):
        n += 1
        t = r.frame
        ann = video.annotations[t]
        if ann is None or t == 0 or t == last:
            continue
        gt = ann(hw)
        masks = r.masks.data.cpu().numpy() if len(r) else np.zeros((0, *hw), bool)
        if masks.shape[1:] != hw:
            raise DatasetError(f"{video.frames[t]}: the frame is {masks.shape[2]}x{masks.shape[1]} but its annotation "
                               f"is {hw[1]}x{hw[0]} (width x height)")
        ids = r.boxes.id.cpu().numpy().astype(np.int64) if len(r) and r.boxes.id is not None else np.zeros(0, int)
        pred = id_map(masks, ids, hw)
        for k in objs:
            js, fs = per_obj[k]
            js.append(iou(pred == k, gt == k))
            fs.append(boundary_f(pred == k, gt == k))
    seconds = time.perf_counter() - t0
    scores = [VideoScore(video.name, k, kind, float(np.mean(js)) if js else float("nan"),
                         float(np.mean(fs)) if fs else float("nan"), len(js)) for k, (js, fs) in per_obj.items()]
    return scores, n, seconds


def summarize_video(scores: list[VideoScore]) -> dict:
    out = {}
    for kind in dict.fromkeys(s.prompt for s in scores):
        mine = [s for s in scores if s.prompt == kind and s.frames]
        j = float(np.mean([s.j for s in mine])) if mine else float("nan")
        f = float(np.mean([s.f for s in mine])) if mine else float("nan")
        videos = {}
        for s in mine:
            videos.setdefault(s.item, []).append((s.j + s.f) / 2)
        out[kind] = {"objects": len(mine), "videos": len(videos), "J": j, "F": f, "J&F": (j + f) / 2,
                     "per_video": {v: float(np.mean(x)) for v, x in videos.items()}}
    return out


def measure_videos(model, dataset: VideoDataset, kinds, verbose: bool = True):
    from samkit.utils.progress import progress
    from samkit.val import peak_memory

    scores, frames, seconds = [], 0, 0.0
    work = [(v, k) for v in dataset.videos for k in kinds]
    for video, kind in progress(work, total=len(work), desc="val", unit="video", enabled=verbose):
        s, n, sec = measure_video(model, video, kind)
        scores += s
        frames += n * len(s)
        seconds += sec
    run = {"metrics": summarize_video(scores),
           "counts": {"videos": len(dataset.videos), "objects": len({(s.item, s.object) for s in scores}),
                      "images": sum(len(v.frames) for v in dataset.videos)},
           "speed": {"ms_per_object": 1000 * seconds / max(frames, 1), "what": "per object and frame",
                     "seconds": seconds},
           "memory": peak_memory(model.device),
           "settings": {"prompts": list(kinds)}}
    return run, scores
