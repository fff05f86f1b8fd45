"""Build SAM-family networks from registry architectures, out of ultralytics' SAM modules.

The modules (Hiera, memory attention, decoders, ...) are ultralytics', whose state-dict keys match Meta's
checkpoints one for one; only the wiring and the per-version flags are samkit's. The flags follow Meta's
published configurations (``sam2/configs/sam2*/*.yaml``) plus the post-processing options its predictors turn
on at build time.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from samkit.nn.registry import Architecture, model_registry
from samkit.nn.replacements import install
from samkit.utils.requirements import no_autoinstall, require


def _sam2_flags(version: str) -> dict:
    """SAM2Model keyword arguments for SAM 2 ("2.0") or SAM 2.1 ("2.1")."""
    v21 = version == "2.1"
    return dict(
        num_maskmem=7,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        # SAM 2.0 has no temporal encoding on object pointers; 2.1 adds a projected, signed one.
        add_tpos_enc_to_obj_ptrs=v21,
        proj_tpos_enc_in_obj_ptrs=v21,
        use_signed_tpos_enc_to_obj_ptrs=v21,
        no_obj_embed_spatial=v21,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        # Meta's predictors switch these on at build time for inference.
        binarize_mask_from_pts_for_mem_enc=True,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        compile_image_encoder=False,
    )


def _build_sam2(arch: Architecture, version: str) -> nn.Module:
    from ultralytics.models.sam.modules.blocks import RoPEAttention
    from ultralytics.models.sam.modules.encoders import FpnNeck, Hiera, ImageEncoder, MemoryEncoder
    from ultralytics.models.sam.modules.memory_attention import MemoryAttention, MemoryAttentionLayer
    from ultralytics.models.sam.modules.sam import SAM2Model

    t = arch.trunk
    embed_dim, stages = t["embed_dim"], list(t["stages"])
    # Hiera doubles the channels at each of its 3 stage shifts; the neck takes them deepest first.
    channels = [embed_dim * 2**i for i in range(len(stages))][::-1]
    image_encoder = ImageEncoder(
        trunk=Hiera(
            embed_dim=embed_dim,
            num_heads=t["num_heads"],
            stages=stages,
            global_att_blocks=list(t["global_att_blocks"]),
            window_pos_embed_bkg_spatial_size=list(t["window_pos_embed_bkg_spatial_size"]),
            window_spec=list(t["window_spec"]),
        ),
        neck=FpnNeck(d_model=256, backbone_channel_list=channels, fpn_top_down_levels=[2, 3],
                     fpn_interp_model="nearest"),
        scalp=1,
    )
    feat = arch.image_size // 16
    layer = MemoryAttentionLayer(
        d_model=256,
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        self_attn=RoPEAttention(embedding_dim=256, num_heads=1, downsample_rate=1, feat_sizes=(feat, feat)),
        cross_attn=RoPEAttention(
            embedding_dim=256, num_heads=1, downsample_rate=1, rope_k_repeat=True, kv_in_dim=64, feat_sizes=(feat, feat)
        ),
    )
    memory_attention = MemoryAttention(d_model=256, pos_enc_at_input=True, num_layers=4, layer=layer)
    return SAM2Model(
        image_encoder=image_encoder,
        memory_attention=memory_attention,
        memory_encoder=MemoryEncoder(out_dim=64),
        image_size=arch.image_size,
        **_sam2_flags(version),
    )


def _build_sam1(arch: Architecture, version: str = "1") -> nn.Module:
    from ultralytics.models.sam.modules.decoders import MaskDecoder
    from ultralytics.models.sam.modules.encoders import ImageEncoderViT, PromptEncoder
    from ultralytics.models.sam.modules.sam import SAMModel
    from ultralytics.models.sam.modules.tiny_encoder import TinyViT
    from ultralytics.models.sam.modules.transformer import TwoWayTransformer

    e, size = arch.encoder, arch.image_size
    if arch.family == "mobile_sam":
        encoder = TinyViT(
            img_size=size,
            in_chans=3,
            num_classes=1000,
            embed_dims=list(e["embed_dims"]),
            depths=list(e["depths"]),
            num_heads=list(e["num_heads"]),
            window_sizes=list(e["window_sizes"]),
            mlp_ratio=4.0,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=4.0,
            local_conv_size=3,
            layer_lr_decay=0.8,
        )
    else:
        encoder = ImageEncoderViT(
            depth=e["depth"],
            embed_dim=e["embed_dim"],
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=e["num_heads"],
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(e["global_attn_indexes"]),
            window_size=14,
            out_chans=256,
        )
    return SAMModel(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(size // 16, size // 16),
            input_image_size=(size, size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _build_sam3(arch: Architecture, version: str = "3") -> nn.Module:
    from samkit.nn.sam3 import build_sam3

    return build_sam3(arch)


#: Family -> the function that wires Ultralytics' modules for it (``(arch, version) -> network``).
BUILDERS = {"sam2": _build_sam2, "sam": _build_sam1, "mobile_sam": _build_sam1, "sam3": _build_sam3}
#: Family -> its versions, the default first.
VERSIONS = {"sam2": ("2.1", "2.0"), "sam": ("1",), "mobile_sam": ("1",), "sam3": ("3",)}
#: Packages a family's network needs beyond the base install: family -> (extra, its modules needed, what needs them).
FAMILY_EXTRAS = {"sam3": ("sam3", ("timm",), "SAM 3 (Ultralytics' SAM 3 ViT imports timm)")}


def network_tensors(arch: Architecture, state_dict: dict) -> dict:
    """A checkpoint's tensors under the network's names: SAM 3's published layout keeps only the image network's
    tensors (:func:`samkit.nn.sam3.network_state_dict`); the other families' checkpoints are used as they are."""
    if arch.family == "sam3":
        from samkit.nn.sam3 import network_state_dict

        return network_state_dict(state_dict)
    return state_dict


