"""Settings: the defaults file, merging, validation and ``key=value`` parsing.

One source of truth (``default.yaml``) and one merge order, highest priority last::

    {**defaults, **cfg_file, **overrides}

Unknown keys fail with close-match suggestions; values keep the type of their default.
"""

from __future__ import annotations

import ast
import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CFG_DIR = Path(__file__).resolve().parent
DEFAULT_CFG_PATH = CFG_DIR / "default.yaml"


class ConfigError(ValueError):
    """An unknown setting, or a value of the wrong type."""


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    with open(DEFAULT_CFG_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def defaults() -> dict[str, Any]:
    """A fresh copy of every setting's default."""
    return dict(_defaults())


def suggest(key: str, known) -> str:
    """`` (did you mean 'x'?)`` for the closest known keys, or an empty string."""
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a settings file; it must hold a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"settings file {str(path)!r} does not exist")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a mapping of key: value, not a {type(data).__name__}")
    return data


def check_keys(settings: dict[str, Any], known=None, where: str = "setting") -> None:
    """Raise ``ConfigError`` for the first key of ``settings`` that is not a known setting."""
    known = _defaults() if known is None else known
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown {where} {key!r}{suggest(str(key), known)}; see samkit/cfg/default.yaml")


def _check_type(key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key}={value!r} must be True or False")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        raise ConfigError(f"setting {key}={value!r} must be a number like its default {default!r}")
    if isinstance(default, str) and not isinstance(value, (str, Path)):
        # Strings are names and paths; a device index like 0 is allowed through for `device`.
        if key == "device" and isinstance(value, int):
            return value
        raise ConfigError(f"setting {key}={value!r} must be a string like its default {default!r}")
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
            raise ConfigError(f"argument {arg!r} is not key=value (for example model=sam2.1_b.pt)")
        out[key] = parse_value(value)
    return out
