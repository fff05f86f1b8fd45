"""Model families: the only code that names one. Each family's module holds its record (:class:`Family`).

A record says everything samkit needs to know of a family: its versions (the default first) and their display
names, which section of a registry architecture configures it, what its weights look like (the *signature* read
off a state dict, compared with each architecture's), how to build its network from Ultralytics' modules, how its
checkpoints' keys map onto the network, its transforms (image and prompt arithmetic), the
packages it needs beyond the base install, its network adapter (:mod:`samkit.families.network`: every call the
engines make into the network), and its **capabilities**: what a front end may ask of it.

Adding a family is one module that calls :func:`register` with its record (and architectures in the registry's
data, ``cfg/models.yaml``, or registered with :meth:`samkit.nn.registry.Registry.add_architecture`); nothing else
in samkit changes. The families shipped are registered on import: :mod:`samkit.families.sam2` (SAM 2 / 2.1),
:mod:`samkit.families.sam` (SAM, MobileSAM) and :mod:`samkit.families.sam3` (SAM 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: What a family can do, as front ends ask it (``"video" in model.capabilities``):
#: ``prompts`` (clicks, boxes, masks on images), ``everything`` (the automatic mask generator), ``video``
#: (prompted objects tracked with a memory: :class:`~samkit.engine.video.VideoSession`), ``concepts`` (phrases and
#: exemplar boxes: every instance), ``concept_video`` (phrases and clicks through video: SAM 3's session), ``train``
#: (fine-tuning with :mod:`samkit.train`).
CAPABILITIES = ("prompts", "everything", "video", "concepts", "concept_video", "train")


def _none() -> tuple:
    return ()


def _same(state_dict: dict) -> dict:
    return state_dict


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: The registry's key for it (an architecture's ``family``).
        versions: Its versions, the default first (``("2.1", "2.0")``).
        display: Version -> the name users read (``{"2.1": "SAM 2.1", "2.0": "SAM 2"}``).
        section: The architecture section that configures it: ``"trunk"`` or ``"encoder"``.
        signature: Architecture -> what its weights show (compared with :attr:`read_signature`'s result).
        read_signature: ``(state_dict, source)`` -> ``(signature, version)``, or None when the weights are not this
            family's. Raise :class:`~samkit.nn.detect.ArchitectureError` for weights of this family that are
            damaged.
        build: ``(architecture, version)`` -> the untrained network (Ultralytics' modules, eval mode not needed).
        transforms: Input size -> the family's transforms object (see :mod:`samkit.engine.transforms`).
        network: The built network -> its adapter, the only way the engines call it (see
            :mod:`samkit.families.network`: one protocol per capability).
        capabilities: A subset of :data:`CAPABILITIES`.
        replacements: ``()`` -> the family's own entries of the replacement table
            (:class:`samkit.nn.replacements.Replacement`; e.g. SAM 3's memory selection, ``required``), installed by
            :func:`samkit.nn.build.build_network` on this family's networks only.
        network_tensors: A checkpoint's state dict -> the tensors under the network's names (default: as given).
        requires: ``(extra, modules, what)``: packages the network needs beyond the base install, checked before
            anything is read or built (:func:`samkit.utils.requirements.require`); None when it needs none.
        detect_first: Read before the others (a family whose keys contain another's).
        version_prefixes: Name prefix -> version, for names that say the version of one of the family's
            architectures (``{"sam2.0_": "2.0"}``: ``"sam2.0_test"`` is ``sam2_test`` at version 2.0).
    """

    name: str
    versions: tuple[str, ...]
    display: Mapping[str, str]
    section: str
    signature: Callable[[Any], tuple]
    read_signature: Callable[[Mapping, str], tuple[tuple, str] | None]
    build: Callable[[Any, str], Any]
    transforms: Callable[[int], Any]
    network: Callable[[Any], Any]
    capabilities: frozenset[str]
    replacements: Callable[[], tuple] = _none
    network_tensors: Callable[[dict], dict] = _same
    requires: tuple[str, tuple[str, ...], str] | None = None
    detect_first: bool = False
    version_prefixes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown capabilities {sorted(unknown)}; known: {CAPABILITIES}")
        if not self.versions or set(self.display) != set(self.versions):
            raise ValueError(f"family {self.name!r}: every version needs a display name ({self.versions})")
        if self.section not in ("trunk", "encoder"):
            raise ValueError(f"family {self.name!r}: section must be 'trunk' or 'encoder', got {self.section!r}")

    @property
    def default_version(self) -> str:
        return self.versions[0]

    def check_version(self, version: str | None) -> str:
        """``version`` as a string, the default for None; a ``ValueError`` for one the family does not have."""
        version = self.default_version if version is None else str(version)
        if version not in self.versions:
            one = f"has a single version {self.versions[0]!r}" if len(self.versions) == 1 else \
                f"version must be {' or '.join(map(repr, sorted(self.versions)))}"
            raise ValueError(f"{self.name} {one}, got {version!r}")
        return version


_FAMILIES: dict[str, Family] = {}
_LOADED: list[bool] = []


def register(family: Family) -> Family:
    """Make ``family`` known to samkit (its architectures, detection, builds, transforms); returns it. Registering a
    name again replaces the record."""
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Forget the family ``name`` (a family registered by a test or a plug-in)."""
    _FAMILIES.pop(name, None)


def _load() -> None:
    if not _LOADED:
        _LOADED.append(True)
        from samkit.families import sam, sam2, sam3  # noqa: F401  (each registers its record)


def family(name: str) -> Family:
    """The family registered as ``name``; a ``ValueError`` listing the known ones otherwise."""
    _load()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}") from None


def all_families() -> list[Family]:
    """Every registered family, those read first (:attr:`Family.detect_first`) first."""
    _load()
    return sorted(_FAMILIES.values(), key=lambda f: not f.detect_first)


def of(arch) -> Family:
    """The family of a registry architecture."""
    return family(arch.family)


def capabilities(arch) -> frozenset[str]:
    """What the family of a registry architecture can do (see :data:`CAPABILITIES`)."""
    return of(arch).capabilities


def require_capability(arch, capability: str, what: str) -> None:
    """A ``ValueError`` unless the architecture's family has ``capability``, naming the families that have it and
    what this one can do (``what``: the request, e.g. ``"video tracking"``)."""
    fam = of(arch)
    if capability in fam.capabilities:
        return
    able = [d for f in all_families() if capability in f.capabilities for d in f.display.values()]
    names = " / ".join(able) if able else "no registered"
    raise ValueError(f"{what} needs a {names} model; {arch.name} ({' / '.join(fam.display.values())}) does "
                     f"{', '.join(c for c in CAPABILITIES if c in fam.capabilities)}")
