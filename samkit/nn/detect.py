"""Work out a checkpoint's architecture from its state-dict keys and tensor shapes, never from its file name.

What is read off the weights:
- SAM 2 / 2.1 (Hiera trunk): the patch-embedding width, the number of blocks and where each stage starts (the
  first block of every later stage carries a ``proj`` layer that widens the channels). SAM 2.1 adds
  ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj``; SAM 2 has neither.
- SAM (ViT): the patch-embedding width and the number of blocks.
- MobileSAM (TinyViT): the width and depth of each of its layers.
- SAM 3 (``detector.*`` keys, or the detector's own): the ViT's width and depth, the detector's width and the text
  encoder's width.
The result is matched against the registry's architectures by these values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from samkit.nn.registry import Architecture, model_registry


class ArchitectureError(ValueError):
    """The weights are not of a known Segment Anything architecture."""


def _count(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def signature_of(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> tuple[tuple, str]:
    """The architecture signature (see ``Architecture.signature``) and version of a state dict.

    Args:
        state_dict: Parameter name -> tensor, without any ``module.`` prefix.
        source: What to call the weights in error messages (usually the file path).

    Returns:
        ``(signature, version)``, e.g. ``(("sam2", 112, (2, 3, 16, 3)), "2.1")``.

    Raises:
        ArchitectureError: The keys are not those of any Segment Anything family.
    """
    keys = list(state_dict)
    from samkit.nn.sam3 import sam3_signature, with_prefix

    sam3 = sam3_signature(with_prefix(dict(state_dict)))
    if sam3 is not None:
        return sam3, "3"
    if "image_encoder.trunk.patch_embed.proj.weight" in state_dict:
        embed_dim = int(state_dict["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
        blocks = _count(keys, r"image_encoder\.trunk\.blocks\.(\d+)\.")
        if not blocks or blocks != list(range(len(blocks))):
            raise ArchitectureError(f"{source}: SAM 2 Hiera trunk with missing or non-contiguous blocks {blocks}")
        starts = [0] + [i for i in blocks if f"image_encoder.trunk.blocks.{i}.proj.weight" in state_dict]
        stages = tuple(b - a for a, b in zip(starts, starts[1:] + [len(blocks)]))
        has_21 = [k in state_dict for k in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")]
        if any(has_21) and not all(has_21):
            raise ArchitectureError(
                f"{source}: has only one of the SAM 2.1 parameters 'no_obj_embed_spatial' and "
                f"'obj_ptr_tpos_proj.weight'; the checkpoint is damaged or mixes versions"
            )
        return ("sam2", embed_dim, stages), ("2.1" if all(has_21) else "2.0")
    if "image_encoder.patch_embed.proj.weight" in state_dict and "image_encoder.blocks.0.attn.qkv.weight" in state_dict:
        embed_dim = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
        depth = len(_count(keys, r"image_encoder\.blocks\.(\d+)\."))
        return ("sam", embed_dim, depth), "1"
    if "image_encoder.patch_embed.seq.2.c.weight" in state_dict:
        layers = _count(keys, r"image_encoder\.layers\.(\d+)\.")
        dims = [int(state_dict["image_encoder.patch_embed.seq.2.c.weight"].shape[0])]
        for i in layers[:-1]:
            w = state_dict.get(f"image_encoder.layers.{i}.downsample.conv3.c.weight")
            if w is None:
                raise ArchitectureError(f"{source}: TinyViT layer {i} has no downsample layer")
            dims.append(int(w.shape[0]))
        depths = tuple(len(_count(keys, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.")) for i in layers)
        return ("mobile_sam", tuple(dims), depths), "1"
    shown = ", ".join(keys[:5]) or "(no keys)"
    raise ArchitectureError(
        f"{source}: not a Segment Anything checkpoint (SAM 2/2.1, SAM or MobileSAM): it has no image encoder "
        f"weights that samkit knows. First keys: {shown}"
    )


def detect_architecture(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> tuple[Architecture, str]:
    """The registry architecture and version whose shape the weights have.

    Args:
        state_dict: Parameter name -> tensor.
        source: What to call the weights in error messages (usually the file path).

    Returns:
        ``(architecture, version)`` with version ``"2.1"``, ``"2.0"`` or ``"1"``.

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
