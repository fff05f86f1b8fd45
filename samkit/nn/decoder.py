"""The mask decoder's ``predict_masks`` for many prompts on one image, without repeating the image-side work.

This is the only mask-decoder arithmetic samkit runs: it replaces ``SAM2MaskDecoder.predict_masks`` and
``MaskDecoder.predict_masks`` on a built network (see :mod:`samkit.nn.replacements`), so images, mask prompts and
video all reach it through the decoder's own ``forward`` (which keeps Ultralytics' choice of output masks), and
``torch.compile`` of the decoder compiles it.

SAM's mask decoder (a two-way transformer) starts from the same image tokens for every object. The reference
repeats the image embedding, its positional encoding and the dense prompt embedding B times, and its first layer
projects the image tokens three times (keys and values for the tokens-to-image attention, queries for the
image-to-tokens attention) before any object-specific value touches them, so for B objects that work is done B
times. The replacement does it once and broadcasts; every later step is the reference's, with attention
through PyTorch's fused kernel (as Meta's SAM 2 code does) and ``keys + key_pe`` formed once per layer. The
result equals the reference's up to float rounding.

On the CPU, the attentions between the few prompt tokens (T, about 8) and the
4096 image tokens skip the per-object projections of the image tokens: per head, ``(x Wq) (K)^T`` is computed as
``x (Wq^T K^T)`` and ``A (V) Wo^T`` as ``A (V Wo^T)``, so each object multiplies the image tokens by ``heads x T``
columns (64 for a box) instead of the 128 internal channels, for the queries, keys, values and output
projections alike. Same mathematics, different rounding.
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


def _image_to_tokens(attn: nn.Module, x: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor) -> torch.Tensor:
    """``attn(q=x, k=k_in, v=v_in)`` for many image tokens ``x`` (B|1, N, C) attending to few tokens (B, T, C),
    without projecting ``x`` to the internal width: logits ``x (Wq_h^T K_h^T) + bq_h K_h^T`` per head, output
    ``A (V_h Wo_h^T) + bo``."""
    h = attn.num_heads
    k, v = attn.k_proj(k_in), attn.v_proj(v_in)  # (B, T, h*d)
    b, t, hd = k.shape
    d, c = hd // h, x.shape[-1]
    scale = d**-0.5
    kh = k.view(b, t, h, d)
    mt = torch.einsum("hdc,bthd->bhtc", attn.q_proj.weight.view(h, d, c), kh * scale).reshape(b, h * t, c)
    beta = torch.einsum("hd,bthd->bht", attn.q_proj.bias.view(h, d), kh * scale).reshape(b, h * t, 1)
    # Logits laid out (B, heads x T, N): the softmax over T then runs along a strided axis of length T, ~10x
    # faster on the CPU than a softmax along a last axis of length 8.
    if x.shape[0] == 1 and b > 1:  # shared image tokens: one GEMM for every object's rows
        logits = (mt.reshape(b * h * t, c) @ x[0].transpose(0, 1)).view(b, h * t, -1)
    else:
        logits = torch.bmm(mt, x.transpose(1, 2))
    logits = logits + beta
    a = torch.softmax(logits.view(b, h, t, -1), 2).view(b, h * t, -1).transpose(1, 2)  # (B, N, h*T)
    n = torch.einsum("bthd,chd->bhtc", v.view(b, t, h, d), attn.out_proj.weight.view(-1, h, d)).reshape(b, h * t, -1)
    return torch.baddbmm(attn.out_proj.bias.expand(b, 1, -1), a, n)


def _tokens_to_image(attn: nn.Module, q_in: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_in, k=xk, v=xv)`` for few tokens (B, T, C) attending to many image tokens (B|1, N, C), without
    projecting the image tokens: logits ``(Q_h Wk_h) xk^T`` per head (the key bias shifts a whole softmax row and
    drops out), values ``(A xv) Wv_h^T + bv_h``."""
    h = attn.num_heads
    q = attn.q_proj(q_in)
    b, t, hd = q.shape
    d, c = hd // h, xk.shape[-1]
    p = torch.einsum("bthd,hdc->bhtc", q.view(b, t, h, d), attn.k_proj.weight.view(h, d, c)).reshape(b, h * t, c)
    a = torch.softmax(torch.bmm(p * d**-0.5, xk.expand(b, -1, -1).transpose(1, 2)), -1)  # (B, h*T, N)
    av = torch.bmm(a, xv.expand(b, -1, -1)).view(b, h, t, c)
    out = torch.einsum("bhtc,hdc->bthd", av, attn.v_proj.weight.view(h, d, c)) + attn.v_proj.bias.view(h, d)
    return attn.out_proj(out.reshape(b, t, hd))


