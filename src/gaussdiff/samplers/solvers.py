"""Higher-order solvers of the probability-flow ODE on a diffusion's (respaced) steps.

They walk the steps of ``diffusion`` from the last to the first, as DDIM does, and evaluate the model
only at those steps (integer t on the original scale: no interpolation). Step k goes from the noise
level of step k, alpha_k = sqrt(alpha_bar_k), sigma_k = sqrt(1 - alpha_bar_k), to that of step k - 1,
and the last step to zero noise (alpha = 1, sigma = 0). With lambda = log(alpha / sigma) (half the
log-SNR) and h = lambda_{k-1} - lambda_k:

- :func:`dpm_solver_2m`: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), in the data
  prediction x0: x_{k-1} = (sigma_{k-1} / sigma_k) x_k + alpha_{k-1} (1 - e^{-h}) D, with
  D = x0_k + (x0_k - x0_{k+1}) / (2 r), r = h_prev / h, the first step and the last of first order
  (D = x0_k: DDIM). The last step must be first order: it ends at sigma = 0, where h is infinite and
  the correction undefined (diffusers' ``lower_order_final``). One evaluation a step.

Its first-order step is DDIM (eta = 0): the reference it improves on (error O(h) against O(h^2),
tested on the exact denoiser of Gaussian data).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model
from .base import Callback, SamplerStep


def _levels(diffusion: GaussianDiffusion, x: Tensor) -> tuple[Tensor, Tensor]:
    """alpha and sigma of every step, then zero noise: ``[S + 1]`` each in float64, index S the end."""
    ab = diffusion.schedule.alpha_bars.double()
    ab = torch.cat([ab.flip(0), ab.new_ones(1)])  # from the noisiest step down, then alpha_bar = 1
    return ab.sqrt().to(x.device), (1 - ab).clamp(min=0).sqrt().to(x.device)


@torch.no_grad()
def dpm_solver_2m(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: torch.Generator | None = None,
                  clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True,
                  eta: float = 0.0, cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(2M), deterministic (``eta`` and ``generator`` unused). ``x_T: [B, ...]`` -> x0."""
    cond = dict(cond or {})
    alpha, sigma = _levels(diffusion, x_T)
    lam = torch.log(alpha) - torch.log(sigma)  # +inf at the end
    S = diffusion.num_steps
    x, previous = x_T, None
    for i in range(S):
        step = S - 1 - i
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        x0 = diffusion.p_mean_variance(model, x, t, clip_denoised=clip_denoised, **cond).x0
        if i == S - 1:
            x_next = x0  # to sigma = 0: first order, alpha = 1
        else:
            h = lam[i + 1] - lam[i]
            D = x0
            if previous is not None:
                r = (lam[i] - lam[i - 1]) / h
                D = x0 + (x0 - previous) / (2 * r)
            x_next = (sigma[i + 1] / sigma[i]) * x + alpha[i + 1] * (-torch.expm1(-h)) * D
            x_next = x_next.to(x.dtype)
        previous, x = x0, x_next
        if callback is not None:
            callback(SamplerStep(i, diffusion.model_timesteps(t), x, x0))
    return x

