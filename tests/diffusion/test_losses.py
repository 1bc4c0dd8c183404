"""The bound's building blocks against independent references."""

import torch
from torch.distributions import Normal, kl_divergence

from gaussdiff.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(2, 1000, generator=g, dtype=torch.float64)
    lv1, lv2 = 3 * torch.randn(2, 1000, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)


def test_discretized_decoder_sums_to_one_over_256_bins():
    bins = -1.0 + 2.0 * torch.arange(256, dtype=torch.float64) / 255.0
    for mean, log_scale in [(0.0, -1.0), (0.7, -5.0), (-0.99, -3.0), (0.3, 1.0), (1.5, -4.0)]:
        logp = discretized_gaussian_log_likelihood(bins, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64))
        assert abs(logp.exp().sum().item() - 1.0) < 1e-10, (mean, log_scale)


def test_discretized_decoder_bin_is_the_normal_integral():
    bins = -1.0 + 2.0 * torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = 0.1, 0.05
    d = Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    expected = d.cdf(bins + 1 / 255) - d.cdf(bins - 1 / 255)
    expected[0] = d.cdf(bins[0] + 1 / 255)
    expected[-1] = 1 - d.cdf(bins[-1] - 1 / 255)
    got = discretized_gaussian_log_likelihood(bins, torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64).log()).exp()
    # The reference differences cancel to 0 in the far tails; compare absolutely there.
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-14)


def test_discretized_decoder_tail_stays_finite():
    x = torch.tensor([0.5], dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(x, torch.tensor(-0.9, dtype=torch.float64), torch.tensor(-6.0, dtype=torch.float64))
    assert torch.isfinite(logp).all() and logp.item() < -1000


def test_mean_flat_reduces_all_but_batch():
    x = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(mean_flat(x), torch.tensor([5.5, 17.5]))
