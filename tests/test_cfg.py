"""Settings: one defaults file, one merge order, unknown keys fail with suggestions."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from samkit.cfg import ConfigError, defaults, get_cfg, load_yaml, parse_key_values, parse_value, preview


def test_merge_order(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("model: from_file.pt\nhalf: true\n")
    cfg = get_cfg(f, {"model": "from_args.pt"})
    assert cfg["model"] == "from_args.pt" and cfg["half"] is True
    assert cfg["device"] == defaults()["device"]
    assert get_cfg({"half": True})["half"] is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modle": "x"}, r"unknown setting 'modle' \(did you mean 'model'\?\)"),
        ({"devise": "cpu"}, "did you mean 'device'"),
        ({"zzz": 1}, "unknown setting 'zzz'; see"),
        ({"half": "yes"}, "half='yes' must be True or False"),
        ({"model": 3}, "model=3 must be a string"),
    ],
)
def test_bad_settings(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_cfg(None, overrides)


def test_bad_cfg_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        get_cfg(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        get_cfg(f)
    f.write_text("verbos: false\n")
    with pytest.raises(ConfigError, match="did you mean 'verbose'"):
        get_cfg(f)


@pytest.mark.parametrize(
    "text, value",
    [("[100,100,200,200]", [100, 100, 200, 200]), ("True", True), ("false", False), ("0.5", 0.5), ("3", 3),
     ("None", None), ("sam2.1_b.pt", "sam2.1_b.pt"), ("bus.jpg", "bus.jpg"), ("cuda:0", "cuda:0"),
     ("[[1, 2], [3, 4]]", [[1, 2], [3, 4]])],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_parse_key_values():
    assert parse_key_values(["model=a.pt", "half=True", "--device=0"]) == {"model": "a.pt", "half": True, "device": 0}
    with pytest.raises(ConfigError, match="'model' is not key=value"):
        parse_key_values(["model"])
    with pytest.raises(ConfigError, match="'=x' is not key=value"):
        parse_key_values(["=x"])


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded, a few hundred bytes as YAML."""
    lines = ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    lines += [f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi")]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_refused_quickly(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(billion_laughs())
    assert f.stat().st_size < 500
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match=r"bomb.yaml' uses the YAML alias \*a \(line 2\); aliases are refused"):
            get_cfg(f)
        seconds, (_, peak) = time.perf_counter() - t, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 1 and peak < 5 * 2**20
    f.write_text("model: &m a.pt\nsource: *m\n")  # any alias, however harmless: settings files never need one
    with pytest.raises(ConfigError, match=r"alias \*m \(line 2\)"):
        load_yaml(f)


