"""A model family added from one module, as a plug-in would add one: SAM 2.1's network under another family name
and display name, told apart from SAM 2.1 by a buffer its builder adds. Importing the module registers the family
and its architecture; :func:`remove` forgets both."""

from __future__ import annotations

import dataclasses

import torch

from samkit import families
from samkit.families import sam2
from samkit.nn.registry import Architecture, model_registry

NAME, ARCH, MARKER = "sam2x", "sam2x_test", "sam2x_marker"


def _build(arch, version):
    net = sam2.build_sam2(arch, version)
    net.register_buffer(MARKER, torch.ones(1))
    return net


def _read(state_dict, source):
    if MARKER not in state_dict:
        return None
    (_, width, stages), version = sam2.read_signature(state_dict, source)
    return (NAME, width, stages), version


FAMILY = families.register(dataclasses.replace(
    sam2.FAMILY, name=NAME, display={"2.1": "SAM 2.1-X", "2.0": "SAM 2-X"}, read_signature=_read, build=_build,
    signature=lambda arch: (NAME, arch.trunk["embed_dim"], tuple(arch.trunk["stages"])), detect_first=True,
    version_prefixes={}))
model_registry().add_architecture(Architecture(
    name=ARCH, family=NAME, size="test", image_size=256, trunk=dict(model_registry().architecture("sam2_test").trunk)))


def remove() -> None:
    model_registry().remove_architecture(ARCH)
    families.unregister(NAME)
