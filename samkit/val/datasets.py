"""Datasets for ``samkit val``, read as they are: the layouts samkit writes and the ones users bring.

Images (:class:`ImageDataset`, one :class:`Item` per image, its objects read when the image is):

- **Ultralytics YOLO-seg**: a ``data.yaml`` (``path``, the split's images folder or list file, ``names``), or a
  folder with ``images/`` and ``labels/`` (Ultralytics' rule: ``.../images/x.jpg`` -> ``.../labels/x.txt``), or a
  flat folder of images with ``labels/`` inside (what ``samkit app`` writes). Each row ``cls x1 y1 x2 y2 ...`` is
  one object, its normalised polygon filled at the image's size (vertices rounded to the nearest pixel). A row of
  a box alone (``cls cx cy w h``) has no mask: a dataset of box rows only is refused, box rows among polygons are
  skipped with a warning.
- **COCO instances JSON** (``annotations.json``, any ``.json`` given as ``data=``): polygons and RLE, decoded by
  pycocotools; ``iscrowd`` annotations are skipped (crowds are not objects to click on); image files are found
  beside the JSON, in ``images/`` beside it, or beside its folder (the app writes ``labels/annotations.json``).
- **PNG masks**: ``labels/<stem>_<id>.png`` per object (0 / 255, what ``save_masks`` and the app write) or one
  indexed PNG per image, ``labels/<stem>.png``, whose values are object ids (0 background, 255 void).

Video (:class:`VideoDataset`): the **DAVIS** layout, ``JPEGImages/[480p/]<video>/*.jpg`` with
``Annotations/[480p/]<video>/*.png`` (palette PNGs of object ids), the split from ``ImageSets/<year>/<split>.txt``
when present.

Objects smaller than ``min_area`` pixels are left out (default 0: none), as each benchmark documents its own
threshold; the split and what was left out (and why) are in every report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from samkit.data.sources import IMAGE_SUFFIXES, natural_key
from samkit.utils import LOGGER


class DatasetError(ValueError):
    """A dataset that cannot be measured as given (the message names the file and what was expected)."""


@dataclass
class Instance:
    """One ground-truth object: its (H, W) bool mask, class id and id within its image (annotation id, PNG id, or
    its row in the label file)."""

    mask: np.ndarray
    cls: int
    id: int


@dataclass
class Item:
    """One image of a dataset: its file, the name reports use, and how to read its objects at the image's size."""

    path: Path
    name: str
    read: Callable[[tuple[int, int]], list[Instance]]


@dataclass
class ImageDataset:
    """The images of one split, with their class names."""

    kind: str
    root: Path
    split: str | None
    names: dict[int, str]
    items: list[Item]
    notes: list[str] = field(default_factory=list)  # what was left out of the dataset as read, and why


@dataclass
class VideoItem:
    """One video: its frames in order, per frame how to read its map of object ids at the frame's size (None
    where it has no annotation), and the folder of the frames (what tracking reads)."""

    name: str
    frames: list[Path]
    annotations: list[Callable[[tuple[int, int]], np.ndarray] | None]
    folder: Path
    where: list[str] = field(default_factory=list)  # per frame, the annotation's file (for messages)


@dataclass
class VideoDataset:
    kind: str
    root: Path
    split: str | None
    videos: list[VideoItem]
    notes: list[str] = field(default_factory=list)


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: natural_key(p.name))


def open_dataset(data, split: str | None = None) -> ImageDataset | VideoDataset:
    """Read the dataset at ``data`` (a ``data.yaml``, a COCO ``.json``, or a folder in one of the layouts of the
    module docstring); ``split``: the YOLO ``data.yaml`` key or DAVIS split (default ``val``)."""
    if data is None or not isinstance(data, (str, Path)) or not str(data).strip():
        raise DatasetError(f"data={data!r} must be a dataset: a data.yaml, a COCO .json or a dataset folder")
    p = Path(data).expanduser()
    if not p.exists():
        raise DatasetError(f"data={str(data)!r} does not exist (expected a data.yaml, a COCO .json or a dataset "
                           "folder)")
    if p.is_file():
        if p.suffix.lower() in (".yaml", ".yml"):
            return _yolo_yaml(p, split)
        if p.suffix.lower() == ".json":
            return _coco(p, split)
        raise DatasetError(f"data={str(data)!r} is a {p.suffix or 'suffix-less'} file; expected a data.yaml, a COCO "
                           ".json or a dataset folder")
    if (p / "JPEGImages").is_dir() and (p / "Annotations").is_dir():
        return _davis(p, split)
    if (p / "data.yaml").is_file():
        return _yolo_yaml(p / "data.yaml", split)
    for doc in (p / "annotations.json", p / "labels" / "annotations.json"):
        if doc.is_file():
            return _coco(doc, split)
    if (p / "images").is_dir() and (p / "labels").is_dir():
        return _labelled_folder(p, p / "images", p / "labels", split)
    if (p / "labels").is_dir():
        return _labelled_folder(p, p, p / "labels", split)
    raise DatasetError(f"data={str(data)!r} is no dataset samkit reads: expected a data.yaml, annotations.json, "
                       "images/ with labels/, a folder of images with labels/ inside, or DAVIS's JPEGImages/ with "
                       "Annotations/")


