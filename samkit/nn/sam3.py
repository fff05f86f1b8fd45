"""SAM 3's image network (the concept detector), wired from Ultralytics' SAM 3 modules with sizes from the registry.

Ultralytics' ``build_sam3_image_model`` fixes every size, imports an unpublished CLIP fork for its tokenizer and loads
weights non-strictly; samkit builds the same module classes itself (``ultralytics.models.sam.sam3``), with every size
from the registry entry (so the small test architecture has the real topology), a published tokenizer
(``open_clip``'s CLIP BPE tokenizer, token ids equal to Meta's), and strict loading.

The network's state-dict keys are those of Meta's ``sam3.pt``: ``detector.<key>``. Keys of the published file that
the network does not use are listed in :data:`UNUSED_PREFIXES` / :func:`unused_key` (rotary tables the modules
recompute, and point projections Meta's detector never calls). ``tracker.<key>`` is SAM 3's SAM-2-style tracker:
its prompt encoder and mask decoder answer clicks and boxes on the detector's image features (the vision
backbone's SAM 2 neck), and its memory is for video; the published names are renamed to Ultralytics'
(:data:`TRACKER_RENAMES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samkit.nn.registry import Architecture

#: Checkpoint keys of Meta's ``sam3.pt`` the network has no tensor for: the point-prompt projections of the
#: geometry encoder (Meta's detector never calls them).
UNUSED_PREFIXES = ("detector.geometry_encoder.points_",)
#: The published tracker's module names -> the names of Ultralytics' ``SAM3Model`` (SAM 3.1 files name the
#: interactive heads ``tracker.model.interactive_*``).
TRACKER_RENAMES = (("tracker.model.interactive_", "tracker."), ("tracker.model.interactivity_", "tracker."),
                   ("interactive_convs", "sam2_convs"), ("tracker.transformer.encoder.", "tracker.memory_attention."),
                   ("tracker.maskmem_backbone.", "tracker.memory_encoder."))
#: Rotary-embedding tables Meta saves as buffers; the modules compute the same tables at build time.
UNUSED_SUFFIXES = (".attn.freqs_cis",)
CONTEXT_LENGTH = 32  # tokens per phrase (the text encoder's positional table)
VOCAB_SIZE = 49408  # CLIP's BPE vocabulary


def unused_key(key: str) -> bool:
    """Whether a ``sam3.pt`` key is one the image detector does not use (see the module docstring)."""
    return key.startswith(UNUSED_PREFIXES) or (key.startswith("detector.") and key.endswith(UNUSED_SUFFIXES))


@dataclass(frozen=True)
class Sam3Sizes:
    """Every size of the SAM 3 detector (the registry entry's ``encoder`` section)."""

    image_size: int
    patch_size: int
    pretrain_img_size: int
    embed_dim: int
    depth: int
    num_heads: int
    global_att_blocks: tuple[int, ...]
    window_size: int
    d_model: int
    heads: int
    ffn: int
    encoder_layers: int
    decoder_layers: int
    geometry_layers: int
    queries: int
    prompt_mlp: int
    text_width: int
    text_heads: int
    text_layers: int
    tracker_layers: int

    @classmethod
    def of(cls, arch: Architecture) -> Sam3Sizes:
        e = dict(arch.encoder)
        e["global_att_blocks"] = tuple(e["global_att_blocks"])
        return cls(image_size=arch.image_size, **e)


def make_tokenizer():
    """CLIP's BPE tokenizer (``open_clip``): ``tokenizer(list_of_phrases, context_length=32)`` -> (B, 32) ids."""
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:
        raise ImportError("SAM 3's text prompts need the CLIP tokenizer of open_clip: pip install 'samkit[sam3]' "
                          "(or pip install open_clip_torch)") from None
    return SimpleTokenizer()


class _LazyTokenizer:
    """The tokenizer, created on first use: networks used for exemplar boxes or for loading need no open_clip."""

    def __init__(self):
        self._tok = None

    def __call__(self, texts, context_length: int = CONTEXT_LENGTH):
        if self._tok is None:
            self._tok = make_tokenizer()
        return self._tok(texts, context_length=context_length)


class Sam3Network(nn.Module):
    """SAM 3's network: ``detector`` is Ultralytics' ``SAM3SemanticModel`` (vision and text backbones, geometry
    encoder for exemplar boxes, fusion encoder, DETR-style decoder with a presence token, mask head); ``tracker`` is
    Ultralytics' ``SAM3Model`` without a backbone of its own (prompt encoder, mask decoder, memory), fed by the
    detector's vision backbone."""

    def __init__(self, detector: nn.Module, tracker: nn.Module, sizes: Sam3Sizes):
        super().__init__()
        self.detector = detector
        self.tracker = tracker
        self.sizes = sizes
        self.image_size = sizes.image_size

    @property
    def image_encoder(self) -> nn.Module:
        """The vision backbone (what an image pass runs), under the name the other families use."""
        return self.detector.backbone.vision_backbone


def _mha(s: Sam3Sizes, dropout: float = 0.1, batch_first: bool = False) -> nn.MultiheadAttention:
    return nn.MultiheadAttention(s.d_model, s.heads, dropout=dropout, batch_first=batch_first)


def _sine(s: Sam3Sizes):
    from ultralytics.models.sam.modules.blocks import PositionEmbeddingSine

    return PositionEmbeddingSine(num_pos_feats=s.d_model, normalize=True, scale=None, temperature=10000)


def _vision(s: Sam3Sizes) -> nn.Module:
    from ultralytics.models.sam.sam3.necks import Sam3DualViTDetNeck
    from ultralytics.models.sam.sam3.vitdet import ViT

    vit = ViT(img_size=s.image_size, pretrain_img_size=s.pretrain_img_size, patch_size=s.patch_size,
              embed_dim=s.embed_dim, depth=s.depth, num_heads=s.num_heads, mlp_ratio=4.625, norm_layer="LayerNorm",
              drop_path_rate=0.1, qkv_bias=True, use_abs_pos=True, tile_abs_pos=True,
              global_att_blocks=s.global_att_blocks, rel_pos_blocks=(), use_rope=True, use_interp_rope=True,
              window_size=s.window_size, pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True,
              ln_post=False, return_interm_layers=False, bias_patch_embed=False, compile_mode=None)
    return Sam3DualViTDetNeck(position_encoding=_sine(s), d_model=s.d_model, scale_factors=[4.0, 2.0, 1.0, 0.5],
                              trunk=vit, add_sam2_neck=True)


def build_sam3(arch: Architecture) -> Sam3Network:
    """The SAM 3 image network of ``arch`` (family ``sam3``), random weights, eval mode.

    Parameters the modules leave uninitialised (``torch.empty``: the text encoder's positional table and text
    projection) are drawn as CLIP draws them, so a random-weight network computes finite outputs.
    """
    from ultralytics.models.sam.sam3.decoder import TransformerDecoder, TransformerDecoderLayer
    from ultralytics.models.sam.sam3.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from ultralytics.models.sam.sam3.geometry_encoders import SequenceGeometryEncoder
    from ultralytics.models.sam.sam3.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from ultralytics.models.sam.sam3.model_misc import DotProductScoring, TransformerWrapper
    from ultralytics.models.sam.sam3.sam3_image import SAM3SemanticModel
    from ultralytics.models.sam.sam3.text_encoder_ve import VETextEncoder
    from ultralytics.models.sam.sam3.vl_combiner import SAM3VLBackbone
    from ultralytics.nn.modules.transformer import MLP

    s = Sam3Sizes.of(arch)
    text = VETextEncoder(tokenizer=_LazyTokenizer(), d_model=s.d_model, width=s.text_width, heads=s.text_heads,
                         layers=s.text_layers, context_length=CONTEXT_LENGTH, vocab_size=VOCAB_SIZE)
    backbone = SAM3VLBackbone(visual=_vision(s), text=text, scalp=1)
    encoder = TransformerEncoderFusion(
        layer=TransformerEncoderLayer(
            d_model=s.d_model, dim_feedforward=s.ffn, dropout=0.1, pos_enc_at_attn=True,
            pos_enc_at_cross_attn_keys=False, pos_enc_at_cross_attn_queries=False, pre_norm=True,
            self_attention=_mha(s, batch_first=True), cross_attention=_mha(s, batch_first=True)),
        num_layers=s.encoder_layers, d_model=s.d_model, num_feature_levels=1, frozen=False, use_act_checkpoint=True,
        add_pooled_text_to_img_feat=False, pool_text_with_mask=True)
    decoder = TransformerDecoder(
        layer=TransformerDecoderLayer(d_model=s.d_model, dim_feedforward=s.ffn, dropout=0.1,
                                      cross_attention=_mha(s), n_heads=s.heads, use_text_cross_attention=True),
        num_layers=s.decoder_layers, num_queries=s.queries, return_intermediate=True, box_refine=True,
        num_o2m_queries=0, dac=True, boxRPB="log", d_model=s.d_model, frozen=False, interaction_layer=None,
        dac_use_selfatt_ln=True, use_act_checkpoint=True, presence_token=True)
    scoring = DotProductScoring(d_model=s.d_model, d_proj=s.d_model, prompt_mlp=MLP(
        input_dim=s.d_model, hidden_dim=s.prompt_mlp, output_dim=s.d_model, num_layers=2, residual=True,
        out_norm=nn.LayerNorm(s.d_model)))
    seg_head = UniversalSegmentationHead(
        hidden_dim=s.d_model, upsampling_stages=3, aux_masks=False, presence_head=False, dot_product_scorer=None,
        act_ckpt=True, cross_attend_prompt=_mha(s, dropout=0.0),
        pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode="nearest", hidden_dim=s.d_model,
                                   compile_mode=None))
    geometry = SequenceGeometryEncoder(
        pos_enc=_sine(s), boxes_direct_project=True, boxes_pool=True, boxes_pos_enc=True, d_model=s.d_model,
        num_layers=s.geometry_layers,
        # Both attentions given: the layer's default is a fixed 8-head, 256-wide attention.
        layer=TransformerEncoderLayer(d_model=s.d_model, dim_feedforward=s.ffn, dropout=0.1, pos_enc_at_attn=False,
                                      pre_norm=True, pos_enc_at_cross_attn_queries=False,
                                      pos_enc_at_cross_attn_keys=True, self_attention=_mha(s),
                                      cross_attention=_mha(s)),
        use_act_ckpt=True, add_cls=True, add_post_encode_proj=True)
    detector = SAM3SemanticModel(backbone=backbone, transformer=TransformerWrapper(encoder=encoder, decoder=decoder,
                                                                                   d_model=s.d_model),
                                 input_geometry_encoder=geometry, segmentation_head=seg_head, num_feature_levels=1,
                                 o2m_mask_predict=True, dot_prod_scoring=scoring, use_instance_query=False,
                                 multimask_output=True)
    with torch.no_grad():
        for module in detector.modules():
            if type(module).__name__ == "TextTransformer":
                nn.init.normal_(module.positional_embedding, std=0.01)
                if isinstance(module.text_projection, nn.Parameter):
                    nn.init.normal_(module.text_projection, std=module.text_projection.shape[0] ** -0.5)
    return Sam3Network(detector, _tracker(s), s).eval()


