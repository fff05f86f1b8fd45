"""Every prompt form, normalised into per-object prompts for one image.

Forms accepted (coordinates are xyxy / xy pixels of the original image):

- Ultralytics semantics, so existing code works unchanged:
  ``bboxes`` one box ``[x1, y1, x2, y2]`` or many ``[[...], ...]``; ``points`` + ``labels`` where a flat list
  of points is one point per object and nesting (``[[[x, y], [x, y]], ...]``) gives several points per object;
  ``labels`` default to 1 (positive); ``masks`` one HxW mask or NxHxW. Given together, ``bboxes`` and
  ``points`` pair up object by object.
- The explicit ragged form: ``prompts=[{"points": [[x, y], ...], "labels": [1, 0]}, {"box": [...],
  "points": [...], "labels": [...]}, {"mask": HxW}]``, any number of clicks per object.
- Ultralytics ``Boxes`` or ``Results`` from a YOLO model as ``bboxes``: class ids, names, confidences and track
  ids carry over to the output. The list ``YOLO(...)(image)`` returns may be passed as it is when it holds one
  Results; the Results of several images are refused (the prompts here are for one image).

Coordinates reaching outside the image are clipped to it with a warning; a box lying entirely outside it is an error.
Every malformed value raises a ``ValueError`` naming the argument and the value.

Mask prompts are either binary masks at image size (bool / uint8 / 0-1 values) or the low-resolution logits a
previous prediction returned (float, ``low_res x low_res``).
"""

from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import dataclass, field

import numpy as np

from samkit.cfg import suggest
from samkit.utils import LOGGER

PROMPT_KEYS = ("points", "labels", "box", "mask", "cls", "id")
#: Largest magnitude accepted in low-resolution mask logits given as prompts.
MAX_MASK_LOGIT = 1e4


