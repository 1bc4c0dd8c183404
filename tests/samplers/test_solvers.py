"""The few-step samplers driven by the exact optimal denoiser: their order of convergence to the probability-flow
ODE's closed-form solution for Gaussian data, the mixture's modes, NFE accounting, explicit timesteps, determinism."""

import math

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.samplers import SAMPLERS
from gaussdiff.samplers.run import steps_for_nfe

F64 = torch.float64
SCHEDULE = NoiseSchedule.cosine(1000)
DETERMINISTIC = [s for s in SAMPLERS if s not in ("ddpm", "euler-a", "dpm++2m-sde")]


def flow_error(sampler: str, steps: int, spacing: str) -> float:
    """The largest error of ``sampler`` against the exact flow map of N(mu, std^2) data, at the last level before
    zero noise (t = 0: the last step, to zero noise, is first order in every solver and would hide the order).

    Along the probability-flow ODE x_t = sqrt(a_bar_t) mu + sqrt(a_bar_t std^2 + 1 - a_bar_t) z with z fixed by x_T."""
    mu, std = 0.3, 0.5
    oracle = OptimalDenoiser(GaussianMixture([[mu]], [std], [1.0]), SCHEDULE)
    x_T = torch.linspace(-2.0, 2.0, 7, dtype=F64)[:, None]
    ab_T, ab_0 = float(SCHEDULE.alpha_bars[-1]), float(SCHEDULE.alpha_bars[0])
    z = (x_T - ab_T**0.5 * mu) / (ab_T * std**2 + 1 - ab_T) ** 0.5
    seen = {}
    sample(oracle, GaussianDiffusion(SCHEDULE), (7, 1), sampler=sampler, steps=steps, spacing=spacing, x_T=x_T,
           progress=False, callback=lambda step: seen.__setitem__(step.i, step.x_t))
    exact = ab_0**0.5 * mu + (ab_0 * std**2 + 1 - ab_0) ** 0.5 * z
    return (seen[steps - 2] - exact).abs().max().item()


# Theoretical global orders. UniPC-2's corrector raises it to 3 (Zhao et al. 2023, Theorem 3.1). DPM-Solver++(3M), as
# the authors' multistep code, diffusers and k-diffusion have it, weights its second difference half of what the
# exact integral does (test_dpm_solver_3m_third_order_steps_miss_half_the_second_difference_term below): local
# error O(h^3), so 2, with a smaller constant than 2M's.
ORDERS = {"ddim": 1, "euler": 1, "heun": 2, "dpm++2m": 2, "dpm++3m": 2, "dpm++2s": 2, "unipc": 3, "unipc-bh1": 3}


@pytest.mark.parametrize("sampler", list(ORDERS))
def test_each_solver_converges_at_its_order(sampler):
    # Doubling the steps divides a p-th order method's error by 2^p: the slope of log error against log steps is p.
    # Uniform log-SNR steps, the exponential integrators' natural grid; measured slopes 40 -> 80 -> 160 steps:
    # ddim/euler 0.98 0.99, heun 2.11 2.05, 2m 1.97 2.01, 3m 2.35 2.12, 2s 1.91 1.96, unipc 2.97 3.01, bh1 3.16 3.08.
    errors = [flow_error(sampler, steps, "logsnr") for steps in (40, 80, 160)]
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(p - ORDERS[sampler]) < 0.4 for p in slopes), (errors, slopes)


def test_higher_order_solvers_beat_ddim_at_equal_steps():
    ddim = flow_error("ddim", 40, "logsnr")
    for sampler in ("dpm++2m", "dpm++3m", "unipc"):
        assert flow_error(sampler, 40, "logsnr") < ddim / 10, sampler  # measured: 10.5x, 21x, 21x better


MIXTURE = GaussianMixture(means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], stds=[0.3, 0.5, 0.25],
                          weights=[0.5, 0.3, 0.2])


