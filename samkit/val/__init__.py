"""``samkit val``: how good a SAM model is on a dataset, with the prompts annotators give, as the field measures it.

:func:`run` measures one or several models on one dataset (:mod:`samkit.val.datasets`) and writes the run folder
(:mod:`samkit.val.report`); ``SAM.val(...)`` and ``samkit val`` call it. Images: a box per object (box mIoU) and
the click robot (:mod:`samkit.val.clicks`: mIoU@1/3/5, NoC@85, NoC@90, objects reaching 85% within 5 clicks);
video (DAVIS layout): J&F from a first-frame mask, box or click per object (:mod:`samkit.val.video`). Speed (ms
per object, encoder included) and peak memory are measured beside. The definitions are in ``docs/val.md``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samkit.utils import LOGGER
from samkit.val.datasets import DatasetError, ImageDataset, VideoDataset, open_dataset

#: Prompt kinds per dataset kind.
IMAGE_PROMPTS = ("box", "click", "text")
VIDEO_PROMPTS = ("mask", "box", "click")


@dataclass
class ValResults:
    """What a val run measured.

    Attributes:
        runs: One dict per model: ``model``, ``metrics`` (per prompt kind), ``speed``, ``memory``, ``counts``.
        save_dir: The run folder.
        files: The files written.
    """

    runs: list[dict]
    save_dir: Path | None
    files: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> dict:
        """The first (or only) model's metrics, per prompt kind."""
        return self.runs[0]["metrics"]

    @property
    def results_dict(self) -> dict[str, float]:
        """Flat ``metrics/<kind>_<name>`` values of the first model, as Ultralytics' validators report."""
        return {f"metrics/{kind}_{k}": v for kind, m in self.metrics.items() for k, v in m.items()
                if isinstance(v, float)}

    def table(self) -> str:
        from samkit.val.report import table_rows

        cols = ["model", *[c for c, _ in table_rows(self.runs[0]["metrics"])], "ms/object", "peak MB"]
        rows = [[r["model"], *[v for _, v in table_rows(r["metrics"])], f"{r['speed']['ms_per_object']:.1f}",
                 f"{r['memory']['peak_mb']:.0f}"] for r in self.runs]
        widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
        return "\n".join("  ".join(str(x).rjust(w) for x, w in zip(line, widths)) for line in (cols, *rows))

    def __str__(self) -> str:
        return self.table()


def check_prompts(prompts, allowed, listed=None) -> tuple[str, ...]:
    """``"box,click"`` or a list -> a tuple of prompt kinds, each one of ``allowed`` (an error lists ``listed``, by
    default ``allowed``)."""
    if isinstance(prompts, str):
        kinds = [p.strip() for p in prompts.split(",") if p.strip()]
    elif isinstance(prompts, (list, tuple)) and all(isinstance(p, str) for p in prompts):
        kinds = [p.strip() for p in prompts]
    else:
        raise TypeError(f"prompts={prompts!r} must be text such as 'box,click' or a list of prompt kinds")
    bad = [k for k in kinds if k not in allowed]
    if bad or not kinds:
        raise ValueError(f"prompts={prompts!r}: {'unknown prompt kind ' + repr(bad[0]) if bad else 'none given'}; "
                         f"this dataset takes {', '.join(listed or allowed)}")
    return tuple(dict.fromkeys(kinds))


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
            (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} must be an integer {span}")
    return int(value)


