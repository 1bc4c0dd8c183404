"""Samplers driven by the exact optimal denoiser of a Gaussian mixture must reproduce the mixture."""

import math

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
    """Assign each point to its most likely component; return the weights, per-component stds and counts."""
    _, r = MIXTURE.log_prob_noised(x, torch.ones(len(x), dtype=F64))
    k = r.argmax(1)
    counts = torch.bincount(k, minlength=3).to(F64)
    stds = torch.stack([(x[k == j] - MIXTURE.means[j]).pow(2).mean().sqrt() for j in range(3)])
    return counts / len(x), stds, counts


def ddim_scale(schedule: NoiseSchedule, std: float, steps: int | None) -> float:
    """The exact factor by which DDIM (eta = 0) scales x_T - sqrt(a_bar_T) mu for Gaussian data N(mu, std^2).

    With the optimal denoiser, eps*(x_t) = b (x_t - a mu) / v (a = sqrt(a_bar_t), b = sqrt(1 - a_bar_t),
    v = a^2 std^2 + b^2) and x0* = E[x0 | x_t] are affine in x_t, so each DDIM step (Song et al. Eq. 12)
    x_{t-1} = a' x0* + b' eps* scales the centred sample by (a' a std^2 + b' b) / v. The product over the
    walked steps is the whole map: an independent derivation of what the sampler must compute.
    """
    r = schedule if steps is None else schedule.respace(steps, "linspace")
    factor = 1.0
    for ab, ab_prev in zip(r.alpha_bars.tolist(), r.alpha_bars_prev.tolist()):
        a, b, a2, b2 = ab**0.5, (1 - ab) ** 0.5, ab_prev**0.5, (1 - ab_prev) ** 0.5
        factor *= (a2 * a * std**2 + b2 * b) / (a * a * std**2 + b * b)
    return factor


@pytest.mark.parametrize("schedule, sampler", [("linear", "ddpm"), ("linear", "ddim"), ("cosine", "ddim")])
def test_sampler_reproduces_mixture_weights_and_widths(schedule, sampler):
    """All 1000 steps, so that only Monte Carlo error and a bias bounded in closed form remain."""
    s = getattr(NoiseSchedule, schedule)(1000)
    d = GaussianDiffusion(s)
    g = torch.Generator().manual_seed(10)
    n = 4000
    x = sample(OptimalDenoiser(MIXTURE, s), d, (n, 2), sampler=sampler, generator=g, dtype=F64, progress=False)
    weights, stds, counts = mode_statistics(x)
    # A weight is a binomial share: 4 standard errors sqrt(w (1 - w) / n).
    w = MIXTURE.weights
    assert bool(((weights - w).abs() < 4 * (w * (1 - w) / n).sqrt()).all()), (weights, w)
    # A width estimated from n_k points of a 2-D isotropic component (2 n_k squared deviations about the
    # known mean) has a relative standard error 1 / sqrt(2 * 2 n_k); allow 4 of them. DDIM adds its
    # discretization bias, which for a lone Gaussian of the same width is |ddim_scale / exact - 1|
    # (under 0.6% at 1000 steps); the N(0, I) prior's mismatch is in that exact map as well.
    bias = torch.zeros(3, dtype=F64)
    if sampler == "ddim":
        ab_T = float(s.alpha_bars[-1])
        exact = MIXTURE.stds / (ab_T * MIXTURE.stds**2 + 1 - ab_T).sqrt()
        bias = torch.tensor([abs(ddim_scale(s, float(k), None) / float(e) - 1) for k, e in zip(MIXTURE.stds, exact)])
        assert float(bias.max()) < 0.006
    relative = (stds / MIXTURE.stds - 1).abs()
    assert bool((relative < 4 / (4 * counts).sqrt() + bias).all()), (relative, bias)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_strided_ddim_is_the_exact_affine_map_for_gaussian_data_and_converges(schedule):
    """DDIM on 50 respaced steps computes the closed-form map of :func:`ddim_scale` (to float64 rounding:
    50 steps of a few operations each, relative error well below 1e-12), and the map approaches the
    exact flow's (std / sqrt(v_T), which sends N(0, 1) to N(mu, std^2)) as the steps grow."""
    s = getattr(NoiseSchedule, schedule)(1000)
    mu, std = 0.3, 0.5
    oracle = OptimalDenoiser(GaussianMixture([[mu]], [std], [1.0]), s)
    x_T = torch.linspace(-2.0, 2.0, 7, dtype=F64)[:, None]
    x0 = sample(oracle, GaussianDiffusion(s), (7, 1), sampler="ddim", steps=50, x_T=x_T, progress=False)
    centre = float(s.alpha_bars[-1]) ** 0.5 * mu
    torch.testing.assert_close(x0 - mu, ddim_scale(s, std, 50) * (x_T - centre), rtol=1e-12, atol=1e-12)
    ab_T = float(s.alpha_bars[-1])
    exact = std / (ab_T * std**2 + 1 - ab_T) ** 0.5
    errors = [abs(ddim_scale(s, std, steps) - exact) for steps in (10, 50, 100, None)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.005 * exact, errors


def test_strided_ancestral_variance_brackets_the_truth():
    """With few strided steps the true reverse variance lies between beta_tilde and beta (Improved DDPM
    §3.1): fixed_small samples come out too narrow and fixed_large too wide, mode weights intact."""
    s = NoiseSchedule.linear(1000)
    widths, n, w = {}, 4000, MIXTURE.weights
    for variance in ("fixed_small", "fixed_large"):
        x = sample(OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s, variance=variance), (n, 2), steps=20,
                   generator=torch.Generator().manual_seed(10), dtype=F64, progress=False)
        weights, widths[variance], counts = mode_statistics(x)
        assert bool(((weights - w).abs() < 4 * (w * (1 - w) / n).sqrt()).all()), (weights, w)  # 4 binomial SEs
        # The relative error of each width is 1 / sqrt(4 n_k) (see above): the bracket must hold by 3 of them.
        margins = 3 / (4 * counts).sqrt()
        sign = -1 if variance == "fixed_small" else 1
        assert bool((sign * (widths[variance] / MIXTURE.stds - 1) > margins).all()), (variance, widths[variance])


