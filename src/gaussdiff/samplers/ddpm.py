"""The DDPM family's samplers (signature and chain in :mod:`gaussdiff.samplers.base`).

- :func:`ancestral`: Ho et al. 2020 Algorithm 2, x_{t-1} = mu_theta + sigma_t z.
- :func:`ddim`: Song et al. 2021 Eq. 12; eta = 0 is deterministic, eta = 1 has beta_tilde variance.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model, PosteriorEstimate
from ..diffusion.schedule import extract
from .base import Callback, Generators, noise_like, reverse_chain


@torch.no_grad()
def ancestral(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
              clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
              cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """Ancestral sampling, Ho et al. 2020 Algorithm 2: x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    sigma_t^2 is the diffusion's (fixed or learned) variance; no noise is added at the last step.
    ``eta`` is unused (the variance is the model's); it is in the signature so that all samplers
    are called alike. ``x_T: [B, ...]`` -> x0 of its shape, dtype and device.
    """

    def update(x: Tensor, t: Tensor, step: int, est: PosteriorEstimate) -> Tensor:
        if step == 0:
            return est.mean
        return est.mean + torch.exp(0.5 * est.log_variance) * noise_like(x, generator)

    return reverse_chain(model, diffusion, x_T, update, "ddpm", clip_denoised, callback, progress, cond)


def ddim_sigma(diffusion: GaussianDiffusion, t: Tensor, x: Tensor, eta: float) -> Tensor:
    """sigma_t(eta) = eta sqrt((1 - a_bar_{t-1}) / (1 - a_bar_t)) sqrt(1 - a_bar_t / a_bar_{t-1})
    (Song et al. Eq. 16)."""
    s = diffusion.schedule
    var = (1.0 - s.alpha_bars_prev) / (1.0 - s.alpha_bars) * (1.0 - s.alpha_bars / s.alpha_bars_prev)
    return eta * extract(var.sqrt(), t, x)


def ddim_step(diffusion: GaussianDiffusion, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, eta: float,
              noise: Tensor) -> Tensor:
    """One DDIM update (Song et al. 2021 Eq. 12).

    x_{t-1} = sqrt(a_bar_{t-1}) x0 + sqrt(1 - a_bar_{t-1} - sigma_t^2) eps + sigma_t z, with x0 and eps
    the model's estimates at (x_t, t); z is ignored at t = 0.
    """
    s = diffusion.schedule
    sigma = ddim_sigma(diffusion, t, x_t, eta)
    a_bar_prev = extract(s.alpha_bars_prev, t, x_t)
    x = a_bar_prev.sqrt() * x0 + (1.0 - a_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
    nonzero = (t > 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return x + nonzero * sigma * noise


@torch.no_grad()
def ddim(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
         clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
         cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DDIM sampling (Song et al. 2021 Eq. 12) with stochasticity ``eta``: 0 deterministic, 1 = DDPM's beta_tilde.

    ``x_T: [B, ...]`` the starting noise -> x0 ``[B, ...]`` (the sampler's signature: :class:`~.base.Sampler`).
    """

    def update(x: Tensor, t: Tensor, step: int, est: PosteriorEstimate) -> Tensor:
        # Draw noise only when it is used, so that eta = 1 consumes the generator as DDPM does.
        noise = noise_like(x, generator) if eta > 0 and step > 0 else torch.zeros_like(x)
        return ddim_step(diffusion, x, t, est.x0, est.eps, eta, noise)

    return reverse_chain(model, diffusion, x_T, update, "ddim", clip_denoised, callback, progress, cond)
