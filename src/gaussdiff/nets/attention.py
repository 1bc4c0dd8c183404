"""Attention over an image's positions: ADM's self-attention block, and the SpatialTransformer pattern of
latent diffusion when a context is given (Rombach et al. 2022, Eq. 3 and App. E.2).

With ``context_dim`` set, the block is self-attention, then cross-attention to a context ``[B, L, D]``
(Q = W_Q phi(z_t) from the image's tokens, K = W_K tau(y) and V = W_V tau(y) from the context), then a
GEGLU feed-forward; each sub-block has its own norm and residual, and a zero-initialised output, so
that a fresh block is the identity. A boolean ``mask: [B, L]`` (True: a real token) keeps padding out
of the cross-attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups as in DDPM where the width allows; narrower nets fall back to a divisor."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """``module`` with every parameter zeroed: a residual branch it ends starts as the identity, which keeps deep
    U-Nets stable early in training."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class GEGLU(nn.Module):
    """The feed-forward of the SpatialTransformer: ``x W_o (gelu(x W_g) * x W_v)`` with 4x width (Shazeer 2020)."""

    def __init__(self, channels: int, mult: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, 2 * mult * channels)
        self.out = zero_init(nn.Linear(mult * channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(value * F.gelu(gate))


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions; with ``context_dim``, cross-attention to a context
    and a feed-forward after it (the SpatialTransformer pattern). ``forward(x: [B, C, H, W], context:
    [B, L, context_dim] | None, mask: [B, L] bool | None) -> [B, C, H, W]``."""

    def __init__(self, channels: int, num_heads: int, context_dim: int | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        # The projections are 1x1 convolutions (ADM's conv1d): the same per-position linear map as
        # nn.Linear on the tokens, and on CPU oneDNN runs it about twice as fast as the BLAS matmul.
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))
        # Their weights [C', C, 1, 1] take channels_last strides (the same memory order): oneDNN returns their
        # gradients so strided, as forward below works in channels_last, and DistributedDataParallel, whose
        # gradient buckets follow the weights' strides, otherwise warns of a mismatch and copies at every step.
        self.qkv.to(memory_format=torch.channels_last)
        self.proj.to(memory_format=torch.channels_last)
        self.cross = None
        if context_dim is not None:
            self.cross_norm = nn.LayerNorm(channels)
            self.cross_q = nn.Linear(channels, channels)
            self.cross_kv = nn.Linear(context_dim, 2 * channels)
            self.cross = zero_init(nn.Linear(channels, channels))
            self.ff_norm = nn.LayerNorm(channels)
            self.ff = GEGLU(channels)

    def _heads(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        return x.reshape(B, L, self.num_heads, C // self.num_heads).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:
        B, H, L, D = x.shape
        return x.transpose(1, 2).reshape(B, L, H * D)

    @staticmethod
    def _tokens(x: Tensor) -> Tensor:
        return x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, HW, C], a view for channels_last

    @staticmethod
    def _image(tokens: Tensor, H: int, W: int) -> Tensor:
        B, L, C = tokens.shape
        return tokens.transpose(1, 2).reshape(B, C, H, W)  # channels_last strides: a view

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        # Work in channels_last, where the tokens [B, HW, C] are views of the image and the 1x1
        # projections take oneDNN's fast path; a contiguous input pays two small copies.
        layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        x = x.contiguous(memory_format=torch.channels_last)
        q, k, v = self._tokens(self.qkv(self.norm(x))).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        h = x + self.proj(self._image(self._merge(out), H, W))
        if self.cross is not None:
            if context is None:
                raise ValueError("this U-Net cross-attends: pass context=[B, L, D]")
            tokens = self._tokens(h)
            q = self.cross_q(self.cross_norm(tokens))
            k, v = self.cross_kv(context.to(q.dtype)).chunk(2, dim=-1)
            # [B, 1, 1, L]: every head and query sees the same real tokens; padding takes no part.
            keep = None if mask is None else mask[:, None, None, :]
            out = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), attn_mask=keep)
            tokens = tokens + self.cross(self._merge(out))
            tokens = tokens + self.ff(self.ff_norm(tokens))
            h = self._image(tokens, H, W)
        return h.contiguous(memory_format=layout)