def modes(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The share of samples in each mode of MIXTURE (by the largest responsibility) and each mode's width: the rms
    distance of its members from its mean, per dimension."""
    _, r = MIXTURE.log_prob_noised(x0, torch.ones(len(x0), dtype=F64))
    mode = r.argmax(1)
    weights = torch.bincount(mode, minlength=3).to(F64) / len(x0)
    widths = torch.stack([(x0[mode == k] - MIXTURE.means[k]).pow(2).mean().sqrt() for k in range(3)])
    return weights, widths


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s != "ddpm"])
def test_each_sampler_reproduces_the_mixture_modes(sampler):
    # 4000 samples at 50 NFE, uniform log-SNR steps: each mode's weight within 5 standard errors sqrt(w (1 - w) / n)
    # plus 0.02 for the discretisation, and each mode's width within 12% of exact samples' (the same estimator, which
    # the assignment by responsibility biases alike). Measured: widths within 1-5%, euler-a's 7-9% narrow. At 10 NFE
    # every solver leaves the modes 30-50% too wide (bench/fewstep.py measures that regime).
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    n = 4000
    x0 = sample(oracle, GaussianDiffusion(SCHEDULE), (n, 2), sampler=sampler, nfe=50, spacing="logsnr",
                generator=torch.Generator().manual_seed(0), progress=False, dtype=F64)
    exact, _ = MIXTURE.sample(n, torch.Generator().manual_seed(5))
    weights, widths = modes(x0)
    _, exact_widths = modes(exact.to(F64))
    bound = 5 * (MIXTURE.weights * (1 - MIXTURE.weights) / n).sqrt() + 0.02
    assert bool(((weights - MIXTURE.weights).abs() < bound).all()), weights
    assert bool(((widths / exact_widths - 1).abs() < 0.12).all()), widths / exact_widths


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s != "ddpm"])
@pytest.mark.parametrize("nfe", [5, 8])
def test_nfe_is_the_number_of_network_calls(sampler, nfe):
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    calls, reported = [], []
    model = lambda x, t, **c: (calls.append(t), oracle(x, t))[1]  # noqa: E731
    sample(model, GaussianDiffusion(SCHEDULE), (3, 2), sampler=sampler, nfe=nfe, generator=torch.Generator(),
           progress=False, dtype=F64, callback=lambda step: reported.append(step.nfe))
    assert len(calls) == nfe and reported[-1] == nfe
    assert steps_for_nfe(sampler, nfe) == len(reported)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m", "unipc", "heun"])
def test_explicit_timesteps_are_the_steps_the_model_sees(sampler):
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    seen = []
    model = lambda x, t, **c: (seen.append(float(t[0])), oracle(x, t))[1]  # noqa: E731
    times = [999, 700.5, 401, 123.25, 10]
    sample(model, GaussianDiffusion(SCHEDULE), (3, 2), sampler=sampler, timesteps=times, progress=False, dtype=F64)
    assert sorted(set(seen), reverse=True) == times
    with pytest.raises(ValueError, match="decrease strictly"):
        sample(model, GaussianDiffusion(SCHEDULE), (3, 2), sampler=sampler, timesteps=[10, 500], progress=False)


@pytest.mark.parametrize("sampler, first_times", [("unipc", [999, 874, 749]), ("dpm++2m-sde", [999, 874, 749]),
                                                  ("ddim", [999, 856, 714]), ("euler", [999, 856, 714])])
def test_unnamed_steps_are_trailing_for_the_solvers_that_end_at_zero_noise(sampler, first_times):
    """Without a spacing, DPM-Solver++ and UniPC take trailing steps (999, 874, ..., 124 at 8 NFE: none spent at
    t = 0, where their last step already lands), and the other samplers linspace's (999, 856, ..., 0) as before."""
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    seen = []
    model = lambda x, t, **c: (seen.append(round(float(t[0]))), oracle(x, t))[1]  # noqa: E731
    sample(model, GaussianDiffusion(SCHEDULE), (3, 2), sampler=sampler, nfe=8, generator=torch.Generator(),
           progress=False, dtype=F64)
    assert seen[:3] == first_times
    assert (min(seen) == 0) == (sampler in ("ddim", "euler"))


@pytest.mark.parametrize("sampler", DETERMINISTIC)
def test_deterministic_samplers_do_not_depend_on_the_batch(sampler):
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    d = GaussianDiffusion(SCHEDULE)
    whole = sample(oracle, d, (6, 2), sampler=sampler, nfe=10, x_T=x_T, progress=False)
    part = sample(oracle, d, (2, 2), sampler=sampler, nfe=10, x_T=x_T[2:4], progress=False)
    assert torch.equal(whole[2:4], part)


def test_karras_and_logsnr_spacings_follow_their_formulas():
    # Karras et al. 2022 Eq. 5: sigma_i^(1/rho) is linear in i, rho = 7, from sigma_max to sigma_min of the schedule;
    # logsnr: log sigma linear in i. sigma = sqrt((1 - alpha_bar) / alpha_bar) of the respaced steps.
    full = SCHEDULE.log_sigmas.exp()
    for spacing, transform in (("karras", lambda s: s ** (1 / 7)), ("logsnr", torch.log)):
        respaced = SCHEDULE.respace(12, spacing)
        sigmas = respaced.log_sigmas.exp().flip(0)
        assert torch.allclose(sigmas[[0, -1]], full[[-1, 0]], rtol=1e-12)
        diffs = transform(sigmas).diff()
        assert torch.allclose(diffs, diffs.mean().expand_as(diffs), rtol=1e-9), spacing


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m", "dpm++3m", "dpm++2s", "dpm++2m-sde", "unipc", "unipc-bh1"])
def test_sampling_from_zero_terminal_snr_reproduces_the_mixture(sampler):
    # Lin et al. 2024: the rescaled schedule's last step is pure noise (alpha_bar = 0), where lambda = -inf; every
    # exponential solver starts there (a v model's x0 is defined at zero SNR) and still finds the modes' weights.
    s = NoiseSchedule.cosine(1000).rescale_zero_terminal_snr()
    assert float(s.alpha_bars[-1]) == 0.0 and abs(float(s.alpha_bars[0] - SCHEDULE.alpha_bars[0])) < 1e-12
    n = 4000
    v_oracle = OptimalDenoiser(MIXTURE, s, prediction="v")
    x0 = sample(v_oracle, GaussianDiffusion(s, prediction="v"), (n, 2), sampler=sampler, nfe=50, spacing="trailing",
                generator=torch.Generator().manual_seed(0), progress=False, dtype=F64)
    weights, _ = modes(x0)
    bound = 5 * (MIXTURE.weights * (1 - MIXTURE.weights) / n).sqrt() + 0.02
    assert bool(((weights - MIXTURE.weights).abs() < bound).all()), weights


def test_zero_terminal_snr_refuses_what_cannot_work():
    s = NoiseSchedule.cosine(1000).rescale_zero_terminal_snr()
    x_T = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    v_oracle = OptimalDenoiser(MIXTURE, s, prediction="v")
    with pytest.raises(ValueError, match="eps model cannot"):
        sample(OptimalDenoiser(MIXTURE, s), GaussianDiffusion(s), (4, 2), sampler="dpm++2m", steps=20,
               spacing="trailing", x_T=x_T, progress=False)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        sample(v_oracle, GaussianDiffusion(s, prediction="v"), (4, 2), sampler="heun", steps=20, spacing="trailing",
               x_T=x_T, progress=False)
    with pytest.raises(ValueError, match="leading spacing skips the last step"):
        sample(v_oracle, GaussianDiffusion(s, prediction="v"), (4, 2), sampler="ddim", steps=20, spacing="leading",
               x_T=x_T, progress=False)
    # Between the last two steps sqrt(alpha_bar) falls linearly to 0, so those times keep some signal.
    ab = s.alpha_bar_at(torch.tensor([998.0, 998.5, 999.0], dtype=F64))
    assert torch.allclose(ab.sqrt(), torch.stack([ab[0].sqrt(), ab[0].sqrt() / 2, ab[0] * 0]))


@pytest.mark.parametrize("sampler", DETERMINISTIC)
def test_every_parameterization_and_a_learned_variance_give_the_same_samples(sampler):
    # The exact denoiser's eps, x0 and v are one estimate in three forms; a learned variance (extra channels) plays no
    # part in an ODE step. So all four runs agree, to float64 rounding amplified by the conversions (1/sqrt(alpha_bar)
    # at the noisiest step: 2e4 on this schedule).
    x_T = torch.randn(16, 2, 1, 1, generator=torch.Generator().manual_seed(3), dtype=F64)
    run = dict(sampler=sampler, nfe=8, spacing="trailing", x_T=x_T, progress=False)
    eps = sample(OptimalDenoiser(MIXTURE, SCHEDULE), GaussianDiffusion(SCHEDULE), x_T.shape, **run)
    for prediction in ("x0", "v"):
        other = sample(OptimalDenoiser(MIXTURE, SCHEDULE, prediction), GaussianDiffusion(SCHEDULE, prediction),
                       x_T.shape, **run)
        torch.testing.assert_close(other, eps, rtol=0, atol=1e-9)
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE)
    with_variance = lambda x, t: torch.cat([oracle(x, t), torch.full_like(x, 0.3)], dim=1)  # noqa: E731
    learned = sample(with_variance, GaussianDiffusion(SCHEDULE, variance="learned_range", loss="hybrid"), x_T.shape,
                     **run)
    torch.testing.assert_close(learned, eps, rtol=0, atol=0)


