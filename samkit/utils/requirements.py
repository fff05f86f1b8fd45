"""What each feature needs beyond the base install, checked before any work, and never installed at run time.

Ultralytics installs a missing package with pip the moment its code needs one (``check_requirements``: ``timm`` in
SAM 3's ViT, its CLIP fork for YOLOE / YOLO-World phrases, ``lap`` for its trackers, ``pi-heif`` when Pillow
cannot identify an image). A library must not change its user's environment behind their back, so samkit checks
the packages a feature needs itself, before building a network or reading a source, and stops with one line naming
what is missing and the extra that brings it (:class:`MissingExtra`); while samkit runs Ultralytics code,
:func:`no_autoinstall` keeps Ultralytics from installing anything.

A torch / torchvision pair whose C++ operators did not load (two builds from different indexes) makes
``import torchvision`` fail with ``RuntimeError: operator torchvision::nms does not exist``;
:func:`broken_torchvision` turns that into what is broken and the command that mends it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from contextlib import contextmanager
from dataclasses import dataclass


class MissingExtra(ImportError):
    """A package a feature needs is not installed; the message names it and the ``pip install`` that brings it."""


class BrokenInstall(ImportError):
    """An installed package cannot run (torchvision's operators did not load); the message says how to mend it."""


@dataclass(frozen=True)
class Extra:
    """An optional extra of samkit: ``pip install 'samkit[name]'``.

    Attributes:
        name: The extra's name.
        feature: What it enables, for messages and ``samkit checks``.
        packages: (module imported, distribution installed) pairs.
    """

    name: str
    feature: str
    packages: tuple[tuple[str, str], ...]

    @property
    def install(self) -> str:
        return f"pip install 'samkit[{self.name}]'"


#: Every optional extra, with the feature it enables (pyproject.toml's optional-dependencies say the same).
EXTRAS = {
    "sam3": Extra("sam3", "SAM 3 (its ViT needs timm; phrases need open_clip's tokenizer)",
                  (("timm", "timm"), ("open_clip", "open_clip_torch"))),
    "app": Extra("app", "samkit app (the browser app)", (("starlette", "starlette"), ("uvicorn", "uvicorn"))),
    "ray": Extra("ray", "auto_annotate(engine='ray') on a Ray cluster", (("ray", "ray"), ("ray.data", "ray[data]"))),
    "lora": Extra("lora", "samkit train lora=r (LoRA adapters on the image encoder)", (("peft", "peft"),)),
}

#: Packages of Ultralytics features samkit uses that no samkit extra can bring: (module, what needs it, install).
ULTRALYTICS_PACKAGES = {
    "clip": ("texts= with det_model= (YOLOE / YOLO-World phrases need Ultralytics' CLIP)",
             "pip install git+https://github.com/ultralytics/CLIP.git"),
    "lap": ("YOLO trackers (yolo.track)", "pip install 'lap>=0.5.12'"),
}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The distributions of ``extra`` (only those of ``modules`` when given) whose modules cannot be imported."""
    return [dist for mod, dist in EXTRAS[extra].packages if (modules is None or mod in modules)
            and not _importable(mod)]


def require(extra: str, for_what: str | None = None, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtra` when a package of ``extra`` (or of its ``modules``) cannot be imported.

    Args:
        extra: A key of :data:`EXTRAS`.
        for_what: What needs it, for the message (default the extra's feature).
        modules: Only these modules of the extra (say ``("open_clip",)`` for phrases alone).
    """
    lost = missing(extra, modules)
    if lost:
        what = for_what or EXTRAS[extra].feature
        raise MissingExtra(f"{what} needs {' and '.join(lost)}, not installed: {EXTRAS[extra].install}")


def require_phrases() -> None:
    """SAM 3's phrases need open_clip's CLIP tokenizer: raise :class:`MissingExtra` before any image is read or
    encoded when it is missing."""
    require("sam3", "SAM 3's phrases (texts=): the CLIP tokenizer", ("open_clip",))


def require_package(module: str) -> None:
    """Raise :class:`MissingExtra` when ``module`` of :data:`ULTRALYTICS_PACKAGES` cannot be imported."""
    if not _importable(module):
        what, install = ULTRALYTICS_PACKAGES[module]
        raise MissingExtra(f"{what} needs the package {module!r}, not installed: {install}")


_GUARD_LOCK = threading.Lock()
_GUARD_DEPTH = [0, None]  # open guards, Ultralytics' setting before the first


@contextmanager
def no_autoinstall():
    """Ultralytics' ``check_requirements`` may not install anything while this is open (its ``AUTOINSTALL`` is off;
    a missing package then fails instead of being installed). Nested and concurrent uses are counted; the setting
    is restored when the last one closes. Another thread running Ultralytics meanwhile is kept from installing too,
    which is the safe side."""
    try:
        from ultralytics.utils import checks
    except Exception:  # no Ultralytics, or one that cannot import (a broken torchvision): nothing of it can install
        checks = None
    if checks is None:
        yield
        return
    with _GUARD_LOCK:
        if _GUARD_DEPTH[0] == 0:
            _GUARD_DEPTH[1] = checks.AUTOINSTALL
            checks.AUTOINSTALL = False
        _GUARD_DEPTH[0] += 1
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _GUARD_DEPTH[0] -= 1
            if _GUARD_DEPTH[0] == 0:
                checks.AUTOINSTALL = _GUARD_DEPTH[1]


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_index(cpu: bool = False) -> str:
    """PyTorch's wheel index for the installed torch build (``cpu``: the CPU build's): ``.../whl/cpu``,
    ``.../whl/cu128``..."""
    try:
        import torch

        cuda = None if cpu else torch.version.cuda
    except Exception:
        cuda = None
    tag = "cpu" if not cuda else "cu" + cuda.replace(".", "")
    return f"https://download.pytorch.org/whl/{tag}"


def matching_pair() -> tuple[str, str]:
    """(torch, torchvision) version specifiers that belong together, from the installed torch (torchvision 0.N pairs
    with torch 2.(N - 15))."""
    torch_v = (installed_version("torch") or "").split("+")[0]
    parts = torch_v.split(".")
    if len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit():
        return f"torch=={torch_v}", f"torchvision==0.{int(parts[1]) + 15}.*"
    return "torch", "torchvision"


def torchvision_fix(cpu: bool = False) -> str:
    """The command that reinstalls torch and torchvision together, from one index (``cpu``: the CPU builds')."""
    torch_spec, vision_spec = matching_pair()
    return f"pip install --force-reinstall '{torch_spec}' '{vision_spec}' --index-url {torch_index(cpu)}"


def torchvision_message(reason: str) -> str:
    """One line: torchvision's operators cannot run, why, and the fix."""
    reason = " ".join(str(reason).split())
    return (f"torchvision {installed_version('torchvision') or '?'} cannot run its C++ operators with torch "
            f"{installed_version('torch') or '?'} ({reason}): the two come from different builds; reinstall both "
            f"from one index: {torchvision_fix()}")


def is_torchvision_ops_error(error: BaseException) -> bool:
    """Whether ``error`` is torchvision's operators failing to load or run (a mismatched torch / torchvision)."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("torchvision::" in text or "Couldn't load custom C++ ops" in text)


def broken_torchvision(error: BaseException) -> BrokenInstall | None:
    """A :class:`BrokenInstall` to raise instead of ``error`` when it is torchvision's operators failing; else None."""
    if is_torchvision_ops_error(error):
        return BrokenInstall(torchvision_message(str(error).splitlines()[0] if str(error) else type(error).__name__))
    return None


_TORCHVISION_OK = []


def check_torchvision() -> None:
    """Raise :class:`BrokenInstall` unless torchvision imports and its ``nms`` runs (once per process when it does):
    samkit calls this before loading a model, so a mismatched pair fails first, with the fix."""
    if _TORCHVISION_OK:
        return
    with install_errors():
        import torch
        from torchvision.ops import nms

        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    _TORCHVISION_OK.append(True)


@contextmanager
def install_errors():
    """Turn torchvision's operator errors raised inside (on import or on a call) into :class:`BrokenInstall`."""
    try:
        yield
    except RuntimeError as e:
        broken = broken_torchvision(e)
        if broken is None:
            raise
        raise broken from None
