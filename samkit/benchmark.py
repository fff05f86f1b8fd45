"""``samkit benchmark``: size and speed of SAM models, and of Ultralytics segmentation models beside them.

For each model, on one device: the weights' file size, the parameter count, the milliseconds per image and, for
SAM 2 / 2.1, the frames per second of a whole video propagation. A SAM model's image time is one image encoded
and one box decoded, through ``SAM.predict`` (end to end, Results included); ``ms_prompt`` is one more box on
the image already encoded (the embedding cache), what an interactive user waits for. A YOLO / FastSAM model's
image time is its whole ``predict``. For SAM 3 the prompt is a phrase (``texts=``), a new one on every call.
The video time is ``SAM.track`` over a clip made of the image moving a few pixels a frame, written as an mp4 and
decoded as it is tracked, with one box on its first frame.

``random=True`` builds each model's registry architecture (a YOLO model from its ``.yaml``) with random weights,
so that nothing is downloaded; weights do not change speed. The size shown is then that of the weights as the
published file stores them (SAM: fp32; Ultralytics: fp16), not of a file on disk.

Timings are medians of ``repeats`` calls after a warm-up call (two with ``compile=True``: the first compiles).

Example::

    samkit benchmark model=sam2.1_t.pt,sam2.1_b.pt,mobile_sam.pt,yolo11n-seg.pt device=cuda random=True
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from samkit.utils import LOGGER

#: A Ultralytics FastSAM file name -> the YOLOv8-seg configuration it was trained from (one class).
FASTSAM_CONFIGS = {"fastsam-s": "yolov8s-seg.yaml", "fastsam-x": "yolov8x-seg.yaml", "fastsam": "yolov8x-seg.yaml"}


@dataclass
class BenchmarkRow:
    """One model's measurements (``None`` where a measurement does not apply)."""

    model: str
    family: str
    weights: str  # the file measured, or "random"
    size_mb: float
    params_m: float
    ms_image: float
    ms_prompt: float | None
    video_fps: float | None
    device: str
    precision: str
    compiled: bool


COLUMNS = tuple(f.name for f in fields(BenchmarkRow))
_HEADERS = {"model": "model", "family": "family", "weights": "weights", "size_mb": "size (MB)",
            "params_m": "params (M)", "ms_image": "ms / image", "ms_prompt": "ms / prompt", "video_fps": "video FPS",
            "device": "device", "precision": "precision", "compiled": "compiled"}


@dataclass
class BenchmarkReport:
    """The rows of a benchmark run and where they were written."""

    rows: list[BenchmarkRow]
    markdown_path: Path | None = None
    csv_path: Path | None = None

    def markdown(self) -> str:
        head = [_HEADERS[c] for c in COLUMNS]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            lines.append("| " + " | ".join(_cell(getattr(r, c)) for c in COLUMNS) + " |")
        return "\n".join(lines)

    def csv(self) -> str:
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: ("" if v is None else round(v, 3) if isinstance(v, float) else v)
                        for k, v in asdict(r).items()})
        return out.getvalue()

    def __str__(self) -> str:
        return self.markdown()


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    return str(v)


def _models(model) -> list[str]:
    if isinstance(model, (str, os.PathLike)):
        names = [m.strip() for m in str(model).split(",")]
    elif isinstance(model, (list, tuple)):
        names = [str(m).strip() for m in model]
    else:
        raise TypeError(f"model={model!r} must be a model name or path, a comma-separated list of them, or a list")
    if not names or any(not m for m in names):
        raise ValueError(f"model={model!r} names no model (or an empty one): give for example "
                         "model=sam2.1_t.pt,yolo11n-seg.pt")
    return names


#: Name beginnings of Ultralytics' own models (anything else that is not a file must be a samkit registry name).
ULTRALYTICS_PREFIXES = ("yolo", "fastsam", "rtdetr", "rt-detr")


def _is_sam(name: str) -> bool:
    """Whether samkit loads ``name``: a registry model or architecture name, or a file that holds a SAM-family
    state dict. A name that is neither a file, a registry name nor an Ultralytics model's name is an error with
    the registry's close matches."""
    from samkit.nn.registry import model_registry

    reg = model_registry()
    if reg.find_model(Path(name).name) is not None or name in reg.architectures:
        return True
    path = Path(name)
    if not path.is_file():
        if not path.name.lower().startswith(ULTRALYTICS_PREFIXES):
            reg.model(path.name)  # raises: unknown model, with close matches
        return False
    from samkit.nn.checkpoint import CheckpointError, read_checkpoint
    from samkit.nn.detect import detect_architecture

    try:
        detect_architecture(read_checkpoint(path), str(path))
    except (CheckpointError, ValueError):
        return False
    return True


