"""The caption encoder tau_theta of latent diffusion's text-to-image model (Rombach et al. 2022, Sec. 3.3
and App. E.2): token and learned positional embeddings, a few pre-norm transformer layers, a final
norm; trained jointly with the U-Net from scratch. Its output is the context ``[B, L, width]`` that
the U-Net's cross-attention reads, with the padding mask ``[B, L]`` (True: a real token).

Notation (the paper's -> the code's): y -> ``tokens: [B, L]``; tau_theta -> :class:`CaptionEncoder`;
tau_theta(y) -> ``context: [B, L, text_width]`` (its width d_tau: ``text_width``).

Token ids: 0 pads, 1 starts every prompt (so that even the empty prompt, the null condition of
classifier-free guidance, has one token to attend to); the words of the run's vocabulary follow
(:mod:`gaussdiff.conditioning.text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import tyro
from torch import Tensor, nn

PAD, START = 0, 1


@dataclass(frozen=True)
class TextEncoderConfig:
    """The caption encoder's shape; its vocabulary and length come from the run's captions."""

    vocab_size: Annotated[int | None, tyro.conf.Suppress] = None
    """Token ids 0..vocab_size-1, the two special tokens included (None: the U-Net reads no text)."""
    max_length: Annotated[int, tyro.conf.Suppress] = 32
    """Longest token sequence (the start token included)."""
    text_width: int = 128
    """Width of the token embeddings and of the context the U-Net attends to."""
    text_layers: int = 2
    """Transformer layers."""
    text_heads: int = 4
    """Attention heads per layer."""


class CaptionEncoder(nn.Module):
    """``forward(tokens: [B, L] int64, L <= max_length) -> (context [B, L, width], mask [B, L] bool)``.

    The layers attend only to real tokens and the positions are absolute, so a real token's output
    does not depend on how much padding follows it.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("a caption encoder needs a vocabulary (vocab_size)")
        self.config = c = config
        self.token = nn.Embedding(c.vocab_size, c.text_width)
        self.position = nn.Parameter(torch.randn(c.max_length, c.text_width) * 0.01)
        layer = nn.TransformerEncoderLayer(c.text_width, c.text_heads, 4 * c.text_width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        # Nested tensors would skip padding only in inference and need post-norm layers; off for one code path.
        self.layers = nn.TransformerEncoder(layer, c.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.text_width)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        B, L = tokens.shape
        if L > self.config.max_length:
            raise ValueError(f"{L} tokens, but this encoder reads at most {self.config.max_length}")
        mask = tokens != PAD
        h = self.token(tokens) + self.position[:L]
        h = self.layers(h, src_key_padding_mask=~mask)
        return self.norm(h), mask
