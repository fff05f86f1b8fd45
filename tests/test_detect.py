"""Architecture and version come from the weights."""

from __future__ import annotations

import pytest
import torch

from samkit.nn import ArchitectureError, build_network, detect_architecture
from samkit.nn.detect import signature_of


@pytest.mark.parametrize("arch, version", [("sam2_test", "2.1"), ("sam2_test", "2.0"), ("sam_test", "1"),
                                           ("mobile_sam", "1"), ("sam2_t", "2.1"), ("sam2_s", "2.0")])
def test_detects_own_architecture(arch, version):
    got_arch, got_version = detect_architecture(build_network(arch, version).state_dict())
    assert (got_arch.name, got_version) == (arch, version)


def test_sam2_signature_reads_stages_from_blocks():
    sig, version = signature_of(build_network("sam2_b", "2.0").state_dict())
    assert sig == ("sam2", 112, (2, 3, 16, 3)) and version == "2.0"


def test_unregistered_shape_is_refused():
    sd = build_network("sam2_test").state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("image_encoder.trunk.blocks.4.")}
    with pytest.raises(ArchitectureError, match=r"my\.pt: a sam2 checkpoint with encoder shape \(16, \(1, 1, 2\)\)"):
        detect_architecture(sd, "my.pt")


def test_half_upgraded_sam21_is_refused():
    sd = build_network("sam2_test", "2.0").state_dict()
    sd["no_obj_embed_spatial"] = torch.zeros(1, 64)
    with pytest.raises(ArchitectureError, match="only one of the SAM 2.1 parameters"):
        detect_architecture(sd, "mixed.pt")


def test_gappy_blocks_are_refused():
    sd = build_network("sam2_test").state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("image_encoder.trunk.blocks.2.")}
    with pytest.raises(ArchitectureError, match="non-contiguous"):
        detect_architecture(sd, "gap.pt")
