"""Tuned step schedules: on the exact denoiser of a Gaussian mixture, the tuned steps lower the sampler's error against
a fine solve, on the draws of x_T they were tuned on and on others."""

import re

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


@pytest.mark.parametrize("sampler", ["ddpm", "euler-a", "dpm++2m-sde"])
def test_every_stochastic_sampler_is_refused(sampler):
    """A stochastic sampler's x0 has no one reference to be measured against: each is refused by name."""
    from gaussdiff.samplers.tuning import tuning_steps

    with pytest.raises(ValueError, match=re.escape(f"{sampler} is stochastic")):
        tuning_steps(sampler, 5)


def test_heun_steps_spend_exactly_the_budget_and_one_step_is_refused():
    """Heun on S explicit steps makes 2 S - 1 evaluations: an odd budget N takes S = (N + 1) / 2 steps, and a tuned
    schedule of that length spends exactly N calls of the model. A budget of one step is not tuned."""
    from gaussdiff.samplers.tuning import tuning_steps

    s = NoiseSchedule.cosine(100)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    calls = []

    def counted(x, t, **cond):
        calls.append(len(x))
        return oracle(x, t, **cond)

    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for nfe in (3, 5, 7):
        steps = tuning_steps("heun", nfe)
        assert steps == (nfe + 1) // 2
        calls.clear()
        sample(counted, d, x_T.shape, sampler="heun", x_T=x_T, timesteps=timesteps_of(np.zeros(steps), 99.0),
               progress=False)
        assert len(calls) == nfe
    with pytest.raises(ValueError, match="at least 2 steps"):
        tune_timesteps(oracle, d, "ddim", 1, x_T, evals=8, reference_nfe=20, progress=False)


def test_what_tuning_reports_of_its_size_is_what_it_did(monkeypatch):
    """``evals`` counts every trial solve (the starts, the search and the 3 held-out judgements: all but the one
    reference solve), within the budget asked; ``batch`` is every draw of x_T, both halves."""
    from gaussdiff.samplers import tuning

    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    solves = []
    real = tuning.sample
    monkeypatch.setattr(tuning, "sample", lambda *a, **kw: solves.append(1) or real(*a, **kw))
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    tuned = tune_timesteps(oracle, d, "unipc", 5, x_T, evals=20, reference_nfe=40, progress=False)
    assert tuned.evals == len(solves) - 1 and tuned.evals <= 20
    assert tuned.batch == 16 and tuned.reference_nfe == 40


