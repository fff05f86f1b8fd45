"""Decoding many prompts on one image without repeating the image-side work of the first decoder layer.

SAM's mask decoder (a two-way transformer) starts from the same image tokens for every object. The reference
repeats the image embedding, its positional encoding and the dense prompt embedding B times, and its first layer
projects the image tokens three times (keys and values for the tokens-to-image attention, queries for the
image-to-tokens attention) before any object-specific value touches them, so for B objects that work is done B
times. :func:`decode_shared` does it once and broadcasts; every later step is the reference's, with attention
through PyTorch's fused kernel (as Meta's SAM 2 code does) and ``keys + key_pe`` formed once per layer. The
result equals the reference's up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.models.sam.modules.transformer import TwoWayTransformer


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ultralytics ``Attention.forward`` on already projected q, k, v (batch dims broadcast), through PyTorch's
    fused scaled-dot-product attention (what Meta's SAM 2 uses) instead of separate matmul/softmax/matmul."""
    n = attn.num_heads

    def heads(x):
        b, t, c = x.shape
        return x.view(b, t, n, c // n).transpose(1, 2)

    qh, kh, vh = heads(q), heads(k), heads(v)
    b = max(qh.shape[0], kh.shape[0])
    out = F.scaled_dot_product_attention(qh.expand(b, -1, -1, -1), kh.expand(b, -1, -1, -1), vh.expand(b, -1, -1, -1))
    b, h, t, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, h * d))


def _block(layer: nn.Module, queries, keys, query_pe, key_pe, first: bool):
    """One ``TwoWayAttentionBlock``: the reference's steps, with ``keys + key_pe`` formed once (the reference forms
    it twice from the same unchanged keys)."""
    if first:
        sa = layer.self_attn
        queries = _attend(sa, sa.q_proj(queries), sa.k_proj(queries), sa.v_proj(queries))
    else:
        q = queries + query_pe
        sa = layer.self_attn
        queries = queries + _attend(sa, sa.q_proj(q), sa.k_proj(q), sa.v_proj(queries))
    queries = layer.norm1(queries)
    kp = keys + key_pe
    ca = layer.cross_attn_token_to_image
    queries = layer.norm2(queries + _attend(ca, ca.q_proj(queries + query_pe), ca.k_proj(kp), ca.v_proj(keys)))
    queries = layer.norm3(queries + layer.mlp(queries))
    ia = layer.cross_attn_image_to_token
    q = queries + query_pe
    out = _attend(ia, ia.q_proj(kp), ia.k_proj(q), ia.v_proj(queries))
    return queries, layer.norm4(keys + out)


class SharedImageTwoWay(nn.Module):
    """A ``TwoWayTransformer`` for B objects on one image: call it with (B, C, H, W) image embeddings whose
    B rows are identical (the decoder's ``repeat_image`` with one dense embedding for all objects)."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.inner = transformer

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor):
        t = self.inner
        keys = image_embedding[:1].flatten(2).permute(0, 2, 1)  # (1, N, C): shared until the first layer's end
        pe = image_pe[:1].flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for i, layer in enumerate(t.layers):
            queries, keys = _block(layer, queries, keys, point_embedding, pe, first=i == 0)
        fa = t.final_attn_token_to_image
        out = _attend(fa, fa.q_proj(queries + point_embedding), fa.k_proj(keys + pe), fa.v_proj(keys))
        return t.norm_final_attn(queries + out), keys


def decode_shared(decoder: nn.Module, image_embed: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                  dense: torch.Tensor, multimask: bool, high_res: list[torch.Tensor] | None = None):
    """The mask decoder's forward for B objects that share one image and one dense (no-mask) embedding.

    Same outputs as ``decoder(..., repeat_image=True)`` of a SAM 2 (``SAM2MaskDecoder``) or SAM
    (``MaskDecoder``) decoder, without materialising B copies of the image embedding, its positional encoding
    and the dense embedding.

    Args:
        decoder: The network's mask decoder.
        image_embed: (1, C, h, w) image embedding.
        image_pe: (1, C, h, w) dense positional encoding.
        sparse: (B, T, C) sparse prompt embeddings.
        dense: (1 or B, C, h, w) dense prompt embedding, the same for every object.
        multimask: Three candidate masks per object, or one chosen as the reference does.
        high_res: SAM 2's two high-resolution feature maps (None for SAM).

    Returns:
        ``(low_res_logits (B, K, 4h, 4w), iou (B, K))``.
    """
    sam2 = hasattr(decoder, "pred_obj_scores")
    s = 1 if sam2 and decoder.pred_obj_scores else 0
    heads = [decoder.iou_token.weight, decoder.mask_tokens.weight]
    if s:
        heads.insert(0, decoder.obj_score_token.weight)
    b = sparse.shape[0]
    tokens = torch.cat([torch.cat(heads, 0).unsqueeze(0).expand(b, -1, -1), sparse], 1)
    src = image_embed + dense[:1]
    hs, keys = SharedImageTwoWay(decoder.transformer)(src, image_pe, tokens)
    c, h, w = src.shape[1:]
    src = keys.transpose(1, 2).reshape(b, c, h, w)
    if sam2 and decoder.use_high_res_features and high_res is not None:
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res
        up = act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)
    else:
        up = decoder.output_upscaling(src)
    mask_tokens = hs[:, s + 1 : s + 1 + decoder.num_mask_tokens]
    hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], 1)
    bb, cc, hh, ww = up.shape
    masks = (hyper @ up.view(bb, cc, hh * ww)).view(bb, -1, hh, ww)
    iou = decoder.iou_prediction_head(hs[:, s])
    if multimask:
        return masks[:, 1:], iou[:, 1:]
    if sam2 and decoder.dynamic_multimask_via_stability and not decoder.training:
        return decoder._dynamic_multimask_via_stability(masks, iou)
    return masks[:, :1], iou[:, :1]


def can_share(decoder: nn.Module) -> bool:
    """Whether :func:`decode_shared` knows this decoder's transformer (the reference two-way transformer)."""
    t = getattr(decoder, "transformer", None)
    return isinstance(t, TwoWayTransformer) and t.layers[0].skip_first_layer_pe
