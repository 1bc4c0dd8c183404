"""The KL-regularized autoencoder of latent diffusion (Rombach et al. 2022 §3.1, App. G) and its patch discriminator.

The encoder maps ``x: [B, C, H, W]`` in [-1, 1] to a diagonal Gaussian posterior q(z | x) over latents
``[B, latent_channels, H / f, W / f]`` (f = ``factor``, a power of two); the decoder maps z back. Both are
stacks of the U-Net's residual blocks (GroupNorm, SiLU, no timestep embedding) with stride-2
convolutions down, nearest-neighbour-then-convolution up, and optionally self-attention in the middle.
H and W must be multiples of f: there is no padding (Fashion-MNIST's 28x28 takes f = 2 or 4, not 8).

:class:`PatchDiscriminator` is pix2pix's PatchGAN (Isola et al. 2017) as used by Esser et al. 2021:
logits ``[B, 1, h, w]``, one per overlapping patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import tyro
from torch import Tensor, nn

from .unet import Attention, ResBlock, Upsample, group_norm

Factor = Literal[2, 4, 8]


@dataclass(frozen=True)
class AutoencoderConfig:
    """The autoencoder's shape; ``image_size`` and ``in_channels`` come from the data."""

    image_size: Annotated[int, tyro.conf.Suppress] = 28
    in_channels: Annotated[int, tyro.conf.Suppress] = 1
    factor: Factor = 4
    """Downsampling factor f: the latents are (H / f) x (W / f)."""
    latent_channels: int = 4
    """Channels of the latent z."""
    channels: int = 32
    """Width of the first level; each further level doubles it, up to 4x."""
    num_res_blocks: int = 1
    """Residual blocks per level."""
    attention: bool = True
    """Self-attention between two residual blocks in the middle of the encoder and of the decoder."""

    @property
    def widths(self) -> list[int]:
        """The width of each level, one level per halving plus the first."""
        return [self.channels * min(2**i, 4) for i in range(int(math.log2(self.factor)) + 1)]

    @property
    def latent_size(self) -> int:
        return self.image_size // self.factor


@dataclass
class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(log_var))), each ``[B, C, h, w]``."""

    mean: Tensor
    log_var: Tensor

    def sample(self, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """z = mean + std * noise, the noise ``[B, C, h, w]`` given or drawn from ``generator``."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.log_var) * noise

    def kl(self) -> Tensor:
        """KL(q(z | x) || N(0, I)) in nats, summed over the latent's elements: ``[B]``."""
        return 0.5 * (self.mean**2 + self.log_var.exp() - 1.0 - self.log_var).flatten(1).sum(1)


def _middle(ch: int, attention: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(ch, ch, None, 0.0, False)]
    if attention:
        layers.append(Attention(ch, 1, None))
    layers.append(ResBlock(ch, ch, None, 0.0, False))
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """``encode(x) -> DiagonalGaussian``, ``decode(z) -> x``; ``forward(x) -> (reconstruction, posterior)``."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = c = config
        widths = c.widths
        down: list[nn.Module] = [nn.Conv2d(c.in_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(c.num_res_blocks):
                down.append(ResBlock(ch, width, None, 0.0, False))
                ch = width
            if level < len(widths) - 1:
                down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.encoder = nn.Sequential(*down, _middle(ch, c.attention), group_norm(ch), nn.SiLU(),
                                     nn.Conv2d(ch, 2 * c.latent_channels, 3, padding=1))
        up: list[nn.Module] = [nn.Conv2d(c.latent_channels, ch, 3, padding=1), _middle(ch, c.attention)]
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(c.num_res_blocks + 1):
                up.append(ResBlock(ch, width, None, 0.0, False))
                ch = width
            if level > 0:
                up.append(Upsample(ch))
        self.decoder = nn.Sequential(*up, group_norm(ch), nn.SiLU())
        self.out = nn.Conv2d(ch, c.in_channels, 3, padding=1)

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last weight: where the adaptive adversarial weight compares gradients."""
        return self.out.weight

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """``x: [B, C, H, W]`` in [-1, 1] -> q(z | x) over ``[B, latent_channels, H / f, W / f]``."""
        H, W = x.shape[-2:]
        f = self.config.factor
        if H % f or W % f:
            raise ValueError(f"images of {H}x{W} do not divide by the autoencoder's factor {f}")
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        # Bounded as in latent-diffusion, so that exp stays finite early in training.
        return DiagonalGaussian(mean, log_var.clamp(-30.0, 20.0))

    def decode(self, z: Tensor) -> Tensor:
        """``z: [B, latent_channels, h, w]`` -> ``[B, C, f h, f w]`` (unclamped; [-1, 1] once trained)."""
        return self.out(self.decoder(z))

    def forward(self, x: Tensor, generator: torch.Generator | None = None,
                noise: Tensor | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """A reconstruction of ``x`` through a sample of q(z | x) (its ``noise`` given, or drawn), and q(z | x)."""
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator, noise)), posterior


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The patch discriminator's shape; ``in_channels`` comes from the data."""

    in_channels: Annotated[int, tyro.conf.Suppress] = 1
    disc_channels: int = 32
    """Width of the patch discriminator's first layer (>= 1)."""
    disc_layers: int = 2
    """Stride-2 layers (>= 1, at most log2 of the image size): each patch logit sees 7 * 2^layers - 2 pixels across
    (26 for 2 layers; the two 3x3 convolutions at the end widen it too)."""


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4x4 convolutions, stride 2, LeakyReLU(0.2), GroupNorm; ``x: [B, C, H, W]`` -> logits
    ``[B, 1, h, w]``."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        c, w = config, config.disc_channels
        layers: list[nn.Module] = [nn.Conv2d(c.in_channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, c.disc_layers):
            layers += [nn.Conv2d(w * 2 ** (i - 1), w * 2**i, 4, stride=2, padding=1), group_norm(w * 2**i),
                       nn.LeakyReLU(0.2)]
        ch = w * 2 ** (c.disc_layers - 1)
        layers += [nn.Conv2d(ch, ch, 3, padding=1), group_norm(ch), nn.LeakyReLU(0.2), nn.Conv2d(ch, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
