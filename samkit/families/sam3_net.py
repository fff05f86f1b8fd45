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
    from samkit.utils.requirements import require_phrases

    require_phrases()
    from open_clip.tokenizer import SimpleTokenizer

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
    from ultralytics.models.sam.modules.blocks import (
        CXBlock,
        Fuser,
        MaskDownSampler,
        PositionEmbeddingSine,
        RoPEAttention,
    )
    from ultralytics.models.sam.modules.encoders import MemoryEncoder
    from ultralytics.models.sam.modules.memory_attention import MemoryAttention, MemoryAttentionLayer

    side = s.image_size // s.patch_size
    mem = s.d_model // 4  # the memory width: 64 in the published model (d_model 256)
    rope = dict(embedding_dim=s.d_model, num_heads=1, downsample_rate=1, rope_theta=10000.0, feat_sizes=[side, side])
    memory_attention = MemoryAttention(
        batch_first=True, d_model=s.d_model, pos_enc_at_input=True, num_layers=s.tracker_layers,
        layer=MemoryAttentionLayer(dim_feedforward=s.ffn, dropout=0.1, pos_enc_at_attn=False,
                                   pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
                                   self_attn=RoPEAttention(**rope), d_model=s.d_model,
                                   cross_attn=RoPEAttention(**rope, kv_in_dim=mem, rope_k_repeat=True)))
    # Ultralytics' MemoryEncoder fixes its fuser, mask down-sampler and position encoding at the published widths;
    # they are sized from d_model here, so that smaller networks can encode memory too (same modules at 256).
    memory_encoder = MemoryEncoder(out_dim=mem, in_dim=s.d_model, interpol_size=[side * 16, side * 16])
    memory_encoder.mask_downsampler = MaskDownSampler(embed_dim=s.d_model, kernel_size=3, stride=2, padding=1,
                                                      interpol_size=[side * 16, side * 16])
    memory_encoder.fuser = Fuser(CXBlock(dim=s.d_model), num_layers=2)
    memory_encoder.position_encoding = PositionEmbeddingSine(num_pos_feats=mem)
    return Sam3Tracker(
        image_size=s.image_size, image_encoder=None, memory_attention=memory_attention,
        memory_encoder=memory_encoder, backbone_stride=s.patch_size,
        num_maskmem=7, sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
        binarize_mask_from_pts_for_mem_enc=True, max_cond_frames_in_attn=4,
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


def memory_score(object_score_logits: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """A tracked frame's worth as memory for a batch of objects (Meta's ``cal_mem_score``): the object score
    rescaled to [0, 1] where the object is present (0 where not) times the predicted IoU. ``object_score_logits``
    (B, 1) and ``iou`` (B,) are broadcast against each other before the mean, as the reference does (for B > 1 that
    is the product of their means)."""
    present = torch.where(object_score_logits > 0, object_score_logits.sigmoid() * 2 - 1,
                          torch.zeros_like(object_score_logits))
    return (present * iou).mean()


#: The memory score a tracked frame needs for a later frame to attend to it (Meta's ``mf_threshold``).
MEMORY_THRESHOLD = 0.01


def selected_frames(tracker: nn.Module, output_dict: dict, frame_idx: int, num_frames: int,
                    reverse: bool) -> list[int]:
    """The non-conditioning frames frame ``frame_idx`` may attend to, oldest first (Meta's ``Sam3TrackerBase``):
    scanning back from the previous frame (frame 0 going forward, the last frame going backward, excluded), the most
    recent ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` frames whose memory score (``eff_score``, a float read
    once when the frame was stored) exceeds :data:`MEMORY_THRESHOLD`, and the previous frame always."""
    if (frame_idx == 0 and not reverse) or (frame_idx == num_frames - 1 and reverse):
        return []
    limit = min(num_frames, tracker.max_obj_ptrs_in_encoder) - 1
    prev = frame_idx + 1 if reverse else frame_idx - 1
    scan = range(prev, num_frames) if reverse else range(prev, 0, -1)
    stored = output_dict["non_cond_frame_outputs"]
    picked = []
    for i in scan:
        out = stored.get(i)
        if out is None or "eff_score" not in out:
            continue
        if out["eff_score"] > MEMORY_THRESHOLD:
            picked.insert(0, i)
        if len(picked) >= limit:
            break
    if prev not in picked:
        picked.append(prev)
    return picked


def memory_conditioned_features(self, frame_idx, is_init_cond_frame, current_vision_feats, current_vision_pos_embeds,
                                feat_sizes, output_dict, num_frames, track_in_reverse=False):
    """SAM 3's memory selection in place of SAM 2's fixed window (installed on the tracker by the family's
    replacement entry, :func:`replacements`): a tracked frame attends to its conditioning frames (at most
    ``max_cond_frames_in_attn``, the nearest) and to the frames :func:`selected_frames` picks; object pointers
    likewise."""
    from ultralytics.models.sam.modules.utils import get_1d_sine_pe, select_closest_cond_frames

    b, c = current_vision_feats[-1].size(1), self.hidden_dim
    h, w = feat_sizes[-1]
    device = current_vision_feats[-1].device
    if is_init_cond_frame:
        feat = current_vision_feats[-1] + self.no_mem_embed
        return feat.permute(1, 2, 0).view(b, c, h, w)
    sign = -1 if track_in_reverse else 1
    cond, unselected = select_closest_cond_frames(frame_idx, output_dict["cond_frame_outputs"],
                                                  self.max_cond_frames_in_attn)
    memories = [(0, out) for out in cond.values()]  # conditioning frames: temporal position 0
    picked = selected_frames(self, output_dict, frame_idx, num_frames, track_in_reverse)
    for t_pos in range(1, self.num_maskmem):
        back = self.num_maskmem - t_pos
        if back > len(picked):
            continue
        f = picked[-back]
        memories.append((t_pos, output_dict["non_cond_frame_outputs"].get(f, unselected.get(f))))
    feats, pos = [], []
    for t_pos, out in memories:
        if out is None:
            continue
        feats.append(out["maskmem_features"].to(device=device, dtype=torch.float32).flatten(2).permute(2, 0, 1))
        enc = out["maskmem_pos_enc"][-1].to(device).flatten(2).permute(2, 0, 1)
        pos.append(enc + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])
    max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
    ptrs = [((frame_idx - t) * sign, out["obj_ptr"]) for t, out in cond.items()
            if (t >= frame_idx if track_in_reverse else t <= frame_idx)]
    for rank in range(1, max_ptrs):
        if rank >= len(picked):
            break
        out = output_dict["non_cond_frame_outputs"].get(picked[-rank], unselected.get(picked[-rank]))
        if out is not None:
            ptrs.append((rank, out["obj_ptr"]))
    n_ptr_tokens = 0
    if ptrs:
        rel, stack = zip(*ptrs)
        obj_ptrs = torch.stack(stack, 0)
        t_pos_enc = torch.tensor(rel, dtype=torch.float32).to(device) / (max_ptrs - 1)
        obj_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(t_pos_enc, dim=c)).unsqueeze(1).expand(-1, b, -1)
        if self.mem_dim < c:  # a pointer becomes c // mem_dim tokens
            split = c // self.mem_dim
            obj_ptrs = obj_ptrs.reshape(-1, b, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            obj_pos = obj_pos.repeat_interleave(c // self.mem_dim, dim=0)
        feats.append(obj_ptrs)
        pos.append(obj_pos)
        n_ptr_tokens = obj_ptrs.shape[0]
    out = self.memory_attention(curr=current_vision_feats, curr_pos=current_vision_pos_embeds,
                                memory=torch.cat(feats, 0), memory_pos=torch.cat(pos, 0),
                                num_obj_ptr_tokens=n_ptr_tokens)
    return out.permute(1, 2, 0).view(b, c, h, w)


def replacements() -> tuple:
    """The family's entries in the replacement table (:mod:`samkit.nn.replacements`): SAM 3's memory selection on
    Ultralytics' ``SAM3Model``. It is *required* (it makes tracking Meta's SAM 3 rather than SAM 2): installed on
    every SAM 3 network, with a warning when the Ultralytics code it plugs into changed."""
    from samkit.nn.replacements import Replacement

    return (Replacement("sam.SAM3Model", "_prepare_memory_conditioned_features", memory_conditioned_features,
                        ("sam.SAM2Model._prepare_memory_conditioned_features", "sam.SAM2Model._track_step",
                         "utils.select_closest_cond_frames"), "26123ac4fdf1bba8",
                        "SAM 3's memory selection (Meta's Sam3TrackerBase)", required=True),)


def track(tracker: nn.Module, frame_idx: int, feats, pos, sizes, output_dict: dict, num_frames: int,
          reverse: bool = False, point_inputs=None, mask_inputs=None, prev_logits=None, no_memory: bool = False,
          encode_memory: bool = False) -> dict:
    """One tracking step of SAM 3's tracker for a batch of objects: ``pred_masks`` (B, 1, r, r), ``obj_ptr``,
    ``object_score_logits`` (B, 1), ``iou_score`` (B,) (the best predicted IoU), ``eff_iou_score``
    (:func:`memory_score`), and ``maskmem_features`` / ``maskmem_pos_enc`` when ``encode_memory`` (from the
    prediction itself; else None). ``no_memory``: decode without attending to any memory (a correction click in
    SAM 3's video predictor)."""
    sam, _, _ = tracker._track_step(frame_idx, no_memory, feats, pos, sizes, point_inputs, mask_inputs, output_dict,
                                    num_frames, reverse, prev_logits)
    _, _, ious, low_res, high_res, obj_ptr, obj_scores = sam
    iou = ious.max(-1)[0]
    out = {"pred_masks": low_res, "obj_ptr": obj_ptr, "object_score_logits": obj_scores, "iou_score": iou,
           "eff_iou_score": memory_score(obj_scores, iou), "maskmem_features": None, "maskmem_pos_enc": None}
    if encode_memory:
        out["maskmem_features"], out["maskmem_pos_enc"] = tracker._encode_new_memory(
            feats, sizes, high_res, obj_scores, point_inputs is not None)
    return out


def Sam3Tracker(**kwargs) -> nn.Module:  # noqa: N802 (Ultralytics' modules load lazily)
    """SAM 3's tracker: Ultralytics' ``SAM3Model`` (its memory selection comes with the replacement table)."""
    from ultralytics.models.sam.modules.sam import SAM3Model

    return SAM3Model(**kwargs)


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
