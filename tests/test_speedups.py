"""SAM 2 speed-ups: blocked bf16 attention on the CPU (Hiera, memory attention), the memory attention's values
averaged at their own width, its keys turned in place, its first self-attention shared by the objects of a
frame, Hiera's positional embedding kept."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from samkit.nn import speedups
from samkit.nn.build import build_network
from samkit.nn.replacements import install
from samkit.nn.speedups import cpu_attention, streaming_attention


@pytest.mark.parametrize(
    "q_shape, kv_shape, block",
    [
        ((1, 2, 300, 24), (1, 2, 300, 24), 4096),  # one long sequence in blocks of query rows (last block short)
        ((50, 3, 16, 8), (50, 3, 64, 8), 3000),  # pooled queries over windows, in groups of windows (last short)
        ((4, 1, 49, 16), (4, 1, 49, 16), 1 << 21),  # everything in one block
    ],
)
def test_blocked_attention_is_attention(q_shape, kv_shape, block):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(q_shape, generator=g)
    k, v = torch.randn(kv_shape, generator=g), torch.randn(kv_shape, generator=g)
    want = F.scaled_dot_product_attention(q, k, v)
    got = cpu_attention(q, k, v, block=block)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # In bf16 it stays within bf16 rounding of the exact result.
    got16 = cpu_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block=block)
    assert got16.dtype == torch.bfloat16
    assert (got16.float() - want).abs().max() < 0.05


@pytest.mark.parametrize(
    "q_shape, k_shape, v_width, key_block, block",
    [
        ((1, 1, 300, 32), (1, 1, 2500, 32), 8, 512, 512 * 40),  # 5 key blocks (last short), 8 query blocks
        ((2, 3, 70, 16), (2, 3, 33, 16), 4, 1024, 1 << 22),  # several batches and heads, one block each
        ((1, 1, 64, 16), (1, 1, 100, 16), 24, 10, 160),  # values wider than keys; key blocks of 10
    ],
)
def test_streaming_attention_is_attention(q_shape, k_shape, v_width, key_block, block):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(q_shape, generator=g), torch.randn(k_shape, generator=g)
    v = torch.randn(*k_shape[:-1], v_width, generator=g)
    want = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v
    got = streaming_attention(q, k, v, key_block=key_block, block=block)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # bf16 inputs: the running sums stay fp32, so the result is as close as the rounding of the inputs allows.
    got16 = streaming_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), key_block=key_block, block=block)
    assert got16.dtype == torch.bfloat16
    assert (got16.float() - want).abs().max() < 0.05


def plain_network(arch: str) -> torch.nn.Module:
    """``arch`` with seeded random weights and Ultralytics' own methods (no replacements)."""
    torch.manual_seed(0)
    return build_network(arch, replacements=False)