def _tracker(s: Sam3Sizes) -> nn.Module:
    from ultralytics.models.sam.modules.blocks import RoPEAttention
    from ultralytics.models.sam.modules.encoders import MemoryEncoder
    from ultralytics.models.sam.modules.memory_attention import MemoryAttention, MemoryAttentionLayer
    from ultralytics.models.sam.modules.sam import SAM3Model

    side = s.image_size // s.patch_size
    rope = dict(embedding_dim=s.d_model, num_heads=1, downsample_rate=1, rope_theta=10000.0, feat_sizes=[side, side])
    memory_attention = MemoryAttention(
        batch_first=True, d_model=s.d_model, pos_enc_at_input=True, num_layers=s.tracker_layers,
        layer=MemoryAttentionLayer(dim_feedforward=s.ffn, dropout=0.1, pos_enc_at_attn=False,
                                   pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
                                   self_attn=RoPEAttention(**rope), d_model=s.d_model,
                                   cross_attn=RoPEAttention(**rope, kv_in_dim=64, rope_k_repeat=True)))
    return SAM3Model(
        image_size=s.image_size, image_encoder=None, memory_attention=memory_attention,
        memory_encoder=MemoryEncoder(out_dim=64, interpol_size=[side * 16, side * 16]), backbone_stride=s.patch_size,
        num_maskmem=7, sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True, use_high_res_features_in_sam=True,
        multimask_output_in_sam=True, iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True, only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True,
        pred_obj_scores_mlp=True, fixed_no_obj_ptr=True, multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True, compile_image_encoder=False, no_obj_embed_spatial=True,
        proj_tpos_enc_in_obj_ptrs=True, use_signed_tpos_enc_to_obj_ptrs=True,
        sam_mask_decoder_extra_args={"dynamic_multimask_via_stability": True,
                                     "dynamic_multimask_stability_delta": 0.05,
                                     "dynamic_multimask_stability_thresh": 0.98})


