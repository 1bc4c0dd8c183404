"""The Gaussian-mixture oracle against torch.distributions and the score it stands for."""

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from gaussdiff import NoiseSchedule
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser

F64 = torch.float64
# Three components in D = 3 with unequal weights and stds: each term of the log-density shows.
MIX = GaussianMixture([[-1.0, 0.5, 0.2], [0.8, -0.3, 1.1], [0.1, 1.2, -0.9]], [0.3, 0.6, 0.15], [0.5, 0.3, 0.2])


def noised(mixture, alpha_bar):
    """p_t as torch.distributions: x_t = sqrt(a) x0 + sqrt(1 - a) eps maps N(mu_k, s_k^2 I) to
    N(sqrt(a) mu_k, (a s_k^2 + 1 - a) I), the weights unchanged."""
    a = torch.tensor(alpha_bar, dtype=F64)
    scale = (a * mixture.stds**2 + 1 - a).sqrt()[:, None].expand_as(mixture.means)
    components = Independent(Normal(a.sqrt() * mixture.means, scale), 1)
    return MixtureSameFamily(Categorical(probs=mixture.weights), components), components


@pytest.mark.parametrize("alpha_bar", [1.0, 0.7, 0.05])
def test_noised_log_density_and_responsibilities_match_torch_distributions(alpha_bar):
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    dist, components = noised(MIX, alpha_bar)
    log_p, r = MIX.log_prob_noised(x, torch.full((16,), alpha_bar, dtype=F64))
    torch.testing.assert_close(log_p, dist.log_prob(x), rtol=1e-12, atol=1e-12)
    # Bayes: r_k = pi_k N_k(x) / p(x).
    expected_r = (MIX.weights.log() + components.log_prob(x[:, None, :]) - dist.log_prob(x)[:, None]).exp()
    torch.testing.assert_close(r, expected_r, rtol=1e-12, atol=1e-12)
    if alpha_bar == 1.0:
        torch.testing.assert_close(MIX.log_prob(x), dist.log_prob(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step", [0, 300, 999])
def test_optimal_denoiser_is_the_scaled_score(step):
    """eps*(x_t) = -sqrt(1 - a) grad log p_t(x_t) (Ho et al. 2020 §3.2, Vincent 2011), the gradient by autograd
    through torch's mixture density; x0* = (x_t - sqrt(1 - a) eps*) / sqrt(a) (Tweedie), v* = sqrt(a) eps* -
    sqrt(1 - a) x0* (Salimans & Ho 2022)."""
    s = NoiseSchedule.cosine(1000)
    a = s.alpha_bars[step].item()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), dtype=F64).requires_grad_(True)
    (score,) = torch.autograd.grad(noised(MIX, a)[0].log_prob(x).sum(), x)
    x = x.detach()
    t = torch.full((8,), step)
    eps = -(1 - a) ** 0.5 * score
    x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
    torch.testing.assert_close(OptimalDenoiser(MIX, s)(x, t), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(OptimalDenoiser(MIX, s, "x0")(x, t), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(OptimalDenoiser(MIX, s, "v")(x, t), a**0.5 * eps - (1 - a) ** 0.5 * x0,
                               rtol=1e-9, atol=1e-9)


def test_mixture_checks_its_weights_and_shapes():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([[0.0], [1.0]], [1.0, 1.0], [0.5, 0.6])
    with pytest.raises(ValueError, match="must agree"):
        GaussianMixture([[0.0], [1.0]], [1.0], [0.5, 0.5])
    GaussianMixture([[0.0], [1.0]], [1.0, 1.0], [0.25, 0.75])  # a proper mixture is accepted
