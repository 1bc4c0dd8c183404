"""The attention block and GEGLU against their formulas written out with einsum, in float64, with every weight
random (none left at its zero initialisation) and large enough that the softmax is far from uniform."""

import math

import torch
import torch.nn.functional as F

from gaussdiff.nets.attention import GEGLU, Attention

F64 = torch.float64


def randomize(module, std=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module.double().eval()


def attend(q, k, v, heads, mask=None):
    """softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017 Eq. 1), keys where ``mask`` is False left out:
    q [B, L, C], k and v [B, M, C] -> [B, L, C]."""
    B, L, C = q.shape
    d = C // heads
    split = lambda x: x.reshape(B, x.shape[1], heads, d)  # noqa: E731
    logits = torch.einsum("blhd,bmhd->bhlm", split(q), split(k)) / math.sqrt(d)
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", logits.softmax(-1), split(v)).reshape(B, L, C)


def test_geglu_is_the_value_half_times_gelu_of_the_gate_half():
    """Shazeer 2020 / latent-diffusion's GEGLU: proj's output split in two, [value | gate], out(value * gelu(gate)).
    A fresh GEGLU cannot tell the halves apart (both random); a trained one computes something else if swapped."""
    ff = randomize(GEGLU(6))
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    W, b = ff.proj.weight, ff.proj.bias
    value, gate = x @ W[:24].T + b[:24], x @ W[24:].T + b[24:]
    torch.testing.assert_close(ff(x), (value * F.gelu(gate)) @ ff.out.weight.T + ff.out.bias, rtol=1e-12, atol=1e-12)


def test_self_attention_is_the_residual_of_scaled_dot_product_attention():
    """ADM's block: x + proj(attention of q, k, v = W_qkv GroupNorm(x), split in that order, over the H W
    positions), heads of width C / heads, scaled by 1 / sqrt(width)."""
    block = randomize(Attention(8, num_heads=2, context_dim=None))
    x = torch.randn(2, 8, 3, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    tokens = lambda img: img.flatten(2).transpose(1, 2)  # noqa: E731
    qkv = tokens(F.conv2d(block.norm(x), block.qkv.weight, block.qkv.bias))
    q, k, v = qkv[..., :8], qkv[..., 8:16], qkv[..., 16:]
    out = attend(q, k, v, heads=2) @ block.proj.weight[:, :, 0, 0].T + block.proj.bias
    expected = x + out.transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_cross_attention_and_feed_forward_follow_the_spatial_transformer():
    """Rombach et al. 2022 Eq. 3 after the self-attention: tokens + W_o attention(W_q LN(tokens), W_k c, W_v c) with
    padding keys left out, then tokens + GEGLU(LN(tokens))."""
    block = randomize(Attention(8, num_heads=2, context_dim=5))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 2, 3, generator=g, dtype=F64)
    context = torch.randn(2, 4, 5, generator=g, dtype=F64)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    plain = Attention(8, num_heads=2, context_dim=None).double()
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if k.split(".")[0] in ("norm", "qkv", "proj")})
    tokens = plain(x).flatten(2).transpose(1, 2)  # the self-attention part, checked above
    q = block.cross_q(block.cross_norm(tokens))
    kv = block.cross_kv(context)
    tokens = tokens + block.cross(attend(q, kv[..., :8], kv[..., 8:], heads=2, mask=mask))
    tokens = tokens + block.ff(block.ff_norm(tokens))
    expected = tokens.transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(block(x, context, mask), expected, rtol=1e-10, atol=1e-10)