@dataclass
class ObjectPrompts:
    """Prompts of N objects on one image (struct of arrays).

    Attributes:
        points: (N, P, 2) float32 xy pixels; objects with fewer than P clicks are padded (label -1).
        labels: (N, P) int32: 1 positive, 0 negative, -1 padding.
        boxes: (N, 4) float32 xyxy pixels; NaN rows for objects without a box.
        masks: (N, h, w) float32 or None. Each object's mask prompt, or NaN-filled when it has none; h, w are the
            image size (binary masks) or the model's low-resolution mask size (logits), per ``mask_is_logits``.
        mask_is_logits: True when ``masks`` are low-resolution logits rather than binary image-size masks.
        cls: (N,) int64 class ids (0 when not given).
        conf: (N,) float32 confidences (1 when not given).
        track_id: (N,) int64 tracker ids, -1 when not given.
        names: class id -> name.
    """

    points: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None = None
    mask_is_logits: bool = False
    cls: np.ndarray = field(default=None)  # type: ignore[assignment]
    conf: np.ndarray = field(default=None)  # type: ignore[assignment]
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.points)
        if self.points.shape[1:] and self.points.shape[-1] != 2:
            raise ValueError(f"points must be (N, P, 2), got {self.points.shape}")
        if self.labels.shape != self.points.shape[:2]:
            raise ValueError(f"labels shape {self.labels.shape} does not match points {self.points.shape[:2]}")
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be ({n}, 4), got {self.boxes.shape}")
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"{len(self.masks)} mask prompts for {n} objects")
        self.cls = np.zeros(n, np.int64) if self.cls is None else np.asarray(self.cls, np.int64).reshape(n)
        self.conf = np.ones(n, np.float32) if self.conf is None else np.asarray(self.conf, np.float32).reshape(n)
        self.track_id = (
            np.full(n, -1, np.int64) if self.track_id is None else np.asarray(self.track_id, np.int64).reshape(n)
        )

    def __len__(self) -> int:
        return len(self.points)

    @property
    def has_box(self) -> np.ndarray:
        """(N,) bool: which objects have a box."""
        return ~np.isnan(self.boxes).any(1)

    @property
    def has_mask(self) -> np.ndarray:
        """(N,) bool: which objects have a mask prompt."""
        if self.masks is None or not len(self):
            return np.zeros(len(self), bool)
        return ~np.isnan(self.masks.reshape(len(self), -1)[:, 0])

    @property
    def num_points(self) -> np.ndarray:
        """(N,) int: clicks per object (padding excluded)."""
        return (self.labels >= 0).sum(1)

    def object_points(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Object ``i``'s real clicks: (P_i, 2) xy and (P_i,) labels."""
        keep = self.labels[i] >= 0
        return self.points[i][keep], self.labels[i][keep]


def _to_numpy(value):
    """Torch tensors as numpy arrays (detached, on the CPU; dtypes numpy lacks, like bfloat16, widened), also inside
    lists and tuples (numpy would call ``.numpy()`` on them there, which fails for tensors that need grad)."""
    if isinstance(value, (list, tuple)):
        nested = any(isinstance(v, (list, tuple)) or hasattr(v, "detach") for v in value)
        return [_to_numpy(v) for v in value] if nested else value
    if not (hasattr(value, "detach") and hasattr(value, "cpu")):
        return value
    t = value.detach().cpu()
    try:
        return t.numpy()
    except TypeError:  # bfloat16, float8, complex32 ...
        return (t.cfloat() if t.is_complex() else t.float()).numpy()


def _not_numbers(name: str, value) -> ValueError:
    return ValueError(f"{name} {_short(value)} is not a regular array of numbers (ragged or non-numeric)")


def _numeric(value, name: str) -> np.ndarray:
    """``value`` as an array of booleans, integers or floats in its own dtype (Python numbers too large for any
    fixed dtype as float64), or a ValueError naming ``name`` and the value."""
    try:
        arr = np.asarray(_to_numpy(value))
    except Exception:  # ragged or too deep nesting, objects numpy cannot take in
        raise _not_numbers(name, value) from None
    kind = arr.dtype.kind
    if kind == "O":  # Python ints beyond 64 bits, or mixed objects
        if arr.size == 0 or not all(isinstance(v, numbers.Real) for v in arr.flat):
            raise _not_numbers(name, value)
        try:
            arr = arr.astype(np.float64)
        except OverflowError:
            raise ValueError(f"{name} {_short(value)} holds a number too large for a coordinate or value") from None
        except Exception:
            raise _not_numbers(name, value) from None
    elif kind in "US":
        raise ValueError(f"{name} must hold numbers, got text {_short(value)}")
    elif kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got {arr.dtype} values {_short(value)}")
    return arr


def _as_array(value, name: str, dtype=np.float32) -> np.ndarray:
    """``value`` as a ``dtype`` array of finite numbers that ``dtype`` holds exactly enough (whole numbers for an
    integer dtype), or a ValueError naming ``name`` and the value."""
    arr = _numeric(value, name)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} {_short(value)} contains NaN or infinite values")
    if arr.size and arr.dtype.kind != "b":
        as_py = float if arr.dtype.kind == "f" else int
        lo, hi = as_py(arr.min()), as_py(arr.max())
        if np.dtype(dtype).kind == "f":
            limit = float(np.finfo(dtype).max)
            if lo < -limit or hi > limit:
                raise ValueError(f"{name} {_short(value)} holds values beyond +-{limit:.3g}")
        else:
            if arr.dtype.kind == "f" and (np.mod(arr, 1) != 0).any():
                raise ValueError(f"{name} {_short(value)} must hold whole numbers")
            info = np.iinfo(dtype)
            if lo < info.min or hi > info.max:
                raise ValueError(f"{name} {_short(value)} holds values outside [{info.min}, {info.max}]")
    return arr.astype(dtype)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 4
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 30, 40, 40