def test_the_search_starts_from_the_best_standard_spacing_on_the_fitting_draws(monkeypatch):
    """The start handed to Nelder-Mead is the best, on the fitting half of the draws, of uniform steps and the
    linspace, logsnr and karras spacings, each measured here independently. On the linear schedule at 6 steps of
    DPM-Solver++(2M) that is logsnr (uniform and linspace are worse), so a start from uniform or linspace only, or
    from the worst, is seen."""
    from types import SimpleNamespace

    from gaussdiff.samplers import tuning

    s = NoiseSchedule.linear(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    handed = []
    monkeypatch.setattr(tuning, "minimize", lambda f, u0, **kw: handed.append(u0) or SimpleNamespace(x=u0, nfev=0))
    tune_timesteps(oracle, d, "dpm++2m", 6, x_T, evals=20, reference_nfe=100, progress=False)
    fit = x_T[:32]
    reference = reference_solve(oracle, d, fit, reference_nfe=100)
    starts = {"uniform": np.zeros(6)} | {
        sp: parameters_of(d.respace(6, sp).schedule.timesteps.double().flip(0).tolist(), 999.0)
        for sp in ("linspace", "logsnr", "karras")}
    errors = {name: float((sample(oracle, d, fit.shape, sampler="dpm++2m", x_T=fit, progress=False,
                                  timesteps=timesteps_of(u, 999.0)) - reference).pow(2).mean())
              for name, u in starts.items()}
    best = min(errors, key=errors.get)
    assert best == "logsnr", errors  # what makes the test able to fail: not the first start
    assert np.allclose(handed[0], starts[best])


def test_a_failed_trial_scores_high_instead_of_stopping_or_poisoning_the_search(monkeypatch):
    """Nelder-Mead only compares numbers: a trial whose steps merge into one time (a share underflowing to 0, which
    the sampler refuses) or whose x0 is not finite must score 1e30, not raise and not return NaN (NaN compares false
    with everything and would stall the simplex). The model here returns NaN at times the standard starts never
    visit (strictly between 990 and 999)."""
    from types import SimpleNamespace

    from gaussdiff.samplers import tuning

    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)

    def model(x, t, **cond):
        out = oracle(x, t, **cond)
        bad = ((t > 990) & (t < 999)).reshape(-1, *[1] * (x.dim() - 1))
        return torch.where(bad, torch.full_like(out, float("nan")), out)

    merged = np.array([0.0, -800.0, 0.0, 0.0, 0.0, 0.0])  # exp(-800) = 0: the 2nd and 3rd times coincide
    near_top = np.array([-8.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # the 2nd time ~ 999 - 0.07
    assert timesteps_of(merged, 999.0)[1] == timesteps_of(merged, 999.0)[2]
    assert 990 < timesteps_of(near_top, 999.0)[1] < 999
    scores = {}

    def search(f, u0, **kw):
        scores.update(merged=f(merged), near_top=f(near_top))
        return SimpleNamespace(x=u0, nfev=2)

    monkeypatch.setattr(tuning, "minimize", search)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    tuned = tune_timesteps(model, d, "unipc", 6, x_T, evals=20, reference_nfe=60, progress=False)
    assert scores == {"merged": 1e30, "near_top": 1e30}
    assert np.isfinite(tuned.error) and tuned.error <= tuned.error_uniform


def test_uniform_error_is_measured_on_the_held_out_draws_with_the_runs_clipping():
    """``error_uniform`` is the mean squared difference, on the held-out half, between uniform steps and the
    reference, both solved with the ``clip_denoised`` given (the mixture's means lie outside [-1, 1], so clipping
    changes x0): recomputed here from ``sample`` alone."""
    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    held, uniform = x_T[16:], timesteps_of(np.zeros(5), 999.0)
    measured = {}
    for clip in (False, True):
        tuned = tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, reference_nfe=60, clip_denoised=clip,
                               progress=False)
        reference = sample(oracle, d, held.shape, sampler="unipc", steps=60, spacing="trailing", x_T=held,
                           clip_denoised=clip, progress=False)
        x0 = sample(oracle, d, held.shape, sampler="dpm++2m", x_T=held, timesteps=uniform, clip_denoised=clip,
                    progress=False)
        measured[clip] = float((x0 - reference).pow(2).mean())
        assert np.isclose(tuned.error_uniform, measured[clip], rtol=1e-9), (clip, tuned.error_uniform, measured)
    assert not np.isclose(measured[False], measured[True], rtol=1e-3)  # clipping matters here


def test_one_draw_both_fits_and_judges():
    """With a single draw of x_T there is no held-out half: the same draw fits and judges, so the errors are that
    draw's (finite, not the 1e30 of an empty half)."""
    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    tuned = tune_timesteps(oracle, d, "unipc", 5, x_T, evals=12, reference_nfe=60, progress=False)
    reference = sample(oracle, d, x_T.shape, sampler="unipc", steps=60, spacing="trailing", x_T=x_T, progress=False)
    uniform = sample(oracle, d, x_T.shape, sampler="unipc", x_T=x_T, timesteps=timesteps_of(np.zeros(5), 999.0),
                     progress=False)
    assert tuned.batch == 1 and np.isclose(tuned.error_uniform, float((uniform - reference).pow(2).mean()))
    assert tuned.error <= tuned.error_uniform < 1.0


def test_zero_terminal_snr_starts_only_from_spacings_that_reach_its_last_step():
    """Karras and log-SNR spacings need a finite largest sigma, which a zero-terminal-SNR schedule lacks: tuning a
    v-prediction model there starts from uniform and linspace steps only, and still returns its first step at
    t_max."""
    s = NoiseSchedule.cosine(1000).rescale_zero_terminal_snr()
    oracle, d = OptimalDenoiser(MIXTURE, s, "v"), GaussianDiffusion(s, prediction="v")
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    tuned = tune_timesteps(oracle, d, "unipc", 6, x_T, evals=12, reference_nfe=60, progress=False)
    assert tuned.timesteps[0] == 999 and len(tuned.timesteps) == 6
    assert np.isfinite(tuned.error) and tuned.error <= tuned.error_uniform


def test_conditions_travel_with_their_draws_into_each_half(monkeypatch):
    """``cond`` is split as x_T is: the model, given a per-draw label y = the draw's index, sees the labels of all
    draws for the reference, the first half's while fitting and the second half's while judging, always as many
    as the rows of x_t; it ignores y, so the steps are those tuned without it."""
    s = NoiseSchedule.cosine(1000)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    seen = set()

    def model(x, t, y):
        assert len(y) == len(x)
        seen.add(tuple(y.tolist()))
        return oracle(x, t)

    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    with_y = tune_timesteps(model, d, "dpm++2m", 5, x_T, {"y": torch.arange(16)}, evals=12, reference_nfe=40,
                            progress=False)
    assert seen == {tuple(range(16)), tuple(range(8)), tuple(range(8, 16))}
    assert with_y == tune_timesteps(oracle, d, "dpm++2m", 5, x_T, evals=12, reference_nfe=40, progress=False)


def test_what_cannot_be_tuned_is_refused_naming_the_argument_not_tuned_to_a_score_of_1e30():
    """An unknown sampler failed every trial, and tuning returned uniform steps with error 1e30 as its finding; a
    budget or reference_nfe beyond the schedule read 'cannot respace 20 steps to 30'."""
    s = NoiseSchedule.linear(20)
    oracle, d = OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s)
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    run = dict(evals=8, reference_nfe=20, progress=False)
    with pytest.raises(ValueError, match="unknown sampler 'dpm'"):
        tune_timesteps(oracle, d, "dpm", 4, x_T, **run)
    with pytest.raises(ValueError, match="ddim at nfe 30 takes 30 steps, more than the diffusion's 20"):
        tune_timesteps(oracle, d, "ddim", 30, x_T, **run)
    with pytest.raises(ValueError, match=r"reference_nfe must lie in 1\.\.20 .* got 30"):
        tune_timesteps(oracle, d, "ddim", 4, x_T, **{**run, "reference_nfe": 30})
