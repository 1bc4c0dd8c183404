"""Gaussian-mixture data and its exact optimal denoiser, in closed form.

If x0 ~ sum_k pi_k N(mu_k, s_k^2 I), then x_t = sqrt(a_bar) x0 + sqrt(1 - a_bar) eps has the marginal
p_t(x) = sum_k pi_k N(sqrt(a_bar) mu_k, (a_bar s_k^2 + 1 - a_bar) I), and the minimizer of L_simple is
the (scaled) score (Ho et al. 2020 Eq. 11 and §3.2; Vincent 2011):

    eps*(x_t, t) = -sqrt(1 - a_bar_t) grad log p_t(x_t)
                 = sqrt(1 - a_bar_t) sum_k r_k(x_t) (x_t - sqrt(a_bar_t) mu_k) / (a_bar_t s_k^2 + 1 - a_bar_t),

with r_k the posterior responsibilities of the components. A sampler driven by eps* must
reproduce the mixture, which is how the samplers are proven; the demo draws the same picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .process import Prediction, to_eps, to_prediction
from .schedule import NoiseSchedule


@dataclass
class GaussianMixture:
    """An isotropic Gaussian mixture in D dimensions.

    Attributes:
        means: ``[K, D]``. stds: ``[K]`` per-component standard deviations. weights: ``[K]``, summing to 1.
    """

    means: Tensor
    stds: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64)
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        K = len(self.means)
        if self.means.dim() != 2 or self.stds.shape != (K,) or self.weights.shape != (K,):
            raise ValueError("means [K, D], stds [K] and weights [K] must agree")
        if not math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-9):
            raise ValueError("mixture weights must sum to 1")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` points ``[n, D]`` and their component indices ``[n]``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * z, k

    def log_prob_noised(self, x: Tensor, alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
        """log p_t(x) ``[B]`` and the responsibilities r ``[B, K]`` of the noised mixture at ``alpha_bar`` ``[B]``."""
        a = alpha_bar.reshape(-1, 1).to(x.device)
        means, stds, weights = self.means.to(x.device), self.stds.to(x.device), self.weights.to(x.device)
        mu = a.sqrt().unsqueeze(-1) * means  # [B, K, D]
        var = a * stds**2 + (1.0 - a)  # [B, K]
        sq = ((x.unsqueeze(1) - mu) ** 2).sum(-1)  # [B, K]
        log_comp = weights.log() - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        log_p = torch.logsumexp(log_comp, dim=1)
        return log_p, torch.softmax(log_comp, dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x0) ``[B]`` of points ``[B, D]``."""
        return self.log_prob_noised(x, torch.ones(x.shape[0], dtype=x.dtype, device=x.device))[0]


class OptimalDenoiser:
    """The exact minimizer of the denoising loss for :class:`GaussianMixture` data.

    Called as ``model(x_t, t)`` with ``x_t: [B, D]`` (or ``[B, ...]`` flattening to D) and ``t``
    on the original scale of ``schedule``; returns eps*, x0* = E[x0 | x_t] or v* as asked.
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, prediction: Prediction = "eps") -> None:
        self.mixture = mixture
        self.schedule = schedule
        self.prediction = prediction

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        flat = x_t.reshape(x_t.shape[0], -1).to(torch.float64)
        # Continuous t is allowed (the probability-flow ODE runs between steps).
        a = self.schedule.alpha_bar_at(t).reshape(-1, 1).to(flat.device)  # [B, 1]
        m = self.mixture
        _, r = m.log_prob_noised(flat, a.squeeze(1))
        var = a * m.stds.to(flat.device) ** 2 + (1.0 - a)  # [B, K]
        diff = flat.unsqueeze(1) - a.sqrt().unsqueeze(-1) * m.means.to(flat.device)  # [B, K, D]
        # E[x0 | x_t] = sum_k r_k (mu_k + sqrt(a) std_k^2 / var_k (x_t - sqrt(a) mu_k)), finite at a = 0 (zero
        # terminal SNR) too, where it is the mixture's mean; eps follows from x_t = sqrt(a) x0 + sqrt(1 - a) eps.
        gain = (a.sqrt() * m.stds.to(flat.device) ** 2 / var).unsqueeze(-1)  # [B, K, 1]
        x0 = (r.unsqueeze(-1) * (m.means.to(flat.device) + gain * diff)).sum(1)
        coefs = a.sqrt(), (1.0 - a).sqrt()
        out = to_prediction(self.prediction, x0, to_eps(flat, x0, *coefs), *coefs)
        return out.reshape(x_t.shape).to(x_t.dtype)
