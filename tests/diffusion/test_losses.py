"""The bound's building blocks against independent references."""

import math

import torch
from torch.distributions import Normal, kl_divergence

from gaussdiff.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl

EPS = torch.finfo(torch.float64).eps  # 2 u: one correctly rounded float64 operation errs by at most u = EPS / 2


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(2, 1000, generator=g, dtype=torch.float64)
    lv1, lv2 = 3 * torch.randn(2, 1000, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    # Both sides sum the terms r = s1/s2, t = (m1 - m2)^2 / s2, 1 and log r, each after <= ~8 roundings (exp, ratio,
    # square, products, 3 additions), so they differ by <= ~20 u times the terms' size S; and exp(lv1 - lv2) turns
    # the rounding of its argument into a relative error |lv1 - lv2| u of r (exp's condition number).
    dlv = lv1 - lv2
    size = dlv.exp() + (m1 - m2) ** 2 * (-lv2).exp() + 1 + dlv.abs()
    bound = (10 + dlv.abs() / 2) * EPS * size
    assert bool(((normal_kl(m1, lv1, m2, lv2) - expected).abs() <= bound).all())


def test_discretized_decoder_sums_to_one_over_256_bins():
    bins = -1.0 + 2.0 * torch.arange(256, dtype=torch.float64) / 255.0
    for mean, log_scale in [(0.0, -1.0), (0.7, -5.0), (-0.99, -3.0), (0.3, 1.0), (1.5, -4.0)]:
        logp = discretized_gaussian_log_likelihood(bins, torch.tensor(mean, dtype=torch.float64),
                                                   torch.tensor(log_scale, dtype=torch.float64))
        # 256 probabilities <= 1, each from ~8 float64 operations on O(1) log-space values (its edges, log_ndtr,
        # expm1, exp; Phi |log Phi| <= 1/e keeps the log-space pieces O(1)), then summed: <= 256 * 8 eps.
        assert abs(logp.exp().sum().item() - 1.0) <= 256 * 8 * EPS, (mean, log_scale)


def test_discretized_decoder_bin_is_the_normal_integral():
    bins = -1.0 + 2.0 * torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = 0.1, 0.05
    d = Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    expected = d.cdf(bins + 1 / 255) - d.cdf(bins - 1 / 255)
    expected[0] = d.cdf(bins[0] + 1 / 255)
    expected[-1] = 1 - d.cdf(bins[-1] - 1 / 255)
    got = discretized_gaussian_log_likelihood(bins, torch.tensor(mean, dtype=torch.float64),
                                              torch.tensor(std, dtype=torch.float64).log()).exp()
    # Absolutely (the reference's differences of CDFs cancel to 0 in the far tails): each side is a handful of
    # roundings (<= 8 u) on probabilities <= 1, plus its bin edges' rounding (u |edge| <= u) times the density
    # <= 1 / (0.05 sqrt(2 pi)) = 8: |got - expected| <= 2 (8 u + 8 u) = 16 eps.
    torch.testing.assert_close(got, expected, rtol=0, atol=16 * EPS)


def test_discretized_decoder_tail_stays_finite():
    x = torch.tensor([0.5], dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(x, torch.tensor(-0.9, dtype=torch.float64),
                                               torch.tensor(-6.0, dtype=torch.float64))
    assert torch.isfinite(logp).all()
    # The bin starts z = 563 scales above the mean, where the normal tail is bracketed by Mills' ratio:
    # phi(z) / z (1 - 1/z^2) <= 1 - Phi(z) <= phi(z) / z; the bin's far edge, 3.2 scales further, takes off a
    # factor 1 - e^-1787, nothing in float64. z here and inside each carry <= 4 u relative rounding, which moves
    # z^2 / 2 by <= z^2 4 u = 2 eps z^2: 4 eps z^2 for both.
    z = (0.5 + 0.9 - 1 / 255) * math.exp(6.0)
    A = -z * z / 2 - math.log(z * math.sqrt(2 * math.pi))
    assert A + math.log1p(-1 / z**2) - 4 * EPS * z**2 <= logp.item() <= A + 4 * EPS * z**2


def test_mean_flat_reduces_all_but_batch():
    x = torch.arange(24.0).reshape(2, 3, 4)
    # Sums of integers below 2^24 and the quotients 66 / 12, 210 / 12 are exact in float32.
    torch.testing.assert_close(mean_flat(x), torch.tensor([5.5, 17.5]), rtol=0, atol=0)