def test_streaming_attention_rescales_when_a_later_block_holds_the_maximum():
    """Logits of several hundred: exp() overflows unless every block is rescaled to the running maximum, and a
    maximum that arrives in a later block must shrink what was summed before it."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 20, 8, generator=g) * 30
    k = torch.randn(1, 1, 64, 8, generator=g) * 30
    k[..., 40:, :] *= 3  # the largest logits of most rows in the last key blocks
    v = torch.randn(1, 1, 64, 3, generator=g)
    want = torch.softmax(q.double() @ k.double().transpose(-1, -2) * 8**-0.5, -1) @ v.double()
    got = streaming_attention(q, k, v, key_block=16)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def _encode(net, x):
    with torch.inference_mode():
        return net.image_encoder(x)["backbone_fpn"]


def test_fp32_encoder_unchanged_and_bf16_uses_blocked_attention(monkeypatch):
    plain = plain_network("sam2_test")
    fast = copy.deepcopy(plain)
    assert install(fast) > 0
    assert install(fast) == 0, "installing twice must not wrap twice"
    x = torch.randn(1, 3, 256, 256)
    for a, b in zip(_encode(plain, x), _encode(fast, x)):
        assert torch.equal(a, b), "fp32 must stay bit-identical"

    calls = []
    monkeypatch.setattr(speedups, "cpu_attention", lambda *a, **k: calls.append(1) or cpu_attention(*a, **k))
    _encode(fast, x)
    assert not calls, "fp32 must keep the fused attention"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = _encode(plain, x)
        got = _encode(fast, x)
    n_blocks = sum(1 for m in fast.image_encoder.modules() if type(m).__name__ == "MultiScaleAttention")
    assert len(calls) == n_blocks
    for a, b in zip(want, got):
        assert torch.corrcoef(torch.stack([a.float().flatten(), b.float().flatten()]))[0, 1] > 0.999


def test_positional_embedding_cache_follows_size_and_weights():
    plain = plain_network("sam2_test")
    fast = copy.deepcopy(plain)
    install(fast)
    small, large = torch.randn(1, 3, 128, 128), torch.randn(1, 3, 256, 256)
    for x in (large, small, large):  # a new size must not reuse the other size's embedding
        for a, b in zip(_encode(plain, x), _encode(fast, x)):
            assert torch.equal(a, b)
        kept = fast.image_encoder.trunk.__dict__["_samkit_pos_embed"]
        assert kept[0][0] == (x.shape[-2] // 4, x.shape[-1] // 4), "not kept for the patch grid's size"
    # Weights written in place (as load_state_dict does) must be seen.
    new = {k: v + 0.5 for k, v in plain.state_dict().items() if "pos_embed" in k}
    plain.load_state_dict(new, strict=False)
    fast.load_state_dict(new, strict=False)
    for a, b in zip(_encode(plain, large), _encode(fast, large)):
        assert torch.equal(a, b), "a stale positional embedding was reused after the weights changed"


def test_memory_attention_values_averaged_at_their_own_width(monkeypatch):
    """The cross-attention to the 64-wide memories streams over narrow values (the same sums, re-ordered); the
    self-attention keeps the fused kernel in fp32 and is blocked in bf16; autograd keeps the original."""
    plain = plain_network("sam2_test")
    fast = copy.deepcopy(plain)
    install(fast)
    g = torch.Generator().manual_seed(1)
    tokens = 16 * 16  # the test architecture's 256 px input gives a 16 x 16 feature grid
    curr, curr_pos = torch.randn(tokens, 2, 256, generator=g), torch.randn(tokens, 2, 256, generator=g)
    memory = torch.randn(3 * tokens + 4, 2, 64, generator=g)  # three memory frames, then 4 object-pointer tokens
    memory_pos = torch.randn(3 * tokens + 4, 2, 64, generator=g)

    def attend(net, grad=False):
        with torch.inference_mode(not grad), torch.set_grad_enabled(grad):
            return net.memory_attention(curr=curr, memory=memory, curr_pos=curr_pos, memory_pos=memory_pos,
                                        num_obj_ptr_tokens=4)

    layers = len(fast.memory_attention.layers)
    streamed, blocked = [], []
    monkeypatch.setattr(speedups, "streaming_attention",
                        lambda *a, **k: streamed.append(a[2].shape) or streaming_attention(*a, **k))
    monkeypatch.setattr(speedups, "cpu_attention", lambda *a, **k: blocked.append(1) or cpu_attention(*a, **k))
    want = attend(plain)
    got = attend(fast)
    assert len(streamed) == layers and not blocked, "fp32: the cross-attention of every layer streams, no more"
    assert all(shape[-1] == 64 for shape in streamed), "values must be averaged at the memories' width"
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)

    streamed.clear()
    assert torch.equal(attend(fast, grad=True), attend(plain, grad=True)), "autograd keeps the original"
    assert not streamed

    with torch.autocast("cpu", dtype=torch.bfloat16):
        want16, got16 = attend(plain), attend(fast)
    assert len(blocked) == layers, "bf16: the self-attention of every layer blocked"
    assert len(streamed) == layers, "bf16: the cross-attention of every layer streamed"
    assert torch.corrcoef(torch.stack([want16.float().flatten(), got16.float().flatten()]))[0, 1] > 0.999


def test_narrow_values_with_several_heads():
    """Each head's slice of ``v_proj`` applied to that head's average: checked on a RoPE attention with 2 heads
    (SAM 2's memory attention has one), values 16 wide, queries of a batch of 3."""
    from ultralytics.models.sam.modules.blocks import RoPEAttention

    torch.manual_seed(0)
    plain = RoPEAttention(embedding_dim=64, num_heads=2, kv_in_dim=16, rope_k_repeat=True, feat_sizes=(8, 8))
    fast = copy.deepcopy(plain)
    assert install(fast) == 1
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 64, 64, generator=g)
    k, v = torch.randn(3, 2 * 64 + 4, 16, generator=g), torch.randn(3, 2 * 64 + 4, 16, generator=g)
    with torch.inference_mode():
        want = plain(q, k, v, num_k_exclude_rope=4)
        got = fast(q, k, v, num_k_exclude_rope=4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sine_position_kept_contiguous_per_size_and_device():
    """The neck's sine encoding: the module's values, a new tensor every call, and one per device (the module's
    own cache, keyed on the size alone, would hand a tensor computed on one device to an input on another)."""
    plain = plain_network("sam2_test")
    fast = copy.deepcopy(plain)
    install(fast)
    pe, fast_pe = plain.image_encoder.neck.position_encoding, fast.image_encoder.neck.position_encoding
    with torch.inference_mode():
        for shape in [(1, 32, 24, 20), (3, 32, 8, 8), (1, 32, 24, 20)]:
            x = torch.zeros(shape)
            want, got = pe(x), fast_pe(x)
            assert torch.equal(got, want) and got.is_contiguous()
            got.add_(1.0)  # a caller writing into the result must not reach the kept encoding
            assert torch.equal(fast_pe(x), want)
        meta = fast_pe(torch.zeros(1, 32, 24, 20, device="meta"))
        assert meta.device.type == "meta" and meta.shape == pe(torch.zeros(1, 32, 24, 20)).shape
        assert fast_pe(torch.zeros(1, 32, 24, 20)).device.type == "cpu"
        assert list(fast_pe.__dict__["_samkit_pos"]) == [((24, 20), torch.device("cpu"))], "old device's copies kept"
    # Whole encoder: still bit for bit.
    x = torch.randn(1, 3, 256, 256)
    for a, b in zip(_encode(plain, x), _encode(fast, x)):
        assert torch.equal(a, b)


def test_first_layer_self_attention_shared_by_objects_on_one_frame():
    """Objects tracked one at a time on a frame share the first layer's self-attention (it sees only the frame's
    features): computed once, reused while the features, positions, weights and precision are the same, and the
    result is the module's own for every object."""
    plain = plain_network("sam2_test")
    fast = copy.deepcopy(plain)
    install(fast)
    calls = []
    fast.memory_attention.layers[0].self_attn.register_forward_hook(lambda *a: calls.append(1))
    g = torch.Generator().manual_seed(3)
    tokens = 16 * 16
    curr, curr_pos = torch.randn(tokens, 1, 256, generator=g), torch.randn(tokens, 1, 256, generator=g)
    memories = [(torch.randn(2 * tokens + 4, 1, 64, generator=g), torch.randn(2 * tokens + 4, 1, 64, generator=g))
                for _ in range(3)]

    def attend(net, feats, pos, memory, memory_pos, grad=False):
        with torch.inference_mode(not grad), torch.set_grad_enabled(grad):
            return net.memory_attention(curr=feats, memory=memory, curr_pos=pos, memory_pos=memory_pos,
                                        num_obj_ptr_tokens=4)

    for i, (memory, memory_pos) in enumerate(memories):  # three objects on one frame
        got = attend(fast, curr, curr_pos, memory, memory_pos)
        torch.testing.assert_close(got, attend(plain, curr, curr_pos, memory, memory_pos), atol=2e-5, rtol=1e-5)
        with torch.inference_mode():
            got.add_(1.0)  # a caller writing into its result must not reach what is kept
    assert len(calls) == 1, f"first layer's self-attention ran {len(calls)} times for one frame"

    # Equal features in a new tensor (the next object, features re-read) still count as the same frame.
    got = attend(fast, curr.clone(), curr_pos.clone(), *memories[0])
    assert len(calls) == 1
    torch.testing.assert_close(got, attend(plain, curr, curr_pos, *memories[0]), atol=2e-5, rtol=1e-5)

    # Called directly: equal input with other positions computes again; writing into a result reaches nothing kept.
    layer, plain_layer = fast.memory_attention.layers[0], plain.memory_attention.layers[0]
    x = torch.randn(1, tokens, 256, generator=g)
    pos_a, pos_b = torch.randn(1, tokens, 256, generator=g), torch.randn(1, tokens, 256, generator=g)
    with torch.inference_mode():
        for pos in (pos_a, pos_b, pos_b, pos_b):
            got = layer._forward_sa(x, pos)
            assert torch.equal(got, plain_layer._forward_sa(x, pos))
            got.mul_(0.0)
    assert len(calls) == 3, "positions not part of what is compared"
    calls.clear()
    calls.append(1)

    # A new frame, new positions, a weight written in place, autograd, bf16: each computes again.
    other = curr.clone()
    other[5, 0, 7] += 1e-3
    cases = [
        lambda net: attend(net, other, curr_pos, *memories[1]),
        lambda net: attend(net, other, curr_pos + 1e-3, *memories[1]),
        lambda net: attend(net, other, curr_pos + 1e-3, *memories[1], grad=True),
    ]
    for n, case in enumerate(cases, start=2):
        torch.testing.assert_close(case(fast), case(plain), atol=2e-5, rtol=1e-5)
        assert len(calls) == n
    new = {k: v * 1.1 for k, v in plain.state_dict().items() if k.startswith("memory_attention.layers.0.norm1")}
    plain.load_state_dict(new, strict=False)
    fast.load_state_dict(new, strict=False)
    torch.testing.assert_close(cases[1](fast), cases[1](plain), atol=2e-5, rtol=1e-5)
    assert len(calls) == 5, "a stale self-attention was reused after the weights changed"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = cases[1](fast), cases[1](plain)
    assert len(calls) == 6 and a.dtype == b.dtype
    assert torch.corrcoef(torch.stack([a.float().flatten(), b.float().flatten()]))[0, 1] > 0.999
