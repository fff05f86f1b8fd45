"""Decoding many prompts on one image without repeating the image-side work of the first decoder layer.

SAM's mask decoder (a two-way transformer) starts from the same image tokens for every object. Its first layer
projects those tokens three times (keys and values for the tokens-to-image attention, queries for the
image-to-tokens attention) before any object-specific value touches them, so for B objects the reference does
that work B times. :class:`SharedImageTwoWay` computes it once and broadcasts; every later step is the
reference's. The result equals the reference's up to float rounding.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from ultralytics.models.sam.modules.transformer import TwoWayTransformer


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N, C) -> (B, n, N, C/n)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ultralytics ``Attention.forward`` on already projected q, k, v (batch dims broadcast)."""
    n = attn.num_heads
    q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
    w = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1)
    out = w @ v
    b, h, t, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, h * d))


class SharedImageTwoWay(nn.Module):
    """A ``TwoWayTransformer`` for B objects on one image: call it with (B, C, H, W) image embeddings whose
    B rows are identical (the decoder's ``repeat_image`` with one dense embedding for all objects)."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.inner = transformer

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor):
        t = self.inner
        x = image_embedding[:1].flatten(2).permute(0, 2, 1)  # (1, N, C) shared image tokens
        pe = image_pe[:1].flatten(2).permute(0, 2, 1)
        first = t.layers[0]
        # First layer: the image side is shared, only the prompt tokens differ per object.
        queries = first.self_attn(q=point_embedding, k=point_embedding, v=point_embedding)
        queries = first.norm1(queries)
        xp = x + pe
        ca = first.cross_attn_token_to_image
        attn_out = _attend(ca, ca.q_proj(queries + point_embedding), ca.k_proj(xp), ca.v_proj(x))
        queries = first.norm2(queries + attn_out)
        queries = first.norm3(queries + first.mlp(queries))
        ia = first.cross_attn_image_to_token
        q = queries + point_embedding
        attn_out = _attend(ia, ia.q_proj(xp), ia.k_proj(q), ia.v_proj(queries))  # (B, N, C)
        keys = first.norm4(x + attn_out)
        pe_b = pe.expand(keys.shape[0], -1, -1)
        for layer in t.layers[1:]:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=pe_b)
        attn_out = t.final_attn_token_to_image(q=queries + point_embedding, k=keys + pe, v=keys)
        return t.norm_final_attn(queries + attn_out), keys


@contextlib.contextmanager
def shared_image(decoder: nn.Module):
    """Within the block, ``decoder`` (a SAM or SAM 2 mask decoder) runs its transformer as
    :class:`SharedImageTwoWay`; only for calls where every object has the same image and dense embedding."""
    original = decoder.transformer
    if isinstance(original, TwoWayTransformer) and original.layers[0].skip_first_layer_pe:
        decoder._modules["transformer"] = SharedImageTwoWay(original)
    try:
        yield
    finally:
        decoder._modules["transformer"] = original
