"""Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models") samplers.

They integrate the probability-flow ODE in the variance-exploding view: x_ve = x_t / alpha has noise
sigma = sigma_t / alpha_t and dx_ve / dsigma = (x_ve - D(x_ve; sigma)) / sigma (their Eq. 1 with
sigma(t) = t and the score (D - x) / sigma^2 of Eq. 3; s(t) = 1), where D is the model's x0 estimate; the
model itself sees x_t = alpha x_ve, as trained.

- :func:`euler`: Algorithm 2 without the correction (Euler's method; with no churn it is DDIM).
- :func:`heun`: Algorithm 2: Euler, then the trapezoidal correction with a second evaluation at the
  next level, except on the last step, which ends at sigma = 0 (where D is not defined).
- Churn (both): ``eta`` is S_churn. Each step first raises the noise to sigma_hat = sigma (1 + gamma)
  (at most the schedule's largest sigma, where the model was trained),
  gamma = min(S_churn / N, sqrt(2) - 1), adding fresh noise of variance sigma_hat^2 - sigma^2, and
  evaluates the model at sigma_hat (its time by :meth:`NoiseSchedule.timestep_at`); S_tmin = 0,
  S_tmax = inf, S_noise = 1.
- :func:`euler_ancestral`: Euler to sigma_down, then noise of sigma_up, with sigma_up^2 =
  eta^2 sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2 (k-diffusion's ``get_ancestral_step``;
  ``eta`` = 1 by default through :func:`~gaussdiff.samplers.sample`).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model
from .base import Callback, Generators, Sampler, Walk, noise_like


def _karras(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, second_order: bool, churn: float, desc: str,
            generator: Generators, clip_denoised: bool, callback: Callback | None, progress: bool,
            cond: Mapping[str, Tensor] | None, euler_steps: int = 0) -> Tensor:
    w = Walk(model, diffusion, x_T, desc, clip_denoised, callback, progress, cond)
    a, sig, S = w.levels.alpha, w.levels.sigma_ve, len(w.levels)
    if float(a[0]) == 0.0:
        raise ValueError(f"{desc} runs in sigma = sigma_t / alpha_t, infinite at zero terminal SNR: "
                         "use dpm++2m or unipc")
    gamma = min(churn / S, math.sqrt(2.0) - 1.0) if churn > 0 else 0.0
    x_ve = x_T / a[0].to(x_T.dtype)
    for i in w.steps():
        if gamma > 0:
            sigma_hat = torch.minimum(sig[i] * (1.0 + gamma), sig[0])  # no higher than the schedule's top
            x_ve = x_ve + (sigma_hat**2 - sig[i] ** 2).sqrt() * noise_like(x_ve, generator)
            alpha_hat = (1.0 + sigma_hat**2).rsqrt()
            x0 = w.D.at(x_ve * alpha_hat, alpha_hat**2)
        else:
            sigma_hat = sig[i]
            x0 = w.D(x_ve * a[i], i)
        d = (x_ve - x0) / sigma_hat
        x_next = x_ve + (sig[i + 1] - sigma_hat) * d
        if second_order and i < S - 1 and i >= euler_steps:
            d_next = (x_next - w.D(x_next * a[i + 1], i + 1)) / sig[i + 1]
            x_next = x_ve + (sig[i + 1] - sigma_hat) * (d + d_next) / 2
        x_ve = x_next.to(x_T.dtype)
        w.report(i, x_ve * a[i + 1], x0)
    return x_ve


@torch.no_grad()
def euler(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
          clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
          cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without its second
    stage), one evaluation a step; ``eta`` is S_churn (0: deterministic). ``x_T: [B, ...]`` -> x0."""
    return _karras(model, diffusion, x_T, False, eta, "euler", generator, clip_denoised, callback, progress, cond)


@torch.no_grad()
def heun(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
         clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
         cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """Heun's method (Karras et al. 2022, Algorithm 2): 2 evaluations a step, 1 on the last; ``eta`` is
    S_churn (0: deterministic). ``x_T: [B, ...]`` -> x0."""
    return _karras(model, diffusion, x_T, True, eta, "heun", generator, clip_denoised, callback, progress, cond)


def heun_budget(nfe: int) -> tuple[int, int]:
    """Heun's steps S and leading Euler steps k for exactly ``nfe`` evaluations: 2 (S - 1 - k) + k + 1 = nfe.

    The first steps, from the largest sigma, are where a Heun correction helps least and can hurt most: the
    trapezoid averages slopes at sigma_max and at a far smaller next sigma (measured on the cosine schedule,
    sigma_max = 2e4, a 5-NFE Heun with a correction on its first step lands 3900 sliced-W1 away, with an Euler
    first step 0.06 at 8 NFE). So an even budget takes one Euler step first, an odd one two.
    """
    if nfe <= 2:
        return nfe, nfe  # Euler only
    return (nfe // 2 + 1, 1) if nfe % 2 == 0 else ((nfe + 3) // 2, 2)


def heun_within(nfe: int) -> Sampler:
    """Heun made to spend exactly ``nfe`` evaluations (:func:`heun_budget`): the sampler for ``sample(nfe=...)``."""
    euler_steps = heun_budget(nfe)[1]

    @torch.no_grad()
    def run(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
            clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
            cond: Mapping[str, Tensor] | None = None) -> Tensor:
        return _karras(model, diffusion, x_T, True, eta, "heun", generator, clip_denoised, callback, progress, cond,
                       euler_steps=euler_steps)

    return run


@torch.no_grad()
def euler_ancestral(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *,
                    generator: Generators = None, clip_denoised: bool = False,
                    callback: Callback | None = None, progress: bool = True, eta: float = 1.0,
                    cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """Euler ancestral: Euler to sigma_down, then fresh noise of sigma_up (noise drawn every step, zero on
    the last). ``eta`` scales sigma_up (0: Euler). ``x_T: [B, ...]`` -> x0."""
    w = Walk(model, diffusion, x_T, "euler-a", clip_denoised, callback, progress, cond)
    a, sig = w.levels.alpha, w.levels.sigma_ve
    if float(a[0]) == 0.0:
        raise ValueError("euler-a runs in sigma = sigma_t / alpha_t, infinite at zero terminal SNR: use dpm++2m-sde")
    x_ve = x_T / a[0].to(x_T.dtype)
    for i in w.steps():
        x0 = w.D(x_ve * a[i], i)
        up = torch.minimum(sig[i + 1], eta * (sig[i + 1] ** 2 * (sig[i] ** 2 - sig[i + 1] ** 2) / sig[i] ** 2).sqrt())
        down = (sig[i + 1] ** 2 - up**2).clamp(min=0).sqrt()
        x_ve = x_ve + (down - sig[i]) * (x_ve - x0) / sig[i]
        x_ve = (x_ve + noise_like(x_ve, generator) * up).to(x_T.dtype)
        w.report(i, x_ve * a[i + 1], x0)
    return x_ve