@pytest.mark.parametrize("eta", [float("nan"), float("inf"), -0.5])
def test_an_eta_that_is_not_a_finite_number_at_least_0_is_refused(eta):
    """eta scales a standard deviation (DDIM) or S_churn: NaN, inf or a negative value has no meaning and would
    silently give non-finite samples."""
    oracle = OptimalDenoiser(GaussianMixture([[0.0]], [1.0], [1.0]), SCHEDULE)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        sample(oracle, GaussianDiffusion(SCHEDULE), (2, 1), sampler="ddim", steps=3, eta=eta, progress=False)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_churn_is_karras_algorithm_2(sampler):
    """With eta = S_churn > 0, euler and heun are Karras et al. 2022 Algorithm 2 (S_tmin = 0, S_tmax = inf,
    S_noise = 1), written out here in sigma = sigma_t / alpha_t from the paper: raise the noise to sigma_hat =
    sigma (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1), by adding sqrt(sigma_hat^2 - sigma^2) fresh noise
    (sigma_hat capped at the schedule's largest sigma, where the model was trained: the first step adds none),
    step from sigma_hat with D evaluated there, and (heun) correct with D at the next sigma unless it is 0. D is the
    mixture's exact x0 at the continuous time of each noise level; the same noise draws in the same order, so the
    two agree to float64 rounding."""
    churn, steps, n = 5.0, 8, 6
    oracle = OptimalDenoiser(MIXTURE, SCHEDULE, prediction="x0")  # D, for the reference
    model, diffusion = OptimalDenoiser(MIXTURE, SCHEDULE), GaussianDiffusion(SCHEDULE)  # eps, which the sampler
    # turns into x0 with the alpha of each level: sigma_hat's too
    respaced = SCHEDULE.respace(steps, "linspace")
    alpha_bars = torch.cat([respaced.alpha_bars.flip(0), torch.ones(1, dtype=F64)])
    sigmas = ((1 - alpha_bars) / alpha_bars).sqrt()  # N + 1 levels, the last 0

    def D(x_ve, sigma):
        alpha_bar = 1 / (1 + sigma**2)
        t = SCHEDULE.timestep_at(alpha_bar.reshape(1)).expand(len(x_ve))
        return oracle(x_ve * alpha_bar.sqrt(), t)

    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    g = torch.Generator().manual_seed(4)
    gamma = min(churn / steps, math.sqrt(2) - 1)
    x = x_T * (1 + sigmas[0] ** 2).sqrt()  # x_ve = x_T / alpha_T
    for i in range(steps):
        sigma_hat = torch.minimum(sigmas[i] * (1 + gamma), sigmas[0])
        x_hat = x + (sigma_hat**2 - sigmas[i] ** 2).sqrt() * torch.randn(n, 2, generator=g, dtype=F64)
        d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat
        x = x_hat + (sigmas[i + 1] - sigma_hat) * d
        if sampler == "heun" and sigmas[i + 1] > 0:
            d_next = (x - D(x, sigmas[i + 1])) / sigmas[i + 1]
            x = x_hat + (sigmas[i + 1] - sigma_hat) * (d + d_next) / 2
    ours = sample(model, diffusion, (n, 2), sampler=sampler, steps=steps, spacing="linspace", eta=churn, x_T=x_T,
                  generator=torch.Generator().manual_seed(4), progress=False, dtype=F64)
    plain = sample(model, diffusion, (n, 2), sampler=sampler, steps=steps, spacing="linspace", x_T=x_T,
                   progress=False, dtype=F64)
    assert (ours - plain).abs().max() > 0.01  # the churn changes the samples
    torch.testing.assert_close(ours, x, rtol=1e-9, atol=1e-9)