# ---------------------------------------------------------------------- YOLO-seg
def _label_of(image: Path, images: Path, labels: Path) -> Path:
    return labels / image.relative_to(images).with_suffix(".txt")


def _yolo_yaml(path: Path, split: str | None) -> ImageDataset:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"{path}: not a readable data.yaml ({e})") from None
    if not isinstance(cfg, dict):
        raise DatasetError(f"{path}: a data.yaml is a mapping (path, train, val, names); found {type(cfg).__name__}")
    split = split or ("val" if cfg.get("val") else "train" if cfg.get("train") else "val")
    if not cfg.get(split):
        given = [k for k in ("train", "val", "test") if cfg.get(k)]
        raise DatasetError(f"{path}: no {split!r} split (it names {', '.join(given) or 'none'}); give split=")
    base = Path(cfg["path"]) if cfg.get("path") else path.parent
    base = base if base.is_absolute() or not cfg.get("path") else path.parent / base  # a relative path: the file's
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    images: list[tuple[Path, Path]] = []  # (image, its label file)
    for entry in entries:
        where = base / str(entry)
        if where.is_file() and where.suffix == ".txt":  # a list of image paths
            for line in where.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    img = Path(line.strip())
                    img = img if img.is_absolute() else base / img
                    images.append((img, _ultralytics_label(img)))
        elif where.is_dir():
            images += [(img, _ultralytics_label(img)) for img in sorted(where.rglob("*"))
                       if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES]
        else:
            raise DatasetError(f"{path}: split {split!r} names {where}, which is neither a folder nor a .txt list")
    names = _names(cfg.get("names"), path)
    return _yolo_items(base, images, names, split, path)


def _ultralytics_label(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _names(names, where) -> dict[int, str]:
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, list):
        return dict(enumerate(map(str, names)))
    return {}