class _Timer:
    def __init__(self, device: torch.device, repeats: int, warmup: int):
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], object]) -> float:
        """Seconds of one call, the device's queued work included."""
        self._sync()
        t = time.perf_counter()
        fn()
        self._sync()
        return time.perf_counter() - t

    def median_ms(self, fn: Callable[[], object], before: Callable[[], object] | None = None) -> float:
        times = []
        for i in range(self.warmup + self.repeats):
            if before is not None:
                before()
            dt = self.once(fn)
            if i >= self.warmup:
                times.append(dt * 1000)
        return statistics.median(times)


def _file_mb(path) -> float:
    return os.path.getsize(path) / 1e6


def _sam_row(name: str, image: np.ndarray, video: Callable[[], Path] | None, timer: _Timer, random: bool,
             device, half: bool, compile: bool) -> BenchmarkRow:
    from samkit.model import SAM

    model = (SAM.untrained(name, device=device, verbose=False, cache=1, half=half, compile=compile) if random
             else SAM(name, device=device, verbose=False, cache=1, half=half, compile=compile))
    net = model.net
    params = sum(p.numel() for p in net.parameters())
    size = (sum(t.numel() * 4 for t in net.state_dict().values() if t.is_floating_point()) / 1e6 if random
            else _file_mb(model.ckpt_path))
    h, w = image.shape[:2]
    box = [w * 0.25, h * 0.25, w * 0.75, h * 0.75]
    if "concepts" in model.capabilities:  # SAM 3: a phrase (a new one each call: its text is encoded too)
        phrases = (f"object number {i}" for i in itertools.count())

        def predict():
            return model.predict(image, texts=[next(phrases)], verbose=False)

        clear = model.concepts.clear_cache
    else:
        def predict():
            return model.predict(image, bboxes=box, verbose=False)

        clear = model.engine.clear_cache
    ms_image = timer.median_ms(predict, before=clear)
    predict()  # the image is encoded: the next calls only decode
    ms_prompt = timer.median_ms(predict)
    fps = None
    if video is not None and "video" in model.capabilities:
        clip = video()
        frames = [0]

        def track():
            frames[0] = sum(1 for _ in model.track(clip, bboxes=box, stream=True, verbose=False))

        for _ in range(timer.warmup):
            for _ in model.track(clip, bboxes=box, stream=True, verbose=False, max_frames=2):
                pass
        seconds = timer.once(track)
        fps = frames[0] / seconds
    return BenchmarkRow(name, model.family, "random" if random else str(model.ckpt_path), size, params / 1e6,
                        ms_image, ms_prompt, fps, str(model.device),
                        str(model.runtime.compute_dtype).replace("torch.", ""), model.compiled)


def _ultralytics_model(name: str, random: bool):
    from ultralytics import YOLO, FastSAM
    from ultralytics.utils import SETTINGS

    from samkit.utils.downloads import offline

    stem = Path(name).stem.lower()
    if not random:
        if offline() and not Path(name).is_file() and not (Path(SETTINGS["weights_dir"]) / name).is_file():
            raise ValueError(f"{name} is not on disk and downloads are off (SAMKIT_OFFLINE): give its file, or "
                             "random=True to measure its architecture with random weights")
        return FastSAM(name) if stem.startswith("fastsam") else YOLO(name)
    if stem.startswith("fastsam"):
        if stem not in FASTSAM_CONFIGS:
            raise ValueError(f"random=True: no configuration known for {name!r} (known: "
                             f"{', '.join(k for k in FASTSAM_CONFIGS)})")
        from ultralytics.nn.tasks import SegmentationModel

        model = YOLO(FASTSAM_CONFIGS[stem], task="segment")
        model.model = SegmentationModel(FASTSAM_CONFIGS[stem], nc=1, verbose=False)
        return model
    if Path(name).suffix.lower() not in (".pt", ".yaml", ".yml"):
        raise ValueError(f"random=True needs a model name ending in .pt or .yaml, got {name!r}")
    try:
        return YOLO(str(Path(name).with_suffix(".yaml")))
    except FileNotFoundError:
        raise ValueError(f"random=True: Ultralytics has no architecture for {name!r} (no "
                         f"{Path(name).with_suffix('.yaml').name} among its model configurations)") from None


def _ultralytics_row(name: str, image: np.ndarray, timer: _Timer, random: bool, device, half: bool,
                     compile: bool) -> BenchmarkRow:
    model = _ultralytics_model(name, random)
    net = model.model
    params = sum(p.numel() for p in net.parameters())
    if random or not getattr(model, "ckpt_path", None):
        size = sum(t.numel() * 2 for t in net.state_dict().values() if t.is_floating_point()) / 1e6
    else:
        size = _file_mb(model.ckpt_path)
    dev = str(device) if str(device) else None
    half = bool(half and timer.device.type == "cuda")  # Ultralytics' half precision is fp16 on CUDA only
    kwargs = {"device": dev, "verbose": False, **({"quantize": 16} if half else {})}
    if compile:
        kwargs["compile"] = True

    def predict():
        return model.predict(image, **kwargs)

    ms = timer.median_ms(predict)
    family = "FastSAM" if Path(name).stem.lower().startswith("fastsam") else f"Ultralytics {model.task}"
    return BenchmarkRow(name, family, "random" if random else str(model.ckpt_path), size, params / 1e6, ms, None,
                        None, str(timer.device), "float16" if half else "float32", bool(compile))