def test_euler_ancestral_at_eta_one_is_the_exact_posterior_step_for_data_at_zero():
    """Euler ancestral (eta = 1) steps from sigma_i to sigma_{i+1} (sigma = sigma_t / alpha_t) to sigma_down, then
    adds sigma_up fresh noise, sigma_up^2 = sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2 and sigma_down^2 =
    sigma_{i+1}^2 - sigma_up^2. For data that is exactly 0 (a model whose x0 is 0) that is the DDPM posterior
    q(x_{i+1} | x_i, x0 = 0) in the variance-exploding variables: x_{i+1} = (sigma_{i+1}^2 / sigma_i^2) x_i +
    sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2) z. Written out here with the same noise draws in the same
    order, compared in float64."""
    steps, n = 6, 5
    diffusion = GaussianDiffusion(SCHEDULE, prediction="x0")
    respaced = SCHEDULE.respace(steps, "linspace")
    alpha_bars = torch.cat([respaced.alpha_bars.flip(0), torch.ones(1, dtype=F64)])
    sigmas = ((1 - alpha_bars) / alpha_bars).sqrt()  # steps + 1 levels, the last 0
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    seen = {}
    sample(lambda x, t: torch.zeros_like(x), diffusion, (n, 2), sampler="euler-a", steps=steps, spacing="linspace",
           x_T=x_T, generator=torch.Generator().manual_seed(4), progress=False,
           callback=lambda step: seen.__setitem__(step.i, step.x_t))
    g = torch.Generator().manual_seed(4)
    x = x_T / alpha_bars[0].sqrt()
    for i in range(steps):
        ratio = sigmas[i + 1] ** 2 / sigmas[i] ** 2
        x = ratio * x + sigmas[i + 1] * (1 - ratio).sqrt() * torch.randn(n, 2, generator=g, dtype=F64)
        torch.testing.assert_close(seen[i], x * alpha_bars[i + 1].sqrt(), rtol=1e-9, atol=1e-12)