def _labelled_folder(root: Path, images: Path, labels: Path, split: str | None) -> ImageDataset:
    files = sorted((p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and labels not in p.parents), key=lambda p: natural_key(str(p.relative_to(images))))
    if not files:
        raise DatasetError(f"{images} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if any(labels.glob("*.txt")) or any(labels.rglob("*.txt")):
        names = {}
        if (labels / "data.yaml").is_file() or (root / "data.yaml").is_file():
            import yaml

            doc = labels / "data.yaml" if (labels / "data.yaml").is_file() else root / "data.yaml"
            names = _names((yaml.safe_load(doc.read_text(encoding="utf-8")) or {}).get("names"), doc)
        return _yolo_items(root, [(f, _label_of(f, images, labels)) for f in files], names, split, labels)
    if any(labels.glob("*.png")):
        return _png_items(root, images, labels, files, split)
    raise DatasetError(f"{labels} holds no YOLO-seg .txt labels and no PNG masks")


def _yolo_items(root: Path, images: list[tuple[Path, Path]], names: dict[int, str], split, where) -> ImageDataset:
    if not images:
        raise DatasetError(f"{where}: split {split!r} holds no images")
    kinds = {"polygon": 0, "box": 0}
    rows: dict[Path, list[tuple[int, np.ndarray]]] = {}
    notes = []
    for img, label in images:
        parsed = []
        if label.is_file():
            for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
                vals = line.split()
                if not vals:
                    continue
                try:
                    nums = [float(v) for v in vals]
                except ValueError:
                    raise DatasetError(f"{label}:{n}: not a YOLO row (class then numbers): {line[:60]!r}") from None
                if len(nums) == 5:
                    kinds["box"] += 1
                    continue
                if len(nums) < 7 or len(nums) % 2 == 0:
                    raise DatasetError(f"{label}:{n}: a YOLO-seg row is a class and at least 3 xy pairs; found "
                                       f"{len(nums) - 1} numbers")
                kinds["polygon"] += 1
                parsed.append((int(nums[0]), np.asarray(nums[1:], np.float64).reshape(-1, 2)))
        rows[img] = parsed
    if kinds["polygon"] == 0:
        if kinds["box"]:
            raise DatasetError(f"{where}: the labels hold boxes only ({kinds['box']} box rows, no polygon): samkit "
                               "val and train need masks; give YOLO-seg labels (polygons), COCO masks or PNG masks "
                               "(samkit annotate turns box labels into masks)")
        raise DatasetError(f"{where}: no label file holds an object (expected YOLO-seg rows beside the images)")
    if kinds["box"]:
        msg = f"{kinds['box']} box row(s) without a polygon skipped (no mask to measure)"
        LOGGER.warning("%s: %s", where, msg)
        notes.append(msg)

    def reader(img: Path):
        def read(hw: tuple[int, int]) -> list[Instance]:
            h, w = hw
            out = []
            for i, (cls, poly) in enumerate(rows[img]):
                mask = np.zeros((h, w), np.uint8)
                cv2.fillPoly(mask, [np.round(poly * [w, h]).astype(np.int32)], 1)
                out.append(Instance(mask.astype(bool), cls, i))
            return out
        return read

    items = [Item(img, _display(img, root), reader(img)) for img, _ in images]
    return ImageDataset("yolo", root, split, names, items, notes)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


# ---------------------------------------------------------------------- PNG masks
def _png_items(root: Path, images: Path, labels: Path, files: list[Path], split) -> ImageDataset:
    by_stem: dict[str, list[tuple[int, Path]]] = {}
    indexed: dict[str, Path] = {}
    stems = {f.stem for f in files}
    for png in labels.glob("*.png"):
        stem, _, tail = png.stem.rpartition("_")
        if stem in stems and tail.isdigit():
            by_stem.setdefault(stem, []).append((int(tail), png))
        elif png.stem in stems:
            indexed[png.stem] = png
    if not by_stem and not indexed:
        raise DatasetError(f"{labels}: no PNG is named after an image (<stem>_<id>.png per object, or <stem>.png of "
                           "object ids)")

    def reader(stem: str):
        def read(hw: tuple[int, int]) -> list[Instance]:
            out = []
            if stem in indexed:
                ids = _read_png(indexed[stem], hw)
                for v in np.unique(ids):
                    if v not in (0, 255):
                        out.append(Instance(ids == v, 0, int(v)))
            for obj, png in sorted(by_stem.get(stem, [])):
                out.append(Instance(_read_png(png, hw) > 0, 0, obj))
            return out
        return read

    items = [Item(f, _display(f, root), reader(f.stem)) for f in files]
    return ImageDataset("png", root, split, {0: "object"}, items)


def _read_png(path: Path, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im if im.mode in ("P", "L", "1", "I", "I;16") else im.convert("L"))
    except OSError as e:
        raise DatasetError(f"{path}: not a readable PNG mask ({e})") from None
    if arr.shape[:2] != tuple(hw):
        raise DatasetError(f"{path}: the mask is {arr.shape[1]}x{arr.shape[0]} but its image is {hw[1]}x{hw[0]} "
                           "(width x height): masks must be at their image's size")
    return arr


# ---------------------------------------------------------------------- COCO
def segmentation_mask(seg, hw: tuple[int, int]) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, hw[0], hw[1]))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, hw[0], hw[1])
    else:
        rle = seg
    return mask_utils.decode(rle).astype(bool)


def _coco(path: Path, split: str | None) -> ImageDataset | VideoDataset:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        images, anns = doc["images"], doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a COCO instances file (images, annotations, categories): {e}") from None
    names = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
    by_image: dict[int, list[dict]] = {}
    crowd = 0
    for a in anns:
        if a.get("iscrowd"):
            crowd += 1
            continue
        by_image.setdefault(a["image_id"], []).append(a)
    notes = [f"{crowd} crowd annotation(s) (iscrowd=1) skipped"] if crowd else []
    roots = [path.parent, path.parent / "images", path.parent.parent, path.parent.parent / "images"]
    if images and all("frame" in im and "video" in im for im in images):
        return _coco_video(path, doc, split, roots)
    items, missing = [], []
    for im in images:
        found = next((r / im["file_name"] for r in roots if (r / im["file_name"]).is_file()), None)
        if found is None:
            missing.append(im["file_name"])
            continue

        def read(hw, im=im, found=found):
            if (im.get("height"), im.get("width")) != (None, None) and (im["height"], im["width"]) != tuple(hw):
                raise DatasetError(f"{path}: image {im['file_name']!r} is {hw[1]}x{hw[0]} but the file says "
                                   f"{im['width']}x{im['height']} (width x height)")
            out = []
            for a in by_image.get(im["id"], []):
                seg = a.get("segmentation")
                if not seg:
                    continue
                out.append(Instance(segmentation_mask(seg, hw), int(a.get("category_id", 0)),
                                    int(a.get("id", len(out)))))
            return out

        items.append(Item(found, im["file_name"], read))
    if missing:
        if not items:
            raise DatasetError(f"{path}: none of its {len(images)} images was found (first: {missing[0]!r}; looked "
                               f"in {', '.join(str(r) for r in roots)})")
        msg = f"{len(missing)} image(s) named in {path.name} not found, skipped (first: {missing[0]})"
        LOGGER.warning("%s: %s", path, msg)
        notes.append(msg)
    if not items:
        raise DatasetError(f"{path}: the file names no image")
    return ImageDataset("coco", path.parent, split, names, items, notes)