def _moving_clip(image: np.ndarray, frames: int, folder: Path) -> Path:
    """An mp4 of ``frames`` frames: ``image`` shifted 4 pixels further right on each."""
    from samkit.writers.video import VideoOverlayWriter

    writer = VideoOverlayWriter(folder / "clip.mp4", 30.0)
    for i in range(frames):
        writer.write(i, np.roll(image, 4 * i, axis=1))
    writer.close()
    return writer.path


def benchmark(model="sam2.1_t.pt", device="", half: bool = False, compile: bool = False, random: bool = False,
              source=None, repeats: int = 5, video_frames: int = 30, project=None, name=None,
              exist_ok: bool = False, verbose: bool = True) -> BenchmarkReport:
    """Measure each model of ``model`` and write the table as ``benchmark.md`` and ``benchmark.csv`` in
    ``project/name`` (default ``runs/benchmark/exp``, numbered as Ultralytics does).

    Args:
        model: A model name or path, a comma-separated list, or a list. SAM-family names and checkpoints load
            through samkit; any other name goes to Ultralytics (``yolo11n-seg.pt``, ``FastSAM-s.pt``...).
        device, half, compile: As for :class:`samkit.SAM` (Ultralytics models get the same device and, on CUDA,
            fp16 for ``half``).
        random: Random weights of each model's architecture instead of its file (offline; see the module notes).
        source: The image measured (a path or a BGR array; default Ultralytics' ``bus.jpg``).
        repeats: Timed calls per measurement (the median is reported).
        video_frames: Frames of the SAM 2 video measurement (0 skips it).
        project, name, exist_ok: The output folder.
        verbose: Log each row as it is measured.

    Returns:
        The rows, and the paths of the files written.
    """
    from samkit.data.sources import load_frame
    from samkit.utils.devices import select_device
    from samkit.writers.atomic import atomic_write_text
    from samkit.writers.run import claim_run_dir

    names = _models(model)
    for key, value, low in (("repeats", repeats, 1), ("video_frames", video_frames, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{key}={value!r} must be an integer >= {low}")
    if source is None:
        from ultralytics import ASSETS

        source = ASSETS / "bus.jpg"
    image = load_frame(str(source) if isinstance(source, os.PathLike) else source).image
    dev = select_device(device)
    timer = _Timer(dev, int(repeats), 2 if compile else 1)
    save_dir = claim_run_dir(Path(project or "runs/benchmark") / (name or "exp"), exist_ok=exist_ok)
    report = BenchmarkReport([], save_dir / "benchmark.md", save_dir / "benchmark.csv")
    with tempfile.TemporaryDirectory(prefix="samkit-benchmark-") as tmp:
        clip: list[Path] = []

        def video() -> Path:
            if not clip:
                clip.append(_moving_clip(image, int(video_frames), Path(tmp)))
            return clip[0]

        try:
            for m in names:
                if _is_sam(m):
                    row = _sam_row(m, image, video if video_frames else None, timer, random, device, half, compile)
                else:
                    row = _ultralytics_row(m, image, timer, random, device, half, compile)
                report.rows.append(row)
                if verbose:
                    LOGGER.info("%s: %.1f MB, %.1fM parameters, %.1f ms / image%s", m, row.size_mb, row.params_m,
                                row.ms_image, f", {row.video_fps:.1f} video FPS" if row.video_fps else "")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        except BaseException:
            if report.rows:
                LOGGER.warning("the %d row(s) measured before the failure are in %s", len(report.rows),
                               report.csv_path)
            raise
        finally:  # the rows measured so far are written, also when a later model fails
            if report.rows:
                atomic_write_text(report.markdown_path, _document(report, image, dev, repeats, video_frames))
                atomic_write_text(report.csv_path, report.csv())
            else:
                report.markdown_path = report.csv_path = None
                try:
                    save_dir.rmdir()
                except OSError:
                    pass
    return report


def _document(report: BenchmarkReport, image: np.ndarray, device: torch.device, repeats: int, frames: int) -> str:
    import platform
    from importlib.metadata import version

    import ultralytics

    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    h, w = image.shape[:2]
    return (f"# samkit benchmark\n\nDevice: {device} ({what}); torch {torch.__version__}, samkit {version('samkit')}, "
            f"ultralytics {ultralytics.__version__}.\n\nImage {w}x{h}; medians of {repeats} calls; video: "
            f"{frames} frames at {w}x{h}, one object.\n\n{report.markdown()}\n")