def sam3_signature(state_dict) -> tuple | None:
    """``("sam3", vit width, vit depth, detector width, text width)`` of a ``detector.``-prefixed state dict, or
    None when it is not SAM 3's."""
    pre = "detector.backbone.vision_backbone.trunk."
    key = pre + "patch_embed.proj.weight"
    if key not in state_dict:
        return None
    depth = len({k[len(pre) + 7:].split(".")[0] for k in state_dict if k.startswith(pre + "blocks.")})
    d_model = int(state_dict["detector.backbone.vision_backbone.convs.0.conv_1x1.weight"].shape[0]) if (
        "detector.backbone.vision_backbone.convs.0.conv_1x1.weight" in state_dict) else None
    text = state_dict.get("detector.backbone.language_backbone.encoder.token_embedding.weight")
    return ("sam3", int(state_dict[key].shape[0]), depth, d_model, None if text is None else int(text.shape[1]))


def with_prefix(state_dict: dict) -> dict:
    """A SAM 3 state dict in the ``sam3.pt`` layout: the detector's own keys (Meta's ``Sam3Image`` or Ultralytics'
    ``SAM3SemanticModel`` saved directly) get their ``detector.`` prefix."""
    if any(k.startswith(("detector.", "tracker.")) for k in state_dict):
        return state_dict
    if "backbone.vision_backbone.trunk.patch_embed.proj.weight" in state_dict:
        return {f"detector.{k}": v for k, v in state_dict.items()}
    return state_dict


def network_state_dict(state_dict: dict) -> dict:
    """The tensors of a SAM 3 checkpoint under the network's names: the ``detector.`` prefix added where missing,
    the tracker's published names renamed (:data:`TRACKER_RENAMES`), the keys :func:`unused_key` names left
    out."""
    out = {}
    for k, v in with_prefix(state_dict).items():
        if unused_key(k):
            continue
        for old, new in TRACKER_RENAMES:
            if old in k and k.startswith("tracker."):
                k = k.replace(old, new, 1)
        out[k] = v
    return out