# ---------------------------------------------------------------------- DAVIS
def _davis(root: Path, split: str | None) -> VideoDataset:
    frames_root, ann_root = root / "JPEGImages", root / "Annotations"
    for sub in ("480p", "Full-Resolution"):
        if (frames_root / sub).is_dir() and (ann_root / sub).is_dir():
            frames_root, ann_root = frames_root / sub, ann_root / sub
            break
    names = sorted(p.name for p in frames_root.iterdir() if p.is_dir())
    sets = sorted((root / "ImageSets").glob(f"*/{split or 'val'}.txt")) if (root / "ImageSets").is_dir() else []
    if sets:
        listed = [v.strip() for v in sets[-1].read_text(encoding="utf-8").splitlines() if v.strip()]
        unknown = [v for v in listed if v not in names]
        if unknown:
            raise DatasetError(f"{sets[-1]}: video {unknown[0]!r} has no frames in {frames_root}")
        names = listed
    elif split not in (None, "val"):
        raise DatasetError(f"{root}: no ImageSets/<year>/{split}.txt names the videos of split {split!r}")
    videos, notes = [], []
    for name in names:
        frames = _images_in(frames_root / name)
        if not frames:
            raise DatasetError(f"{frames_root / name}: no frames")
        anns = [ann_root / name / f"{f.stem}.png" for f in frames]
        if not anns[0].is_file():
            raise DatasetError(f"{ann_root / name}: no annotation of the first frame ({anns[0].name}): the objects "
                               "to track are given there")
        have = [(lambda hw, a=a: read_ids(a, hw)) if a.is_file() else None for a in anns]
        _note_missing(root, name, have, notes)
        videos.append(VideoItem(name, frames, have, frames_root / name, [str(a) for a in anns]))
    if not videos:
        raise DatasetError(f"{root}: split {split or 'val'!r} holds no video")
    return VideoDataset("davis", root, split or "val", videos, notes)


def _note_missing(root, name: str, have: list, notes: list[str]) -> None:
    gone = sum(a is None for a in have)
    if gone:
        msg = f"{name}: {gone} of {len(have)} frames have no annotation (not measured)"
        LOGGER.warning("%s: %s", root, msg)
        notes.append(msg)


def _coco_video(path: Path, doc: dict, split, roots: list[Path]) -> VideoDataset:
    """A COCO file whose images are video frames (``video`` and ``frame`` keys) and whose annotations carry
    ``track_id`` (what ``samkit app`` writes for a video): one video per ``video`` name."""
    by_image: dict[int, list[dict]] = {}
    for a in doc.get("annotations", []):
        if not a.get("iscrowd"):
            by_image.setdefault(a["image_id"], []).append(a)
    groups: dict[str, list[dict]] = {}
    for im in doc["images"]:
        groups.setdefault(str(im["video"]), []).append(im)
    videos, notes = [], []
    for name, ims in sorted(groups.items()):
        ims.sort(key=lambda im: int(im["frame"]))
        frames = []
        for im in ims:
            found = next((r / im["file_name"] for r in roots if (r / im["file_name"]).is_file()), None)
            if found is None:
                raise DatasetError(f"{path}: frame {im['frame']} of video {name!r} ({im['file_name']}) not found")
            frames.append(found)
        folder = frames[0].parent
        alone = {p.resolve() for p in _images_in(folder)} == {f.resolve() for f in frames}
        if not alone or any(f.parent != folder for f in frames):
            raise DatasetError(f"{path}: the frames of video {name!r} must be the only images of one folder "
                               f"(found others beside them in {folder})")

        def reader(im):
            def read(hw):
                ids = np.zeros(hw, np.int64)
                for a in by_image.get(im["id"], []):
                    if "track_id" not in a:
                        raise DatasetError(f"{path}: annotation {a.get('id')} of {im['file_name']} has no track_id "
                                           "(a video's objects are followed by their track ids)")
                    ids[segmentation_mask(a["segmentation"], hw)] = int(a["track_id"])
                return ids
            return read

        have = [reader(im) if by_image.get(im["id"]) or im is ims[0] else None for im in ims]
        _note_missing(path, name, have, notes)
        videos.append(VideoItem(name, frames, have, folder, [im["file_name"] for im in ims]))
    return VideoDataset("coco-video", path.parent, split, videos, notes)


def read_ids(path: Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """A DAVIS annotation (palette PNG of object ids; 255 void) as an (H, W) uint8 array."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
    if hw is not None and arr.shape[:2] != tuple(hw):
        raise DatasetError(f"{path}: the annotation is {arr.shape[1]}x{arr.shape[0]} but its frame is "
                           f"{hw[1]}x{hw[0]} (width x height)")
    return arr
