"""Settings: the defaults file, merging, validation and ``key=value`` parsing.

One source of truth (``default.yaml``) and one merge order, highest priority last::

    {**defaults, **cfg_file, **overrides}

Unknown keys fail with close-match suggestions; values keep the type of their default.
"""

from __future__ import annotations

import ast
import difflib
import reprlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CFG_DIR = Path(__file__).resolve().parent
DEFAULT_CFG_PATH = CFG_DIR / "default.yaml"


class ConfigError(ValueError):
    """An unknown setting, or a value of the wrong type."""


PREVIEW_CHARS = 80
"""Most characters of a user's value (or key) an error message shows."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, PREVIEW_CHARS, PREVIEW_CHARS, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 4


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A short ``repr`` of ``value`` for messages: nested and long values abridged, at most ``limit`` characters
    (the middle cut out), whatever the value's size."""
    try:
        if isinstance(value, str):  # its head and tail only: the middle is cut out below anyway
            text = repr(value if len(value) <= 2 * limit else value[:limit] + value[-limit:])
        else:
            text = _REPR.repr(value)
    except Exception:  # a repr that fails (an int of too many digits, a broken object)
        text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
    if len(text) > limit:
        half = (limit - 3) // 2
        text = text[:half] + "..." + text[len(text) - (limit - 3 - half) :]
    return text


class _AliasFound(yaml.YAMLError):
    def __init__(self, anchor: str, mark):
        super().__init__(anchor)
        self.anchor, self.mark = anchor, mark


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that stops at the first YAML alias (``*name``) while composing, before any object is built:
    settings files never need aliases, and nested ones expand exponentially (the "billion laughs" document)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(event.anchor, event.start_mark)
        return super().compose_node(parent, index)


#: The model used when none is named (``SAM()``, ``auto_annotate``, the CLI); default.yaml says the same.
DEFAULT_MODEL = "sam2.1_b.pt"
#: The output settings of predict and track (what is written where), in default.yaml's order.
#: The output settings that write files (any of them true: the run gets a folder).
WRITE_KEYS = ("save", "save_txt", "save_coco", "save_masks")
OUTPUT_KEYS = (*WRITE_KEYS, "rle", "project", "name", "exist_ok")
#: SAM 3's concept-tracking settings (the fields of ``ConceptTracking`` besides ``fill_hole_area``, which video
#: tracking shares), in default.yaml's order.
CONCEPT_TRACKING_KEYS = ("score_threshold", "new_threshold", "nms_iou", "assoc_iou", "match_iou", "hotstart_delay",
                         "hotstart_unmatched", "hotstart_duplicate", "occlusion_iou", "recondition_every",
                         "max_objects")
#: The automatic mask generator's settings a user can give (the fields of ``EverythingConfig`` that are settings).
EVERYTHING_KEYS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                   "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                   "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area")


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(DEFAULT_CFG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=1)
def setting_notes() -> dict[str, str]:
    """Each setting's comment in ``default.yaml`` (continuation lines joined), for ``samkit MODE --help``."""
    notes: dict[str, str] = {}
    last = None
    for line in DEFAULT_CFG_PATH.read_text(encoding="utf-8").splitlines():
        head, _, comment = line.partition("#")
        key = head.split(":", 1)[0].strip() if ":" in head and not head.startswith(" ") else ""
        if key:
            last = key
            notes[key] = comment.strip()
        elif last and line.startswith(" ") and comment.strip() and not head.strip():
            notes[last] = f"{notes[last]} {comment.strip()}".strip()
        else:
            last = None
    return notes


def defaults() -> dict[str, Any]:
    """A fresh copy of every setting's default."""
    return dict(_defaults())


def suggest(key: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest known keys, or an empty string."""
    close = difflib.get_close_matches(key, list(dict.fromkeys(known)), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a settings file; it must hold a mapping, and it may not use YAML aliases (``*name``).

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, uses an alias or does not hold a mapping.
    """
    path = Path(path)
    where = f"settings file {preview(str(path), 200)}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_NoAliasLoader) or {}
    except _AliasFound as e:
        raise ConfigError(
            f"{where} uses the YAML alias *{_short(e.anchor, 40)} (line {e.mark.line + 1}); aliases are refused in "
            f"settings files (nested ones can expand to gigabytes): write the value out instead"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = _short(e.problem or e.context or "syntax error")
        raise ConfigError(f"{where} is not valid YAML: {problem}{at}") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where} cannot be read as YAML: {_short(str(e))}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to be a settings file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of key: value, not a {type(data).__name__}")
    return data


def _short(text: str, limit: int = 2 * PREVIEW_CHARS) -> str:
    """``text`` (a parser's own message, an anchor's name) on one line, cut to at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_keys(settings: dict[str, Any], known=None, where: str = "setting") -> None:
    """Raise ``ConfigError`` for the first key of ``settings`` that is not a known setting."""
    known = _defaults() if known is None else known
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown {where} {preview(key)}{_suggest_key(key, known)}; see samkit/cfg/default.yaml")


def _suggest_key(key: Any, known) -> str:
    # Only a key of a plausible length can be close to a known one; a huge key is not compared at all.
    return suggest(key, known) if isinstance(key, str) and len(key) <= 4 * PREVIEW_CHARS else ""


def _check_type(key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key}={preview(value)} must be True or False")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        raise ConfigError(f"setting {key}={preview(value)} must be a number like its default {default!r}")
    if isinstance(default, str) and not isinstance(value, (str, Path)):
        # Strings are names and paths; a device index like 0 is allowed through for `device`.
        if key == "device" and isinstance(value, int):
            return value
        raise ConfigError(f"setting {key}={preview(value)} must be a string like its default {default!r}")
    return value


def get_cfg(cfg: str | Path | dict | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults, a settings file or dict, and overrides (highest priority last), validating keys and types.

    Args:
        cfg: Path of a YAML file or a dict of settings (``None`` for defaults only).
        overrides: Settings that win over ``cfg``.

    Returns:
        Every setting with its value.

    Raises:
        ConfigError: An unknown key (with suggestions) or a value whose type does not match its default.
    """
    base = defaults()
    layer = load_yaml(cfg) if isinstance(cfg, (str, Path)) else dict(cfg or {})
    overrides = dict(overrides or {})
    check_keys(layer)
    check_keys(overrides)
    merged = {**base, **layer, **overrides}
    return {k: _check_type(k, v, base[k]) for k, v in merged.items()}


def parse_value(text: str) -> Any:
    """A ``key=value`` value as a Python literal (``[1, 2]``, ``True``, ``0.5``, ``None``), else the string itself."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return stripped


def parse_key_values(args: list[str]) -> dict[str, Any]:
    """``["model=sam2.1_b.pt", "half=True"]`` -> ``{"model": "sam2.1_b.pt", "half": True}``.

    Raises:
        ConfigError: An argument without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"argument {preview(arg)} is not key=value (for example model=sam2.1_b.pt)")
        out[key] = parse_value(value)
    return out
