"""The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021 §4).

The U-Net's encoder half (the same :class:`~gaussdiff.nets.unet.DownPath` and middle block) with
the timestep embedding, then an attention pool (ADM's ``AttentionPool2d``: the mean token, with
learned positions, attends over all positions) or a mean pool, then logits.
``forward(x_t [B, C, H, W], t [B]) -> [B, num_classes]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from .unet import Attention, DownPath, Embedding, ResBlock, UNetConfig, group_norm


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """The encoder is a U-Net's down path (its ``out_channels`` unused); ``num_classes`` comes from the data."""

    encoder: Annotated[UNetConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=lambda: UNetConfig(image_size=8, in_channels=1, channels=32, channel_mult=(1, 2),
                                           attention_resolutions=(4,))
    )
    pool: Literal["attention", "mean"] = "attention"
    """How the positions become one vector: ADM's attention pool, or their mean."""
    num_classes: Annotated[int, tyro.conf.Suppress] = 10
    """Classes of the labels it learns (from the data)."""


class NoisyClassifier(nn.Module):
    """p_phi(y | x_t, t): ``forward(x_t [B, C, H, W], t [B]) -> logits [B, num_classes]``, ``t`` on the
    diffusion model's original scale."""

    def __init__(self, config: NoisyClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config.encoder
        self.embedding = Embedding(c.channels, None)
        self.down = DownPath(c, self.embedding.dim)
        ch, res = self.down.out_channels, self.down.out_resolution
        self.mid1 = ResBlock(ch, ch, self.embedding.dim, c.dropout, c.scale_shift, c.conv, c.emb_act)
        self.mid_attn = Attention(ch, c.num_heads, None)
        self.mid2 = ResBlock(ch, ch, self.embedding.dim, c.dropout, c.scale_shift, c.conv, c.emb_act)
        self.norm = group_norm(ch)
        if config.pool == "attention":
            self.positions = nn.Parameter(torch.randn(res * res + 1, ch) / ch**0.5)
            self.qkv = nn.Linear(ch, 3 * ch)
        self.head = nn.Linear(ch, config.num_classes)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.embedding(t, None, x.dtype)
        h, _ = self.down(x, emb, None)
        h = F.silu(self.norm(self.mid2(self.mid_attn(self.mid1(h, emb)), emb)))
        tokens = h.flatten(2).transpose(1, 2)  # [B, HW, C]
        if self.config.pool == "mean":
            return self.head(tokens.mean(1))
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self.positions
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        B, L, C = q.shape
        heads = self.config.encoder.num_heads

        def split(a: Tensor) -> Tensor:
            return a.reshape(B, a.shape[1], heads, C // heads).transpose(1, 2)

        pooled = F.scaled_dot_product_attention(split(q[:, :1]), split(k), split(v))  # [B, heads, 1, C/heads]
        return self.head(pooled.transpose(1, 2).reshape(B, C))
