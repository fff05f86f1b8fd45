"""Meta's SAM 3 reference (PyPI ``sam3``, a test-only oracle) built in the size of a samkit registry architecture.

Meta's builder has no size arguments, so the reference network is wired here from its module classes with the
sizes of the registry entry (the same classes and topology as samkit's :func:`samkit.families.sam3_net.build_sam3`).

CPU patches, applied only inside :func:`cpu_patches` and undone after (sam3 0.1.4 assumes CUDA):

1. ``PositionEmbeddingSine.__init__`` precomputes its cache on "cuda": built on the CPU instead (same values).
2. ``TransformerDecoder._get_coords`` is called with device "cuda" at build time: mapped to the CPU.
3. ``Tensor.pin_memory`` (called on every exemplar box) needs a CUDA driver: the identity while patched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import torch
from torch import nn


@contextlib.contextmanager
def cpu_patches():
    from sam3.model import decoder as mdec
    from sam3.model import position_encoding as mpe

    init, coords, pin = (mpe.PositionEmbeddingSine.__init__, mdec.TransformerDecoder.__dict__["_get_coords"],
                         torch.Tensor.pin_memory)
    original_coords = mdec.TransformerDecoder._get_coords

    def pe_init(self, num_pos_feats, temperature=10000, normalize=True, scale=None, precompute_resolution=None):
        init(self, num_pos_feats, temperature, normalize, scale, precompute_resolution=None)
        if precompute_resolution is not None:
            for s in (4, 8, 16, 32):
                size = (precompute_resolution // s, precompute_resolution // s)
                self.forward(torch.zeros((1, 1) + size))
                self.cache[size] = self.cache[size].clone().detach()

    def get_coords(h, w, device):
        return original_coords(h, w, "cpu" if str(device).startswith("cuda") else device)

    mpe.PositionEmbeddingSine.__init__ = pe_init
    mdec.TransformerDecoder._get_coords = staticmethod(get_coords)
    torch.Tensor.pin_memory = lambda self, *a, **k: self
    try:
        yield
    finally:
        mpe.PositionEmbeddingSine.__init__ = init
        mdec.TransformerDecoder._get_coords = coords
        torch.Tensor.pin_memory = pin


def bpe_path() -> str:
    """The CLIP BPE file (open_clip ships it; the sam3 wheel does not)."""
    import open_clip

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


def build_reference(arch, interactive: bool = True) -> nn.Module:
    """Meta's ``Sam3Image`` (eval, random weights) in the sizes of registry architecture ``arch``, with its
    interactive predictor (the tracker's point and box heads) unless ``interactive=False``; call inside
    :func:`cpu_patches`."""
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.model_misc import MLP, DotProductScoring
    from sam3.model.model_misc import MultiheadAttentionWrapper as MHA
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_image import Sam3Image
    from sam3.model.text_encoder_ve import VETextEncoder
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone

    e, size = arch.encoder, arch.image_size
    d, heads, ffn = e["d_model"], e["heads"], e["ffn"]

    def mha(dropout=0.1, batch_first=False):
        return MHA(num_heads=heads, dropout=dropout, embed_dim=d, batch_first=batch_first)

    def pos(pre=None):
        return PositionEmbeddingSine(num_pos_feats=d, normalize=True, scale=None, temperature=10000,
                                     precompute_resolution=pre)

    def layer(cls, **kw):
        return cls(activation="relu", d_model=d, dim_feedforward=ffn, dropout=0.1, **kw)

    vit = ViT(img_size=size, pretrain_img_size=e["pretrain_img_size"], patch_size=e["patch_size"],
              embed_dim=e["embed_dim"], depth=e["depth"], num_heads=e["num_heads"], mlp_ratio=4.625,
              norm_layer="LayerNorm", drop_path_rate=0.1, qkv_bias=True, use_abs_pos=True, tile_abs_pos=True,
              global_att_blocks=tuple(e["global_att_blocks"]), rel_pos_blocks=(), use_rope=True, use_interp_rope=True,
              window_size=e["window_size"], pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True,
              ln_post=False, return_interm_layers=False, bias_patch_embed=False, compile_mode=None)
    neck = Sam3DualViTDetNeck(position_encoding=pos(size), d_model=d, scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=vit,
                              add_sam2_neck=True)
    text = VETextEncoder(tokenizer=SimpleTokenizer(bpe_path=bpe_path()), d_model=d, width=e["text_width"],
                         heads=e["text_heads"], layers=e["text_layers"], context_length=32, vocab_size=49408)
    encoder = TransformerEncoderFusion(
        layer=layer(TransformerEncoderLayer, pos_enc_at_attn=True, pos_enc_at_cross_attn_keys=False,
                    pos_enc_at_cross_attn_queries=False, pre_norm=True, self_attention=mha(batch_first=True),
                    cross_attention=mha(batch_first=True)),
        num_layers=e["encoder_layers"], d_model=d, num_feature_levels=1, frozen=False, use_act_checkpoint=True,
        add_pooled_text_to_img_feat=False, pool_text_with_mask=True)
    decoder = TransformerDecoder(
        layer=layer(TransformerDecoderLayer, cross_attention=mha(), n_heads=heads, use_text_cross_attention=True),
        num_layers=e["decoder_layers"], num_queries=e["queries"], return_intermediate=True, box_refine=True,
        num_o2m_queries=0, dac=True, boxRPB="log", d_model=d, frozen=False, interaction_layer=None,
        dac_use_selfatt_ln=True, resolution=size, stride=e["patch_size"], use_act_checkpoint=True,
        presence_token=True)
    scoring = DotProductScoring(d_model=d, d_proj=d, prompt_mlp=MLP(
        input_dim=d, hidden_dim=e["prompt_mlp"], output_dim=d, num_layers=2, dropout=0.1, residual=True,
        out_norm=nn.LayerNorm(d)))
    seg_head = UniversalSegmentationHead(
        hidden_dim=d, upsampling_stages=3, aux_masks=False, presence_head=False, dot_product_scorer=None,
        act_ckpt=True, cross_attend_prompt=mha(dropout=0),
        pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode="nearest", hidden_dim=d,
                                   compile_mode=None))
    geometry = SequenceGeometryEncoder(
        pos_enc=pos(), encode_boxes_as_points=False, points_direct_project=True, points_pool=True,
        points_pos_enc=True, boxes_direct_project=True, boxes_pool=True, boxes_pos_enc=True, d_model=d,
        num_layers=e["geometry_layers"],
        layer=layer(TransformerEncoderLayer, pos_enc_at_attn=False, pre_norm=True, self_attention=mha(),
                    pos_enc_at_cross_attn_queries=False, pos_enc_at_cross_attn_keys=True, cross_attention=mha()),
        use_act_ckpt=True, add_cls=True, add_post_encode_proj=True)
    model = Sam3Image(backbone=SAM3VLBackbone(visual=neck, text=text, scalp=1),
                      transformer=TransformerWrapper(encoder=encoder, decoder=decoder, d_model=d),
                      input_geometry_encoder=geometry, segmentation_head=seg_head, num_feature_levels=1,
                      o2m_mask_predict=True, dot_prod_scoring=scoring, use_instance_query=False,
                      multimask_output=True, inst_interactive_predictor=_tracker(arch) if interactive else None,
                      matcher=None)
    return model.eval()


def _tracker(arch, memory_selection: bool = False, wrap: bool = True):
    """Meta's tracker (``build_tracker``) and interactive image predictor in the sizes of ``arch``."""
    from sam3.model.decoder import TransformerDecoderLayerv2, TransformerEncoderCrossAttention
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam1_task_predictor import SAM3InteractiveImagePredictor
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor
    from sam3.sam.transformer import RoPEAttention

    e, size = arch.encoder, arch.image_size
    d, side = e["d_model"], arch.image_size // e["patch_size"]
    mem = d // 4  # as samkit sizes it: 64 at d_model 256 (Meta hard-codes the 256-wide parts)
    memory_encoder = SimpleMaskEncoder(
        out_dim=mem, in_dim=d,
        position_encoding=PositionEmbeddingSine(num_pos_feats=mem, normalize=True, scale=None, temperature=10000,
                                                precompute_resolution=size),
        mask_downsampler=SimpleMaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1,
                                               interpol_size=[side * 16] * 2),
        fuser=SimpleFuser(layer=CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                                        use_dwconv=True), num_layers=2))
    rope = dict(embedding_dim=d, num_heads=1, downsample_rate=1, dropout=0.1, rope_theta=10000.0,
                feat_sizes=[side, side], use_fa3=False, use_rope_real=False)
    encoder = TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[], batch_first=True, d_model=d, frozen=False, pos_enc_at_input=True,
        layer=TransformerDecoderLayerv2(
            cross_attention_first=False, activation="relu", dim_feedforward=e["ffn"], dropout=0.1,
            pos_enc_at_attn=False, pre_norm=True, self_attention=RoPEAttention(**rope), d_model=d,
            pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
            cross_attention=RoPEAttention(**rope, kv_in_dim=mem, rope_k_repeat=True)),
        num_layers=e["tracker_layers"], use_act_checkpoint=False)
    tracker = Sam3TrackerPredictor(
        image_size=size, num_maskmem=7, backbone=None, backbone_stride=e["patch_size"],
        transformer=TransformerWrapper(encoder=encoder, decoder=None, d_model=d), maskmem_backbone=memory_encoder,
        multimask_output_in_sam=True, forward_backbone_per_frame_for_eval=True, trim_past_non_cond_mem_for_eval=False,
        multimask_output_for_tracking=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
        always_start_from_first_ann_frame=False, non_overlap_masks_for_mem_enc=False,
        non_overlap_masks_for_output=False, max_cond_frames_in_attn=4, offload_output_to_cpu_for_eval=False,
        sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                     "dynamic_multimask_stability_delta": 0.05,
                                     "dynamic_multimask_stability_thresh": 0.98},
        clear_non_cond_mem_around_input=True, fill_hole_area=0, use_memory_selection=memory_selection)
    if not wrap:  # the tracker alone (the video model's)
        return tracker
    predictor = SAM3InteractiveImagePredictor(tracker)
    predictor._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]  # fixed to 1008 upstream
    return predictor


