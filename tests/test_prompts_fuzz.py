"""Property-based tests of ``normalize_prompts``: any input either gives consistent prompts or a short, clear
ValueError / TypeError; well-formed prompts always succeed with the expected values.

``PROMPTS_FUZZ_SCALE`` (default 1) multiplies the number of examples, e.g. ``PROMPTS_FUZZ_SCALE=20`` for a long
local run.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from samkit.prompts import PROMPT_KEYS, ObjectPrompts, normalize_prompts

H, W = HW = (48, 64)
LOW = 16
NAMES = {0: "person", 1: "car", 2: "dog"}
ARG_NAMES = ("bboxes", "points", "labels", "masks", "mask", "prompts", "box", "cls", "id")

SCALE = max(1, int(os.environ.get("PROMPTS_FUZZ_SCALE", "1")))


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------------------------------------------- strategies

SPECIAL = [10**400, -(10**400), 2**70, -(2**70), 2**63, 2**64, -(2**63) - 1, 1e39, -1e39, 3.4e38, 1e30,
           float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, np.float64("nan"), np.int64(7),
           np.uint64(2**64 - 1), np.float32(3.0), np.bool_(True)]


def _special(i: int):
    return SPECIAL[i]  # (sampled through an index: the strategy's repr would hold 10**400 in full)


numbers = st.one_of(
    st.integers(-20, W + 20),
    st.floats(-20, W + 20),
    st.floats(),
    st.integers(),
    st.sampled_from(range(len(SPECIAL))).map(_special),
    st.booleans(),
)
junk_scalars = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.complex_numbers(max_magnitude=100),
    st.sampled_from(["1", "nan", b"2", " 3 ", object(), Ellipsis, slice(1, 2), {1, 2}, {}, [], ()]),
)

SHAPES = [(), (0,), (1,), (2,), (3,), (4,), (5,), (0, 4), (1, 4), (2, 4), (3, 4), (1, 2), (2, 2), (3, 2), (0, 2),
          (1, 1, 2), (2, 1, 2), (1, 3, 2), (2, 3, 2), (2, 0, 2), (2, 2, 4), (1, 4, 1)]
MASK_SHAPES = [(H, W), (1, H, W), (2, H, W), (0, H, W), (1, 1, H, W), (2, 1, H, W), (LOW, LOW), (1, LOW, LOW),
               (3, LOW, LOW), (0, LOW, LOW), (W, H), (H, W, 3), (LOW, LOW, LOW), (1, 2, H, W), (H,), (LOW, 2 * LOW)]


def quarters(lo: float, hi: float) -> st.SearchStrategy:
    """Multiples of 0.25 in [lo, hi]: exact in float16/32/64 (``floats(width=32)`` rejects draws now and then)."""
    return st.integers(int(lo * 4), int(hi * 4)).map(lambda i: i / 4)


def grid(shape: tuple, elements: st.SearchStrategy) -> st.SearchStrategy:
    """Nested Python lists of ``shape`` (regular: every row the same length)."""
    if not shape:
        return elements
    return st.lists(grid(shape[1:], elements), min_size=shape[0], max_size=shape[0])


@st.composite
def big_arrays(draw, dtypes: st.SearchStrategy) -> np.ndarray:
    """Mask-sized arrays, built with numpy (hypothesis draws each element of hnp.arrays, which is slow at this size):
    a fill value, a random 0/1 or Gaussian pattern, and a few drawn values at drawn places."""
    shape, dtype = draw(st.sampled_from(MASK_SHAPES)), draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pattern = draw(st.sampled_from(["fill", "binary", "normal"]))
    if pattern == "fill" or dtype.kind not in "biufc":
        arr = np.full(shape, draw(hnp.from_dtype(dtype)), dtype)
    elif pattern == "binary":
        arr = rng.integers(0, 2, shape).astype(dtype)
    else:
        arr = (rng.normal(size=shape) * 10).astype(dtype)
    for _ in range(draw(st.integers(0, 2)) if arr.size else 0):
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(hnp.from_dtype(dtype))
    return arr


any_dtype = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.byte_string_dtypes(max_len=3),
    hnp.datetime64_dtypes(),
    hnp.timedelta64_dtypes(),
)
small_shapes = st.one_of(st.sampled_from(SHAPES), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
arrays = st.one_of(
    hnp.arrays(any_dtype, small_shapes),
    big_arrays(any_dtype),
    hnp.arrays(st.sampled_from([np.float32, np.float64]), st.sampled_from(SHAPES), elements=quarters(-20, W + 20)),
    hnp.arrays(np.int64, st.sampled_from(SHAPES), elements=st.integers(-20, W + 20)),
)

TORCH_DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
                np.complex64]


def _tensor(arr: np.ndarray, variant: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if variant == "grad" and t.is_floating_point():
        return t.clone().requires_grad_()
    if variant == "bfloat16" and (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        return t.to(torch.bfloat16)
    if variant == "transposed" and t.ndim >= 2:
        return t.transpose(-1, -2)
    return t


tensors = st.builds(
    _tensor,
    st.one_of(hnp.arrays(st.sampled_from(TORCH_DTYPES), small_shapes),
              big_arrays(st.sampled_from(TORCH_DTYPES).map(np.dtype))),
    st.sampled_from(["plain", "grad", "bfloat16", "transposed"]),
)


@st.composite
def yolo_results(draw, valid: bool = False, max_n: int = 4):
    """An Ultralytics Results of a detection on an HxW image: boxes, confidences, classes and maybe track ids."""
    from ultralytics.engine.results import Results as YoloResults

    if not valid and draw(st.integers(0, 9)) == 0:  # a classification result has no boxes
        probs = torch.tensor([0.2, 0.5, 0.3])
        return YoloResults(np.zeros((H, W, 3), np.uint8), path="x.jpg", names=NAMES, probs=probs)
    n = draw(st.integers(1 if valid else 0, max_n))
    tracked = draw(st.booleans())
    rows = []
    for i in range(n):
        box = draw(valid_box_values()) if valid else draw(st.lists(quarters(-2 * W, 3 * W), min_size=4, max_size=4))
        extra = [float(i + 1)] if tracked else []
        rows.append([*box, *extra, draw(quarters(0, 1)), float(draw(st.sampled_from(sorted(NAMES))))])
    data = torch.tensor(rows, dtype=torch.float32).reshape(n, 7 if tracked else 6)
    return YoloResults(np.zeros((H, W, 3), np.uint8), path="x.jpg", names=NAMES, boxes=data)


yolo_things = st.one_of(
    yolo_results(),
    yolo_results().map(lambda r: r.boxes if r.boxes is not None else r),
    st.lists(yolo_results(), max_size=3),
    st.lists(yolo_results(), min_size=1, max_size=3).map(tuple),
    st.tuples(yolo_results(), numbers).map(list),
)


def nested_values(leaves: st.SearchStrategy) -> st.SearchStrategy:
    """Ragged / mixed nests of lists and tuples."""
    def extend(kids):
        return st.one_of(st.lists(kids, max_size=5), st.lists(kids, max_size=5).map(tuple))

    return st.recursive(leaves, extend, max_leaves=16)


leaves = st.one_of(numbers, numbers, junk_scalars, hnp.arrays(any_dtype, small_shapes), tensors)
shaped_lists = st.sampled_from(SHAPES).flatmap(lambda s: st.one_of(grid(s, numbers), grid(s, st.integers(-20, W + 20))))


@st.composite
def any_value(draw):
    """Anything a caller might pass as one argument (a composite, so that the strategy's repr stays short)."""
    return draw(_any_value)


_any_value = st.deferred(
    lambda: st.one_of(
        st.none(),
        leaves,
        shaped_lists,
        shaped_lists.map(lambda v: tuple(v) if isinstance(v, list) else v),
        nested_values(leaves),
        arrays,
        tensors,
        yolo_things,
        valid_values,
        st.dictionaries(st.sampled_from(PROMPT_KEYS) | st.text(max_size=5), leaves, max_size=3),
    )
)
values = any_value()

# Well-formed values, used alone (must succeed) and mixed into the fuzzing (so that it reaches the success path and
# the checks that come after the first ones).


@st.composite
def valid_box_values(draw) -> list:
    """[x1, y1, x2, y2] overlapping the image (possibly reaching out of it, possibly zero-width inside it)."""
    cx, cy = draw(st.integers(1, W - 1)), draw(st.integers(1, H - 1))
    left, right, up, down = (draw(st.integers(0, 30)) for _ in range(4))
    box = [cx - left, cy - up, cx + right, cy + down]
    if draw(st.booleans()):
        frac = draw(st.floats(0, 0.75))
        box = [box[0] - frac, box[1] - frac, box[2] + frac, box[3] + frac]
    return box


points_xy = st.tuples(st.integers(-10, W + 10) | st.floats(-10, W + 10),
                      st.integers(-10, H + 10) | st.floats(-10, H + 10))


def as_form(value, form: str):
    """The same numbers as a list, tuple, numpy array or torch tensor."""
    if form == "tuple":
        return _tuples(value)
    if form == "numpy":
        return np.asarray(value, np.float64)
    if form == "numpy32":
        return np.asarray(value, np.float32)
    if form == "torch":
        return torch.tensor(value, dtype=torch.float32)
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# which of three prompt kinds (box, points, mask) to give: at least one
some_of_three = st.integers(1, 7).map(lambda m: (bool(m & 1), bool(m & 2), bool(m & 4)))
forms = st.sampled_from(["list", "tuple", "numpy", "numpy32", "torch"])


@st.composite
def valid_masks(draw, n: int, single: bool):
    kind = draw(st.sampled_from(["bool", "uint8", "float01", "logits", "logits16"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind.startswith("logits"):
        arr = (rng.normal(size=(n, LOW, LOW)) * draw(st.sampled_from([0.0, 1.0, 30.0]))).astype(np.float32)
        arr = arr.astype(np.float16) if kind == "logits16" else arr
    else:
        arr = rng.random((n, H, W)) < draw(st.sampled_from([0.0, 0.3, 1.0]))
        arr = arr if kind == "bool" else arr.astype(np.uint8 if kind == "uint8" else np.float32)
    if single and n == 1 and draw(st.booleans()):
        arr = arr[0]
    elif draw(st.booleans()):
        arr = arr[:, None]  # N x 1 x h x w, as SAM returns them
    return torch.from_numpy(arr) if draw(st.booleans()) else arr


@st.composite
def valid_ultralytics(draw):
    """Ultralytics-style kwargs and what they mean: (kwargs, N, boxes (N, 4) or None, points (N, P, 2) or None,
    labels (N, P))."""
    n = draw(st.integers(1, 4))
    use = draw(some_of_three)
    kw, boxes, pts, labs = {}, None, None, None
    if use[0]:
        boxes = [draw(valid_box_values()) for _ in range(n)]
        kw["bboxes"] = as_form(boxes[0] if n == 1 and draw(st.booleans()) else boxes, draw(forms))
    if use[1]:
        p = draw(st.integers(1, 3))
        pts = [[list(draw(points_xy)) for _ in range(p)] for _ in range(n)]
        labs = [[draw(st.sampled_from([0, 1])) for _ in range(p)] for _ in range(n)]
        if p == 1 and n == 1 and draw(st.booleans()):
            kw["points"], lab_value = pts[0][0], labs[0][0]  # one [x, y]
        elif p == 1 and draw(st.booleans()):
            kw["points"], lab_value = [o[0] for o in pts], [o[0] for o in labs]  # flat: one point per object
        elif n == 1 and draw(st.booleans()):
            kw["points"], lab_value = pts, labs[0]  # one object's clicks, flat labels
        else:
            kw["points"], lab_value = pts, labs
        kw["points"] = as_form(kw["points"], draw(forms))
        if draw(st.booleans()):
            kw["labels"] = lab_value if draw(st.booleans()) else np.asarray(lab_value)
        else:
            labs = [[1] * p for _ in range(n)]
    if use[2]:
        kw["masks"] = draw(valid_masks(n, single=True))
    return kw, n, boxes, pts, labs


@st.composite
def valid_prompt_dicts(draw):
    """The explicit form: (prompts, boxes, points, labels) with None for what an object lacks."""
    n = draw(st.integers(1, 4))
    mask_stack = draw(valid_masks(n, single=False))
    items, boxes, pts, labs = [], [], [], []
    for i in range(n):
        use = draw(some_of_three)
        d: dict = {}
        boxes.append(draw(valid_box_values()) if use[0] else None)
        if use[0]:
            d["box"] = as_form(boxes[-1], draw(forms))
        if use[1]:
            p = draw(st.integers(1, 4))
            pts.append([list(draw(points_xy)) for _ in range(p)])
            labs.append([draw(st.sampled_from([0, 1])) for _ in range(p)])
            d["points"] = as_form(pts[-1], draw(forms))
            if draw(st.booleans()):
                d["labels"] = labs[-1]
            else:
                labs[-1] = [1] * p
        else:
            pts.append([])
            labs.append([])
        if use[2]:
            d["mask"] = mask_stack[i]
        if draw(st.booleans()):
            d["cls"] = draw(st.integers(0, 2))
        if draw(st.booleans()):
            d["id"] = draw(st.integers(0, 50))
        items.append(d)
    prompts = items[0] if n == 1 and draw(st.booleans()) else items
    return prompts, boxes, pts, labs


valid_values = st.one_of(
    valid_box_values(),
    st.lists(valid_box_values(), min_size=1, max_size=3),
    points_xy.map(list),
    st.lists(points_xy.map(list), min_size=1, max_size=3),
    st.lists(st.sampled_from([0, 1]), min_size=1, max_size=3),
    yolo_results(valid=True),
    valid_masks(1, single=True),
    valid_prompt_dicts().map(lambda t: t[0]),
)


@st.composite
def valid_plus_fuzz(draw) -> dict:
    """Well-formed Ultralytics kwargs with arbitrary values in the arguments they leave out."""
    kwargs = draw(valid_ultralytics())[0]
    for k in ("bboxes", "points", "labels", "masks"):
        if k not in kwargs and draw(st.booleans()):
            kwargs[k] = draw(values)
    return kwargs


fuzz_kwargs = st.one_of(
    st.fixed_dictionaries({}, optional={k: values for k in ("bboxes", "points", "labels", "masks")}),
    st.fixed_dictionaries({"prompts": values}),
    st.fixed_dictionaries(
        {"prompts": st.one_of(
            st.lists(st.dictionaries(st.sampled_from(PROMPT_KEYS), values, max_size=4), max_size=3),
            st.dictionaries(st.sampled_from(PROMPT_KEYS), values, min_size=1, max_size=4),
            st.lists(st.dictionaries(st.sampled_from(PROMPT_KEYS) | st.text(max_size=40) | numbers, values,
                                     max_size=3), max_size=2),
        )}
    ),
    valid_plus_fuzz(),
)


# ---------------------------------------------------------------------------------------------------- checks


def assert_consistent(out: ObjectPrompts, hw=HW, low_res=LOW) -> None:
    """Everything downstream relies on: shapes and dtypes, finite coordinates inside the image, labels in {-1, 0, 1}
    with padding last, masks of the announced kind, and at least one prompt per object."""
    h, w = hw
    assert isinstance(out, ObjectPrompts)
    n = len(out)
    assert out.points.dtype == np.float32 and out.points.ndim == 3 and out.points.shape[::2] == (n, 2)
    assert out.labels.dtype == np.int32 and out.labels.shape == out.points.shape[:2]
    assert set(np.unique(out.labels).tolist()) <= {-1, 0, 1}
    real = out.labels >= 0
    assert (np.sort(~real, axis=1) == ~real).all(), "padding (-1) must come after an object's clicks"
    pts = out.points[real]
    assert np.isfinite(pts).all()
    assert ((pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)).all(), pts
    assert out.boxes.dtype == np.float32 and out.boxes.shape == (n, 4)
    has = out.has_box
    assert np.isnan(out.boxes[~has]).all()
    b = out.boxes[has]
    assert np.isfinite(b).all()
    assert ((0 <= b[:, 0]) & (b[:, 0] <= b[:, 2]) & (b[:, 2] <= w)).all(), b
    assert ((0 <= b[:, 1]) & (b[:, 1] <= b[:, 3]) & (b[:, 3] <= h)).all(), b
    has_mask = out.has_mask
    if out.masks is not None:
        assert out.masks.dtype == np.float32 and len(out.masks) == n
        assert out.masks.shape[1:] == ((low_res, low_res) if out.mask_is_logits else (h, w))
        m = out.masks[has_mask]
        assert np.isfinite(m).all()
        assert np.isnan(out.masks[~has_mask]).all()
        if not out.mask_is_logits:
            assert ((m >= 0) & (m <= 1)).all()
    assert ((out.num_points > 0) | has | has_mask).all(), "every object needs a prompt"
    assert out.cls.dtype == np.int64 and out.cls.shape == (n,)
    assert out.conf.dtype == np.float32 and out.conf.shape == (n,) and np.isfinite(out.conf).all()
    assert out.track_id.dtype == np.int64 and out.track_id.shape == (n,)
    assert isinstance(out.names, dict)


def call(hw=HW, **kwargs):
    """normalize_prompts with numpy / torch warnings raised as errors: returns its result or the ValueError /
    TypeError it raised (anything else fails the test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return normalize_prompts(hw, low_res=LOW, **kwargs)
        except (ValueError, TypeError) as e:
            if type(e) not in (ValueError, TypeError):  # e.g. numpy's AxisError or a UnicodeError
                raise
            return e


def clip_box(box) -> list[float]:
    x1, y1, x2, y2 = np.asarray(box, np.float32).tolist()
    return [min(max(x1, 0), W), min(max(y1, 0), H), min(max(x2, 0), W), min(max(y2, 0), H)]


def clip_point(p) -> list[float]:
    x, y = np.asarray(p, np.float32).tolist()
    return [min(max(x, 0), W), min(max(y, 0), H)]


# ---------------------------------------------------------------------------------------------------- properties


@fuzz_settings(1500)
@given(fuzz_kwargs)
def test_any_input_gives_prompts_or_a_clear_error(kwargs):
    out = call(**kwargs)
    if isinstance(out, Exception):
        msg = str(out)
        event(f"{type(out).__name__}: {msg.split(' ')[0]}")
        assert msg.strip(), f"{type(out).__name__} without a message"
        assert len(msg) < 500, f"message of {len(msg)} characters: {msg[:200]}..."
        assert any(name in msg for name in ARG_NAMES), f"the message names no argument: {msg}"
    elif out is None:
        event("None")
        assert all(kwargs.get(k) is None for k in ("bboxes", "points", "masks", "prompts"))
    else:
        event("ObjectPrompts")
        assert_consistent(out)


@fuzz_settings(400)
@given(valid_ultralytics())
def test_valid_ultralytics_prompts_succeed(case):
    kwargs, n, boxes, pts, labs = case
    out = call(**kwargs)
    assert isinstance(out, ObjectPrompts), f"{kwargs} -> {out!r}"
    assert_consistent(out)
    assert len(out) == n
    if boxes is not None:
        assert np.allclose(out.boxes, [clip_box(b) for b in boxes])
    else:
        assert not out.has_box.any()
    if pts is not None:
        assert np.allclose(out.points, [[clip_point(p) for p in obj] for obj in pts])
        assert out.labels.tolist() == labs
    assert out.has_mask.all() == ("masks" in kwargs)


@fuzz_settings(300)
@given(valid_prompt_dicts())
def test_valid_prompt_dicts_succeed(case):
    prompts, boxes, pts, labs = case
    out = call(prompts=prompts)
    assert isinstance(out, ObjectPrompts), f"{prompts} -> {out!r}"
    assert_consistent(out)
    items = [prompts] if isinstance(prompts, dict) else prompts
    assert len(out) == len(items)
    for i, d in enumerate(items):
        if boxes[i] is None:
            assert not out.has_box[i]
        else:
            assert np.allclose(out.boxes[i], clip_box(boxes[i]))
        p, lab = out.object_points(i)
        assert lab.tolist() == labs[i]
        assert np.allclose(p.reshape(-1, 2), [clip_point(q) for q in pts[i]] or np.zeros((0, 2)))
        assert out.has_mask[i] == ("mask" in d)
        assert out.cls[i] == d.get("cls", 0) and out.track_id[i] == d.get("id", -1)


@fuzz_settings(150)
@given(yolo_results(valid=True), st.sampled_from(["results", "boxes", "list", "tuple"]))
def test_valid_yolo_results_carry_their_metadata(res, wrap):
    source = {"results": res, "boxes": res.boxes, "list": [res], "tuple": (res,)}[wrap]
    out = call(bboxes=source)
    assert isinstance(out, ObjectPrompts), out
    assert_consistent(out)
    assert np.allclose(out.boxes, [clip_box(b) for b in res.boxes.xyxy.tolist()])
    assert out.cls.tolist() == res.boxes.cls.long().tolist()
    assert np.allclose(out.conf, res.boxes.conf.numpy())
    ids = res.boxes.id
    assert out.track_id.tolist() == (ids.long().tolist() if ids is not None else [-1] * len(out))
    assert out.names == (NAMES if wrap != "boxes" else {})


@st.composite
def any_box(draw) -> list[float]:
    """[x1, y1, x2, y2] with x1 <= x2, y1 <= y2 anywhere around the image, often on or across its borders."""
    coord = st.one_of(quarters(-2 * W, 3 * W), st.sampled_from([0, W, H, -1, W + 1, H + 1, 0.25]))
    x1, x2 = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
    y1, y2 = sorted(draw(st.lists(coord, min_size=2, max_size=2)))
    return [x1, y1, x2, y2]


@fuzz_settings(200)
@given(st.lists(any_box(), min_size=1, max_size=3), st.booleans())
def test_a_box_is_refused_exactly_when_it_lies_outside_the_image(boxes, as_dicts):
    """Refused: a box that reaches out of the image and into none of its interior (clipping would flatten it onto
    the border). Kept, clipped: every other box, including degenerate ones inside the image."""
    out = call(prompts=[{"box": b} for b in boxes]) if as_dicts else call(bboxes=boxes)

    def outside(b):
        x1, y1, x2, y2 = b
        reaches_out = x1 < 0 or y1 < 0 or x2 > W or y2 > H
        meets_interior = x1 < W and x2 > 0 and y1 < H and y2 > 0
        return reaches_out and not meets_interior

    first = next((i for i, b in enumerate(boxes) if outside(b)), None)
    if first is None:
        assert isinstance(out, ObjectPrompts), out
        assert out.boxes.tolist() == [clip_box(b) for b in boxes]
    else:
        name = f"prompts[{first}]['box']" if as_dicts else f"bboxes[{first}]"
        coords = ", ".join(f"{v:g}" for v in boxes[first])
        assert isinstance(out, ValueError), out
        assert str(out).startswith(f"{name} = [{coords}] lies entirely outside the {W}x{H} image"), str(out)


@pytest.mark.parametrize("n", [2, 3])
def test_several_yolo_results_for_one_image_are_refused(n):
    from ultralytics.engine.results import Results as YoloResults

    res = YoloResults(np.zeros((H, W, 3), np.uint8), path="x.jpg", names=NAMES,
                      boxes=torch.tensor([[1.0, 2, 30, 40, 0.9, 0]]))
    out = call(bboxes=[res] * n)
    assert isinstance(out, ValueError) and f"{n} YOLO Results" in str(out)