def test_every_parameterization_gives_the_same_ddim_trajectory():
    s = NoiseSchedule.cosine(1000)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
    results = {}
    for prediction in ("eps", "x0", "v"):
        d = GaussianDiffusion(s, prediction=prediction)
        trajectory = []
        results[prediction] = sample(OptimalDenoiser(MIXTURE, s, prediction), d, (64, 2), sampler="ddim", steps=50,
                                     x_T=x_T, progress=False,
                                     callback=lambda st, trajectory=trajectory: trajectory.append(st.x_t))
        results[prediction + "_traj"] = torch.stack(trajectory)
    for prediction in ("x0", "v"):
        # float64 rounding amplified by the x0 <-> eps conversion (1 / sqrt(alpha_bar) <= 1e4 on the cosine
        # schedule's last step) over 50 steps: below 1e-10.
        torch.testing.assert_close(results[prediction + "_traj"], results["eps_traj"], rtol=1e-9, atol=1e-9)


def test_ddim_with_eta_one_is_ancestral_sampling_with_beta_tilde():
    """sigma_t(eta=1)^2 = beta_tilde_t, and sqrt(a_bar_{t-1}) x0 + sqrt(1 - a_bar_{t-1} - beta_tilde_t) eps is
    the posterior mean mu_tilde(x0, x_t): the same noise gives the same chain, step for step."""
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s, variance="fixed_small")
    model = OptimalDenoiser(MIXTURE, s)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(12), dtype=F64)
    for steps in (None, 20):
        a = sample(model, d, (32, 2), "ddpm", steps=steps, x_T=x_T, generator=torch.Generator().manual_seed(1),
                   progress=False)
        b = sample(model, d, (32, 2), "ddim", steps=steps, eta=1.0, x_T=x_T, generator=torch.Generator().manual_seed(1),
                   progress=False)
        # The same chain computed two ways in float64: per-step rounding over 1000 steps, ~1e-13.
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
    # A few float64 operations on each side: rounding of order 1e-16.
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
    kwargs = dict(sampler="ddpm", steps=10, spacing="leading", progress=False, callback=steps.append,
                  label=torch.zeros(8))
    a = sample(model, d, (8, 2), generator=torch.Generator().manual_seed(3), **kwargs)
    assert seen == list(range(900, -1, -100))
    assert [int(st.t[0]) for st in steps] == seen and steps[-1].x0.shape == (8, 2)
    b = sample(model, d, (8, 2), generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a, b) and a.dtype == torch.float32
    x_T = torch.randn(8, 2, dtype=F64)
    assert sample(model, d, (8, 2), x_T=x_T, **kwargs).dtype == F64
    with pytest.raises(ValueError, match="sampler"):
        sample(model, d, (8, 2), sampler="dpm++9m")  # type: ignore[arg-type]
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
    # 12 000 independent N(0, 0.25) values: 5 standard errors of the std, 0.5 / sqrt(2 n), and of the mean,
    # 0.5 / sqrt(n).
    n = x.numel()
    assert abs(x.std().item() - 0.5) < 5 * 0.5 / math.sqrt(2 * n) and abs(x.mean().item()) < 5 * 0.5 / math.sqrt(n)


def test_one_generator_per_sample_makes_each_sample_depend_on_its_own_only():
    """With a list of generators (one per row, as diffusers' pipelines take them), row i's starting noise and
    every step's noise come from generator i alone: a sample drawn in a batch equals the one drawn by itself."""
    diffusion = GaussianDiffusion(NoiseSchedule.linear(20), prediction="eps")
    model = lambda x, t: 0.1 * x  # noqa: E731  any deterministic network
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    for sampler, eta in (("ddpm", None), ("euler-a", None), ("dpm++2m-sde", None), ("ddim", 1.0)):
        both = sample(model, diffusion, (2, 3), sampler, steps=5, eta=eta, generator=gens([7, 8]), progress=False,
                      dtype=torch.float64)
        alone = sample(model, diffusion, (1, 3), sampler, steps=5, eta=eta, generator=gens([8]), progress=False,
                       dtype=torch.float64)
        torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-12, msg=sampler)
        assert not torch.allclose(both[0], both[1])
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        sample(model, diffusion, (2, 3), "ddpm", steps=5, generator=gens([1, 2, 3]), progress=False)
