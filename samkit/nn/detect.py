"""Work out a checkpoint's architecture from its state-dict keys and tensor shapes, never from its file name.

Each family reads its own signature off the weights (:attr:`samkit.families.Family.read_signature`: SAM 2's Hiera
widths and stages and its version, SAM's ViT width and depth, MobileSAM's TinyViT layers, SAM 3's detector sizes);
the result is matched against the registry's architectures.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from samkit import families
from samkit.nn.registry import Architecture, model_registry


class ArchitectureError(ValueError):
    """The weights are not of a known Segment Anything architecture."""


def signature_of(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> tuple[tuple, str]:
    """The architecture signature (see ``Architecture.signature``) and version of a state dict.

    Args:
        state_dict: Parameter name -> tensor, without any ``module.`` prefix.
        source: What to call the weights in error messages (usually the file path).

    Returns:
        ``(signature, version)``, e.g. ``(("sam2", 112, (2, 3, 16, 3)), "2.1")`` (a tuple beginning with the
        family's name, and one of its versions).

    Raises:
        ArchitectureError: The keys are not those of any Segment Anything family.
    """
    for fam in families.all_families():
        found = fam.read_signature(state_dict, source)
        if found is not None:
            return found
    keys = list(state_dict)
    shown = ", ".join(keys[:5]) or "(no keys)"
    known = ", ".join(d for f in families.all_families() for d in f.display.values())
    raise ArchitectureError(
        f"{source}: not a Segment Anything checkpoint ({known}): it has no image encoder weights that samkit "
        f"knows. First keys: {shown}"
    )


def detect_architecture(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> tuple[Architecture, str]:
    """The registry architecture and version whose shape the weights have.

    Args:
        state_dict: Parameter name -> tensor.
        source: What to call the weights in error messages (usually the file path).

    Returns:
        ``(architecture, version)``, the version one of the family's.

    Raises:
        ArchitectureError: Not a SAM-family checkpoint, or a shape no registered architecture has.
    """
    sig, version = signature_of(state_dict, source)
    for arch in model_registry().architectures.values():
        if arch.signature == sig:
            return arch, version
    known = "; ".join(f"{a.name} {a.signature[1:]}" for a in model_registry().architectures.values()
                      if a.family == sig[0])
    raise ArchitectureError(
        f"{source}: a {sig[0]} checkpoint with encoder shape {sig[1:]} matches no registered architecture "
        f"(known {sig[0]} shapes: {known}). Register it in samkit/cfg/models.yaml."
    )
