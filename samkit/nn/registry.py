"""The model registry: architectures (how to build a network) and models (where to get its weights).

Both are read from ``samkit/cfg/models.yaml``; nothing here hard-codes a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from samkit.cfg import suggest

REGISTRY_FILE = Path(__file__).resolve().parent.parent / "cfg" / "models.yaml"

FAMILIES = ("sam2", "sam", "mobile_sam")
#: Versions each family can be. SAM 2.1 differs from SAM 2 by three extra parameters and flags; SAM (1) and
#: MobileSAM only have one.
VERSIONS = {"sam2": ("2.0", "2.1"), "sam": ("1",), "mobile_sam": ("1",)}


@dataclass(frozen=True)
class Architecture:
    """The shape of one network.

    Attributes:
        name: Registry key, e.g. ``"sam2_b"``.
        family: ``"sam2"`` (Hiera + memory), ``"sam"`` (ViT) or ``"mobile_sam"`` (TinyViT).
        size: Human-readable size, e.g. ``"base_plus"``, ``"vit_h"``.
        image_size: Side of the square network input in pixels.
        trunk: SAM 2 Hiera trunk keyword arguments (empty for other families).
        encoder: SAM / MobileSAM image-encoder keyword arguments (empty for SAM 2).
    """

    name: str
    family: str
    size: str
    image_size: int
    trunk: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"architecture {self.name!r}: family {self.family!r} is not one of {FAMILIES}")
        if not isinstance(self.image_size, int) or self.image_size <= 0 or self.image_size % 16:
            raise ValueError(f"architecture {self.name!r}: image_size {self.image_size!r} must be a multiple of 16")
        need = "trunk" if self.family == "sam2" else "encoder"
        if not getattr(self, need):
            raise ValueError(f"architecture {self.name!r}: family {self.family!r} needs a {need!r} section")

    @property
    def signature(self) -> tuple:
        """What can be read back from a state dict of this architecture (see ``samkit.nn.detect``)."""
        if self.family == "sam2":
            return ("sam2", self.trunk["embed_dim"], tuple(self.trunk["stages"]))
        if self.family == "sam":
            return ("sam", self.encoder["embed_dim"], self.encoder["depth"])
        return ("mobile_sam", tuple(self.encoder["embed_dims"]), tuple(self.encoder["depths"]))


@dataclass(frozen=True)
class ModelEntry:
    """A published checkpoint.

    Attributes:
        name: Canonical file name (the Ultralytics one), e.g. ``"sam2.1_b.pt"``.
        arch: The :class:`Architecture` the weights fit.
        version: ``"2.1"``, ``"2.0"`` or ``"1"``.
        files: Other file names the same weights are published under (Meta's originals).
        urls: Download URLs, tried in order.
    """

    name: str
    arch: Architecture
    version: str
    files: tuple[str, ...]
    urls: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.version not in VERSIONS[self.arch.family]:
            raise ValueError(
                f"model {self.name!r}: version {self.version!r} is not one of {VERSIONS[self.arch.family]} "
                f"for family {self.arch.family!r}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """Every file name these weights go by, canonical first."""
        return (self.name, *self.files)

    def urls_for(self, file_name: str) -> tuple[str, ...]:
        """Download URLs, those whose file name is ``file_name`` first."""
        first = [u for u in self.urls if u.rsplit("/", 1)[-1] == file_name]
        return tuple(first + [u for u in self.urls if u not in first])


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
        models[name] = ModelEntry(
            name=name,
            arch=archs[spec["arch"]],
            version=str(spec["version"]),
            files=tuple(spec.get("files") or ()),
            urls=tuple(spec.get("urls") or ()),
        )
    signatures: dict[tuple, str] = {}
    for a in archs.values():
        if a.signature in signatures:
            raise ValueError(f"architectures {signatures[a.signature]!r} and {a.name!r} cannot be told apart by weights")
        signatures[a.signature] = a.name
    return Registry(architectures=archs, models=models)


@lru_cache(maxsize=1)
def model_registry() -> Registry:
    """The registry read from ``samkit/cfg/models.yaml`` (read once)."""
    with open(REGISTRY_FILE, encoding="utf-8") as f:
        return _build_registry(yaml.safe_load(f))