def _short(value) -> str:
    """A one-line repr of a prompt value for messages, under 80 characters."""
    try:
        if hasattr(value, "shape") and hasattr(value, "tolist"):
            shape = tuple(value.shape)
            if math.prod(shape) > 64:
                return f"<{type(value).__name__} of shape {shape}, dtype {value.dtype}>"
            value = value.tolist()
        text = _REPR.repr(value)
    except Exception:  # e.g. an int with more digits than Python converts to text
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) < 80 else text[:77] + "..."


def _coords(box: np.ndarray) -> str:
    """[x1, y1, x2, y2] as given: the shortest text of each float32 (700, not 700.0)."""
    return "[" + ", ".join(np.format_float_positional(v, trim="-") if abs(v) < 1e16 else str(v) for v in box) + "]"


def _check_box(box: np.ndarray, name: str) -> None:
    bad = (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}[{i}] = {box[i].tolist()} has x2 < x1 or y2 < y1; boxes are [x1, y1, x2, y2]")


def _is_results(value) -> bool:
    return hasattr(value, "boxes") and hasattr(value, "names")


def _is_boxes(value) -> bool:
    return hasattr(value, "xyxy") and hasattr(value, "cls")


def _boxes_from(value, name="bboxes") -> tuple[np.ndarray, dict]:
    """Boxes from a list / array / tensor, or from Ultralytics Boxes / Results (keeping their metadata); a list
    holding one Results (what ``YOLO(...)(image)`` returns) counts as that Results."""
    meta: dict = {}
    if isinstance(value, (list, tuple)) and any(_is_results(v) or _is_boxes(v) for v in value):
        kind = "Results" if all(_is_results(v) for v in value) else "Boxes" if all(map(_is_boxes, value)) else None
        if kind is None:
            raise ValueError(f"{name} mixes YOLO Results or Boxes with other values: give one image's Results, or "
                             "boxes as numbers")
        if len(value) > 1:
            raise ValueError(f"{name} holds {len(value)} YOLO {kind} (one per image) for one image: give the {kind} "
                             f"of this image")
        value = value[0]
    if _is_results(value):
        try:
            meta["names"] = {int(k): str(v) for k, v in dict(value.names).items()}
        except Exception:
            raise ValueError(f"{name}: the YOLO Results' names {_short(value.names)} are not a dict of class id -> "
                             "name") from None
        value = value.boxes
        if value is None:
            raise ValueError(f"{name}: the YOLO Results has no boxes (is it a classification result?)")
    if _is_boxes(value):
        meta["cls"] = _as_array(value.cls, f"{name}.cls", np.int64)
        meta["conf"] = _as_array(value.conf, f"{name}.conf")
        if getattr(value, "id", None) is not None:
            meta["track_id"] = _as_array(value.id, f"{name}.id", np.int64)
        value = value.xyxy
    arr = _as_array(value, name)
    if arr.size == 0 and arr.ndim <= 2:  # [] (or [[]]): no boxes, no objects
        arr = np.zeros((0, 4), np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be [x1, y1, x2, y2] or a list of them (N, 4), got shape {arr.shape}")
    _check_box(arr, name)
    return arr, meta


def _check_labels(labels: np.ndarray, name: str = "labels") -> None:
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        v = float(labels[bad][0])
        raise ValueError(
            f"{name} must be 1 (positive) or 0 (negative), got {int(v) if v.is_integer() and abs(v) < 1e16 else v}"
        )


def _int_of(value, name: str, default: int) -> int:
    """One whole number >= 0 (a class or object id) from a prompt dict; ``default`` when None."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    arr = _as_array(value, name, np.int64)
    if arr.size != 1:
        raise ValueError(f"{name} must be one integer, got {_short(value)}")
    if int(arr.reshape(())) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {_short(value)}")
    return int(arr.reshape(()))


def _points_ultralytics(points, labels) -> tuple[np.ndarray, np.ndarray]:
    pts = _as_array(points, "points")
    if pts.size == 0 and pts.ndim <= 2:  # []: no clicks, no objects
        if labels is not None and _as_array(labels, "labels", np.float64).size:
            raise ValueError(f"labels {_short(labels)} were given for no points (points is empty)")
        return np.zeros((0, 1, 2), np.float32), np.zeros((0, 1), np.int32)
    if pts.ndim == 1:
        pts = pts[None, None]
    elif pts.ndim == 2:
        pts = pts[:, None]
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"points must be [x, y], a list of [x, y] (one per object) or (N, P, 2); got {pts.shape}")
    if pts.shape[1] == 0 and len(pts):
        raise ValueError(f"points of shape {pts.shape} hold no clicks: give (N, P, 2) with P >= 1")
    if labels is None:
        lab = np.ones(pts.shape[:2], np.int32)
    else:
        lab = _as_array(labels, "labels", np.float64)
        if lab.ndim == 0:
            lab = lab[None]
        if lab.ndim == 1:
            lab = lab[:, None] if pts.shape[1] == 1 else lab[None]
        if lab.shape != pts.shape[:2]:
            raise ValueError(
                f"{lab.size} labels do not match {pts.shape[0] * pts.shape[1]} points "
                f"(points {tuple(pts.shape[:2])} objects x clicks, labels {tuple(lab.shape)})"
            )
        _check_labels(lab)
        lab = lab.astype(np.int32)
    return pts, lab


def _mask_stack(masks, image_hw: tuple[int, int], low_res: int | None, name="masks") -> tuple[np.ndarray, bool]:
    """Mask prompts as (n, h, w) float32 and whether they are low-resolution logits (``low_res`` None: only
    binary masks at image size are accepted)."""
    arr = _numeric(masks, name) if not (isinstance(masks, (list, tuple)) and not len(masks)) else np.zeros(0)
    if arr.size == 0 and arr.ndim == 1:  # []: no masks, no objects
        return np.zeros((0, *image_hw), np.float32), False
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be HxW or NxHxW, got shape {arr.shape}")
    h, w = image_hw
    is_binary_dtype = arr.dtype == np.bool_ or arr.dtype.kind in "ui"
    finite = arr.dtype.kind != "f" or bool(np.isfinite(arr).all())
    if (low_res is not None and arr.shape[1:] == (low_res, low_res) and not is_binary_dtype
            and (arr.shape[1:] != (h, w) or (arr.size and arr.min() < 0))):
        if not finite or (arr.size and np.abs(arr).max() > MAX_MASK_LOGIT):
            raise ValueError(f"{name}: mask logits must be finite and within +-{MAX_MASK_LOGIT:g} (a prediction's "
                             "logits are tens at most; larger ones overflow the prompt encoder into NaN scores)")
        return arr.astype(np.float32), True
    if arr.shape[1:] != (h, w):
        if low_res is None:
            raise ValueError(f"{name} of shape {arr.shape[1:]} must be (H, W) = ({h}, {w}), the image's size")
        low = arr.shape[1:] == (low_res, low_res)
        hint = " (low-resolution logits are floats, not bool or integers)" if low else ""
        raise ValueError(
            f"{name} of size {arr.shape[1:]} match neither the image ({h}, {w}) nor the low-resolution "
            f"logits ({low_res}, {low_res}){hint}"
        )
    if not finite:
        raise ValueError(f"{name}: a binary mask holds NaN or infinite values (masks hold 0/1 or bool values)")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name}: binary masks at image size must hold 0/1 (or bool) values")
    return arr.astype(np.float32), False


def normalize_prompts(
    image_hw: tuple[int, int],
    bboxes=None,
    points=None,
    labels=None,
    masks=None,
    prompts: list[dict] | None = None,
    low_res: int = 256,
) -> ObjectPrompts | None:
    """Turn any accepted prompt form into :class:`ObjectPrompts`, or None when no prompt is given.

    Args:
        image_hw: (height, width) of the image the prompts refer to; coordinates outside it are clipped with a
            warning, and a box entirely outside it (one that clipping would flatten onto the border) is an error.
        bboxes, points, labels, masks: Ultralytics-style prompts (see the module docstring).
        prompts: The explicit per-object form; exclusive with the others.
        low_res: Side of the model's low-resolution mask logits (256 for 1024-px models).

    Raises:
        ValueError: A malformed prompt, naming the problem and the bad value.
    """
    if prompts is not None:
        if any(v is not None for v in (bboxes, points, labels, masks)):
            raise ValueError("give either prompts=[...] or bboxes/points/labels/masks, not both")
        out = _from_dicts(prompts, image_hw, low_res)
        box_name = "prompts[{i}]['box']"
    else:
        box_name = "bboxes[{i}]"
        if labels is not None and points is None:
            raise ValueError("labels were given without points")
        if bboxes is None and points is None and masks is None:
            return None
        meta: dict = {}
        boxes = None
        if bboxes is not None:
            boxes, meta = _boxes_from(bboxes)
        pts = lab = None
        if points is not None:
            pts, lab = _points_ultralytics(points, labels)
        mstack, is_logits = (None, False)
        if masks is not None:
            mstack, is_logits = _mask_stack(masks, image_hw, low_res)
        counts = {k: len(v) for k, v in (("bboxes", boxes), ("points", pts), ("masks", mstack)) if v is not None}
        if len(set(counts.values())) > 1:
            raise ValueError(
                "bboxes, points and masks pair up object by object, but their counts differ: "
                + ", ".join(f"{k}={v}" for k, v in counts.items())
            )
        n = next(iter(counts.values()))
        if pts is None:
            pts, lab = np.zeros((n, 0, 2), np.float32), np.zeros((n, 0), np.int32)
        if boxes is None:
            boxes = np.full((n, 4), np.nan, np.float32)
        out = ObjectPrompts(points=pts, labels=lab, boxes=boxes, masks=mstack, mask_is_logits=is_logits, **meta)
    _clip(out, image_hw, box_name)
    return out


def object_prompt(image_hw: tuple[int, int], points=None, labels=None, box=None, mask=None, cls=None,
                  low_res: int | None = None) -> ObjectPrompts:
    """One object's prompt (clicks with labels, a box, a mask, a class id) as :class:`ObjectPrompts`, checked and
    clipped as :func:`normalize_prompts` does, with errors naming the argument (``points``, ``box``...).

    Args:
        image_hw: (height, width) of the image or video frame.
        points, labels: (P, 2) xy pixel clicks and their (P,) labels (default all positive).
        box: One xyxy pixel box.
        mask: An (H, W) mask at image size (bool or 0/1), or, when ``low_res`` is given, low-resolution logits.
        cls: Class id (integer >= 0); default 0.
        low_res: Side of the model's low-resolution logits; None accepts binary image-size masks only.
    """
    if labels is not None and points is None:
        raise ValueError("labels were given without points")
    if points is None and box is None and mask is None:
        raise ValueError("a prompt needs points= (with labels=), box= or mask=")
    given = {"points": points, "labels": labels, "box": box, "mask": mask, "cls": cls}
    out = _from_dicts([{k: v for k, v in given.items() if v is not None}], image_hw, low_res, single=True)
    _clip(out, image_hw, "box")
    return out


def _from_dicts(prompts, image_hw, low_res, single: bool = False) -> ObjectPrompts:
    """``prompts=[{...}, ...]`` -> ObjectPrompts; ``single``: one object given as arguments, named plainly."""

    def key(i: int, k: str) -> str:
        return k if single else f"prompts[{i}][{k!r}]"

    def at(i: int) -> str:
        return "" if single else f"prompts[{i}]: "

    if isinstance(prompts, dict):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise ValueError(f"prompts must be a list of dicts, got {_short(prompts)}")
    if not prompts:
        if single:
            raise ValueError("a prompt needs points= (with labels=), box= or mask=")
        return ObjectPrompts(points=np.zeros((0, 0, 2), np.float32), labels=np.zeros((0, 0), np.int32),
                             boxes=np.zeros((0, 4), np.float32))
    pts_list, lab_list, boxes, masks, cls, ids = [], [], [], [], [], []
    for i, p in enumerate(prompts):
        if not isinstance(p, dict):
            raise ValueError(f"prompts[{i}] must be a dict with keys {PROMPT_KEYS}, got {type(p).__name__}")
        for k in p:
            if k not in PROMPT_KEYS:
                hint = suggest(k, PROMPT_KEYS) if isinstance(k, str) else ""
                raise ValueError(f"prompts[{i}] has unknown key {_short(k)}{hint}; keys are {', '.join(PROMPT_KEYS)}")
        if not any(p.get(k) is not None for k in ("points", "box", "mask")):
            raise ValueError(f"prompts[{i}] has no points, box or mask")
        if p.get("points") is not None:
            name = key(i, "points")
            pt = _as_array(p["points"], name)
            if pt.ndim == 0 or pt.size == 0 or pt.shape[-1] != 2:
                raise ValueError(f"{name} must be [[x, y], ...], got {_short(p['points'])}")
            pt = pt.reshape(-1, 2)
            if p.get("labels") is None:
                lb = np.ones(len(pt))
            else:
                lb = _as_array(p["labels"], key(i, "labels"), np.float64).ravel()
            if len(lb) != len(pt):
                raise ValueError(f"{at(i)}{len(lb)} labels for {len(pt)} points: give one label per point")
            _check_labels(lb, key(i, "labels"))
        elif p.get("labels") is not None:
            raise ValueError(f"{at(i)}labels were given without points")
        else:
            pt, lb = np.zeros((0, 2), np.float32), np.zeros(0)
        pts_list.append(pt)
        lab_list.append(lb.astype(np.int32))
        if p.get("box") is not None:
            b, _ = _boxes_from(p["box"], key(i, "box"))
            if len(b) != 1:
                raise ValueError(f"{key(i, 'box')} must be one [x1, y1, x2, y2], got {len(b)} boxes")
            boxes.append(b[0])
        else:
            boxes.append(np.full(4, np.nan, np.float32))
        masks.append(p.get("mask"))
        cls.append(_int_of(p.get("cls"), key(i, "cls"), 0))
        ids.append(_int_of(p.get("id"), key(i, "id"), -1))
    n, pmax = len(prompts), max(len(p) for p in pts_list)
    points = np.zeros((n, pmax, 2), np.float32)
    labels = np.full((n, pmax), -1, np.int32)
    for i, (pt, lb) in enumerate(zip(pts_list, lab_list)):
        points[i, : len(pt)], labels[i, : len(lb)] = pt, lb
    mstack, is_logits = None, False
    given = [m for m in masks if m is not None]
    if given:
        stacks = [_mask_stack(m, image_hw, low_res, key(i, "mask")) for i, m in enumerate(masks) if m is not None]
        kinds = {s[1] for s in stacks}
        if len(kinds) > 1:
            raise ValueError("mask prompts mix image-size binary masks and low-resolution logits")
        is_logits = kinds.pop()
        shape = stacks[0][0].shape[1:]
        mstack = np.full((n, *shape), np.nan, np.float32)
        it = iter(stacks)
        for i, m in enumerate(masks):
            if m is not None:
                s = next(it)[0]
                if len(s) != 1:
                    raise ValueError(f"{key(i, 'mask')} must be one HxW mask, got {len(s)}")
                mstack[i] = s[0]
    return ObjectPrompts(points=points, labels=labels, boxes=np.stack(boxes).astype(np.float32), masks=mstack,
                         mask_is_logits=is_logits, cls=np.array(cls, np.int64), track_id=np.array(ids, np.int64))


def _is_box_list(value) -> bool:
    """Whether ``value`` is one image's boxes as a list: empty, or a list / array of [x1, y1, x2, y2] rows."""
    if isinstance(value, np.ndarray) or hasattr(value, "detach"):
        return value.ndim == 2 or (value.ndim == 1 and value.shape[0] == 0)
    return isinstance(value, (list, tuple)) and all(
        isinstance(b, (list, tuple, np.ndarray)) or hasattr(b, "detach") for b in value)


def boxes_per_image(bboxes) -> bool:
    """Whether ``bboxes`` holds one list of boxes per image (``[[b1], [b2, b3], []]``, or an (N, K, 4) array) rather
    than boxes for one image (``[x1, y1, x2, y2]`` or ``[[x1, y1, x2, y2], ...]``)."""
    if getattr(bboxes, "ndim", 0) == 3:
        return True
    return isinstance(bboxes, (list, tuple)) and len(bboxes) > 0 and all(_is_box_list(b) for b in bboxes) and any(
        len(b) == 0 or isinstance(b[0], (list, tuple, np.ndarray)) or hasattr(b[0], "detach") for b in bboxes)


def check_unique_ids(prompts: ObjectPrompts) -> None:
    """A ``ValueError`` naming the id when two objects of one image carry the same id (prompts' ``'id'``, YOLO track
    ids): every consumer of ids (trackers, supervision, the writers' id columns) would take them for one object."""
    ids = prompts.track_id[prompts.track_id >= 0]
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = int(values[counts > 1][0])
        where = [int(i) for i in np.flatnonzero(prompts.track_id == dup)]
        raise ValueError(f"object id {dup} is given to {int(counts[counts > 1][0])} objects (prompts {where}): each "
                         "object of an image needs its own id")


def boxes_outside(b: np.ndarray, has: np.ndarray, image_hw: tuple[int, int], box_name: str = "bboxes[{i}]"):
    """Which xyxy boxes ``b`` (those where ``has``) reach outside an image of size ``image_hw``; a box entirely
    outside it is an error (``box_name`` formats its name from its index ``i``)."""
    h, w = image_hw
    outside = has & ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h))
    # Reaching out of the image and not into it: clipping would leave a zero-area box on the border, which the model
    # still answers with a mask. (A degenerate box inside the image is left alone.)
    off = outside & ((b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 2] <= 0) | (b[:, 3] <= 0))
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(
            f"{box_name.format(i=i)} = {_coords(b[i])} lies entirely outside the {w}x{h} image (width x height); "
            "a box must overlap the image"
        )
    return outside


def _clip(p: ObjectPrompts, image_hw: tuple[int, int], box_name: str = "bboxes[{i}]") -> None:
    """Clip points and boxes to the image, with a warning; a box entirely outside it is an error (``box_name``
    formats its name from its index ``i``)."""
    h, w = image_hw
    real = p.labels >= 0
    px, py = p.points[..., 0], p.points[..., 1]
    outside_pts = real & ((px < 0) | (px > w) | (py < 0) | (py > h))
    b = p.boxes
    has = p.has_box
    outside_box = boxes_outside(b, has, image_hw, box_name)
    if outside_pts.any() or outside_box.any():
        LOGGER.warning(
            "%d point(s) and %d box(es) reach outside the %dx%d image; clipped to it",
            int(outside_pts.sum()), int(outside_box.sum()), w, h,
        )
        np.clip(p.points[..., 0], 0, w, out=p.points[..., 0])
        np.clip(p.points[..., 1], 0, h, out=p.points[..., 1])
        b[has, 0::2] = np.clip(b[has, 0::2], 0, w)
        b[has, 1::2] = np.clip(b[has, 1::2], 0, h)
