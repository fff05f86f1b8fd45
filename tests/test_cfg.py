"""Settings: one defaults file, one merge order, unknown keys fail with suggestions."""

from __future__ import annotations

import pytest

from samkit.cfg import ConfigError, defaults, get_cfg, parse_key_values, parse_value


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


def test_defaults_file_agrees_with_the_code():
    """default.yaml is the one place users read defaults: the segment-everything and video values there are the
    ones the code uses, and every setting a CLI mode reads exists."""
    import dataclasses
    import inspect

    from samkit.cfg import defaults
    from samkit.cli import _EVERYTHING, MODE_KEYS
    from samkit.engine.everything import EverythingConfig
    from samkit.engine.video import VideoSession

    d = defaults()
    fields = {f.name: f.default for f in dataclasses.fields(EverythingConfig) if f.init}
    for key in _EVERYTHING:
        assert d[key] == fields[key], key
    params = inspect.signature(VideoSession).parameters
    for key in ("fill_hole_area", "correct_as_cond", "max_prompt_frames"):
        assert d[key] == params[key].default, key
    for mode, keys in MODE_KEYS.items():
        assert set(keys) <= set(d), (mode, set(keys) - set(d))
