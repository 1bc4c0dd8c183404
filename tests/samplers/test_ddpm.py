"""Samplers driven by the exact optimal denoiser of a Gaussian mixture must reproduce the mixture."""

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, SamplerStep, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.samplers.ddpm import ddim_step

F64 = torch.float64
MIXTURE = GaussianMixture(
    means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]],
    stds=[0.3, 0.5, 0.25],
    weights=[0.5, 0.3, 0.2],
)


def mode_statistics(x):
    """Assign each point to its most likely component; return the weights and per-component stds."""
    _, r = MIXTURE.log_prob_noised(x, torch.ones(len(x), dtype=F64))
    k = r.argmax(1)
    weights = torch.bincount(k, minlength=3).to(F64) / len(x)
    stds = torch.stack([(x[k == j] - MIXTURE.means[j]).pow(2).mean().sqrt() for j in range(3)])
    return weights, stds


@pytest.mark.parametrize(
    "schedule, sampler, steps, width_rtol",
    [
        # 1000 ancestral steps: only Monte Carlo error (a width's standard error is about 1.5%).
        ("linear", "ddpm", None, 0.05),
        # DDIM is a first-order ODE solver: at 50 steps it narrows the modes by up to ~7% here
        # (measured; it converges to the true widths as steps grow).
        ("linear", "ddim", 50, 0.10),
        ("cosine", "ddim", 50, 0.10),
    ],
)
def test_sampler_reproduces_mixture_weights_and_widths(schedule, sampler, steps, width_rtol):
    s = getattr(NoiseSchedule, schedule)(1000)
    d = GaussianDiffusion(s)
    g = torch.Generator().manual_seed(10)
    x = sample(OptimalDenoiser(MIXTURE, s), d, (4000, 2), sampler=sampler, steps=steps,
               generator=g, dtype=F64, progress=False)
    weights, stds = mode_statistics(x)
    # 4000 draws: the standard error of a weight is at most 0.008.
    torch.testing.assert_close(weights, MIXTURE.weights, atol=0.03, rtol=0)
    torch.testing.assert_close(stds, MIXTURE.stds, rtol=width_rtol, atol=0)


def test_strided_ancestral_variance_brackets_the_truth():
    """With few strided steps the true reverse variance lies between beta_tilde and beta (Improved DDPM
    §3.1): fixed_small samples come out too narrow and fixed_large too wide, mode weights intact."""
    s = NoiseSchedule.linear(1000)
    widths = {}
    for variance in ("fixed_small", "fixed_large"):
        x = sample(OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s, variance=variance), (4000, 2), steps=100,
                   generator=torch.Generator().manual_seed(10), dtype=F64, progress=False)
        weights, widths[variance] = mode_statistics(x)
        torch.testing.assert_close(weights, MIXTURE.weights, atol=0.03, rtol=0)
    assert bool((widths["fixed_small"] < MIXTURE.stds).all()), widths
    assert bool((widths["fixed_large"] > MIXTURE.stds).all()), widths


def test_every_parameterization_gives_the_same_ddim_trajectory():
    s = NoiseSchedule.cosine(1000)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
    results = {}
    for prediction in ("eps", "x0", "v"):
        d = GaussianDiffusion(s, prediction=prediction)
        trajectory = []
        results[prediction] = sample(OptimalDenoiser(MIXTURE, s, prediction), d, (64, 2), sampler="ddim", steps=50,
                                     x_T=x_T, progress=False, callback=lambda st, trajectory=trajectory: trajectory.append(st.x_t))
        results[prediction + "_traj"] = torch.stack(trajectory)
    for prediction in ("x0", "v"):
        torch.testing.assert_close(results[prediction + "_traj"], results["eps_traj"], rtol=1e-7, atol=1e-7)


def test_ddim_with_eta_one_is_ancestral_sampling_with_beta_tilde():
    """sigma_t(eta=1)^2 = beta_tilde_t, and sqrt(a_bar_{t-1}) x0 + sqrt(1 - a_bar_{t-1} - beta_tilde_t) eps is
    the posterior mean mu_tilde(x0, x_t): the same noise gives the same chain, step for step."""
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s, variance="fixed_small")
    model = OptimalDenoiser(MIXTURE, s)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(12), dtype=F64)
    for steps in (None, 20):
        a = sample(model, d, (32, 2), "ddpm", steps=steps, x_T=x_T, generator=torch.Generator().manual_seed(1), progress=False)
        b = sample(model, d, (32, 2), "ddim", steps=steps, eta=1.0, x_T=x_T, generator=torch.Generator().manual_seed(1), progress=False)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_step_is_equation_12():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    d = GaussianDiffusion(s)
    g = torch.Generator().manual_seed(13)
    x_t, x0, eps, z = torch.randn(4, 5, 3, generator=g, dtype=F64)
    t = torch.full((5,), 40)
    ab, ab_prev = s.alpha_bars[40].item(), s.alpha_bars[39].item()
    sigma = 0.5 * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
    expected = ab_prev**0.5 * x0 + (1 - ab_prev - sigma**2) ** 0.5 * eps + sigma * z
    torch.testing.assert_close(ddim_step(d, x_t, t, x0, eps, 0.5, z), expected, rtol=1e-12, atol=1e-12)


def test_sampling_is_deterministic_follows_x_T_and_calls_the_model_on_the_original_scale():
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s)
    oracle = OptimalDenoiser(MIXTURE, s)
    seen = []

    def model(x_t, t, label=None):
        seen.append(int(t[0]))
        assert label is not None and label.shape == (8,)
        return oracle(x_t, t)

    steps: list[SamplerStep] = []
    kwargs = dict(sampler="ddpm", steps=10, spacing="leading", progress=False, callback=steps.append, label=torch.zeros(8))
    a = sample(model, d, (8, 2), generator=torch.Generator().manual_seed(3), **kwargs)
    assert seen == list(range(900, -1, -100))
    assert [int(st.t[0]) for st in steps] == seen and steps[-1].x0.shape == (8, 2)
    b = sample(model, d, (8, 2), generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a, b) and a.dtype == torch.float32
    x_T = torch.randn(8, 2, dtype=F64)
    assert sample(model, d, (8, 2), x_T=x_T, **kwargs).dtype == F64
    with pytest.raises(ValueError, match="sampler"):
        sample(model, d, (8, 2), sampler="euler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        sample(model, d, (4, 2), x_T=x_T)


def test_sampler_handles_image_shaped_tensors_and_learned_variance():
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s, variance="learned_range", loss="hybrid")
    oracle = OptimalDenoiser(GaussianMixture([[0.0] * 12], [0.5], [1.0]), s)

    def model(x_t, t):
        # v = -1 selects beta_tilde: the learned-range path with the fixed-small answer.
        return torch.cat([oracle(x_t, t), -torch.ones_like(x_t)], dim=1)

    x = sample(model, d, (1000, 3, 2, 2), generator=torch.Generator().manual_seed(4), dtype=F64, progress=False)
    assert x.shape == (1000, 3, 2, 2)
    assert abs(x.std().item() - 0.5) < 0.03 and abs(x.mean().item()) < 0.02
