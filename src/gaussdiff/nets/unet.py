"""The U-Net noise predictor of DDPM / Improved DDPM / ADM (Ho et al. 2020 App. B; Dhariwal & Nichol 2021 §3).

Residual blocks (GroupNorm, SiLU, dropout) receive a sinusoidal timestep embedding through an MLP,
added or as a scale-shift of the second norm (ADM's AdaGN); self-attention (and optional
cross-attention to a context ``[B, L, D]``) at chosen resolutions; channel multipliers per level;
an optional class embedding with a learned null label (index ``num_classes``) for classifier-free
guidance. Called as ``model(x_t, t, y=None, tokens=None)`` with ``x_t: [B, C, H, W]``, ``t: [B]``, labels ``y: [B]`` and
prompt tokens ``[B, L]`` read by the U-Net's own caption encoder (:mod:`gaussdiff.nets.text`) when it has one; a
super-resolution stage also takes ``low_res: [B, C, h, w]`` and its augmentation level ``low_res_level: [B]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .attention import Attention, group_norm, zero_init
from .kernels.winograd import Conv3x3, ConvAlgorithm
from .text import START, CaptionEncoder, TextEncoderConfig


@dataclass(frozen=True)
class UNetConfig:
    """The U-Net's shape. The fields marked ``Suppress`` are not options: a run sets them from its data and
    diffusion (resolution, channels, classes; 2C outputs when the variance is learned)."""

    image_size: Annotated[int, tyro.conf.Suppress] = 32
    """H = W of the input (attention resolutions are relative to it)."""
    in_channels: Annotated[int, tyro.conf.Suppress] = 3
    """C of x_t."""
    out_channels: Annotated[int, tyro.conf.Suppress] = 3
    """C, or 2C when the variance is learned."""
    channels: int = 64
    """Width of the first level (>= 1)."""
    channel_mult: tuple[int, ...] = (1, 2, 2)
    """Width multiplier per level, each >= 1 (each level after the first halves the resolution)."""
    num_res_blocks: int = 2
    """Residual blocks per level on the way down (>= 0; the way up has one more, for the skip of the downsampling)."""
    attention_resolutions: tuple[int, ...] = (16,)
    """Levels with self-attention, by their H (the image size, halved per level after the first, rounding up:
    28, 14, 7); the middle block always attends."""
    num_heads: int = 4
    """Attention heads (>= 1): they must divide the width of every level with attention, and the last level's."""
    dropout: float = 0.0
    """Dropout in every residual block, in [0, 1)."""
    scale_shift: bool = True
    """The timestep embedding scales and shifts the norm (ADM's AdaGN) instead of being added."""
    emb_act: bool = False
    """SiLU on the timestep embedding before each residual block's projection, as ADM's and diffusers' blocks
    have it; needed to export the network to diffusers' UNet2DModel (gaussdiff export). Off by default, as in
    every run before it existed."""
    num_classes: Annotated[int | None, tyro.conf.Suppress] = None
    """Class-conditional when set (label ``num_classes`` is the null label)."""
    context_dim: Annotated[int | None, tyro.conf.Suppress] = None
    """Cross-attention to a ``[B, L, context_dim]`` context when set (a text run sets its caption encoder's width)."""
    low_res_channels: Annotated[int, tyro.conf.Suppress] = 0
    """C of the low-resolution image a super-resolution stage upsamples and concatenates to x_t (0: none)."""
    text: Annotated[TextEncoderConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=TextEncoderConfig)
    """The caption encoder, built when ``text.vocab_size`` is set: the U-Net then takes ``tokens``."""
    conv: ConvAlgorithm = "auto"
    """How the residual blocks' 3x3 convolutions compute: ``winograd`` (F(4x4, 3x3), 4x fewer multiply-adds),
    ``direct``, or ``auto``: measured on CPU on the first training pass of each layer configuration (64+
    channels at 8x8 and up, fp32), Winograd kept only where it takes at most 0.9 of the direct kernel's time
    (:class:`~gaussdiff.nets.kernels.winograd.Conv3x3`); the direct kernel elsewhere. Same weights either way."""
    up_attention: Annotated[Literal["mirror", "doubled"], tyro.conf.Suppress] = "mirror"
    """Where the way up attends: ``mirror``, at each level whose mirror on the way down does (ADM's symmetric
    U-Net); ``doubled``, by resolutions doubled back from the last level, which after an odd level are not the
    way down's (14 -> 7 -> 4 went up as 4, 8, 16). Runs saved before ``mirror`` keep ``doubled``, their shape."""

    def level_resolutions(self) -> list[int]:
        """H of each level, first to last (:class:`DownPath`'s walk: each level after the first halves it,
        rounding up)."""
        res = [self.image_size]
        for _ in self.channel_mult[1:]:
            res.append((res[-1] + 1) // 2)
        return res

    def attention_channels(self) -> list[int]:
        """The widths of the levels with self-attention, and the last level's (the middle block always
        attends), smallest first."""
        widths = {self.channels * self.channel_mult[-1]}
        for res, mult in zip(self.level_resolutions(), self.channel_mult):
            if res in self.attention_resolutions:
                widths.add(self.channels * mult)
        return sorted(widths)

    def attention_note(self) -> str | None:
        """One line when ``attention_resolutions`` names none of the levels, so that only the middle block
        attends (the main job's default, 4, is a level of 8x8 data only); None otherwise. Not refused: runs
        made that way are valid, and older ones were trained so."""
        levels = self.level_resolutions()
        if set(levels) & set(self.attention_resolutions):
            return None
        named = " ".join(map(str, self.attention_resolutions)) or "(none)"
        return (f"--attention-resolutions {named} matches none of this network's levels "
                f"({', '.join(map(str, levels))}): only the middle block attends (name a level to attend there too)")

    def check(self, sized: bool = True) -> None:
        """Refuse a shape the network cannot be built with, as one line (before any work, not as a reshape
        error in the first forward pass). ``sized=False``: before the data has set the image size, which decides
        the levels that attend, only the last level (which always does) must take the heads."""
        if self.channels < 1:
            raise ConfigError(f"--channels must be at least 1, not {self.channels}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ConfigError(f"--channel-mult needs one multiplier >= 1 per level, not {list(self.channel_mult)}")
        if self.num_res_blocks < 0:
            raise ConfigError(f"--num-res-blocks must be at least 0, not {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must lie in [0, 1), not {self.dropout:g}")
        if self.num_heads < 1:
            raise ConfigError(f"--num-heads must be at least 1, not {self.num_heads}")
        widths = self.attention_channels() if sized else [self.channels * self.channel_mult[-1]]
        if any(w % self.num_heads for w in widths):
            raise ConfigError(f"--num-heads {self.num_heads} must divide the width of every attention layer "
                              f"({', '.join(map(str, widths))} with --channels {self.channels} --channel-mult "
                              f"{' '.join(map(str, self.channel_mult))})")


def upsample_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (ADM's ``SuperResModel``): smooth, so that a super-resolution network adds detail to
    a blurred image instead of first undoing nearest-neighbour blocks at the low-resolution pixel grid."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of ``t: [B]`` -> ``[B, dim]`` (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 convolution, twice, around a skip; the embedding (when ``emb_dim`` is set:
    the U-Net's timestep, not the autoencoder's) enters at the second norm."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None, dropout: float, scale_shift: bool,
                 conv: ConvAlgorithm = "auto", emb_act: bool = False) -> None:
        super().__init__()
        self.scale_shift, self.emb_act = scale_shift, emb_act
        self.norm1 = group_norm(in_ch)
        self.conv1 = Conv3x3(in_ch, out_ch, conv)
        self.emb = None if emb_dim is None else nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(Conv3x3(out_ch, out_ch, conv))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)
        self.gradient_checkpointing = False

    def forward(self, x: Tensor, emb: Tensor | None = None, h_skip: Tensor | None = None) -> Tensor:
        """``x: [B, C_x, H, W]``, joined by the U-Net's ``h_skip: [B, C_s, H, W]`` on the way up (C_x + C_s =
        in_ch), and ``emb: [B, emb_dim]`` -> ``[B, out_ch, H, W]``."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            # Keep only the block's inputs (x and the skip, alive anyway, rather than their concatenation); the
            # activations are computed again in the backward pass.
            return checkpoint(self._forward, x, emb, h_skip, use_reentrant=False)
        return self._forward(x, emb, h_skip)

    def _forward(self, x: Tensor, emb: Tensor | None, h_skip: Tensor | None = None) -> Tensor:
        if h_skip is not None:
            x = torch.cat([x, h_skip], dim=1)
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None and self.emb_act:
            emb = F.silu(emb)
        if self.emb is None:
            h = self.norm2(h)
        elif self.scale_shift:
            e = self.emb(emb)[:, :, None, None]
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h = self.norm2(h + self.emb(emb)[:, :, None, None])
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Upsample(nn.Conv2d):
    """Nearest-neighbour upsampling then a 3x3 convolution, DDPM's up-sampling layer (Ho et al. 2020 App. B).

    ``forward(x: [B, C, H, W], size) -> [B, C_out, *size]``. For the usual 2x case the result is
    computed without building the upsampled image: a 3x3 window on a 2x nearest-upsampled image
    covers at most 2x2 distinct input pixels, so each output phase (row parity a, column parity b)
    is a 2x2 convolution of the zero-padded input whose taps are sums of the 3x3 taps. Same weights,
    same function, 16 instead of 36 multiply-adds per input pixel and channel pair.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, padding=1)
        # _phase_taps[a, p, k] = 1 when kernel tap k of output parity a reads padded input offset a + p.
        taps = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1.0, 1, 0], [0, 0, 1]]])
        self.register_buffer("_phase_taps", taps, persistent=False)

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        B, _, H, W = x.shape
        if size is not None and tuple(size) != (2 * H, 2 * W):
            # Odd sizes such as 7 -> 14 -> 28 upsample 4 -> 7: not a 2x repeat, so no phase split.
            return super().forward(F.interpolate(x, size=size, mode="nearest"))
        R = self._phase_taps.to(self.weight.dtype)
        kernels = torch.einsum("apk,oikl,bql->aboipq", R, self.weight, R)  # [2, 2, C_out, C_in, 2, 2]
        padded = F.pad(x, (1, 1, 1, 1))
        phases = [[F.conv2d(padded[:, :, a:a + H + 1, b:b + W + 1], kernels[a, b], self.bias) for b in (0, 1)]
                  for a in (0, 1)]  # phases[a][b][..., i, j] is output pixel (2i + a, 2j + b)
        C = self.out_channels
        if x.is_contiguous():
            out = torch.stack([torch.stack(row, dim=-1) for row in phases], dim=3)  # [B, C, H, 2, W, 2]
            return out.reshape(B, C, 2 * H, 2 * W)
        # channels_last: interleave in [B, H, W, C] order so the output keeps that layout without a copy.
        out = torch.stack([torch.stack([p.permute(0, 2, 3, 1) for p in row], dim=3) for row in phases], dim=2)
        return out.reshape(B, 2 * H, 2 * W, C).permute(0, 3, 1, 2)


