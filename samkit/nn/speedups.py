"""Faster equivalents of Ultralytics' SAM 2 image-encoder (Hiera) and memory-attention methods.

Each function here replaces one method on a built network's instances, through the table of
:mod:`samkit.nn.replacements` (the only place they are installed, gated by the Ultralytics versions and sources
they were written against).

- **Positional embedding, once per input size.** Hiera interpolates its background positional embedding
  (bicubic) and adds the tiled window embedding on every forward pass; for a fixed input size the result never
  changes. The replacement keeps the last one (for its size, dtype and device) and recomputes it when the
  parameters are written (their version counter moves), so the output is bit for bit what the module computes.
- **bf16 attention on the CPU.** PyTorch's fused CPU attention (torch 2.14) measured no faster in bf16 than in
  fp32 on an AVX512-BF16 CPU, while bf16 matrix products run ~2x faster than fp32 ones. Under bf16 on the CPU
  (inference only) the Hiera blocks and the memory attention's RoPE attentions attend through
  :func:`cpu_attention` instead: batched bf16 matrix products over query blocks small enough for the cache, the
  softmax written in place. 1.3-2.6x faster per call on an AVX512-BF16 CPU; fp32, autograd and every other
  device keep the fused kernel, so fp32 Hiera results are unchanged.
- **Memory attention's values at their own width, on the CPU.** The cross-attention to the memories projects
  64-wide memory tokens to a 256-wide head and then averages them with the softmax weights. Averaging first and
  projecting after is the same sum (each row of weights sums to 1, so the bias passes through): the
  4096 x ~28.7k weighted average runs over 64 channels instead of 256. PyTorch's fused CPU attention refuses
  values narrower than the keys, so the attention streams over blocks of keys with a running maximum and sum
  (:func:`streaming_attention`), in fp32 and bf16 alike: 1.35x faster than the fused kernel in fp32 and 1.7x
  faster than :func:`cpu_attention` in bf16 for that attention on a 2-core AVX512 CPU (the largest single cost
  of a tracked frame); equal to the fused kernel's fp32 result within rounding (~1e-6), not bit for bit.
- **Memory keys turned in place.** ultralytics' RoPE copies its frequencies once per memory frame and turns the
  keys into new tensors; on the CPU the memory attention broadcasts the frequencies instead and turns the keys
  where they are (:func:`_rotate`, the same products bit for bit): ~10 ms per layer and object on a 2-core CPU.
- **The first memory-attention layer's self-attention shared by the objects of a frame** (it sees only the
  frame's features; see :func:`shared_self_attention`): the same result, once per frame instead of once per
  object on the CPU, ~0.17 s per extra object for SAM 2.1 at 1024 px on a 2-core CPU.
- **Sine positional encodings kept contiguous** (the FPN neck's and the memory encoder's), per size and device;
  see :func:`sine_position`.
"""

from __future__ import annotations

import math

import torch

# Elements of one block of attention logits (4 MiB in bf16): measured fastest on a 2-core AVX512-BF16 CPU for
# Hiera's global (4096 x 4096) and windowed (64 x 64, 196 x 196) attention alike.
ATTENTION_BLOCK = 1 << 21


