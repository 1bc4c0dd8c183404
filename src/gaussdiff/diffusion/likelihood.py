"""Likelihood beyond the variational bound: the probability-flow ODE, and progressive compression.

**Probability-flow ODE** (Song et al. 2021, "Score-Based Generative Modeling through SDEs", §4.3
and App. D.2). With x_bar = x_t / sqrt(alpha_bar) and sigma = sqrt((1 - alpha_bar) / alpha_bar), the
deterministic sampler's ODE is d x_bar / d sigma = eps_theta(x_t, t) (the limit of DDIM: Song, Meng &
Ermon 2021, Eq. 14), and along it d log p / d sigma = -div eps. It is integrated in u = log sigma, where
it is smooth even at the cosine schedule's last steps (sigma grows by orders of magnitude there), with
t(u) the exact inverse of the schedule's continuous extension (log sigma piecewise linear in t). From
the data (sigma_0 ~ 0.01) to the last step:

    log p(x0) = log N(x_bar_T; 0, (1 + sigma_T^2) I) + int sigma div_{x_bar} eps du,

the divergence estimated with Hutchinson's trick (one Rademacher probe per example, as FFJORD) or
exactly for small dimension. 8-bit data is dequantized uniformly within its bin of width 2/255,
so bits/dim = -log p / (D ln 2) + log2(127.5) bounds the discrete NLL from above.

**Progressive compression** (Ho et al. 2020 §4.3, Algorithm 3): in the paper's 1-based steps, sending
x_T, ..., x_t costs L_T + sum_{s=t}^{T-1} L_s bits (the rate; L_s sends x_s given x_{s+1}, and L_0 then
sends x0 itself), after which the receiver's x0 estimate has an RMSE (the distortion, on the [0, 255] scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from .process import GaussianDiffusion, Likelihood, Model, model_output

Divergence = Literal["hutchinson", "exact"]


@dataclass
class OdeLikelihood:
    """Per-example ``[B]`` log p(x0) in nats and bits/dim, and the ODE's function evaluations (one count)."""

    log_p: Tensor
    bpd: Tensor
    nfe: int


def ode_likelihood(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: Tensor,
    divergence: Divergence = "hutchinson",
    dequantize: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    **cond: Tensor,
) -> OdeLikelihood:
    """log p(x0) under the probability-flow ODE of an eps-model (see the module docstring).

    Args:
        x0: ``[B, ...]`` data in [-1, 1] (8-bit data when ``dequantize``).
        divergence: ``"hutchinson"`` (unbiased, one probe) or ``"exact"`` (D backward passes).
        dequantize: add U(-1/255, 1/255) noise and report the discrete bound in bits/dim.
        rtol, atol: of scipy's RK45, as in Song et al.
    """
    schedule = diffusion.schedule
    if schedule.zero_terminal_snr:
        # The ODE runs in log sigma up to the last step's, and the prior N(0, sigma_T^2) needs a finite sigma_T.
        raise ValueError("the probability-flow ODE likelihood needs alpha_bar_T > 0; a zero-terminal-SNR schedule "
                         "ends at sigma = infinity (its variational bound, evaluate_bpd, is defined)")
    shape, B = x0.shape, x0.shape[0]
    D = x0[0].numel()
    device, dtype = x0.device, torch.float64
    x = x0.to(dtype)
    if dequantize:
        u = torch.rand(x.shape, generator=generator, device=device, dtype=dtype)
        x = x + (u - 0.5) * (2.0 / 255.0)
    probe = None
    if divergence == "hutchinson":
        probe = torch.randint(0, 2, x.shape, generator=generator, device=device).to(dtype) * 2 - 1
    def log_sigma(ab: Tensor) -> float:
        return float(0.5 * torch.log(1.0 / ab - 1.0))

    u_start, u_end = log_sigma(schedule.alpha_bars[0]), log_sigma(schedule.alpha_bars[-1])
    nfe = 0

    def drift_and_divergence(u: float, x_bar: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        sigma = math.exp(u)
        ab = torch.tensor(1.0 / (1.0 + sigma**2), dtype=dtype)
        t = schedule.timestep_at(ab).expand(B).to(device=device, dtype=x0.dtype)
        scale = float(ab.sqrt())
        with torch.enable_grad():
            xb = x_bar.detach().requires_grad_(True)
            eps = model_output(model((xb * scale).to(x0.dtype), t, **cond), xb)
            if probe is not None:
                (grad,) = torch.autograd.grad((eps * probe).sum(), xb)
                div = (grad * probe).flatten(1).sum(1)
            else:
                flat = eps.flatten(1)
                div = torch.zeros(B, dtype=dtype, device=device)
                for j in range(D):
                    (grad,) = torch.autograd.grad(flat[:, j].sum(), xb, retain_graph=j < D - 1)
                    div = div + grad.flatten(1)[:, j]
        # d x_bar / du = sigma eps, and the log-density changes by sigma div eps per unit u.
        return (eps * sigma).detach(), div.detach() * sigma

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        x_bar = torch.from_numpy(state[: B * D]).to(device).reshape(shape)
        drift, div = drift_and_divergence(t, x_bar)
        return np.concatenate([drift.cpu().numpy().ravel(), div.cpu().numpy()])

    # At the first step sigma is ~0.01: the data stands for x_bar there.
    state0 = np.concatenate([x.cpu().numpy().ravel(), np.zeros(B)])
    solution = solve_ivp(rhs, (u_start, u_end), state0, rtol=rtol, atol=atol, method="RK45")
    end = torch.from_numpy(solution.y[:, -1])
    x_bar_T, integral = end[: B * D].reshape(B, D), end[B * D :]
    var_T = float(1.0 / schedule.alpha_bars[-1])  # x_T ~ N(0, I)  <=>  x_bar_T ~ N(0, 1/alpha_bar_T)
    log_prior = -0.5 * (x_bar_T**2).sum(1) / var_T - 0.5 * D * math.log(2 * math.pi * var_T)
    log_p = log_prior + integral
    bpd = -log_p / (D * math.log(2.0))
    if dequantize:
        bpd = bpd + math.log2(127.5)
    return OdeLikelihood(log_p, bpd, nfe)


@dataclass
class RateDistortion:
    """Progressive compression along the reverse process, ``[T]`` each, index = step t.

    rate: bits/dim sent once x_t is known, averaged over examples: the prior L_T and the terms of the steps above t
    (``vb[:, s]``, s > t, each the cost of the latent below step s); at t = 0 every term but the decoder's L_0,
    which sends x0 itself (Ho et al. 2020 §4.3 report the rate so, with L_0 as the distortion in bits).
    distortion: RMSE of the x0 estimate at step t on the [0, 255] scale.
    """

    t: Tensor
    rate: Tensor
    distortion: Tensor


def rate_distortion(likelihood: Likelihood, model_timesteps: Tensor) -> RateDistortion:
    """Rate and distortion per step from :meth:`GaussianDiffusion.bpd`'s terms (Ho et al. 2020 Fig. 5)."""
    # Latents are sent from the noisiest down (Algorithm 3): x_{T-1} costs L_T, and step s's term vb[:, s] is the
    # cost of the latent below it (of x0 itself at s = 0), so x_t is known once L_T and the terms of the steps above
    # t are: the running sum from the top, less step t's own term.
    cumulative = likelihood.vb.flip(1).cumsum(1).flip(1) - likelihood.vb + likelihood.prior[:, None]
    distortion = likelihood.x0_mse.mean(0).sqrt() * 127.5
    return RateDistortion(model_timesteps, cumulative.mean(0), distortion)