_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)


@torch.no_grad()
def fill_random_(model: nn.Module, seed: int = 0) -> None:
    """Draw every parameter and persistent float buffer again from a generator seeded by ``(seed, name)``: no tensor
    stays constant (a zero-initialised box head would make box comparisons trivial) and none is left uninitialised.
    Norm weights 1 + 0.1 N, norm biases and other 1-D tensors 0.02 N (LayerScale gammas 0.1 N), embeddings N(0, 1),
    matrices N(0, 1 / fan_in)."""
    norms, embeddings = set(), set()
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, _NORMS):
            norms.update(prefix + p for p, _ in m.named_parameters(recurse=False))
        if isinstance(m, nn.Embedding):
            embeddings.add(prefix + "weight")
    persistent = set(model.state_dict())
    for name, t in [*model.named_parameters(), *((n, b) for n, b in model.named_buffers() if n in persistent)]:
        if not t.is_floating_point() or t.is_complex() or not t.numel():
            continue
        seed_ = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)
        r = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed_))
        if name in norms:
            v = 1.0 + 0.1 * r if name.endswith("weight") else 0.02 * r
        elif name in embeddings:
            v = r
        elif t.ndim >= 2:
            v = r / t[0].numel() ** 0.5
        else:
            v = (0.1 if name.endswith(".gamma") else 0.02) * r
        t.copy_(v.to(t.dtype))


def published_layout(reference: nn.Module) -> dict:
    """The reference's weights as Meta publishes ``sam3.pt`` (the inverse of its loader): ``{"model":
    {"detector.<key>": ..., "tracker.<key>": ...}}``, rotary tables and unused point projections included."""
    inner = "inst_interactive_predictor.model."
    return {"model": {(f"tracker.{k[len(inner):]}" if k.startswith(inner) else f"detector.{k}"): v
                      for k, v in reference.state_dict().items()}}
