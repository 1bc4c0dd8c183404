"""DPM-Solver++(2M) driven by the exact optimal denoiser: second-order convergence to the probability-flow
ODE's closed-form solution for Gaussian data, the mixture's modes, one evaluation a step, determinism."""

import math

import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser

F64 = torch.float64


def flow_error(sampler: str, steps: int) -> float:
    """The largest error of ``sampler`` on ``steps`` respaced steps against the exact flow map of N(mu, std^2):
    along the probability-flow ODE x_t = sqrt(a_bar_t) mu + sqrt(a_bar_t std^2 + 1 - a_bar_t) z with z fixed,
    so x0 = mu + std (x_T - sqrt(a_bar_T) mu) / sqrt(a_bar_T std^2 + 1 - a_bar_T)."""
    s = NoiseSchedule.cosine(1000)
    mu, std = 0.3, 0.5
    oracle = OptimalDenoiser(GaussianMixture([[mu]], [std], [1.0]), s)
    x_T = torch.linspace(-2.0, 2.0, 7, dtype=F64)[:, None]
    ab_T = float(s.alpha_bars[-1])
    exact = mu + std / (ab_T * std**2 + 1 - ab_T) ** 0.5 * (x_T - ab_T**0.5 * mu)
    x0 = sample(oracle, GaussianDiffusion(s), (7, 1), sampler=sampler, steps=steps, x_T=x_T, progress=False)
    return (x0 - exact).abs().max().item()


def test_dpm_solver_2m_converges_at_second_order_and_ddim_at_first():
    # Halving the step (20 -> 40 -> 80 steps) divides a p-th order method's error by 2^p: the fitted slope of
    # log error against log steps is p. Measured here: DDIM 1.01, 1.00; DPM-Solver++(2M) 1.94, 2.06 (the
    # asymptotic regime starts around 20 steps on the cosine schedule).
    for sampler, order in (("ddim", 1.0), ("dpm++2m", 2.0)):
        errors = [flow_error(sampler, steps) for steps in (20, 40, 80)]
        slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
        assert all(abs(p - order) < 0.25 for p in slopes), (sampler, errors, slopes)
    assert flow_error("dpm++2m", 80) < flow_error("ddim", 80) / 2  # measured: 6.2e-3 against 1.9e-2


def test_dpm_solver_2m_reproduces_the_mixture_and_evaluates_once_a_step():
    mixture = GaussianMixture(means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], stds=[0.3, 0.5, 0.25],
                              weights=[0.5, 0.3, 0.2])
    s = NoiseSchedule.cosine(1000)
    oracle = OptimalDenoiser(mixture, s)
    calls = []
    model = lambda x, t, **c: (calls.append(t), oracle(x, t))[1]  # noqa: E731
    n = 4000
    g = torch.Generator().manual_seed(0)
    x0 = sample(model, GaussianDiffusion(s), (n, 2), sampler="dpm++2m", steps=25, generator=g, progress=False,
                dtype=F64)
    assert len(calls) == 25  # one network evaluation a step, the last included
    _, r = mixture.log_prob_noised(x0, torch.ones(n, dtype=F64))
    weights = torch.bincount(r.argmax(1), minlength=3).to(F64) / n
    # Each weight within 5 standard errors sqrt(w (1 - w) / n) plus 0.02 for the 25-step discretisation.
    bound = 5 * (mixture.weights * (1 - mixture.weights) / n).sqrt() + 0.02
    assert bool(((weights - mixture.weights).abs() < bound).all()), weights
    again = sample(oracle, GaussianDiffusion(s), (n, 2), sampler="dpm++2m", steps=25,
                   generator=torch.Generator().manual_seed(0), progress=False, dtype=F64)
    assert torch.equal(again, x0)
