"""Build networks from registry architectures: the family's builder (:attr:`samkit.families.Family.build`, which
wires Ultralytics' modules, whose state-dict keys match Meta's checkpoints one for one) and then the replacement
table (:mod:`samkit.nn.replacements`).
"""

from __future__ import annotations

import torch
from torch import nn

from samkit import families
from samkit.nn.registry import Architecture, model_registry
from samkit.nn.replacements import family_entries, install, required_entries
from samkit.utils.requirements import no_autoinstall, require


def network_tensors(arch: Architecture, state_dict: dict) -> dict:
    """A checkpoint's tensors under the network's names (the family's key map: SAM 3's published layout keeps only
    the image network's tensors; the other families' checkpoints are used as they are)."""
    return families.of(arch).network_tensors(state_dict)


def require_family(family: str) -> None:
    """Raise :class:`~samkit.utils.requirements.MissingExtra` when a package the family's network needs is not
    installed (SAM 3: ``timm``, which Ultralytics' SAM 3 ViT imports), before anything is read or built."""
    needs = families.family(family).requires
    if needs is not None:
        extra, modules, what = needs
        require(extra, what, modules)


def build_network(arch: Architecture | str, version: str | None = None, replacements: bool = True) -> nn.Module:
    """Build an untrained network (random weights, eval mode, on the CPU) for an architecture, with samkit's
    replacements of Ultralytics methods installed (:mod:`samkit.nn.replacements`).

    Args:
        arch: An :class:`Architecture` or its registry name (``"sam2_b"``, ``"sam_h"``, ``"sam2_test"``...).
        version: One of the family's versions (None: its default, e.g. ``"2.1"`` for SAM 2).
        replacements: Install the replacement table (False: Ultralytics' modules as they are, for comparisons; a
            family's required entries, such as SAM 3's memory selection, are installed either way).

    Returns:
        The family's network (Ultralytics' ``SAM2Model``, ``SAMModel``; SAM 3's ``Sam3Network``).
    """
    if isinstance(arch, str):
        arch = model_registry().architecture(arch)
    fam = families.of(arch)
    version = fam.check_version(version)
    require_family(arch.family)
    with no_autoinstall():  # Ultralytics' modules may ask for packages; none is installed behind the user's back
        net = fam.build(arch, version)
    if replacements:
        install(net)
    install(net, required_entries(family_entries(fam)))  # the family's own behaviour, always
    return net.eval()


def build(name: str, checkpoint: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build a network by registry name, with random weights or the weights of a checkpoint.

    Args:
        name: A model name (``"sam2.1_t"``, ``"sam2_b.pt"``, ``"sam2.1_hiera_tiny.pt"``) or an architecture name
            with an optional version suffix for SAM 2 (``"sam2_test"`` is SAM 2.1; ``"sam2.0_test"`` is SAM 2).
        checkpoint: Path of a checkpoint to load (strictly). ``None`` keeps the random initialisation.
        device: Where to put the network.

    Returns:
        The network in eval mode.

    Examples:
        >>> net = build("sam2.1_t", checkpoint=None)          # random weights, real size
        >>> net = build("sam2_test")                          # tiny SAM 2.1 for tests
    """
    arch, version = resolve_name(name)
    net = build_network(arch, version)
    if checkpoint is not None:
        from samkit.nn.checkpoint import load_checkpoint

        load_checkpoint(net, checkpoint)
    return net.to(device)


def resolve_name(name: str) -> tuple[Architecture, str]:
    """Architecture and version for a model name, a Meta file name or an architecture name."""
    reg = model_registry()
    entry = reg.find_model(name)
    if entry is not None:
        return entry.arch, entry.version
    stem = str(name).rsplit(".pt", 1)[0]
    if stem in reg.architectures:
        arch = reg.architectures[stem]
        return arch, families.of(arch).default_version
    for fam in families.all_families():  # "sam2.0_test": the architecture sam2_test at version 2.0
        for prefix, version in fam.version_prefixes.items():
            if stem.startswith(prefix) and f"{fam.name}_{stem[len(prefix):]}" in reg.architectures:
                return reg.architectures[f"{fam.name}_{stem[len(prefix):]}"], version
    reg.model(name)  # raises with close matches
    raise AssertionError("unreachable")
