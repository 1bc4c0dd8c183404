"""The probability-flow ODE likelihood against closed forms, and progressive compression."""

import math

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule
from gaussdiff.diffusion.likelihood import ode_likelihood, rate_distortion
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser

MIX = GaussianMixture([[0.1, -0.2]], [0.3], [1.0])


def exact_log_density(s, x):
    """With the exact eps, the ODE transports p_sigma0 = N(mu, (s^2 + sigma_0^2) I) to the prior."""
    sigma0_sq = 1 / s.alpha_bars[0].item() - 1
    var = 0.09 + sigma0_sq
    return -0.5 * ((x - MIX.means[0]) ** 2).sum(1) / var - math.log(2 * math.pi * var)


@pytest.mark.parametrize("schedule, tol", [("cosine", 1e-3), ("linear", 1e-2)])
def test_ode_likelihood_with_exact_divergence_matches_the_gaussian_density(schedule, tol):
    s = getattr(NoiseSchedule, schedule)(1000)
    x = MIX.sample(32, torch.Generator().manual_seed(0))[0]
    result = ode_likelihood(OptimalDenoiser(MIX, s), GaussianDiffusion(s), x, divergence="exact", dequantize=False)
    # linear: the N(0, I) prior differs from the true x_T marginal by ~1e-3 nats per dimension.
    assert (result.log_p - exact_log_density(s, x)).abs().max().item() < tol


def test_hutchinson_divergence_is_unbiased():
    s = NoiseSchedule.cosine(1000)
    x = MIX.sample(200, torch.Generator().manual_seed(1))[0]
    result = ode_likelihood(OptimalDenoiser(MIX, s), GaussianDiffusion(s), x, dequantize=False,
                            generator=torch.Generator().manual_seed(2))
    err = result.log_p - exact_log_density(s, x)
    assert abs(err.mean().item()) < 4 * err.std().item() / math.sqrt(200) + 1e-4
    assert err.std().item() > 1e-6  # the probe does add variance: it was used


def test_dequantized_bits_per_dim_bound_the_discrete_nll():
    """For 8-bit data, the dequantized ODE bound lies above the exact discrete NLL of the data."""
    s = NoiseSchedule.cosine(1000)
    g = torch.Generator().manual_seed(3)
    x = torch.round((MIX.sample(400, g)[0].clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    d = torch.distributions.Normal(MIX.means[0], torch.tensor(0.3, dtype=torch.float64))
    nll_bits = -(d.cdf(x + 1 / 255) - d.cdf(x - 1 / 255)).log().mean(1) / math.log(2)
    result = ode_likelihood(OptimalDenoiser(MIX, s), GaussianDiffusion(s), x, divergence="exact", generator=g)
    gap = result.bpd - nll_bits
    assert gap.mean().item() > -3 * gap.std().item() / math.sqrt(400)
    assert gap.mean().item() < 0.05


def test_rate_distortion_is_monotone():
    s = NoiseSchedule.linear(200, 1e-3, 0.05)
    d = GaussianDiffusion(s)
    x = torch.round((MIX.sample(200, torch.Generator().manual_seed(4))[0].clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    like = d.bpd(OptimalDenoiser(MIX, s), x, clip_denoised=False, generator=torch.Generator().manual_seed(5))
    rd = rate_distortion(like, s.timesteps)
    # Going down in t, more bits have been sent and the estimate of x0 gets better.
    assert bool((rd.rate[:-1] >= rd.rate[1:] - 1e-12).all())
    assert rd.rate[0].item() == pytest.approx(like.total.mean().item(), rel=1e-9)
    assert rd.distortion[0].item() < rd.distortion[100].item() < rd.distortion[-1].item()
