"""The noisy classifier's pooling against ADM's AttentionPool2d written out, and its middle block's attention."""

import math

import pytest
import torch
import torch.nn.functional as F

from gaussdiff.nets import NoisyClassifier, NoisyClassifierConfig, UNetConfig


def classifier(pool: str) -> NoisyClassifier:
    """A small classifier in float64 with every parameter drawn afresh (a trained one's zero-initialised
    branches are not zero)."""
    encoder = UNetConfig(image_size=8, in_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1,
                         attention_resolutions=(4,), num_heads=2)
    net = NoisyClassifier(NoisyClassifierConfig(encoder, pool=pool, num_classes=3))
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return net.double().eval()


def features(net, x, t):
    """The positions' features before pooling, SiLU(GroupNorm(middle)) ``[B, HW, C]``, caught at the norm."""
    seen = []
    handle = net.norm.register_forward_hook(lambda m, i, out: seen.append(F.silu(out)))
    logits = net(x, t)
    handle.remove()
    return logits, seen[0].flatten(2).transpose(1, 2)


@pytest.mark.parametrize("pool", ["attention", "mean"])
def test_pooling_is_adms_attention_pool_or_the_mean(pool):
    """ADM's AttentionPool2d: tokens [mean; positions] plus learned positional embeddings; the mean token alone
    queries, attending over all HW + 1 tokens (itself too) with softmax(q k^T / sqrt(d)) per head of d = C / heads;
    the head reads the pooled vector. The mean pool: the head reads the mean of the positions."""
    net = classifier(pool)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits, h = features(net, x, torch.tensor([3, 40]))
    if pool == "mean":
        expected = net.head(h.mean(1))
    else:
        tokens = torch.cat([h.mean(1, keepdim=True), h], 1) + net.positions  # [B, 1 + HW, C]
        q, k, v = net.qkv(tokens).chunk(3, dim=-1)
        B, L, C = k.shape
        heads, d = 2, C // 2
        pooled = []
        for b in range(B):
            per_head = []
            for i in range(heads):
                s = slice(i * d, (i + 1) * d)
                weights = torch.softmax(q[b, 0, s] @ k[b, :, s].T / math.sqrt(d), dim=0)  # [L]
                per_head.append(weights @ v[b, :, s])
            pooled.append(torch.cat(per_head))
        expected = net.head(torch.stack(pooled))
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)


def test_the_middle_block_attends():
    """ADM's middle block is ResBlock, attention, ResBlock: the attention's weights reach the logits."""
    net = classifier("mean")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.tensor([3, 40])
    before = net(x, t)
    with torch.no_grad():
        for p in net.mid_attn.parameters():
            p.add_(0.2)
    assert (net(x, t) - before).abs().max() > 1e-6