def peak_memory(device) -> dict:
    """``peak_mb``: the peak CUDA memory allocated on ``device``, or the process's peak resident memory elsewhere;
    ``what``: which of the two."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20, "what": "peak CUDA memory allocated"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return {"peak_mb": peak / (2**20 if sys.platform == "darwin" else 1024),
            "what": "peak resident memory of the process so far (compare CPU models in runs of their own)"}


def check_settings(max_clicks=20, stop_iou=None, min_area=0, worst=8, project=None, name=None) -> None:
    """Every val setting that needs no dataset or model, checked (the CLI calls this before loading any model)."""
    _check_int("max_clicks", max_clicks, 1, 100)
    _check_int("min_area", min_area, 0)
    _check_int("worst", worst, 0, 64)
    if stop_iou is not None and (isinstance(stop_iou, bool) or not isinstance(stop_iou, (int, float))
                                 or not 0.0 < stop_iou <= 1.0):
        raise ValueError(f"stop_iou={stop_iou!r} must be a number in (0, 1] or None")
    if project is not None and not isinstance(project, (str, os.PathLike)):
        raise TypeError(f"project={project!r} must be a folder path (str or Path)")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name={name!r} must be a folder name (non-empty text), or None for 'exp'")


def allowed_prompts(video: bool, models=()) -> tuple[str, ...]:
    """The prompt kinds a dataset takes: video's, or images' (``text`` only where every model has concepts)."""
    if video:
        return VIDEO_PROMPTS
    concepts = bool(models) and all("concepts" in m.capabilities for m in models)
    return IMAGE_PROMPTS if concepts else tuple(k for k in IMAGE_PROMPTS if k != "text")


def run(models: list, data, prompts="box,click", split: str | None = None, max_clicks: int = 20,
        stop_iou: float | None = None, min_area: int = 0, worst: int = 8, plots: bool = True, project=None,
        name: str | None = None, exist_ok: bool = False, verbose: bool = True) -> ValResults:
    """Measure ``models`` (loaded :class:`~samkit.SAM` objects, or ``(label, model)`` pairs) on ``data``.

    Args:
        data: A dataset (see :mod:`samkit.val.datasets`).
        prompts: Prompt kinds, ``"box,click"`` (images) or ``"mask,box,click"`` (video), one or several.
        split: The YOLO ``data.yaml`` key or DAVIS split (default ``val``).
        max_clicks: The click budget of the robot (NoC is capped at it).
        stop_iou: An object stops clicking once it reaches this IoU after 5 clicks (later mIoU@k keep its last
            IoU); None: every object gets every click.
        min_area: Objects smaller than this many pixels are left out (counted in the report).
        worst: How many of the worst objects ``worst.jpg`` draws (0: none).
        plots: Write the plots.
        project, name, exist_ok: The run folder, ``project/name`` (default ``runs/val/exp``, numbered).
        verbose: Log the table and where the files went; a progress bar per model.
    """
    from samkit.writers.run import claim_run_dir

    pairs = [m if isinstance(m, tuple) else (_label(m), m) for m in models]
    if not pairs:
        raise ValueError("val needs at least one model")
    seen: dict[str, int] = {}
    for i, (label, m) in enumerate(pairs):  # one name per row: the same model twice is "name", "name #2"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            pairs[i] = (f"{label} #{seen[label]}", m)
    check_settings(max_clicks, stop_iou, min_area, worst, project, name)
    dataset = open_dataset(data, split)
    video = isinstance(dataset, VideoDataset)
    kinds = check_prompts(prompts, VIDEO_PROMPTS if video else IMAGE_PROMPTS,
                          allowed_prompts(video, [m for _, m in pairs]))  # "text" without SAM 3: named below
    concepts = "text" in kinds
    if concepts and len(kinds) > 1:
        raise ValueError(f"prompts={prompts!r}: 'text' (SAM 3's concept prompts: the category names as phrases) is "
                         "measured on its own; run box / click in another val")
    for label, m in pairs:
        need = "video" if video else "concepts" if concepts else "prompts"
        if need not in m.capabilities:
            raise ValueError(f"{label} ({m.family}) cannot be measured on {'a video' if video else 'images'} "
                             f"dataset: it has no {need!r} capability")
    runs, all_scores = [], []
    for label, m in pairs:
        if m.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(m.device)  # each model's own peak
        if video:
            from samkit.val.video import measure_videos

            r, scores = measure_videos(m, dataset, kinds, verbose=verbose)
        elif concepts:
            r, scores = _concepts(m, dataset, min_area, verbose)
        else:
            r, scores = _images(m, dataset, kinds, max_clicks, stop_iou, min_area, verbose)
        r.update(model=label, slug=_slug(label), data=str(data), split=dataset.split, format=dataset.kind,
                 notes=list(dataset.notes) + r.pop("notes", []))
        runs.append(r)
        all_scores.append(scores)
    # the folder is claimed once everything was measured: a run that fails leaves no folder behind
    save_dir = claim_run_dir(Path(project or Path("runs") / "val") / (name or "exp"), exist_ok)
    files = _write(save_dir, runs, all_scores, dataset, kinds, max_clicks, worst, plots, video or concepts)
    res = ValResults(runs, save_dir, files)
    if verbose:
        LOGGER.info("%s\nresults saved to %s", res.table(), save_dir)
    return res


def measure(model, dataset: ImageDataset, prompts="box,click", max_clicks: int = 20, stop_iou: float | None = None,
            min_area: int = 0, verbose: bool = False) -> dict:
    """One model's metrics on an open image dataset (per prompt kind, as :attr:`ValResults.metrics`), with nothing
    written: what :mod:`samkit.train` measures after every epoch."""
    kinds = check_prompts(prompts, tuple(k for k in IMAGE_PROMPTS if k != "text"))
    check_settings(max_clicks, stop_iou, min_area)
    return _images(model, dataset, kinds, max_clicks, stop_iou, min_area, verbose)[0]["metrics"]


def _label(model) -> str:
    return Path(str(model.ckpt_path)).name if model.ckpt_path else f"{model.arch.name} (random weights)"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)


def _images(model, dataset: ImageDataset, kinds, max_clicks, stop_iou, min_area, verbose):
    from samkit.utils.progress import progress
    from samkit.val.images import measure_images
    from samkit.val.report import summarize

    model.engine.decode_clicks(model.engine.encode([np.zeros((64, 64, 3), np.uint8)])[0], np.array([[8.0, 8.0]]))
    t0 = time.perf_counter()  # after one warm-up pass: first-call costs are not the model's speed
    bar = (lambda it: progress(it, total=len(dataset.items), desc="val", unit="image")) if verbose else None
    scores, counts = measure_images(model, dataset, kinds, max_clicks=max_clicks, min_clicks=5,
                                    stop_iou=2.0 if stop_iou is None else stop_iou, min_area=min_area, progress=bar)
    seconds = time.perf_counter() - t0
    if not counts["objects"]:
        raise DatasetError(f"{dataset.root}: no object to measure in split {dataset.split!r} "
                           f"({counts['images']} image(s) read, {counts['small']} object(s) under min_area, "
                           f"{counts['empty']} empty)")
    notes = []
    if counts["small"]:
        notes.append(f"{counts['small']} object(s) under min_area={min_area} pixels left out")
    if counts["empty"]:
        notes.append(f"{counts['empty']} empty ground-truth mask(s) left out")
    if counts["unreadable"]:
        notes.append(f"{len(counts['unreadable'])} unreadable image(s) skipped (first: {counts['unreadable'][0][0]}: "
                     f"{counts['unreadable'][0][1]})")
        for item, why in counts["unreadable"]:
            LOGGER.warning("val: skipped %s: %s", item, why)
    work = counts["encode"] + counts["decode"]
    per_kind_objects = counts["objects"] * len(kinds)
    return {"metrics": summarize(scores, max_clicks),
            "counts": {k: counts[k] for k in ("images", "objects", "small", "empty", "images_without_objects")},
            "speed": {"ms_per_object": 1000 * work / max(per_kind_objects, 1),
                      "encode_ms_per_image": 1000 * counts["encode"] / max(counts["images"], 1),
                      "objects_per_second": per_kind_objects / max(work, 1e-9), "seconds": seconds},
            "memory": peak_memory(model.device),
            "settings": {"prompts": list(kinds), "max_clicks": max_clicks, "stop_iou": stop_iou,
                         "min_area": min_area},
            "notes": notes}, scores


def _concepts(model, dataset, min_area, verbose):
    from samkit.utils.progress import progress
    from samkit.val.concepts import measure_concepts

    bar = (lambda it: progress(it, total=len(dataset.items), desc="val", unit="image")) if verbose else None
    r, rows = measure_concepts(model, dataset, min_area=min_area, progress=bar)
    r["memory"] = peak_memory(model.device)
    return r, rows


def _write(save_dir, runs, all_scores, dataset, kinds, max_clicks, worst, plots, video) -> list[Path]:
    from samkit.val import report

    files = report.write_run(save_dir, runs, all_scores if len(runs) > 1 else all_scores[0], max_clicks)
    if not plots or video:
        return files
    curves = {r["model"]: [s.ious for s in sc if s.prompt == "click"] for r, sc in zip(runs, all_scores)}
    if any(curves.values()):
        files.append(report.plot_clicks(save_dir / "clicks.png", {k: v for k, v in curves.items() if v},
                                        max_clicks))
    per_kind = {f"{k}" + (f" {r['model']}" if len(runs) > 1 else ""): [s.ious[-1] for s in sc if s.prompt == k]
                for r, sc in zip(runs, all_scores) for k in kinds}
    files.append(report.plot_hist(save_dir / "iou_hist.png", {k: v for k, v in per_kind.items() if v}))
    if worst:
        files.append(_worst(save_dir / "worst.jpg", dataset, all_scores[0], worst))
    return files


def _worst(path: Path, dataset: ImageDataset, scores, n: int) -> Path:
    from pycocotools import mask as mask_utils

    from samkit.data.sources import read_image
    from samkit.val.report import draw_worst

    picked = sorted(scores, key=lambda s: (s.ious[-1], s.item, s.object, s.prompt))[:n]
    by_name = {it.name: it for it in dataset.items}
    cache: dict[str, tuple] = {}
    drawn = []
    for s in picked:
        if s.item not in cache:
            item = by_name[s.item]
            image = read_image(item.path)
            cache[s.item] = (image, {o.id: o.mask for o in item.read(image.shape[:2])})
        image, gts = cache[s.item]
        drawn.append((image, gts[s.object], mask_utils.decode(s.final).astype(bool), s))
    return draw_worst(path, drawn)


__all__ = ["DatasetError", "ValResults", "allowed_prompts", "check_prompts", "check_settings", "measure",
           "open_dataset", "run"]
