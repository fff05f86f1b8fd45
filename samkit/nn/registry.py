"""The model registry: architectures (how to build a network) and models (where to get its weights).

Both are read from ``samkit/cfg/models.yaml``; nothing here hard-codes a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from samkit import families
from samkit.cfg import suggest

REGISTRY_FILE = Path(__file__).resolve().parent.parent / "cfg" / "models.yaml"


@dataclass(frozen=True)
class Architecture:
    """The shape of one network.

    Attributes:
        name: Registry key, e.g. ``"sam2_b"``.
        family: The name of its family's record (:mod:`samkit.families`).
        size: Human-readable size, e.g. ``"base_plus"``, ``"vit_h"``.
        image_size: Side of the square network input in pixels.
        trunk, encoder: The configuration sections; the family's record says which one it reads.
    """

    name: str
    family: str
    size: str
    image_size: int
    trunk: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            fam = families.family(self.family)
        except ValueError as e:
            raise ValueError(f"architecture {self.name!r}: {e}") from None
        if not isinstance(self.image_size, int) or self.image_size <= 0 or self.image_size % 16:
            raise ValueError(f"architecture {self.name!r}: image_size {self.image_size!r} must be a multiple of 16")
        if not getattr(self, fam.section):
            raise ValueError(f"architecture {self.name!r}: family {self.family!r} needs a {fam.section!r} section")

    @property
    def signature(self) -> tuple:
        """What can be read back from a state dict of this architecture (its family's ``read_signature``)."""
        return families.of(self).signature(self)


@dataclass(frozen=True)
class FileCheck:
    """What a downloaded file must be, when known: its size in bytes and its SHA-256 (lower-case hex).

    Either may be None (unknown); a download is then checked only for what is known (and, always, for being a
    readable checkpoint; see ``samkit.utils.downloads``).
    """

    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A published checkpoint.

    Attributes:
        name: Canonical file name (the Ultralytics one), e.g. ``"sam2.1_b.pt"``.
        arch: The :class:`Architecture` the weights fit.
        version: One of its family's versions.
        files: Other file names the same weights are published under (Meta's originals).
        urls: Download URLs, tried in order.
        checks: Published file name -> :class:`FileCheck` (known size and/or SHA-256); optional, and empty
            where nothing is known.
        gated: For weights that cannot be downloaded without an account: how to get them. Nothing is
            downloaded for such a model; a missing file is an error saying this and where to put it.
    """

    name: str
    arch: Architecture
    version: str
    files: tuple[str, ...]
    urls: tuple[str, ...]
    checks: Mapping[str, FileCheck] = field(default_factory=dict, hash=False)
    gated: str | None = None

    def __post_init__(self) -> None:
        versions = families.of(self.arch).versions
        if self.version not in versions:
            raise ValueError(
                f"model {self.name!r}: version {self.version!r} is not one of {versions} for family "
                f"{self.arch.family!r}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """Every file name these weights go by, canonical first."""
        return (self.name, *self.files)

    def urls_for(self, file_name: str) -> tuple[str, ...]:
        """Download URLs, those whose file name is ``file_name`` first."""
        first = [u for u in self.urls if u.rsplit("/", 1)[-1] == file_name]
        return tuple(first + [u for u in self.urls if u not in first])

    def check_for(self, file_name: str) -> FileCheck:
        """The known size / SHA-256 of the file published as ``file_name`` (an empty check when none is known)."""
        return self.checks.get(file_name) or FileCheck()


@dataclass(frozen=True)
class Registry:
    """Architectures and models by name."""

    architectures: dict[str, Architecture]
    models: dict[str, ModelEntry]

    def find_model(self, name: str) -> ModelEntry | None:
        """The model published under file name ``name`` (canonical or alias; ``.pt`` may be left off)."""
        key = Path(str(name)).name.lower()
        for entry in self.models.values():
            for n in entry.names:
                n = n.lower()
                if key == n or key == n.rsplit(".", 1)[0]:
                    return entry
        return None

    def model(self, name: str) -> ModelEntry:
        """Like :meth:`find_model` but raises ``ValueError`` with close matches when ``name`` is unknown."""
        entry = self.find_model(name)
        if entry is None:
            known = sorted(n for e in self.models.values() for n in e.names)
            raise ValueError(f"unknown model {name!r}{suggest(Path(str(name)).name, known)}; known: {', '.join(known)}")
        return entry

    def add_architecture(self, arch: Architecture) -> Architecture:
        """Register ``arch`` (a family's architecture that ``cfg/models.yaml`` does not list); its weights must be
        told apart from every other architecture's. Returns it."""
        for other in self.architectures.values():
            if other.name != arch.name and other.signature == arch.signature:
                raise ValueError(f"architectures {other.name!r} and {arch.name!r} cannot be told apart by weights")
        self.architectures[arch.name] = arch
        return arch

    def remove_architecture(self, name: str) -> None:
        """Forget an architecture added with :meth:`add_architecture`."""
        self.architectures.pop(name, None)

    def architecture(self, name: str) -> Architecture:
        """The architecture called ``name``; ``ValueError`` with close matches when unknown."""
        if name not in self.architectures:
            known = sorted(self.architectures)
            raise ValueError(f"unknown architecture {name!r}{suggest(name, known)}; known: {', '.join(known)}")
        return self.architectures[name]


def _build_registry(data: dict) -> Registry:
    archs = {}
    for name, spec in (data.get("architectures") or {}).items():
        unknown = set(spec) - {"family", "size", "image_size", "trunk", "encoder"}
        if unknown:
            raise ValueError(f"architecture {name!r}: unknown fields {sorted(unknown)}")
        archs[name] = Architecture(name=name, **spec)
    models = {}
    for name, spec in (data.get("models") or {}).items():
        if spec.get("arch") not in archs:
            raise ValueError(f"model {name!r}: arch {spec.get('arch')!r} is not a registered architecture")
        files = tuple(spec.get("files") or ())
        urls = tuple(spec.get("urls") or ())
        published = {name, *files, *(u.rsplit("/", 1)[-1] for u in urls)}
        models[name] = ModelEntry(
            name=name,
            arch=archs[spec["arch"]],
            version=str(spec["version"]),
            files=files,
            urls=urls,
            checks=_build_checks(name, spec.get("checks"), published),
            gated=spec.get("gated"),
        )
    signatures: dict[tuple, str] = {}
    for a in archs.values():
        if a.signature in signatures:
            raise ValueError(f"architectures {signatures[a.signature]!r} and {a.name!r} cannot be told apart by "
                             "weights")
        signatures[a.signature] = a.name
    return Registry(architectures=archs, models=models)


def _build_checks(model: str, spec: Any, known_files: set[str]) -> dict[str, FileCheck]:
    """``checks:`` of a model entry: ``{file name: {size: <bytes>, sha256: <hex>}}``, both fields optional."""
    if not spec:
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"model {model!r}: checks must map file names to {{size, sha256}}, got {spec!r}")
    checks = {}
    for file_name, fields in spec.items():
        if file_name not in known_files:
            raise ValueError(f"model {model!r}: checks name {file_name!r}, which is none of its files or URLs")
        fields = fields or {}
        unknown = set(fields) - {"size", "sha256"} if isinstance(fields, Mapping) else {"?"}
        if unknown:
            raise ValueError(f"model {model!r}: checks of {file_name!r} take size and sha256, got {fields!r}")
        size, sha = fields.get("size"), fields.get("sha256")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ValueError(f"model {model!r}: size of {file_name!r} must be a positive number of bytes, got {size!r}")
        if sha is not None:
            sha = str(sha).lower()
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise ValueError(
                    f"model {model!r}: sha256 of {file_name!r} must be 64 hex digits, got {fields['sha256']!r}"
                )
        checks[file_name] = FileCheck(size=size, sha256=sha)
    return checks


@lru_cache(maxsize=1)
def model_registry() -> Registry:
    """The registry read from ``samkit/cfg/models.yaml`` (read once)."""
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        return _build_registry(yaml.safe_load(f))
