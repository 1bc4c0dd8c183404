"""The noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal & Nichol 2021 §4).

The U-Net's encoder half (the same :class:`~gaussdiff.nets.unet.DownPath` and middle block) with
the timestep embedding, then an attention pool (ADM's ``AttentionPool2d``: the mean token, with
learned positions, attends over all positions) or a mean pool, then logits.
``forward(x_t [B, C, H, W], t [B]) -> [B, num_classes]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .unet import Attention, DownPath, Embedding, ResBlock, UNetConfig, group_norm


@dataclass
class NoisyClassifierConfig:
    image_size: int = 8
    in_channels: int = 1
    num_classes: int = 10
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 4
    dropout: float = 0.0
    pool: Literal["attention", "mean"] = "attention"


class NoisyClassifier(nn.Module):
    def __init__(self, config: NoisyClassifierConfig) -> None:
        super().__init__()
        self.config = c = config
        unet = UNetConfig(image_size=c.image_size, in_channels=c.in_channels, out_channels=c.in_channels,
                          channels=c.channels, channel_mult=tuple(c.channel_mult), num_res_blocks=c.num_res_blocks,
                          attention_resolutions=tuple(c.attention_resolutions), num_heads=c.num_heads, dropout=c.dropout)
        self.embedding = Embedding(c.channels, None)
        self.down = DownPath(unet, self.embedding.dim)
        ch, res = self.down.out_channels, self.down.out_resolution
        self.mid1 = ResBlock(ch, ch, self.embedding.dim, c.dropout, True)
        self.mid_attn = Attention(ch, c.num_heads, None)
        self.mid2 = ResBlock(ch, ch, self.embedding.dim, c.dropout, True)
        self.norm = group_norm(ch)
        if c.pool == "attention":
            self.positions = nn.Parameter(torch.randn(res * res + 1, ch) / ch**0.5)
            self.qkv = nn.Linear(ch, 3 * ch)
        self.head = nn.Linear(ch, c.num_classes)

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
        heads = self.config.num_heads

        def split(a: Tensor) -> Tensor:
            return a.reshape(B, a.shape[1], heads, C // heads).transpose(1, 2)

        pooled = F.scaled_dot_product_attention(split(q[:, :1]), split(k), split(v))  # [B, heads, 1, C/heads]
        return self.head(pooled.transpose(1, 2).reshape(B, C))