def _act_(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``, written into ``x`` when ``act`` is a GELU (the decoders' upscaling activation)."""
    if type(act) is nn.GELU:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)


def _few_tokens(attn: nn.Module, t: int) -> bool:
    """Whether factoring pays: fewer (head, token) pairs than internal channels."""
    return attn.num_heads * t < attn.q_proj.out_features


def _block(layer: nn.Module, queries, keys, query_pe, key_pe, first: bool, factored: bool = False):
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
    t = queries.shape[1]
    if factored and keys.shape[0] > 1 and _few_tokens(ca, t):  # per-object keys: skip their projections
        queries = layer.norm2(queries + _tokens_to_image(ca, queries + query_pe, kp, keys))
    else:
        queries = layer.norm2(queries + _attend(ca, ca.q_proj(queries + query_pe), ca.k_proj(kp), ca.v_proj(keys)))
    queries = layer.norm3(queries + layer.mlp(queries))
    ia = layer.cross_attn_image_to_token
    q = queries + query_pe
    if factored and _few_tokens(ia, t):
        out = _image_to_tokens(ia, kp, q, queries)
    else:
        out = _attend(ia, ia.q_proj(kp), ia.k_proj(q), ia.v_proj(queries))
    return queries, layer.norm4(keys + out)


def _two_way(transformer: nn.Module, src: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor,
             factored: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayTransformer.forward`` for B token sets over (1 or B, C, h, w) image tokens ``src``: with one image
    row its tokens are shared until the first layer has mixed them with each object's tokens."""
    keys = src.flatten(2).permute(0, 2, 1)  # (1 or B, N, C)
    pe = image_pe[:1].flatten(2).permute(0, 2, 1)
    queries = tokens
    for i, layer in enumerate(transformer.layers):
        queries, keys = _block(layer, queries, keys, tokens, pe, first=i == 0, factored=factored)
    fa = transformer.final_attn_token_to_image
    if factored and _few_tokens(fa, queries.shape[1]):
        out = _tokens_to_image(fa, queries + tokens, keys + pe, keys)
    else:
        out = _attend(fa, fa.q_proj(queries + tokens), fa.k_proj(keys + pe), fa.v_proj(keys))
    return transformer.norm_final_attn(queries + out), keys


def _shared_rows(x: torch.Tensor) -> torch.Tensor:
    """``x[:1]`` when every row of ``x`` is the first one by construction (one row, or a broadcast view such as the
    prompt encoder's no-mask embedding), else ``x``."""
    return x[:1] if x.shape[0] == 1 or x.stride(0) == 0 else x


def _heads(decoder: nn.Module, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
           dense: torch.Tensor, high_res: list[torch.Tensor] | None, s: int):
    """The decoder's transformer, upscaling and heads for B objects: ``(masks (B, M, 4h, 4w), iou (B, M),
    hs (B, T, C))`` with M the decoder's mask tokens."""
    b = sparse.shape[0]
    heads = [decoder.iou_token.weight, decoder.mask_tokens.weight]
    if s:
        heads.insert(0, decoder.obj_score_token.weight)
    tokens = torch.cat([torch.cat(heads, 0).unsqueeze(0).expand(b, -1, -1), sparse], 1)
    src = image + _shared_rows(dense)
    hs, keys = _two_way(decoder.transformer, src, image_pe, tokens, factored=src.device.type == "cpu")
    c, h, w = src.shape[1:]
    src = keys.transpose(1, 2).reshape(b, c, h, w)
    if getattr(decoder, "use_high_res_features", False) and high_res is not None:
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res
        if torch.is_grad_enabled():
            up = act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)
        else:  # the same, in place: no new (B, 32, 256, 256) maps for the sum and the activation
            up = _act_(act2, dc2(act1(ln1(dc1(src).add_(feat_s1)))).add_(feat_s0))
    else:
        up = decoder.output_upscaling(src)
    mask_tokens = hs[:, s + 1 : s + 1 + decoder.num_mask_tokens]
    hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], 1)
    bb, cc, hh, ww = up.shape
    masks = (hyper @ up.view(bb, cc, hh * ww)).view(bb, -1, hh, ww)
    return masks, decoder.iou_prediction_head(hs[:, s]), hs


def _applies(decoder: nn.Module, image: torch.Tensor, b: int, repeat_image: bool) -> bool:
    """Whether the shared decoding applies: inference, the reference two-way transformer, and one image for every
    object (repeated) or one image row per object."""
    t = getattr(decoder, "transformer", None)
    if torch.is_grad_enabled() or not isinstance(t, TwoWayTransformer) or not t.layers[0].skip_first_layer_pe:
        return False
    return image.shape[0] == 1 if repeat_image else image.shape[0] == b


def sam2_predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                       sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                       repeat_image: bool, high_res_features: list[torch.Tensor] | None = None):
    """``SAM2MaskDecoder.predict_masks`` without repeating the image for every object (see the module docstring):
    ``(masks (B, 4, 4h, 4w), iou (B, 4), mask_tokens_out (B, 4, C), object_score_logits (B, 1))``.

    Training (autograd) and unknown transformers run the class's own method.
    """
    b = sparse_prompt_embeddings.shape[0]
    if not _applies(self, image_embeddings, b, repeat_image):
        return type(self).predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings, repeat_image, high_res_features)
    s = 1 if self.pred_obj_scores else 0
    masks, iou, hs = _heads(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                            high_res_features, s)
    mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens]
    if s:
        score = self.pred_obj_score_head(hs[:, 0])
    else:  # no object-score head: "present" (sigmoid(10) ~ 1), as the class's own
        score = 10.0 * iou.new_ones(iou.shape[0], 1)
    return masks, iou, mask_tokens_out, score


def sam_predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor):
    """``MaskDecoder.predict_masks`` (SAM, MobileSAM) without repeating the image for every object:
    ``(masks (B, 4, 4h, 4w), iou (B, 4))``. Training and unknown transformers run the class's own method."""
    b = sparse_prompt_embeddings.shape[0]
    if not _applies(self, image_embeddings, b, repeat_image=True):
        return type(self).predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                                        dense_prompt_embeddings)
    masks, iou, _ = _heads(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                           None, 0)
    return masks, iou
