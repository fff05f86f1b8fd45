"""Auto-annotation: boxes from a detector or from YOLO box labels -> SAM masks -> a segmentation dataset.

Or from phrases (``texts=``), with no box source: SAM 3 finds and segments every instance of each phrase itself
(``sam_model=sam3.pt``), or an open-vocabulary detector (YOLOE, YOLO-World; ``det_model=``) given the phrases as its
classes boxes them for any SAM. Either way a class id is the phrase's index in ``texts``.

Outputs (``output_dir``, default ``<data>_auto_annotate_labels`` next to the images folder):

- ``format="yolo"``: ``<stem>.txt``, one YOLO-seg row per box, in box order, with the box's class id as is;
- ``format="coco"``: ``annotations.json``, one COCO instances document (polygons with ``iscrowd`` 0; RLE with
  ``rle=True``), one annotation per box, ``category_id`` = the class id, image ids in file-name order;
- ``format="png"``: ``<stem>_<box index>.png`` per box (0 / 255 at image size).

With ``format="yolo"`` a ``data.yaml`` names the classes (``names: {id: name}``), as Ultralytics datasets do.

A box whose mask comes back empty keeps its place: with ``empty="box"`` (default) its rectangle is the polygon /
mask, so every box of a box dataset has a segmentation row; with ``empty="skip"`` it has none (the other rows keep
their own class ids). The summary counts them either way.

Resumable: every image's outputs are written atomically and then a record in ``.parts/<stem>.json`` saying what
produced them: the run's settings (format, ``rle``, ``empty``, ``half``, the SAM checkpoint's SHA-256, and the box
source: the detector's weights checksum with ``conf`` / ``iou`` / ``classes`` / ``imgsz`` / ``max_det``, or box
labels) and the image's (and its box-label file's) SHA-256. A re-run skips an image only when its record says the
same settings and the same inputs produced it and the files it lists are still there; anything else (another
format into the same folder, another model, an edited label file, a replaced image, a deleted label file) is
annotated again, and the summary says how many and why. Unreadable images and malformed label files are skipped
with the reason in the summary instead of stopping the run.

The output folder may not be the box-label folder (the YOLO-seg labels would overwrite the box labels).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samkit import families
from samkit.cfg import DEFAULT_MODEL
from samkit.utils import LOGGER
from samkit.utils.detectors import check_phrase_detector, load_detector, set_detector_classes
from samkit.utils.downloads import file_sha256
from samkit.utils.requirements import require, require_phrases
from samkit.writers.atomic import atomic_write_text, make_dirs
from samkit.writers.coco import CocoBuilder, HoleWarning, coco_annotations
from samkit.writers.formats import check_format, per_image, write_dataset, write_image

BY = "samkit's auto-annotation"  # what data.yaml says wrote the labels

EMPTY = ("box", "skip")
#: The detector's confidence threshold when none is given (Ultralytics' predict default).
DETECTOR_CONF = 0.25


@dataclass
class AnnotateSummary:
    """What a run did.

    Attributes:
        output: The output folder.
        images_total: Images found in ``data``.
        images_done: Images annotated by this run.
        images_resumed: Images already annotated by an earlier run with the same settings and inputs (skipped).
        holes: Masks with holes written as COCO polygons, which cannot hold them (``rle=True`` keeps them).
        images_redone: Of ``images_done``, images an earlier run had annotated with other settings or from inputs
            that have changed since.
        objects: Boxes annotated by this run.
        empty_masks: Of those, boxes whose mask came back empty (written as boxes or skipped, per ``empty``).
        skipped: ``(image, reason)`` for every image that could not be annotated.
        seconds: Wall time of the run.
    """

    output: Path
    images_total: int = 0
    images_done: int = 0
    images_resumed: int = 0
    images_redone: int = 0
    holes: int = 0
    objects: int = 0
    empty_masks: int = 0
    empty: str = "box"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, record: dict) -> None:
        if record["status"] == "done":
            self.images_done += 1
            self.images_redone += bool(record.get("redone"))
            self.holes += int(record.get("holes") or 0)
            self.objects += record["objects"]
            self.empty_masks += record["empty"]
        elif record["status"] == "resumed":
            self.images_resumed += 1
        else:
            self.skipped.append((record["path"], record["reason"]))

    def __str__(self) -> str:
        how = "written as their boxes" if self.empty == "box" else "no row written"
        redone = f" ({self.images_redone} redone: other settings or changed inputs)" if self.images_redone else ""
        lines = [
            f"auto_annotate: {self.images_total} images ({self.images_done} annotated{redone}, {self.images_resumed} "
            f"already done, {len(self.skipped)} skipped), {self.objects} objects ({self.empty_masks} empty masks, "
            f"{how}) in {self.seconds:.1f} s -> {self.output}"
        ]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


class Annotator:
    """Annotate one image at a time (the unit of work of both engines). Models load on first use.

    Args: as :func:`auto_annotate`.
    """

    def __init__(self, sam_model=DEFAULT_MODEL, det_model=None, labels=None, format="yolo", output_dir=".",
                 device="", half=False, conf=None, iou=0.45, classes=None, imgsz=640, max_det=300, rle=False,
                 empty="box", settings: dict | None = None, max_pixels: float | None = None, texts=None):
        self.sam_model, self.det_model, self.device, self.half = sam_model, det_model, device, half
        self.texts = None if texts is None else list(texts)
        self.concept_args = dict(conf=conf, max_det=max_det)
        self.labels = None if labels is None else Path(labels)
        self.format, self.out, self.rle, self.empty = format, Path(output_dir), rle, empty
        self.max_pixels = max_pixels
        self.det_args = dict(conf=DETECTOR_CONF if conf is None else conf, iou=iou, classes=classes, imgsz=imgsz,
                             max_det=max_det, verbose=False)
        self._sam = self._det = self._found = None
        self._classes_set = False  # the phrases were given to the detector as its classes
        if det_model is not None and hasattr(det_model, "predict"):
            self._det = det_model
        self.names: dict[int, str] = {} if self.texts is None else dict(enumerate(self.texts))
        self.settings = settings if settings is not None else run_settings(self)
        self._holes = HoleWarning(warn=False)  # masks whose COCO polygons lost holes (the run warns once, in total)

    @classmethod
    def on_worker(cls, gpu: bool, **kw) -> Annotator:
        """The annotator of one worker of the Ray engine (``make_worker`` of
        :func:`~samkit.integrations.ray.annotate_on_ray`): ``device=""`` (automatic) is the CPU on a worker that
        holds no GPU."""
        if not gpu and kw.get("device") in ("", None):
            kw = {**kw, "device": "cpu"}
        return cls(**kw)

    # ------------------------------------------------------------------ models
    @property
    def sam(self):
        if self._sam is None:
            from samkit.model import SAM

            self._sam = SAM(self.sam_model, device=self.device, half=self.half, verbose=False)
        return self._sam

    @property
    def detector(self):
        if self._det is None:
            if hasattr(self.det_model, "predict"):
                self._det = self.det_model
            else:
                self._det = load_detector(self.det_model)
        if self.texts is not None and not self._classes_set:
            set_detector_classes(self._det, self.texts)
            self._classes_set = True
        return self._det

    def boxes(self, image: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) float xyxy pixel boxes and (N,) int class ids for one image, from the labels or the detector."""
        if self.labels is not None:
            return read_box_labels(self.labels / f"{Path(path).stem}.txt", image.shape[:2])
        if self.det_model is None:  # SAM 3 finds the phrases' instances itself (their masks are kept for _annotate)
            r = self._found = self.sam.predict(image, texts=self.texts, **self.concept_args, verbose=False)[0]
            return r.boxes.xyxy.cpu().numpy().astype(np.float32), r.boxes.cls.cpu().numpy().astype(np.int64)
        threads = torch.get_num_threads()  # ultralytics changes the process's thread count on the CPU
        try:
            det = self.detector.predict(image, device=self.device or None, **self.det_args)[0]
        finally:
            torch.set_num_threads(threads)
        if self.texts is None:  # with phrases, the names are the phrases
            self.names.update({int(k): str(v) for k, v in det.names.items()})
        b = det.boxes
        return b.xyxy.cpu().numpy().astype(np.float32), b.cls.cpu().numpy().astype(np.int64)

    # ------------------------------------------------------------------ one image
    def _missing_outputs(self, rec: Path) -> str | None:
        """Why an image whose record is current must be annotated again: a file its record lists is gone."""
        try:
            files = json.loads(rec.read_text()).get("files") or []
        except (OSError, ValueError):
            return "its record is unreadable"
        gone = [f for f in files if not (self.out / f).is_file()]
        return f"its output {gone[0]} is missing" if gone else None

    def record_path(self, path: str) -> Path:
        return self.out / ".parts" / f"{Path(path).stem}.json"

    def inputs(self, path: str) -> dict:
        """Checksums of what the image's labels are made from: the image file and (with ``labels=``) its box-label
        file (None when it has none: a background image)."""
        inputs = {"image": file_sha256(path)}
        if self.labels is not None:
            label_file = self.labels / f"{Path(path).stem}.txt"
            inputs["labels"] = file_sha256(label_file) if label_file.is_file() else None
        return inputs

    def __call__(self, path: str) -> dict:
        """Annotate ``path``; returns ``{"path", "status": done|resumed|skipped, "reason", "objects", "empty",
        "holes", "redone", "names"}`` (``redone``: why an earlier record of this image was not good enough, or
        absent; ``names``: the class names the box source has given so far, ``{"<class id>": name}``), JSON-able."""
        record = self._annotate(path)
        record["names"] = {str(k): v for k, v in self.names.items()}
        return record

    def _annotate(self, path: str) -> dict:
        from samkit.data.sources import SourceError, read_image

        rec = self.record_path(path)
        try:
            inputs = self.inputs(path)
        except OSError as e:
            return {"path": path, "status": "skipped", "reason": f"cannot read {path}: {e.strerror or e}"}
        redone = None
        if rec.exists():
            redone = _stale(rec, self.settings, inputs) or self._missing_outputs(rec)
            if redone is None:
                return {"path": path, "status": "resumed"}
        try:
            image = read_image(path, max_pixels=self.max_pixels)
            xyxy, cls = self.boxes(image, path)
        except (SourceError, ValueError, OSError) as e:
            rec.unlink(missing_ok=True)  # its outputs no longer match the image or its boxes
            return {"path": path, "status": "skipped", "reason": str(e)}
        h, w = image.shape[:2]
        if len(xyxy) and self.det_model is None and self.labels is None:  # SAM 3's own masks, in box order
            masks = self._found.masks.data.cpu().numpy()
        elif len(xyxy):
            try:
                r = self.sam.predict(image, bboxes=xyxy)[0]
            except ValueError as e:  # a box the prompts refuse (one entirely outside the image)
                rec.unlink(missing_ok=True)
                where = self.labels / f"{Path(path).stem}.txt" if self.labels is not None else "the detector"
                return {"path": path, "status": "skipped", "reason": f"{where}: {e}"}
            masks = r.masks.data.cpu().numpy()
        else:
            masks = np.zeros((0, h, w), bool)
        empty = ~masks.any(axis=(1, 2))
        if self.empty == "box":
            for k in np.flatnonzero(empty):
                x1, y1, x2, y2 = np.round(xyxy[k]).astype(int)
                masks[k, max(y1, 0) : max(y2, y1 + 1), max(x1, 0) : max(x2, x1 + 1)] = True
        part = {"path": path, "file_name": Path(path).name, "height": h, "width": w, "annotations": [],
                "names": {str(k): v for k, v in self.names.items()}, "settings": self.settings, "inputs": inputs}
        keep = [k for k in range(len(masks)) if not (empty[k] and self.empty == "skip")]  # box order
        stem = Path(path).stem
        if per_image(self.format):  # YOLO: a mask too thin for a polygon gets its box's rectangle; PNG: by box index
            written = write_image(self.format, self.out, stem, masks[keep], cls[keep], keep, boxes=xyxy[keep])
            part["files"] = [p.name for p in written]
        else:  # numbered and given their image ids when merge_coco gathers the records
            part["annotations"] = coco_annotations(masks[keep], cls[keep], None, image_id=0, first_id=None,
                                                   rle=self.rle, holes=self._holes, where=Path(path).name)
        atomic_write_text(rec, json.dumps(part))
        done = {"path": path, "status": "done", "objects": len(xyxy), "empty": int(empty.sum()),
                "holes": self._holes.count}
        self._holes.count = 0  # counted per image
        return {**done, "redone": redone} if redone else done