def cpu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = ATTENTION_BLOCK) -> torch.Tensor:
    """Softmax attention of ``(B, heads, Lq, C)`` queries over ``(B, heads, Lk, C)`` keys and values, in blocks.

    Scaled by ``C ** -0.5`` as ``F.scaled_dot_product_attention`` is. Windows (many short sequences) go through
    in groups of whole sequences; long sequences in blocks of query rows, each block's logits at most ``block``
    elements.
    """
    b, h, lq, c = q.shape
    lk = k.shape[2]
    n = b * h
    q = (q * c**-0.5).reshape(n, lq, c)
    kt = k.reshape(n, lk, c).transpose(1, 2)
    v = v.reshape(n, lk, v.shape[-1])
    out = q.new_empty(n, lq, v.shape[-1])
    group = max(1, block // (lq * lk))
    rows = lq if group > 1 else max(16, block // lk)
    for i in range(0, n, group):
        for j in range(0, lq, rows):
            logits = torch.bmm(q[i : i + group, j : j + rows], kt[i : i + group])
            torch.softmax(logits, -1, out=logits)
            torch.bmm(logits, v[i : i + group], out=out[i : i + group, j : j + rows])
    return out.view(b, h, lq, -1)


# Keys per block of :func:`streaming_attention`, and elements of one block of its logits (4 MiB in fp32, reused).
# For the memory attention's cross-attention (4096 queries over ~28.7k keys, 2-core AVX512 CPU) key blocks of 512 to
# 2048 and logits blocks of 0.5M to 8M elements measured within 2% of each other: 0.52 s, against 0.70 s for the
# fused kernel with the values projected to 256 channels.
KEY_BLOCK = 1024
STREAM_BLOCK = 1 << 20


def streaming_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_block: int = KEY_BLOCK,
                        block: int = STREAM_BLOCK) -> torch.Tensor:
    """Softmax attention of ``(B, heads, Lq, C)`` queries over ``(B, heads, Lk, C)`` keys and ``(B, heads, Lk, Cv)``
    values, ``Cv`` free (the fused CPU kernel wants ``Cv == C``), scaled by ``C ** -0.5``.

    Keys go through in blocks of ``key_block``, a running row maximum and sum rescaling what has been summed so far
    (the "online" softmax), so no row of logits is ever held whole; queries in blocks of ``block // key_block``
    rows. The running sums are kept in fp32 whatever the inputs' precision (bf16 sums over ~30 blocks would drift).
    """
    b, h, lq, c = q.shape
    lk, cv = k.shape[2], v.shape[-1]
    n = b * h
    q = (q * c**-0.5).reshape(n, lq, c)
    k = k.reshape(n, lk, c)
    v = v.reshape(n, lk, cv)
    out = q.new_empty(n, lq, cv)
    rows = min(lq, max(16, block // key_block))
    space = q.new_empty(rows * min(lk, key_block))  # one logits buffer for every block: no page faults per block
    fp32 = q.dtype == torch.float32
    for i in range(n):
        for r in range(0, lq, rows):
            qi = q[i, r : r + rows]
            # The running state starts empty: a maximum of -inf, so the first block's rescaling is exp(-inf) = 0.
            top = qi.new_full((qi.shape[0], 1), -math.inf, dtype=torch.float32)
            total = torch.zeros_like(top)
            acc = qi.new_zeros(qi.shape[0], cv, dtype=torch.float32)
            for j in range(0, lk, key_block):
                kj, vj = k[i, j : j + key_block], v[i, j : j + key_block]
                logits = torch.mm(qi, kj.T, out=space[: qi.shape[0] * kj.shape[0]].view(qi.shape[0], kj.shape[0]))
                block_top = logits.amax(-1, keepdim=True).float()
                new_top = torch.maximum(top, block_top)
                scale = (top - new_top).exp_()  # what the sums so far were weighted by, relative to now
                logits.sub_(new_top).exp_()
                total.mul_(scale).add_(logits.sum(-1, keepdim=True, dtype=torch.float32))
                if fp32:
                    acc.mul_(scale).addmm_(logits, vj)
                else:
                    acc.mul_(scale).add_(logits @ vj)
                top = new_top
            out[i, r : r + rows] = acc.div_(total)
    return out.view(b, h, lq, cv)


def _cpu_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` is attended on the CPU, for inference, outside compilation (the only place the replacements
    below take over: autograd and torch.compile keep the modules' own forwards)."""
    return x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def _bf16_on_cpu(x: torch.Tensor) -> bool:
    """Whether a block's input will be attended in bf16 on the CPU, for inference."""
    if not _cpu_inference(x):
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def multiscale_attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``MultiScaleAttention.forward`` with the attention in :func:`cpu_attention` under bf16 on the CPU."""
    if not _bf16_on_cpu(x):
        return type(self).forward(self, x)
    from ultralytics.models.sam.modules.blocks import do_pool

    b, hh, ww, _ = x.shape
    q, k, v = self.qkv(x).reshape(b, hh * ww, 3, self.num_heads, -1).unbind(2)  # each (B, L, heads, C)
    if self.q_pool:
        q = do_pool(q.reshape(b, hh, ww, -1), self.q_pool)
        hh, ww = q.shape[1:3]
        q = q.reshape(b, hh * ww, self.num_heads, -1)
    out = cpu_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return self.proj(out.transpose(1, 2).reshape(b, hh, ww, -1))


def _version(t: torch.Tensor) -> int:
    """A tensor's in-place write counter; inference tensors have none (-1: they change only by replacement)."""
    try:
        return t._version
    except RuntimeError:
        return -1


def _rotate(x: torch.Tensor, cis: torch.Tensor, heads: int, in_place: bool = False) -> torch.Tensor:
    """RoPE on ``(B, N, heads * C)`` rows (heads not yet separated): row ``i`` turned by ``cis[i % L]``, where
    ``cis`` is ``(L, C / 2)`` complex and ``N`` a multiple of ``L`` (the memories: ``N / L`` frames of the query
    grid).

    The arithmetic of ultralytics' ``apply_rotary_enc`` (fp32 complex products, rounded back to ``x``'s dtype),
    without repeating the frequencies for every memory frame: broadcast over frames and heads instead. With
    ``in_place`` an fp32 ``x`` is turned where it is (``x`` is returned).
    """
    b, n, d = x.shape
    length, pairs = cis.shape
    shape = (b, n // length, length, heads, pairs, 2)
    turn = cis[:, None]  # (L, 1, C / 2): the same frequencies for every head
    if in_place and x.dtype == torch.float32:
        torch.view_as_complex(x.view(shape)).mul_(turn)
        return x
    out = torch.view_as_real(torch.view_as_complex(x.float().reshape(shape)) * turn).view(b, n, d).to(x.dtype)
    if in_place:
        x.copy_(out)
        return x
    return out


def rope_attention_forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           num_k_exclude_rope: int = 0) -> torch.Tensor:
    """``RoPEAttention.forward``: under bf16 on the CPU the attention in :func:`cpu_attention`; on the CPU, values
    narrower than a head (the cross-attention to 64-wide memories) averaged before their projection, and the
    memory keys turned in place, the frequencies broadcast over memory frames (:func:`_rotate`)."""
    bf16 = _bf16_on_cpu(q)
    head = self.internal_dim // self.num_heads
    narrow = v.shape[-1] < head and _cpu_inference(q)
    n_rope = k.shape[-2] - num_k_exclude_rope  # trailing keys (object pointers) carry no position
    lq = q.shape[-2]
    keys_fit = n_rope == lq or (self.rope_k_repeat and n_rope % lq == 0)  # else the module's own error
    if not (bf16 or narrow) or not keys_fit:
        return type(self).forward(self, q, k, v, num_k_exclude_rope)
    side = math.sqrt(lq)  # queries are a square grid of image tokens
    if self.freqs_cis.shape[0] != lq:
        self.freqs_cis = self.compute_cis(end_x=side, end_y=side)
    self.freqs_cis = self.freqs_cis.to(q.device)
    q = _rotate(self.q_proj(q), self.freqs_cis, self.num_heads)
    k = self.k_proj(k)
    _rotate(k[:, :n_rope], self.freqs_cis, self.num_heads, in_place=True)
    q = self._separate_heads(q, self.num_heads)
    k = self._separate_heads(k, self.num_heads)
    if not narrow:
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        return self.out_proj(self._recombine_heads(cpu_attention(q, k, v)))
    # softmax(QK^T)(V W^T + b) = (softmax(QK^T) V) W^T + b: every row of softmax weights sums to 1.
    v = v.unsqueeze(1).expand(-1, self.num_heads, -1, -1).to(q.dtype)
    mixed = streaming_attention(q, k, v)  # (B, heads, Lq, kv_in_dim)
    weight = self.v_proj.weight.view(self.num_heads, head, -1)
    bias = self.v_proj.bias.view(self.num_heads, 1, head)
    out = torch.matmul(mixed, weight.transpose(1, 2).to(mixed.dtype)) + bias.to(mixed.dtype)
    return self.out_proj(self._recombine_heads(out))


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether two optional tensors are both absent, or of one dtype and equal element for element."""
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and torch.equal(a, b)


def shared_self_attention(self, tgt: torch.Tensor, query_pos: torch.Tensor | None) -> torch.Tensor:
    """``MemoryAttentionLayer._forward_sa`` of the memory attention's first layer, its last result kept.

    The first layer's self-attention sees only the current frame's features, the same for every object tracked
    on that frame: on the CPU objects are tracked one at a time, so the second and later objects of a frame get
    the first one's result (~0.17 s each for SAM 2.1 at 1024 px on a 2-core CPU). Kept while the input and
    positions are equal element for element (``torch.equal``, ~1 ms; a GPU would have to wait for it, so
    accelerators keep the module's own), and the layer's parameters and the precision are the same.
    """
    if not _cpu_inference(tgt):
        return type(self)._forward_sa(self, tgt, query_pos)
    autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")
    key = (tuple((p.data_ptr(), _version(p)) for p in self.parameters()), autocast, tgt.dtype, tgt.shape,
           torch.is_inference_mode_enabled())
    kept = self.__dict__.get("_samkit_sa")  # (key, input, positions, result), replaced whole
    if kept is not None:
        seen_key, seen, seen_pos, result = kept
        if seen_key == key and _same(seen, tgt) and _same(seen_pos, query_pos):
            return result.clone()  # the caller owns its result, as with the module's own
    result = type(self)._forward_sa(self, tgt, query_pos)
    self.__dict__["_samkit_sa"] = (key, tgt.clone(), None if query_pos is None else query_pos.clone(),
                                   result.clone())
    return result


def cached_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
    """``Hiera._get_pos_embed``, the last one kept while the input size and the parameters are unchanged."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return type(self)._get_pos_embed(self, hw)
    p, w = self.pos_embed, self.pos_embed_window
    autocast = torch.is_autocast_enabled(p.device.type) and torch.get_autocast_dtype(p.device.type)
    key = (tuple(hw), p.dtype, p.device, _version(p), _version(w), p.data_ptr(), w.data_ptr(),
           torch.is_inference_mode_enabled(), autocast)
    kept = self.__dict__.get("_samkit_pos_embed")  # (key, embedding), replaced whole: safe across threads
    if kept is None or kept[0] != key:
        kept = (key, type(self)._get_pos_embed(self, hw))
        self.__dict__["_samkit_pos_embed"] = kept
    return kept[1]


def sine_position(self, x: torch.Tensor) -> torch.Tensor:
    """``PositionEmbeddingSine.forward``, its embedding kept contiguous for each size and device.

    The module keeps one per size only (one computed on another device would be returned as it is), and as a
    channels-last view: copying that out into the (B, C, H, W) result, strided, took ~80 ms a pass for the image
    encoder's 256 x 256 level on the CPU (~3% of the encoder), against ~20 ms from a contiguous copy. The values
    are the module's own; every call returns a new tensor, as the module does.
    """
    if torch.compiler.is_compiling():
        return type(self).forward(self, x)
    size = (x.shape[-2], x.shape[-1])
    kept = self.__dict__.setdefault("_samkit_pos", {})
    pos = kept.get((size, x.device))
    if pos is None:
        if any(device != x.device for _, device in kept):  # the network moved: let the old device's copies go
            kept.clear()
        own = getattr(self, "cache", {})
        own.pop(size, None)  # computed afresh on this device, then left to this cache alone
        pos = type(self).forward(self, x[:1])[0].contiguous()
        own.pop(size, None)
        kept[(size, x.device)] = pos
    return pos[None].repeat(x.shape[0], 1, 1, 1)


__all__ = ["ATTENTION_BLOCK", "KEY_BLOCK", "STREAM_BLOCK", "cached_pos_embed", "cpu_attention",
           "multiscale_attention_forward", "rope_attention_forward", "shared_self_attention", "sine_position",
           "streaming_attention"]


def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
    """``PromptEncoder._embed_points`` without boolean-mask indexing: Ultralytics writes each label's embedding
    through ``embedding[labels == k]``, and a boolean index makes the host wait for the device (it must count the
    mask to size the result) five times per decode, tracked video frames included. ``torch.where`` selects the same
    values with no wait; each sum is formed and rounded once, as the in-place ``+=`` does, so the result is equal
    in every precision."""
    points = points + 0.5  # pixel centres
    if pad:
        points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
        labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
    pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
    labels = labels[..., None]
    out = torch.where(labels == -1, self.not_a_point_embed.weight.to(pe.dtype), pe)
    for k, embedding in enumerate(self.point_embeddings):
        out = torch.where(labels == k, (out + embedding.weight).to(pe.dtype), out)
    return out
