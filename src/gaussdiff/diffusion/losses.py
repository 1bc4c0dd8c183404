"""Log-likelihood pieces of the variational bound (Ho et al. 2020 §3.3; Nichol & Dhariwal 2021 §3).

All functions work elementwise on tensors of any shape; ``mean_flat`` reduces over the non-batch
dimensions so that losses stay per example (``[B]``) and can be weighted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the first: ``[B, ...] -> [B]``."""
    return x.mean(dim=tuple(range(1, x.dim()))) if x.dim() > 1 else x


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats, elementwise.

    The closed form 0.5 (log s2/s1 + (s1 + (m1 - m2)^2) / s2 - 1), written with log variances so
    that tiny variances (beta_tilde near t = 0) stay finite.
    """
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) for 8-bit data under a Gaussian discretized to 256 bins (Ho et al. 2020 Eq. 13).

    ``x`` lies on the grid -1 + 2k/255, k = 0..255. Bin k covers [x - 1/255, x + 1/255]; the edge
    bins extend to -inf and +inf so that the 256 probabilities sum to exactly 1. Uses the exact
    normal CDF (``torch.special.ndtr``/``log_ndtr``) rather than the tanh approximation of the
    reference code, and log-CDFs in the tails where differences of CDFs underflow.

    Args:
        x: data in [-1, 1], any shape.
        mean, log_scale: the decoder's mean and log standard deviation, broadcastable to ``x``.
    Returns:
        log-probabilities in nats, the shape of ``x``.
    """
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (centered + 1.0 / 255.0)
    lower = inv_std * (centered - 1.0 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)
    # log(Phi(a) - Phi(b)), a > b, from the side of the mean further from the tails (by symmetry),
    # and in log space: a plain difference of CDFs underflows to 0 a few scales out.
    far_right = lower > 0
    a = torch.where(far_right, -lower, upper)
    b = torch.where(far_right, -upper, lower)
    log_a = torch.special.log_ndtr(a)
    log_mid = log_a + torch.log(-torch.expm1(torch.special.log_ndtr(b) - log_a))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, log_mid))


def nats_to_bits(x: Tensor) -> Tensor:
    """Convert nats to bits."""
    return x / math.log(2.0)