class Level(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention."""

    def __init__(self, blocks: list[ResBlock], attentions: list[Attention | None]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList([a if a is not None else nn.Identity() for a in attentions])


class DownPath(nn.Module):
    """The encoder half: stem, residual levels (with attention where asked) and downsampling.

    ``forward(x, emb, context, mask)`` returns the deepest features and the skip activations, in order.
    Shared by :class:`UNet` and the noise-aware classifier.
    """

    def __init__(self, c: UNetConfig, emb_dim: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(c.in_channels + c.low_res_channels, c.channels, 3, padding=1)
        ch, res = c.channels, c.image_size
        self.skip_channels = [ch]
        self.levels = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, mult in enumerate(c.channel_mult):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, mult * c.channels, emb_dim, c.dropout, c.scale_shift, c.conv, c.emb_act))
                ch = mult * c.channels
                attns.append(Attention(ch, c.num_heads, c.context_dim) if res in c.attention_resolutions else None)
                self.skip_channels.append(ch)
            self.levels.append(Level(blocks, attns))
            last = level == len(c.channel_mult) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            if not last:
                self.skip_channels.append(ch)
                res = (res + 1) // 2
        self.out_channels, self.out_resolution = ch, res

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None,
                mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        hs = [h]
        for level, down in zip(self.levels, self.downsample):
            for block, attn in zip(level.blocks, level.attentions):
                h = block(h, emb)
                h = attn(h, context, mask) if isinstance(attn, Attention) else h
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        return h, hs


class Embedding(nn.Module):
    """The sinusoidal timestep embedding through an MLP, plus the class embedding when conditional."""

    def __init__(self, channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.channels, self.num_classes = channels, num_classes
        self.dim = 4 * channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, self.dim), nn.SiLU(), nn.Linear(self.dim, self.dim))
        self.label_emb = nn.Embedding(num_classes + 1, self.dim) if num_classes is not None else None

    def forward(self, t: Tensor, y: Tensor | None, dtype: torch.dtype) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.channels).to(dtype))
        if self.label_emb is not None:
            # No label means the unconditional branch: the null label (classifier-free guidance).
            labels = y if y is not None else torch.full((t.shape[0],), self.num_classes, device=t.device,
                                                        dtype=torch.long)
            emb = emb + self.label_emb(labels)
        elif y is not None:
            raise ValueError("this network is unconditional: it takes no class labels")
        return emb


class UNet(nn.Module):
    """The DDPM/ADM U-Net. ``forward(x_t [B, C, H, W], t [B], y [B] | None, tokens [B, L] | None,
    context [B, L, D] | None, mask [B, L] | None, low_res [B, C, h, w] | None, low_res_level [B] | None)
    -> [B, out, H, W]``; a text U-Net makes context and mask from the tokens; a super-resolution stage
    (``low_res_channels``) upsamples ``low_res`` bilinearly to H x W, concatenates it to x_t, and embeds its
    augmentation level s (0 when not given) like a timestep, 1000 s."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embedding = Embedding(c.channels, c.num_classes)
        self.text = CaptionEncoder(c.text) if c.text.vocab_size is not None else None
        # A super-resolution stage is told its condition's augmentation level s like a timestep (Ho et al. 2022).
        self.level = None
        if c.low_res_channels:
            dim = self.embedding.dim
            self.level = nn.Sequential(nn.Linear(c.channels, dim), nn.SiLU(), nn.Linear(dim, dim))
        if self.text is not None and c.context_dim != c.text.text_width:
            raise ValueError(f"context_dim {c.context_dim} must be the caption encoder's width {c.text.text_width}")
        emb_dim = self.embedding.dim
        self.down = DownPath(c, emb_dim)
        ch = self.down.out_channels
        skips = list(self.down.skip_channels)
        # Each level on the way up attends where its mirror on the way down does: by the down path's resolutions
        # (halved rounding up), since doubling back from the last level misses odd ones (28 -> 4 -> 8, not 7).
        resolutions = c.level_resolutions()
        if c.up_attention == "doubled":  # the shape of runs saved before (their weights)
            resolutions = [resolutions[-1] * 2 ** (len(resolutions) - 1 - level) for level in range(len(resolutions))]

        self.mid1 = ResBlock(ch, ch, emb_dim, c.dropout, c.scale_shift, c.conv, c.emb_act)
        self.mid_attn = Attention(ch, c.num_heads, c.context_dim)
        self.mid2 = ResBlock(ch, ch, emb_dim, c.dropout, c.scale_shift, c.conv, c.emb_act)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            blocks, attns, res = [], [], resolutions[level]
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), mult * c.channels, emb_dim, c.dropout, c.scale_shift, c.conv,
                                       c.emb_act))
                ch = mult * c.channels
                attns.append(Attention(ch, c.num_heads, c.context_dim) if res in c.attention_resolutions else None)
            self.up.append(Level(blocks, attns))
            self.upsample.append(Upsample(ch) if level > 0 else nn.Identity())
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, c.out_channels, 3, padding=1)))
        self.checkpoint_out = False

    def set_gradient_checkpointing(self, on: bool = True) -> None:
        """Recompute each residual block's activations in the backward pass instead of keeping them
        (``torch.utils.checkpoint``, ADM's ``use_checkpoint``): training memory for one more forward pass of
        the blocks. The gradients are the same."""
        self.checkpoint_out = on  # the output norm, activation and convolution at full resolution too
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.gradient_checkpointing = on

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, tokens: Tensor | None = None,
                context: Tensor | None = None, mask: Tensor | None = None, low_res: Tensor | None = None,
                low_res_level: Tensor | None = None) -> Tensor:
        emb = self.embedding(t, y, x.dtype)
        if self.level is not None:
            if low_res is None:
                raise ValueError("this U-Net super-resolves: pass low_res=[B, C, h, w]")
            up = upsample_bilinear(low_res.to(x.dtype), x.shape[-2:])
            layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
            x = torch.cat([x, up], dim=1).contiguous(memory_format=layout)
            s = low_res_level if low_res_level is not None else torch.zeros(len(x), device=x.device)
            emb = emb + self.level(timestep_embedding(s * 1000, self.config.channels).to(emb.dtype))
        elif low_res is not None:
            raise ValueError("this network is not a super-resolution stage: it takes no low_res")
        if self.text is not None:
            if context is not None:
                raise ValueError("this U-Net encodes its own context from tokens; pass tokens, not context")
            if tokens is None:
                # No prompt means the unconditional branch: the empty prompt (classifier-free guidance).
                tokens = torch.full((x.shape[0], 1), START, device=x.device, dtype=torch.long)
            context, mask = self.text(tokens)
        elif tokens is not None:
            raise ValueError("this network reads no text: it takes no tokens")
        h, hs = self.down(x, emb, context, mask)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), context, mask), emb)
        for level, up in zip(self.up, self.upsample):
            for block, attn in zip(level.blocks, level.attentions):
                h = block(h, emb, h_skip=hs.pop())
                h = attn(h, context, mask) if isinstance(attn, Attention) else h
            if not isinstance(up, nn.Identity):
                h = up(h, size=hs[-1].shape[-2:])  # the skip's size, which also covers odd sizes
        if self.checkpoint_out and torch.is_grad_enabled():
            return checkpoint(self.out, h, use_reentrant=False)
        return self.out(h)