def test_unipc_corrects_its_first_step_with_the_average_of_both_ends_x0():
    """UniC at order 1 (Zhao et al. 2023, rho = 1/2, B(h) = e^h - 1 in bh2) corrects the first step to the first-order
    exponential-integrator step with the mean of the x0 estimates at its two ends (the trapezoidal rule):
    x_1 = (sigma_1 / sigma_0) x_T + alpha_1 (1 - e^{-h_0}) (m_0 + m_1) / 2; the second step's predictor, UniP-2,
    is x_2 = (sigma_2 / sigma_1) x_1 + alpha_2 (1 - e^{-h_1}) m_1 - alpha_2 (e^{-h_1} - 1) D_1 / 2, with
    D_1 = (m_0 - m_1) / r, r = (lambda_0 - lambda_1) / h_1. A model whose x0 estimate depends on t alone makes each
    m_i a known number; compared in float64 with x_2, which the walk reports after its second step."""
    steps = 3
    diffusion = GaussianDiffusion(SCHEDULE, prediction="x0")
    respaced = SCHEDULE.respace(steps, "linspace")
    ab = torch.cat([respaced.alpha_bars.flip(0), torch.ones(1, dtype=F64)])
    a, s = ab.sqrt(), (1 - ab).sqrt()
    lam = a.log() - s.log()
    m = (respaced.timesteps.flip(0).to(F64) / 1000.0 - 0.3) * 2.0  # x0 estimate at each level, distinct

    def model(x, t):
        return ((t.to(F64) / 1000.0 - 0.3) * 2.0).reshape(-1, 1).expand_as(x).clone()

    x_T = torch.linspace(-1.5, 1.5, 4, dtype=F64)[:, None]
    seen = {}
    sample(model, diffusion, (4, 1), sampler="unipc", steps=steps, spacing="linspace", x_T=x_T, progress=False,
           callback=lambda step: seen.__setitem__(step.i, step.x_t))
    h0, h1 = lam[1] - lam[0], lam[2] - lam[1]
    x1 = (s[1] / s[0]) * x_T + a[1] * (-torch.expm1(-h0)) * (m[0] + m[1]) / 2
    D1 = (m[0] - m[1]) / ((lam[0] - lam[1]) / h1)
    x2 = (s[2] / s[1]) * x1 + a[2] * (-torch.expm1(-h1)) * m[1] - a[2] * torch.expm1(-h1) * 0.5 * D1
    torch.testing.assert_close(seen[1], x2, rtol=1e-9, atol=1e-12)


