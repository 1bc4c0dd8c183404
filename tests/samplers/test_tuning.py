"""Tuned step schedules: on the exact denoiser of a Gaussian mixture, the tuned steps lower the sampler's error against
a fine solve, on the draws of x_T they were tuned on and on others."""

import numpy as np
import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.samplers.tuning import parameters_of, reference_solve, timesteps_of, tune_timesteps

F64 = torch.float64
MIXTURE = GaussianMixture(means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], stds=[0.3, 0.5, 0.25], weights=[0.5, 0.3, 0.2])


def test_zero_parameters_are_uniform_steps_and_parameters_invert_times():
    assert np.allclose(timesteps_of(np.zeros(4), 1000.0), [1000, 750, 500, 250])
    times = timesteps_of(np.array([3.0, -2.0, 0.5, 9.0]), 999.0)
    assert times[0] == 999.0 and all(b < a for a, b in zip(times, times[1:]))
    assert np.allclose(timesteps_of(parameters_of(times, 999.0), 999.0), times)


def test_tuned_steps_lower_the_error_on_other_draws_too():
    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    tuned = tune_timesteps(oracle, d, "unipc", 8, x_T, evals=150, reference_nfe=200, progress=False)
    assert len(tuned.timesteps) == 8 and tuned.timesteps[0] == 999
    assert tuned.error < tuned.error_uniform / 2, tuned  # measured: 9x lower
    # Fresh draws: the schedule is a property of the model, not of the batch.
    other = torch.randn(512, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    reference = sample(oracle, d, other.shape, sampler="unipc", steps=200, x_T=other, progress=False)

    def error(**steps) -> float:
        return float((sample(oracle, d, other.shape, sampler="unipc", x_T=other, progress=False, **steps)
                      - reference).pow(2).mean())

    assert error(timesteps=tuned.timesteps) < error(timesteps=timesteps_of(np.zeros(8), 999.0)) / 2


def test_a_reference_solved_once_tunes_as_the_one_solved_inside():
    """Several budgets share one fine solve (the same ODE from the same draws): passing it in must give exactly the
    steps and errors that solving it inside gives, and a reference of other draws is refused."""
    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    inside = tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, reference_nfe=60, progress=False)
    reference = reference_solve(oracle, d, x_T, reference_nfe=60)
    given = tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, reference_nfe=60, progress=False,
                           reference=reference)
    assert given == inside
    elsewhere = tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, progress=False, reference=reference + 1)
    assert elsewhere.error > inside.error + 0.5  # the one given is the one measured against
    with pytest.raises(ValueError, match="reference has shape"):
        tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, progress=False, reference=reference[:8])


def test_stochastic_samplers_are_not_tuned():
    s = NoiseSchedule.cosine(100)
    with pytest.raises(ValueError, match="stochastic"):
        tune_timesteps(OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s), "euler-a", 5, torch.zeros(2, 2))


def test_steps_worse_on_the_held_out_draws_are_not_kept(monkeypatch):
    """The guard: whatever the search returns is kept only if it also beats, on the half of the draws it was not
    fitted to, the standard spacing it started from. A search that returns bad steps (here every step crowded
    near t = 0 but the first) must give the standard spacing back, with that spacing's held-out error."""
    from types import SimpleNamespace

    from gaussdiff.samplers import tuning

    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    crowded = np.array([-8.0] * 5 + [8.0])  # shares: the last gap takes almost all of the time axis
    monkeypatch.setattr(tuning, "minimize", lambda f, u0, **kw: SimpleNamespace(x=crowded, nfev=1, fun=f(crowded)))
    tuned = tune_timesteps(oracle, d, "unipc", 6, x_T, evals=20, reference_nfe=100, progress=False)
    held = x_T[32:]
    reference = sample(oracle, d, held.shape, sampler="unipc", steps=100, x_T=held, progress=False)

    def error(times) -> float:
        return float((sample(oracle, d, held.shape, sampler="unipc", x_T=held, timesteps=times, progress=False)
                      - reference).pow(2).mean())

    assert error(timesteps_of(crowded, 999.0)) > 10 * tuned.error  # the search's steps really are worse
    assert tuned.timesteps != timesteps_of(crowded, 999.0)
    standard = [timesteps_of(np.zeros(6), 999.0)] + [  # the starts: uniform shares, and the named spacings
        timesteps_of(parameters_of(d.respace(6, sp).schedule.timesteps.double().flip(0).tolist(), 999.0), 999.0)
        for sp in ("linspace", "logsnr", "karras")]
    assert any(np.allclose(tuned.timesteps, times) for times in standard)
    assert np.isclose(tuned.error, error(tuned.timesteps))
    assert tuned.error <= tuned.error_uniform  # never worse than uniform steps on the held-out draws


def test_a_search_that_gains_nothing_over_uniform_steps_gives_uniform_steps(monkeypatch):
    """Whatever the starts and the search find, the steps returned are the best on the held-out draws of uniform
    steps, the best start and the search's result, uniform on a tie: here every candidate but uniform is made worse
    (the named spacings are swapped for crowded steps, one of them is taken as the best start, and the search
    returns crowded steps too), where keeping the better of start and search alone would return crowded steps."""
    from types import SimpleNamespace

    from gaussdiff.samplers import tuning

    numpy = {k: getattr(np, k) for k in dir(np) if not k.startswith("__")}
    monkeypatch.setattr(tuning, "np", SimpleNamespace(**{**numpy, "argmin": lambda errors: 1}))  # a crowded start

    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    crowded = np.array([-8.0] * 5 + [8.0])
    monkeypatch.setattr(tuning, "minimize", lambda f, u0, **kw: SimpleNamespace(x=crowded, nfev=1, fun=f(crowded)))
    monkeypatch.setattr(tuning, "parameters_of", lambda times, t_max: crowded)
    tuned = tune_timesteps(oracle, d, "unipc", 6, x_T, evals=20, reference_nfe=100, progress=False)
    assert np.allclose(tuned.timesteps, timesteps_of(np.zeros(6), 999.0)) and tuned.error == tuned.error_uniform