def _sam_capabilities(sam_model) -> frozenset[str]:
    """What the family of a SAM model name or file can do, from the registry or else from the weights."""
    from samkit.nn.checkpoint import read_checkpoint
    from samkit.nn.detect import detect_architecture
    from samkit.nn.registry import model_registry
    from samkit.utils.downloads import resolve_weights

    path = resolve_weights(sam_model)
    entry = model_registry().find_model(Path(str(sam_model)).name)
    if entry is not None:  # a registry name says the family without reading gigabytes
        return families.capabilities(entry.arch)
    return families.capabilities(detect_architecture(read_checkpoint(path), str(path))[0])


def _detector_checksum(det) -> str:
    """SHA-256 of a loaded YOLO detector's weights file, or of its parameters when it has no file."""
    ckpt = getattr(det, "ckpt_path", None)
    if ckpt and Path(ckpt).is_file():
        return file_sha256(ckpt)
    h = hashlib.sha256()
    net = getattr(det, "model", det)
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_settings(annotator: Annotator) -> dict:
    """Everything besides the inputs that decides an annotation run's outputs, as a JSON-able dict: the format and
    its options, the SAM checkpoint's SHA-256 and the box source. Loads the detector (not SAM) to checksum it."""
    from samkit.utils.downloads import resolve_weights

    a = annotator
    settings = {"format": a.format, "rle": bool(a.rle) if a.format == "coco" else None, "empty": a.empty,
                "half": bool(a.half), "sam": file_sha256(resolve_weights(a.sam_model))}
    if a.labels is not None:
        settings["boxes"] = {"source": "labels"}
    elif a.det_model is None:
        settings["boxes"] = {"source": "texts", "texts": a.texts, **a.concept_args}
    else:
        d = a.det_args
        settings["boxes"] = {"source": "detector", "weights": _detector_checksum(a.detector), "conf": d["conf"],
                             "iou": d["iou"], "classes": None if d["classes"] is None else sorted(d["classes"]),
                             "imgsz": d["imgsz"], "max_det": d["max_det"], "texts": a.texts}
    return json.loads(json.dumps(settings))  # the form it has once read back from a record


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            short = [v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v for v in (a, b)]
            out.append(f"{prefix}{k}: {short[0]!r} -> {short[1]!r}")
    return out