def test_dpm_solver_3m_third_order_steps_miss_half_the_second_difference_term():
    """With an x0 estimate that depends on lambda alone, q(lambda) = c0 + c1 lambda + c2 lambda^2, the flow from level
    i to i + 1 is x_{i+1} = (sigma_{i+1} / sigma_i) x_i + sigma_{i+1} (F(lambda_{i+1}) - F(lambda_i)), F the
    antiderivative of e^lambda q: F = e^lambda (c0 + c1 (lambda - 1) + c2 (lambda^2 - 2 lambda + 2)). A third-order
    step interpolates q through its three latest values, exactly for a quadratic: D1 = h q'(lambda_i) and the second
    divided difference is h^2 q'' / 2 = c2 h^2, on any steps. The exact integral weights h^2 q'' by
    W = -alpha_{i+1} ((e^-h - 1 + h) / h^2 - 1/2); 3M (the authors' multistep code, diffusers', k-diffusion's) weights
    the divided difference by W, so every third-order step's local error, e_{i+1} - (sigma_{i+1} / sigma_i) e_i with
    e the global error, is exactly -W c2 h^2, here on non-uniform steps. That is the O(h^3) local error that leaves
    3M second order; with the divided difference doubled it would be 0."""
    c0, c1, c2 = 0.3, 0.7, -0.4
    times = [900.0, 720.0, 610.0, 400.0, 330.0, 150.0, 90.0, 20.0]  # non-uniform in t and in lambda; 8 steps
    diffusion = GaussianDiffusion(SCHEDULE, prediction="x0")

    def model(x, t):
        ab = SCHEDULE.alpha_bar_at(t.to(F64))
        lam = 0.5 * (ab.log() - torch.log1p(-ab))
        return (c0 + c1 * lam + c2 * lam**2).reshape(-1, 1).expand_as(x).clone()

    ab = torch.cat([diffusion.at(times[::-1]).schedule.alpha_bars.flip(0), torch.ones(1, dtype=F64)])
    a, s = ab.sqrt(), (1 - ab).sqrt()
    lam = a.log() - s.log()
    F = lambda l: l.exp() * (c0 + c1 * (l - 1) + c2 * (l**2 - 2 * l + 2))  # noqa: E731
    x_T = torch.linspace(-1.5, 1.5, 4, dtype=F64)[:, None]
    seen = {}
    sample(model, diffusion, (4, 1), sampler="dpm++3m", timesteps=times, x_T=x_T, progress=False,
           callback=lambda step: seen.__setitem__(step.i, step.x_t))
    exact = [x_T] + [s[j] * (x_T / s[0] + F(lam[j]) - F(lam[0])) for j in range(1, len(times))]
    errors = [seen[i] - exact[i + 1] for i in range(len(times) - 1)]
    # Steps 2..5 are third order (step 0 first, step 1 second, step 6 second: fewer than 15 steps; step 7 to zero).
    for i in range(2, 6):
        h = lam[i + 1] - lam[i]
        W = -a[i + 1] * ((torch.expm1(-h) + h) / h**2 - 0.5)
        local = errors[i] - (s[i + 1] / s[i]) * errors[i - 1]
        torch.testing.assert_close(local, torch.full_like(local, float(-W * c2 * h**2)), rtol=1e-9, atol=1e-13)
        assert abs(float(W * c2 * h**2)) > 1e-4  # a term the test can see