def test_settings_file_still_loads(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text(
        "# my settings\nmodel: sam2.1_t.pt   # tiny\ndevice: cpu\nhalf: false\n"
        "bboxes: [[10, 20, 110, 220], [5, 5, 50, 50]]\n"
        "points:\n  - [30, 40]\n  - [50, 60]\npred_iou_thresh: null\nstability_score_thresh: 0.9\n"
        "crop_n_layers: 1\nsource: 'imgs/*.jpg'\n"
    )
    cfg = get_cfg(f)
    assert cfg["model"] == "sam2.1_t.pt" and cfg["device"] == "cpu" and cfg["half"] is False
    assert cfg["bboxes"] == [[10, 20, 110, 220], [5, 5, 50, 50]] and cfg["points"] == [[30, 40], [50, 60]]
    assert cfg["pred_iou_thresh"] is None and cfg["stability_score_thresh"] == 0.9 and cfg["crop_n_layers"] == 1
    assert cfg["source"] == "imgs/*.jpg"
    f.write_text("")
    assert load_yaml(f) == {}


def test_huge_values_give_short_messages(tmp_path):
    nested = ["x"] * 10
    for _ in range(40):
        nested = [nested] * 10  # 10**41 strings if printed in full
    cases = [
        lambda: get_cfg(None, {"half": "y" * 10**6}),
        lambda: get_cfg(None, {"half": nested}),
        lambda: get_cfg(None, {"model": 10**5000}),
        lambda: get_cfg(None, {"k" * 10**6: 1}),
        lambda: parse_key_values(["z" * 10**6]),
    ]
    f = tmp_path / "big.yaml"
    big_files = ["half: " + "n" * 10**5, "model: " + "1" * 6000, "x" * 10**5 + ": 1",
                 "points: " + "[" * 3000 + "]" * 3000, "model: [1, 2\n" + "#" * 10**5]
    for text in big_files:
        cases.append(lambda text=text: (f.write_text(text), get_cfg(f)))
    for case in cases:
        t = time.perf_counter()
        with pytest.raises(ConfigError) as e:
            case()
        assert len(str(e.value)) < 400, str(e.value)[:400]
        assert time.perf_counter() - t < 3
    assert preview("a" * 10**6).startswith("'aaa") and preview("a" * 10**6).endswith("aaa'")
    assert len(preview(nested)) <= 80 and preview([1, "b", None]) == "[1, 'b', None]"


def test_bad_yaml_names_the_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("model: a.pt\nhalf: [true\n")
    with pytest.raises(ConfigError, match=r"broken.yaml' is not valid YAML: .*\(line 3, column 1\)"):
        get_cfg(f)


def test_defaults_file_agrees_with_the_code():
    """default.yaml is the one place users read defaults: every Python default of a setting it lists (the SAM
    constructor, predict, track, video sessions, segment-everything, auto_annotate) is the value there, the shared
    lists (output settings, segment-everything settings, the default model) are the ones the code uses, and every
    setting a CLI mode reads exists."""
    import dataclasses
    import inspect

    from samkit import SAM, auto_annotate
    from samkit.app import AppServer, open_project
    from samkit.cfg import (
        CONCEPT_TRACKING_KEYS,
        DEFAULT_CFG_PATH,
        DEFAULT_MODEL,
        EVERYTHING_KEYS,
        OUTPUT_KEYS,
        defaults,
    )
    from samkit.cli import MODE_KEYS
    from samkit.engine.everything import EverythingConfig
    from samkit.engine.video import VideoSession

    d = defaults()
    assert d["model"] == DEFAULT_MODEL
    fields = {f.name: f.default for f in dataclasses.fields(EverythingConfig) if f.init}
    assert set(EVERYTHING_KEYS) == set(fields) - {"point_grids", "multimask"}
    for key in EVERYTHING_KEYS:
        assert d[key] == fields[key], key
    from samkit.engine.concept_video import ConceptTracking

    tracking = {f.name: f.default for f in dataclasses.fields(ConceptTracking)}
    assert set(CONCEPT_TRACKING_KEYS) == set(tracking) - {"fill_hole_area"}  # shared with SAM 2's video tracking
    for key in CONCEPT_TRACKING_KEYS:
        assert d[key] == tracking[key], key
    assert tracking["fill_hole_area"] == 16 and "SAM 3's tracking: 16" in (DEFAULT_CFG_PATH.read_text())
    # Python-only differences, each documented in default.yaml: the command line saves overlays by default, and
    # annotate takes the SAM model under its own name and writes polygons unless rle=True.
    python_only = {"save": False, "sam_model": DEFAULT_MODEL}
    checked = set()
    per_call = ("verbose", "device")  # None per call: the model's own
    # predict / track take prompts=[{...}] (objects, Python only); val's prompts= names prompt kinds ("box,click")
    from samkit.val import run as val_run

    for call, skip in ((SAM.__init__, ()), (SAM.predict, (*per_call, "prompts")),
                       (SAM.track, (*per_call, "prompts")), (SAM.val, per_call),
                       (val_run, ()),
                       (VideoSession.__init__, ("names",)),
                       (auto_annotate, ("rle", "output_dir", "labels")), (open_project, ("rle",)),
                       (AppServer.__init__, ())):
        for name, p in inspect.signature(call).parameters.items():
            if name in d and name not in skip and p.default is not inspect.Parameter.empty:
                want = python_only.get(name, d[name])
                assert p.default == want, f"{call.__qualname__}({name}={p.default!r}) but default.yaml says {d[name]!r}"
                checked.add(name)
    assert {"model", "device", "half", "compile", "cache", "batch", "multimask", "max_pixels", "frame", "max_frames",
            "fill_hole_area", "correct_as_cond", "max_prompt_frames", "conf", "iou", "imgsz", "max_det", "format",
            "empty", "engine", "sam_model", "out", "names", "video", "host", "port", "token", "prompts", "split",
            "max_clicks", "stop_iou", "min_area", "worst", "plots", *OUTPUT_KEYS} <= checked
    predict = inspect.signature(SAM.predict).parameters
    track = inspect.signature(SAM.track).parameters
    assert all(k in predict and k in track for k in OUTPUT_KEYS)
    for mode, keys in MODE_KEYS.items():
        assert set(keys) <= set(d), (mode, set(keys) - set(d))
