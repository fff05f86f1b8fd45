"""Networks built from registry architectures have exactly the parameters of Meta's published models."""

from __future__ import annotations

import pytest
import torch

from samkit.nn import build, build_network
from tests.helpers import SAM2_CONFIGS, sam2_reference


def _keys_and_shapes(net):
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch, version", sorted(SAM2_CONFIGS))
def test_sam2_parameters_match_meta_reference(arch, version):
    """Same keys and shapes as Meta's own model built from its config, so Meta's checkpoints load strictly."""
    ref = sam2_reference(None, arch, version)
    ours = build_network(arch, version)
    assert _keys_and_shapes(ours) == _keys_and_shapes(ref)
    # The temporal encoding of object pointers is what separates 2.0 from 2.1 at run time too.
    for flag in ("add_tpos_enc_to_obj_ptrs", "proj_tpos_enc_in_obj_ptrs", "use_signed_tpos_enc_to_obj_ptrs"):
        assert getattr(ours, flag) == getattr(ref, flag), flag
    assert (ours.no_obj_embed_spatial is None) == (ref.no_obj_embed_spatial is None)


@pytest.mark.parametrize(
    "arch, builder",
    [("sam_b", "build_sam_vit_b"), ("mobile_sam", "build_mobile_sam")],
)
def test_sam1_parameters_match_ultralytics(arch, builder):
    from ultralytics.models.sam import build as ub

    assert _keys_and_shapes(build_network(arch)) == _keys_and_shapes(getattr(ub, builder)())


def test_sam21_adds_exactly_its_three_parameters():
    k20 = set(build_network("sam2_test", "2.0").state_dict())
    k21 = set(build_network("sam2_test", "2.1").state_dict())
    assert k21 - k20 == {"no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias"}
    assert not k20 - k21


def test_tiny_sam2_runs_the_full_image_path():
    net = build("sam2_test")
    assert net.image_size == 256
    with torch.no_grad():
        out = net.forward_image(torch.randn(1, 3, 256, 256))
        feats = [tuple(f.shape[-2:]) for f in out["backbone_fpn"]]
        assert feats == [(64, 64), (32, 32), (16, 16)]
        sparse, dense = net.sam_prompt_encoder(points=(torch.tensor([[[100.0, 100.0]]]), torch.tensor([[1]])),
                                               boxes=None, masks=None)
        masks, iou, _, _ = net.sam_mask_decoder(
            image_embeddings=out["backbone_fpn"][-1], image_pe=net.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
            repeat_image=False, high_res_features=out["backbone_fpn"][:2])
    assert masks.shape == (1, 3, 64, 64) and iou.shape == (1, 3)


def test_build_random_then_from_checkpoint(tmp_path):
    torch.manual_seed(1)
    a = build("sam2.1_test")
    torch.save(a.state_dict(), tmp_path / "w.pt")
    torch.manual_seed(2)
    assert not torch.equal(build("sam2.1_test").no_mem_embed, a.no_mem_embed)  # random init really is random
    b = build("sam2.1_test", checkpoint=tmp_path / "w.pt")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.parametrize("name", ["sam2.1_t", "sam2_t.pt", "sam2.1_hiera_tiny.pt", "sam2.0_test", "sam_test"])
def test_build_names(name):
    net = build(name)
    arch_sam2 = hasattr(net, "memory_attention")
    assert arch_sam2 == name.startswith("sam2")
    if arch_sam2:
        assert (net.no_obj_embed_spatial is not None) == ("2.1" in name or name == "sam2.1_t")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: build("sam2.1_x"), ValueError, "did you mean"),
        (lambda: build_network("sam2_test", "2.2"), ValueError, "'2.0' or '2.1'"),
        (lambda: build_network("sam_b", "2.1"), ValueError, "single version"),
        (lambda: build_network("nope"), ValueError, "unknown architecture 'nope'"),
    ],
)
def test_build_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