def _stale(rec: Path, settings: dict, inputs: dict) -> str | None:
    """None when the record at ``rec`` was written by these settings from these inputs; else why not."""
    try:
        old = json.loads(rec.read_text())
    except (OSError, ValueError):
        return "its record is unreadable"
    if not isinstance(old, dict) or "settings" not in old:
        return "its record does not say which settings produced it"
    if old["settings"] != settings:
        return "other settings (" + ", ".join(_differences(old["settings"], settings)) + ")"
    if old.get("inputs") != inputs:
        changed = [k for k in inputs if (old.get("inputs") or {}).get(k) != inputs[k]]
        return "changed since: " + " and ".join({"image": "the image", "labels": "its box labels"}[k] for k in changed)
    return None


def read_box_labels(path: Path, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO detection label file (``class cx cy w h`` normalised per row) -> (N, 4) xyxy pixels, (N,) class ids.

    A missing file means no objects (a background image). Rows must have 5 numbers (a 6th, a confidence, is
    allowed); anything else raises ``ValueError`` naming the file and line.
    """
    if not path.exists():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    h, w = hw
    boxes, cls = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise ValueError(f"{path} line {n}: {line.strip()!r} is not numbers (class cx cy w h)") from None
        if len(values) not in (5, 6) or values[0] != int(values[0]) or values[0] < 0:
            raise ValueError(f"{path} line {n}: expected a detection row 'class cx cy w h' (normalised), got "
                             f"{len(values)} values")
        c, cx, cy, bw, bh = values[:5]
        boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        cls.append(int(c))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(cls, np.int64)


def list_images(data) -> list[str]:
    """The image files of ``data`` (a folder, glob, file or list), checked for clashing file-name stems."""
    from samkit.data.sources import SourceError, iter_images

    items = iter_images(data)
    bad = [i for i in items if not isinstance(i, str)]
    if bad:
        raise SourceError("auto_annotate reads image files (a folder, glob or list of paths), not in-memory images")
    seen: dict[str, str] = {}
    for p in items:
        stem = Path(p).stem
        if stem in seen:
            raise SourceError(f"{seen[stem]} and {p} would write the same label file ({stem}); rename one")
        seen[stem] = p
    return items


def merge_coco(out: Path, images: list[str], names: dict[int, str], settings: dict | None = None) -> Path:
    """Gather the per-image records of ``images`` into ``out/annotations.json`` (ids in file-name order); with
    ``settings``, only records those settings wrote."""
    coco = CocoBuilder()
    for image_id, p in enumerate(sorted(images, key=lambda q: Path(q).name), 1):
        rec = out / ".parts" / f"{Path(p).stem}.json"
        if not rec.exists():
            continue
        part = json.loads(rec.read_text())
        if settings is not None and part.get("settings") != settings:
            continue
        names = {**{int(k): v for k, v in part.get("names", {}).items()}, **names}
        image = {"id": image_id, "file_name": part["file_name"], "height": part["height"], "width": part["width"]}
        coco.add(image, part["annotations"])
    return write_dataset("coco", out, names, by=BY, coco=coco)


def auto_annotate(
    data,
    det_model=None,
    sam_model=DEFAULT_MODEL,
    labels=None,
    format: str = "yolo",
    output_dir=None,
    device="",
    half: bool = False,
    conf: float | None = None,
    iou: float = 0.45,
    classes: list[int] | None = None,
    imgsz: int = 640,
    max_det: int = 300,
    rle: bool = False,
    empty: str = "box",
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int = 1,
    verbose: bool = True,
    max_pixels: float | None = None,
    texts=None,
    _log_summary: bool = True,
) -> AnnotateSummary:
    """Turn a folder of images into a segmentation dataset with SAM masks for detector or label boxes.

    Args:
        data: Images folder (or glob, or list of image paths).
        det_model: YOLO detector: weights path / name or a loaded ``ultralytics.YOLO``. Exclusive with ``labels``.
            With ``texts``: an open-vocabulary one (YOLOE, YOLO-World), given the phrases as its classes.
        sam_model: SAM weights (any name or path :class:`~samkit.SAM` takes).
        labels: Folder of YOLO detection labels (``<stem>.txt``: ``class cx cy w h`` rows) instead of a detector.
        format: ``"yolo"``, ``"coco"`` or ``"png"`` (see the module docstring).
        output_dir: Output folder; default ``<data>_auto_annotate_labels`` beside ``data``.
        device, half: For SAM (and the detector).
        conf, iou, classes, imgsz, max_det: The detector's settings (``conf`` None: 0.25, Ultralytics' own).
        rle: COCO segmentations as RLE instead of polygons.
        empty: ``"box"`` or ``"skip"``: what a box with an empty mask becomes.
        engine: ``"local"`` or ``"ray"`` (Ray Data, ``pip install 'samkit[ray]'``).
        ray_address, ray_actors: The Ray cluster to use (None: local) and the number of SAM actors.
        verbose: Progress bar and the summary in the log.
        max_pixels: Most pixels an image file may declare before it is decoded (None: 120 million; 0: no limit);
            a larger one is skipped with its reason.
        texts: Phrases naming what to annotate (a list; a string is one phrase); class id = the phrase's index.
            Without ``det_model`` the SAM model must be SAM 3, which finds the instances itself (``conf`` None:
            0.5, ``max_det`` per image); with ``det_model``, an open-vocabulary detector boxes them.

    Returns:
        An :class:`AnnotateSummary` (printable).
    """
    from samkit.utils.progress import progress

    if engine == "ray":  # the packages first: nothing is read, resolved or loaded without them
        require("ray", "engine='ray' (Ray Data)", ("ray", "ray.data"))
    if texts is not None:
        from samkit.engine.concepts import concept_query

        texts = concept_query(texts).texts  # checked: non-empty strings, not too many
        if labels is not None:
            raise ValueError("texts= and labels= are two sources of classes: give one (box labels carry their own "
                             "class ids)")
        if det_model is None and "concepts" not in _sam_capabilities(sam_model):
            raise ValueError(f"texts= without det_model= needs a SAM 3 model (sam_model=sam3.pt), which finds the "
                             f"phrases itself; {sam_model} is not one: give an open-vocabulary det_model= (YOLOE, "
                             "YOLO-World) to box the phrases for it")
        if det_model is None:
            require_phrases()
        else:
            check_phrase_detector(det_model)
    elif (det_model is None) == (labels is None):
        raise ValueError("give exactly one source of boxes: det_model= (a YOLO detector), labels= (a box label "
                         "folder) or texts= (phrases, with a SAM 3 model or an open-vocabulary det_model)")
    check_format(format)
    if empty not in EMPTY:
        raise ValueError(f"empty={empty!r} must be one of {', '.join(EMPTY)}")
    if engine not in ("local", "ray"):
        raise ValueError(f"engine={engine!r} must be 'local' or 'ray'")
    if labels is not None and not Path(labels).is_dir():
        raise ValueError(f"labels={str(labels)!r} is not a folder of YOLO box labels")
    t0 = time.perf_counter()
    images = list_images(data)
    if output_dir is None:
        base = Path(data if not isinstance(data, (list, tuple)) else images[0]).resolve()
        base = base if base.is_dir() else base.parent
        output_dir = base.parent / f"{base.name}_auto_annotate_labels"
    out = Path(output_dir)
    if labels is not None and out.resolve() == Path(labels).resolve():
        raise ValueError(f"output_dir={str(output_dir)!r} is the box-label folder labels={str(labels)!r}: the "
                         "segmentation labels would overwrite the box labels; choose another output_dir")
    make_dirs(out)
    kw = dict(sam_model=sam_model, det_model=det_model, labels=labels, format=format, output_dir=out, device=device,
              half=half, conf=conf, iou=iou, classes=classes, imgsz=imgsz, max_det=max_det, rle=rle, empty=empty,
              max_pixels=max_pixels, texts=texts)
    annotator = Annotator(**kw)  # checksums the SAM weights and loads the detector (to checksum it)
    kw["settings"] = annotator.settings
    summary = AnnotateSummary(out, images_total=len(images), empty=empty)
    names: dict[int, str] = {}
    redone: list[tuple[str, str]] = []
    if engine == "ray":  # one Annotator per Ray actor, built there
        from samkit.integrations.ray import annotate_on_ray

        records = annotate_on_ray(images, functools.partial(Annotator.on_worker, **kw), address=ray_address,
                                  actors=ray_actors)
    else:
        records = map(annotator, progress(images, total=len(images), desc="auto_annotate", unit="image",
                                          enabled=verbose))
    for record in records:
        summary.add(record)
        if record.get("redone"):
            redone.append((record["path"], record["redone"]))
        names.update({int(k): v for k, v in record["names"].items()})
    if redone:
        LOGGER.warning("%s: %d image(s) had labels from an earlier run that did not match this one and were "
                       "annotated again (first: %s: %s)", out, len(redone), Path(redone[0][0]).name, redone[0][1])
    if summary.holes:
        LOGGER.warning("%s: %d mask(s) have holes that COCO polygons cannot hold (written filled in); rle=True keeps "
                       "them", out, summary.holes)
    if texts is not None:
        names = {**names, **dict(enumerate(texts))}
    if format == "coco":  # the per-image records gathered
        merge_coco(out, images, names, annotator.settings)
    elif names:
        write_dataset(format, out, names, by=BY)
    summary.seconds = time.perf_counter() - t0
    if verbose and _log_summary:
        LOGGER.info("%s", summary)
    return summary