def require_family(family: str) -> None:
    """Raise :class:`~samkit.utils.requirements.MissingExtra` when a package the family's network needs is not
    installed (SAM 3: ``timm``, which Ultralytics' SAM 3 ViT imports), before anything is read or built."""
    if family in FAMILY_EXTRAS:
        extra, modules, what = FAMILY_EXTRAS[family]
        require(extra, what, modules)


def build_network(arch: Architecture | str, version: str | None = None, replacements: bool = True) -> nn.Module:
    """Build an untrained network (random weights, eval mode, on the CPU) for an architecture, with samkit's
    replacements of Ultralytics methods installed (:mod:`samkit.nn.replacements`).

    Args:
        arch: An :class:`Architecture` or its registry name (``"sam2_b"``, ``"sam_h"``, ``"sam2_test"``...).
        version: ``"2.1"`` (default for SAM 2) or ``"2.0"``; SAM and MobileSAM only have ``"1"``.
        replacements: Install the replacement table (False: Ultralytics' modules exactly as they are, for
            comparisons).

    Returns:
        ultralytics ``SAM2Model`` (SAM 2 family) or ``SAMModel`` (SAM, MobileSAM).
    """
    if isinstance(arch, str):
        arch = model_registry().architecture(arch)
    if arch.family not in BUILDERS:
        raise ValueError(f"no builder for model family {arch.family!r}; known: {sorted(BUILDERS)}")
    versions = VERSIONS[arch.family]
    version = versions[0] if version is None else str(version)
    if version not in versions:
        one = f"has a single version {versions[0]!r}" if len(versions) == 1 else \
            f"version must be {' or '.join(map(repr, sorted(versions)))}"
        raise ValueError(f"{arch.family} {one}, got {version!r}")
    require_family(arch.family)
    with no_autoinstall():  # Ultralytics' modules may ask for packages; none is installed behind the user's back
        net = BUILDERS[arch.family](arch, version)
    if replacements:
        install(net)
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
        return arch, VERSIONS[arch.family][0]
    for prefix, version in (("sam2.1_", "2.1"), ("sam2.0_", "2.0")):
        if stem.startswith(prefix) and f"sam2_{stem[len(prefix):]}" in reg.architectures:
            return reg.architectures[f"sam2_{stem[len(prefix):]}"], version
    reg.model(name)  # raises with close matches
    raise AssertionError("unreachable")
