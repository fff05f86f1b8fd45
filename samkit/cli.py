"""The ``samkit`` command: ``samkit MODE key=value ...`` in the style Ultralytics users already type.

Modes:
    predict   segment images (prompts, or everything without them) or track a video:
              samkit predict model=sam2.1_b.pt source=bus.jpg bboxes="[[100,100,200,200]]" save=True
              SAM 3, every instance of each phrase: samkit predict model=sam3.pt source=images/ texts="person,bus"
              (without source=: the sample images bus.jpg and zidane.jpg, with boxes around their people and bus)
    track     prompt one frame of a video and track the objects through it:
              samkit track model=sam2.1_b.pt source=clip.mp4 points="[[210,350]]" labels="[1]" frame=0
              every instance of phrases: samkit track model=sam3.pt source=clip.mp4 texts="person,dog"
              (SAM 2 with a YOLOE detector: ... model=sam2.1_b.pt texts=person det_model=yoloe-11s-seg.pt)
              (without source=: a short sample clip, tracking a box around the man on the right)
    annotate  boxes from a detector (or box labels) -> SAM masks -> dataset labels:
              samkit annotate data=images/ det_model=yolo11x.pt sam_model=sam2.1_b.pt format=coco
              or phrases: samkit annotate data=images/ texts="person,bus" sam_model=sam3.pt format=yolo
    benchmark size, parameters, ms per image and video FPS of SAM models and Ultralytics models beside them:
              samkit benchmark model=sam2.1_t.pt,mobile_sam.pt,yolo11n-seg.pt device=cuda random=True
              (random=True: random weights of each architecture, nothing downloaded; writes benchmark.md and .csv)
    train     fine-tune a model on a dataset's masks (YOLO-seg, COCO, PNG masks), judged by samkit val each epoch:
              samkit train model=sam2.1_t.pt data=dataset/data.yaml epochs=20 tune=decoder
              (writes runs/train/exp: weights/best.pt and last.pt, results.csv, results.png, args.yaml; go on with
              a stopped run: samkit train resume=True model=runs/train/exp/weights/last.pt; several processes:
              torchrun --nproc_per_node=2 -m samkit train ...)
    val       measure models on a dataset with box and click prompts (images) or first-frame prompts (video):
              samkit val model=sam2.1_t.pt data=dataset/data.yaml prompts=box,click
              several models in one table: samkit val model=sam2.1_t.pt,mobile_sam.pt data=coco/annotations.json
              (writes runs/val/exp: metrics.json, per_item.csv, summary.md, clicks.png, iou_hist.png, worst.jpg)
    app       prompt SAM in the browser on a folder of images or a video, saving the dataset on every change
              (pip install 'samkit[app]'): samkit app source=images/ model=sam2.1_t.pt format=coco names="cat,dog"
              a video: samkit app source=clip.mp4 (a folder of frames: add video=True); it prints the URL to open
    info      describe a model (``samkit info model=sam2.1_b.pt``) or list the registry (``samkit info``)
    checks    versions, devices, extras, and a run of what samkit needs (torchvision's operators, each dtype, video)
    help      this text (also ``-h`` / ``--help``)
    version   the samkit version

predict and track write to project/name (default runs/<mode>/exp, numbered exp-2, exp-3... as Ultralytics does,
unless exist_ok=True): save=True overlays (on by default here when no other output is asked for), save_txt=True
YOLO-seg labels, save_coco=True COCO JSON, save_masks=True PNG masks. Every setting and its default:
samkit/cfg/default.yaml.

Every value is parsed as a Python literal when it is one (``[1, 2]``, ``True``, ``0.5``), else kept as text.
``cfg=my.yaml`` loads settings from a file; ``key=value`` arguments win over it. A misspelt key fails with a
suggestion. Errors print one line; add ``verbose=True`` to see the traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from samkit.cfg import (
    CONCEPT_TRACKING_KEYS,
    EVERYTHING_KEYS,
    OUTPUT_KEYS,
    WRITE_KEYS,
    ConfigError,
    get_cfg,
    parse_key_values,
    suggest,
)
from samkit.checks import failures, run_checks

MODES = ("predict", "track", "train", "val", "annotate", "benchmark", "app", "info", "checks", "help", "version")
_EVERYTHING = EVERYTHING_KEYS
_OUTPUTS = OUTPUT_KEYS
_COMMON = ("model", "device", "half", "compile", "verbose")
#: The settings each mode reads; giving another one is an error (it would be silently ignored otherwise).
MODE_KEYS = {
    "predict": (*_COMMON, "cache", "batch", "max_pixels", "multimask", "source", "bboxes", "points", "labels",
                "texts", "exemplars", "exemplar_labels", "conf", "max_det", *_EVERYTHING,
                *_OUTPUTS),
    "track": (*_COMMON, "source", "bboxes", "points", "labels", "frame", "max_frames", "fill_hole_area",
              "correct_as_cond", "max_prompt_frames", "texts", "conf", "max_det", "det_model", "det_every",
              *CONCEPT_TRACKING_KEYS, *_OUTPUTS),
    "annotate": ("device", "half", "verbose", "model", "sam_model", "data", "det_model", "labels", "conf", "iou",
                 "classes", "imgsz", "max_det", "format", "output_dir", "empty", "rle", "engine", "ray_address",
                 "ray_actors", "batch", "max_pixels", "texts"),
    "app": (*_COMMON, "cache", "source", "video", "names", "format", "out", "rle", "host", "port", "token",
            "conf", "max_det", *_EVERYTHING),
    "benchmark": (*_COMMON, "random", "source", "repeats", "video_frames", "project", "name", "exist_ok"),
    "val": (*_COMMON, "data", "prompts", "split", "max_clicks", "stop_iou", "min_area", "worst", "plots", "project",
            "name", "exist_ok"),
    "train": (*_COMMON[:2], "verbose", "data", "epochs", "batch", "objects", "lr0", "lrf", "warmup_epochs",
              "weight_decay", "grad_clip", "accumulate", "schedule", "tune", "lora", "amp", "seed", "val",
              "val_fraction", "patience", "box_prob", "corrections", "gt_click_prob", "prompts", "max_clicks",
              "plots", "project", "name", "exist_ok", "resume"),
    "info": ("model", "device", "verbose"),
    "checks": ("verbose",),
}


def _setup_logging(verbose: bool) -> None:
    """Information (progress notes, where outputs went) only with ``verbose``; warnings always. The package's
    default handler writes them to standard error."""
    logging.getLogger("samkit").setLevel(logging.INFO if verbose else logging.WARNING)


def mode_help(mode: str) -> str:
    """``samkit MODE --help``: what the mode does with its examples (from this module's text), then every setting it
    reads with its default and its note from ``default.yaml``."""
    from samkit.cfg import defaults, setting_notes

    doc = __doc__.replace("``", "").splitlines()
    start = next(i for i, line in enumerate(doc) if line.startswith(f"    {mode} "))
    block = [doc[start].strip()]
    for line in doc[start + 1:]:
        if not line.startswith(" " * 14):
            break
        block.append("  " + line.strip())
    values, notes = defaults(), setting_notes()

    def shown(key: str) -> str:
        v = values.get(key)
        return f"{key}={v or chr(34) * 2}" if isinstance(v, str) else f"{key}={v!r}"

    rows = [(shown(key), notes.get(key, "")) for key in MODE_KEYS[mode]]
    width = min(34, max(len(r[0]) for r in rows) + 2)
    what = block[0].split(None, 1)[1] if " " in block[0] else ""
    lines = [f"samkit {mode}: {what}", *block[1:], "", f"settings of samkit {mode} (key=value; the default shown):"]
    lines += [f"  {k:<{width}}{note}".rstrip() for k, note in rows]
    lines.append("every setting: samkit/cfg/default.yaml; cfg=my.yaml loads them from a file")
    return "\n".join(lines)


def _registry_lines() -> list[str]:
    from samkit.nn.registry import model_registry
    from samkit.utils.downloads import find_local

    lines = []
    for entry in model_registry().models.values():
        local = find_local(entry.names)
        also = f" (also {', '.join(entry.files)})" if entry.files else ""
        lines.append(
            f"{entry.name:<16} {entry.arch.family:<10} {entry.version:<4} {entry.arch.size:<10}"
            f"{'  on disk: ' + str(local) if local else ''}{also}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(__doc__.strip().replace("``", ""))
        return 0
    mode, rest = argv[0], argv[1:]
    if mode in ("version", "--version", "-V"):
        from samkit import __version__

        print(__version__)
        return 0
    if mode in MODE_KEYS and any(a in ("-h", "--help", "help") for a in rest):
        print(mode_help(mode))
        return 0
    show_traceback = any(a.replace(" ", "").lower() == "verbose=true" for a in rest)
    try:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}{suggest(mode, MODES)}; modes: {', '.join(MODES)}")
        overrides = parse_key_values(rest)
        cfg_file = overrides.pop("cfg", None)
        cfg = get_cfg(cfg_file, overrides)
        from samkit.cfg import load_yaml

        given = {**(load_yaml(cfg_file) if cfg_file else {}), **overrides}
        for key in given:
            if key not in MODE_KEYS[mode]:
                raise ConfigError(f"setting {key!r} does not apply to samkit {mode}; it takes "
                                  f"{', '.join(MODE_KEYS[mode])}")
        _setup_logging(cfg["verbose"])
        from samkit.utils.requirements import install_errors, no_autoinstall

        with install_errors(), no_autoinstall():
            return _run(mode, cfg, given)
    except KeyboardInterrupt:
        print("samkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, after the traceback when verbose=True was asked for (exit 2 both ways)
        if show_traceback:
            import traceback

            traceback.print_exc()
        print(f"samkit {mode}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def _run(mode: str, cfg: dict[str, Any], given: dict[str, Any]) -> int:
    if mode == "checks":
        lines = run_checks()
        print("\n".join(lines))
        bad = failures(lines)
        if bad:
            print(f"samkit checks: {len(bad)} problem(s) found; the ERROR lines say what to run", file=sys.stderr)
        return 1 if bad else 0
    if mode == "info":
        if "model" not in given:
            print("\n".join(_registry_lines()))
            return 0
        from samkit.model import SAM

        model = SAM(cfg["model"], device=cfg["device"], verbose=cfg["verbose"])
        for k, v in model.info(verbose=False).items():  # the summary line was logged when it loaded
            print(f"{k}: {v}")
        return 0
    if mode in ("predict", "track"):
        return _predict(mode, cfg, given)
    if mode == "benchmark":
        from samkit.benchmark import benchmark

        report = benchmark(cfg["model"], device=cfg["device"], half=cfg["half"], compile=cfg["compile"],
                           random=cfg["random"], source=cfg["source"], repeats=cfg["repeats"],
                           video_frames=cfg["video_frames"], project=cfg["project"], name=cfg["name"],
                           exist_ok=cfg["exist_ok"], verbose=cfg["verbose"])
        print(report.markdown())
        print(f"saved to {report.markdown_path} and {report.csv_path}")
        return 0
    if mode == "val":
        return _val(cfg)
    if mode == "train":
        return _train(cfg, given)
    if mode == "app":
        from samkit.app import check_port, serve
        from samkit.model import SAM
        from samkit.utils.requirements import require
        from samkit.writers.formats import check_format

        require("app")  # settings and packages that can fail do so before the model loads
        check_format(cfg["format"], ConfigError)
        if cfg["source"] is None:
            raise ConfigError("give source=: a folder of images, a video file or a folder of frames (with video=True)")
        check_port(cfg["host"], cfg["port"])
        model = SAM(cfg["model"], device=cfg["device"], verbose=cfg["verbose"], half=cfg["half"],
                    compile=cfg["compile"], cache=cfg["cache"])
        serve(model, cfg["source"], host=cfg["host"], port=cfg["port"], token=cfg["token"], out=cfg["out"],
              format=cfg["format"], names=_phrases(cfg["names"]) if cfg["names"] is not None else None,
              rle=bool(cfg["rle"]), video=cfg["video"], everything={k: cfg[k] for k in _EVERYTHING if k in given},
              conf=cfg["conf"], max_det=cfg["max_det"])
        return 0
    if mode == "annotate":
        from samkit.annotate import auto_annotate

        summary = auto_annotate(
            cfg["data"], det_model=cfg["det_model"], sam_model=cfg["sam_model"] or cfg["model"],
            labels=cfg["labels"], format=cfg["format"], output_dir=cfg["output_dir"], device=cfg["device"],
            half=cfg["half"], conf=cfg["conf"], iou=cfg["iou"], classes=cfg["classes"], imgsz=cfg["imgsz"],
            max_det=cfg["max_det"], rle=bool(cfg["rle"]), empty=cfg["empty"], engine=cfg["engine"],
            ray_address=cfg["ray_address"], ray_actors=cfg["ray_actors"], verbose=cfg["verbose"],
            max_pixels=cfg["max_pixels"], texts=_phrases(cfg["texts"]), _log_summary=False,
        )
        print(summary)  # on standard output only (the library logs it when called from Python)
        ok = summary.images_done + summary.images_resumed or not summary.images_total
        return 0 if ok else 1  # every image skipped: a failed run
    raise AssertionError(mode)


def _val(cfg: dict[str, Any]) -> int:
    from samkit.model import SAM
    from samkit.val import allowed_prompts, check_prompts, check_settings, open_dataset, run
    from samkit.val.datasets import VideoDataset

    names = [m.strip() for m in str(cfg["model"]).split(",") if m.strip()] if isinstance(cfg["model"], str) else \
        list(cfg["model"])
    if not names:
        raise ConfigError("give model=: one model or a comma-separated list")
    check_settings(cfg["max_clicks"], cfg["stop_iou"], cfg["min_area"], cfg["worst"], cfg["project"], cfg["name"])
    dataset = open_dataset(cfg["data"], cfg["split"])  # bad settings, dataset or prompts fail before any model loads
    video = isinstance(dataset, VideoDataset)
    check_prompts(cfg["prompts"], allowed_prompts(video) + (() if video else ("text",)),  # text: SAM 3, checked later
                  allowed_prompts(video) + (() if video else ("text (SAM 3)",)))
    models = [SAM(n, device=cfg["device"], half=cfg["half"], compile=cfg["compile"], verbose=cfg["verbose"])
              for n in names]
    res = run(models, cfg["data"], prompts=cfg["prompts"], split=cfg["split"], max_clicks=cfg["max_clicks"],
              stop_iou=cfg["stop_iou"], min_area=cfg["min_area"], worst=cfg["worst"], plots=cfg["plots"],
              project=cfg["project"], name=cfg["name"], exist_ok=cfg["exist_ok"], verbose=False)
    print(res.table())
    print(f"saved to {res.save_dir}")
    return 0


def _train(cfg: dict[str, Any], given: dict[str, Any]) -> int:
    from samkit.model import SAM
    from samkit.train import NAMES, check, read_training_state
    from samkit.train.data import open_splits

    resume = cfg["resume"]
    if not isinstance(resume, bool) and not isinstance(resume, str):
        raise ConfigError(f"resume={resume!r} must be True, False or the path of a run's weights/last.pt")
    settings = {k: given[k] for k in NAMES if k in given}
    if resume:
        path = cfg["model"] if resume is True else resume
        if resume is True and "model" not in given:
            raise ConfigError("resume=True needs model=<run>/weights/last.pt (or give resume=<that path>)")
        read_training_state(path)  # a checkpoint that cannot be resumed fails before any model loads
        model = SAM(path if "model" not in given else cfg["model"], device=cfg["device"], verbose=cfg["verbose"])
        res = model.train(data=given.get("data"), resume=path, verbose=cfg["verbose"], **settings)
    else:
        if cfg["data"] is None:
            raise ConfigError("give data=: a data.yaml, a COCO .json or a dataset folder (the layouts samkit val "
                              "reads)")
        s = check(**{k: cfg[k] for k in NAMES})  # settings and the dataset fail before any model loads
        open_splits(cfg["data"], s.val_fraction, s.seed, s.val)
        model = SAM(cfg["model"], device=cfg["device"], verbose=cfg["verbose"])
        res = model.train(data=cfg["data"], verbose=cfg["verbose"], **{k: cfg[k] for k in NAMES})
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():  # torchrun: rank 0 reports
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank:
            return 0
    print(res.table())
    print(f"saved to {res.save_dir} (best: {res.best})")
    return 0


def _predict(mode: str, cfg: dict[str, Any], given: dict[str, Any]) -> int:
    from samkit.data.video import is_live
    from samkit.model import SAM
    from samkit.utils import LOGGER
    from samkit.utils.progress import progress

    prompts = {k: cfg[k] for k in ("bboxes", "points", "labels")}
    concepts = {k: v for k, v in (("texts", _phrases(cfg["texts"])), ("exemplars", cfg["exemplars"]),
                                  ("exemplar_labels", cfg["exemplar_labels"]), ("conf", cfg["conf"])) if v is not None}
    if concepts or "max_det" in given:
        concepts["max_det"] = cfg["max_det"]
    source = cfg["source"]
    from samkit.data import samples

    sample = samples.sample_path(source)
    if sample:  # "bus.jpg" with no such file here: Ultralytics' sample image, as yolo does
        source = sample
        LOGGER.warning("source=%s is not in this folder: using the sample image %s", cfg["source"], source)
    if source is None:  # a first run: the sample images, or the sample clip with a box on its frame 0
        if mode == "predict":
            source = samples.sample_images()
            typed = {k: v for k, v in prompts.items() if v is not None}
            if not typed and not concepts and not any(k in given for k in _EVERYTHING):
                prompts["bboxes"] = samples.sample_detections()  # segment-everything settings: everything
            how = (" with boxes around their people and bus" if prompts["bboxes"] is not None and not typed else
                   f" with {', '.join(f'{k}={v}' for k, v in {**typed, **concepts}.items())}" if typed or concepts
                   else ", segmenting everything")
            LOGGER.warning("source= is missing: segmenting the sample images %s%s", ", ".join(source), how)
        else:
            source = str(samples.sample_clip())
            if all(v is None for v in prompts.values()) and not concepts:
                prompts["bboxes"] = samples.SAMPLE_CLIP_BOX
            LOGGER.warning("source= is missing: tracking %s with %s", source,
                           ", ".join(f"{k}={v}" for k, v in prompts.items() if v is not None))
    outputs = {k: cfg[k] for k in _OUTPUTS}
    if outputs["save"] is None:  # the command line saves overlays unless other outputs were asked for
        outputs["save"] = not any(cfg[k] for k in WRITE_KEYS if k != "save")
    from samkit.data.sources import is_video_path

    # The source is checked before the model loads (a typo must not cost a download).
    video = mode == "track" or is_video_path(source) or is_live(source)
    total = None
    if not video:
        from samkit.data.sources import iter_images

        total = len(iter_images(source))
    elif not is_live(source):
        from samkit.data.video import open_video

        with open_video(source) as v:
            total = len(v) if cfg["max_frames"] is None else None
    from samkit.prompts import boxes_per_image, normalize_prompts

    typed = {k: v for k, v in prompts.items() if k in given}
    if typed and not boxes_per_image(typed.get("bboxes")):
        # The prompts' form too (shapes, numbers, labels, reversed boxes), on a canvas larger than any image: where
        # they lie is known only from each image.
        normalize_prompts((2**31, 2**31), **typed, low_res=None)
    model = SAM(cfg["model"], device=cfg["device"], verbose=cfg["verbose"], half=cfg["half"],
                compile=cfg["compile"], **({"cache": cfg["cache"]} if mode == "predict" else {}))
    outputs["verbose"] = False  # where the outputs went is printed below, once
    if mode == "track":
        keys = ("fill_hole_area", "correct_as_cond", "max_prompt_frames")  # SAM 2's session; SAM 3 takes those given
        session = {k: cfg[k] for k in keys if "concept_video" not in model.capabilities or k in given}
        session.update({k: cfg[k] for k in CONCEPT_TRACKING_KEYS if k in given})  # SAM 3's concept tracking
        found = {k: v for k, v in concepts.items() if k in ("texts", "conf", "max_det")}
        if "max_det" in found and "max_det" not in given:
            del found["max_det"]
        if cfg["det_model"] is not None:  # SAM 2 with phrases: an open-vocabulary detector on keyframes
            found.update(det_model=cfg["det_model"], det_every=cfg["det_every"])
            session = {k: cfg[k] for k in keys if k in given}
        results = model.track(source, **prompts, frame=cfg["frame"], max_frames=cfg["max_frames"], stream=True,
                              **session, **found, **outputs)
    else:
        prompted = concepts or any(v is not None for v in prompts.values())
        everything = {} if prompted else {k: cfg[k] for k in _EVERYTHING}
        results = model.predict(source, **prompts, multimask=cfg["multimask"], batch=cfg["batch"],
                                max_pixels=cfg["max_pixels"], stream=True, **outputs, **everything, **concepts)
    n = masks = 0
    for r in progress(results, total=total, desc=f"samkit {mode}", unit="frame" if video else "image",
                      enabled=cfg["verbose"]):
        n += 1
        masks += len(r)
    where = f"; saved to {model.save_dir}" if model.save_dir is not None else ""
    skipped = f"; {len(model.skipped)} skipped (unreadable)" if model.skipped else ""
    print(f"{n} {'frame' if video else 'image'}{'s' if n != 1 else ''}, {masks} mask{'s' if masks != 1 else ''}"
          f"{skipped}{where}")
    for path, why in model.skipped:
        print(f"  skipped {path}: {why}")
    return 0


def _phrases(value):
    """``texts=`` as typed: ``"person,bus"`` -> ``["person", "bus"]``; a list, quoted (``'["a", "b"]'``) or not
    (``[a,b]``), gives its items."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [t.strip().strip("'\"").strip() for t in text.split(",")]
    return value


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
