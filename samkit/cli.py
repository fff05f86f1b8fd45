"""The ``samkit`` command: ``samkit MODE key=value ...`` in the style Ultralytics users already type.

Modes:
    info      describe a model (``samkit info model=sam2.1_b.pt``) or list the registry (``samkit info``)
    checks    versions, devices, optional extras and weights folders
    help      this text (also ``-h`` / ``--help``)
    version   the samkit version

Every value is parsed as a Python literal when it is one (``[1, 2]``, ``True``, ``0.5``), else kept as text.
``cfg=my.yaml`` loads settings from a file; ``key=value`` arguments win over it. A misspelt key fails with a
suggestion. Errors print one line; add ``verbose=True`` to see the traceback.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import sys
from typing import Any

from samkit.cfg import ConfigError, get_cfg, parse_key_values, suggest

MODES = ("info", "checks", "help", "version")
#: Ultralytics releases samkit is tested against (its SAM internals change between releases).
TESTED_ULTRALYTICS = ((8, 4, 190), (8, 5, 0))


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("samkit")
    if not any(getattr(h, "_samkit_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._samkit_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def run_checks() -> list[str]:
    """Lines describing the environment: versions, devices, optional extras, weights folders."""
    import torch

    from samkit import __version__
    from samkit.utils.downloads import offline, weights_dirs

    lines = [f"samkit {__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    for dist in ("torch", "torchvision", "ultralytics", "opencv-python", "numpy", "pyyaml"):
        lines.append(f"{dist} {_version(dist) or 'NOT INSTALLED'}")
    ul = _version("ultralytics")
    if ul:
        low, high = TESTED_ULTRALYTICS
        if not (low <= _version_tuple(ul) < high):
            lines.append(
                f"WARNING: ultralytics {ul} is outside the tested range "
                f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
            )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"device cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        lines.append("device cpu (CUDA not available)")
    for extra, dist in (("coco RLE", "pycocotools"), ("ray engine", "ray"), ("reference oracle", "sam2"),
                        ("progress bars", "tqdm")):
        v = _version(dist)
        lines.append(f"optional {dist} ({extra}): {v if v else 'not installed'}")
    from ultralytics import ASSETS

    lines.append(f"sample images: {ASSETS}")
    lines.append(f"offline mode: {'on' if offline() else 'off'} (SAMKIT_OFFLINE)")
    lines.append("weights folders: " + ", ".join(str(d) for d in weights_dirs()))
    return lines


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
        print(__doc__.strip())
        return 0
    mode, rest = argv[0], argv[1:]
    if mode in ("version", "--version", "-V"):
        from samkit import __version__

        print(__version__)
        return 0
    show_traceback = any(a.replace(" ", "").lower() == "verbose=true" for a in rest)
    try:
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}{suggest(mode, MODES)}; modes: {', '.join(MODES)}")
        overrides = parse_key_values(rest)
        cfg_file = overrides.pop("cfg", None)
        cfg = get_cfg(cfg_file, overrides)
        _setup_logging(cfg["verbose"])
        return _run(mode, cfg, overrides)
    except KeyboardInterrupt:
        print("samkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line unless verbose=True was asked for
        if show_traceback:
            raise
        print(f"samkit {mode}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def _run(mode: str, cfg: dict[str, Any], given: dict[str, Any]) -> int:
    if mode == "checks":
        print("\n".join(run_checks()))
        return 0
    if mode == "info":
        if "model" not in given:
            print("\n".join(_registry_lines()))
            return 0
        from samkit.model import SAM

        model = SAM(cfg["model"], device=cfg["device"], verbose=cfg["verbose"])
        for k, v in model.info().items():
            print(f"{k}: {v}")
        return 0
    raise AssertionError(mode)


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
