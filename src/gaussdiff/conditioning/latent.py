"""Latent diffusion (Rombach et al. 2022): the diffusion runs on z = scale * E(x), and samples are D(z / scale).

The latent path is a pair of functions, not a fork: the U-Net is built for the latent shape and called
as ``model(z_t, t, **cond)`` like any other, so every loss, sampler, guidance kind and likelihood works
on latents unchanged. ``scale`` is 1 / std of the encoded training set (estimated when the autoencoder
is trained, so that the latents have unit variance like the data the schedules were designed for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import tyro
from torch import Tensor

from ..nets.autoencoder import Autoencoder


@dataclass(frozen=True)
class LatentConfig:
    """Which autoencoder's latent space the diffusion runs in."""

    latent: Path | None = None
    """An autoencoder run (``gaussdiff train-autoencoder``): train the diffusion in its latent space."""
    # Recorded when a run starts: the autoencoder's weights must not change under the run.
    latent_sha256: Annotated[str | None, tyro.conf.Suppress] = None


@dataclass
class LatentSpace:
    """``encode(x) -> z`` and ``decode(z) -> x`` of a trained autoencoder, scaled to unit-variance latents."""

    autoencoder: Autoencoder
    scale: float

    @property
    def channels(self) -> int:
        return self.autoencoder.config.latent_channels

    @property
    def size(self) -> int:
        return self.autoencoder.config.latent_size

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W]`` in [-1, 1] -> ``z: [B, latent_channels, H / f, W / f]``: the posterior mean, scaled."""
        return self.autoencoder.encode(x).mean * self.scale

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """``z: [B, latent_channels, h, w]`` -> ``x: [B, C, f h, f w]``, about [-1, 1] (not clamped)."""
        return self.autoencoder.decode(z / self.scale)

    def encode_all(self, x: Tensor, batch_size: int = 256) -> Tensor:
        """``encode`` over a whole float ``[N, C, H, W]`` tensor in batches, on the autoencoder's device;
        ``[N, ...]`` on CPU."""
        device = next(self.autoencoder.parameters()).device
        return torch.cat([self.encode(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
