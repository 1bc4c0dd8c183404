"""GaussianDiffusion: forward process, posterior, parameterizations, reverse process, losses, bound."""

import math

import pytest
import torch
from torch.distributions import Normal

from gaussdiff import GaussianDiffusion, NoiseSchedule
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser

F64 = torch.float64


def full(n, t):
    return torch.full((n,), t, dtype=torch.long)


def test_q_sample_moments():
    """x_t | x0 ~ N(sqrt(a_bar) x0, 1 - a_bar): sample mean and variance within 5 standard errors."""
    d = GaussianDiffusion(NoiseSchedule.linear(1000))
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.full((n, 1), 0.8, dtype=F64)
    for step in (0, 100, 500, 999):
        x_t = d.q_sample(x0, full(n, step), torch.randn(n, 1, generator=g, dtype=F64))
        ab = d.schedule.alpha_bars[step].item()
        mean, var = math.sqrt(ab) * 0.8, 1 - ab
        # 5 standard errors of a sample mean, sqrt(var / n), and of a sample variance, var sqrt(2 / n).
        assert abs(x_t.mean().item() - mean) < 5 * math.sqrt(var / n)
        assert abs(x_t.var().item() - var) < 5 * var * math.sqrt(2 / n)
        m, v, lv = d.q_mean_variance(x0[:1], full(1, step))
        # The same one or two float64 operations on both sides: rounding, far below 1e-12.
        assert m.item() == pytest.approx(mean, rel=1e-12) and v.item() == pytest.approx(var, rel=1e-12)
        assert lv.item() == pytest.approx(math.log(var), rel=1e-12)


def test_posterior_is_bayes_rule_for_two_gaussians():
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0), a product of two Gaussians in x_{t-1}.

    q(x_t | x_{t-1}) = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t) is, as a function of x_{t-1}, a Gaussian
    with precision alpha_t / beta_t and mean x_t / sqrt(alpha_t); q(x_{t-1} | x0) has precision
    1 / (1 - a_bar_{t-1}) and mean sqrt(a_bar_{t-1}) x0. Precisions add; means are precision-weighted.
    """
    s = NoiseSchedule.cosine(50)
    d = GaussianDiffusion(s)
    g = torch.Generator().manual_seed(2)
    x0, x_t = torch.randn(2, 7, 3, generator=g, dtype=F64)
    for step in (1, 10, 49):
        t = full(7, step)
        alpha, beta = s.alphas[step].item(), s.betas[step].item()
        ab_prev = s.alpha_bars[step - 1].item()
        prec1, mean1 = alpha / beta, x_t / math.sqrt(alpha)
        prec2, mean2 = 1 / (1 - ab_prev), math.sqrt(ab_prev) * x0
        precision = prec1 + prec2
        expected_mean = (prec1 * mean1 + prec2 * mean2) / precision
        mean, var, log_var = d.q_posterior(x0, x_t, t)
        # Two routes to the same few float64 products and sums: rounding of order 1e-15, well inside 1e-10.
        torch.testing.assert_close(mean, expected_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(var, torch.full_like(var, 1 / precision), rtol=1e-10, atol=0)
        torch.testing.assert_close(log_var, var.log(), rtol=1e-10, atol=0)


def test_parameterizations_round_trip():
    d = GaussianDiffusion(NoiseSchedule.cosine(1000))
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 16, 3, 4, 4, generator=g, dtype=F64)
    t = torch.randint(0, 1000, (16,), generator=g)
    x_t = d.q_sample(x0, t, eps)
    v = d.v_from_x0_eps(x0, eps, t)
    # Round trips in float64: rounding amplified by the conversions' condition number, at most
    # 1 / sqrt(alpha_bar_T) ~ 1e4 on the cosine schedule's last step: ~1e-12, inside 1e-9.
    torch.testing.assert_close(d.x0_from_eps(x_t, t, eps), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d.eps_from_x0(x_t, t, x0), eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d.x0_from_v(x_t, t, v), x0, rtol=1e-9, atol=1e-9)
    # v is a rotation of (x0, eps): |v|^2 + |x_t|^2 = |x0|^2 + |eps|^2 pointwise.
    torch.testing.assert_close(v**2 + x_t**2, x0**2 + eps**2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_a_model_that_knows_x0_has_zero_loss_and_exact_posterior(prediction):
    """If the model outputs the true target, L_simple = 0 and p_theta's mean is the true posterior mean."""
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    d = GaussianDiffusion(s, prediction=prediction)
    g = torch.Generator().manual_seed(4)
    x0, noise = torch.randn(2, 8, 2, 3, generator=g, dtype=F64)
    t = torch.randint(0, 100, (8,), generator=g)

    def oracle(x_t, model_t):
        assert torch.equal(model_t, s.timesteps[t])
        return d.prediction_target(x0, d.eps_from_x0(x_t, t, x0), t)

    losses = d.training_losses(oracle, x0, t, noise)
    # The target is recomputed by the same expression: the error is exactly zero or a rounding squared.
    assert losses["loss"].abs().max().item() < 1e-20
    x_t = d.q_sample(x0, t, noise)
    est = d.p_mean_variance(oracle, x_t, t)
    # As the round trips above: float64 rounding times a condition number below 1e3 on this schedule.
    torch.testing.assert_close(est.x0, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(est.mean, d.q_posterior(x0, x_t, t)[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_clip_denoised_clamps_x0_before_the_posterior_mean_and_rederives_eps(prediction):
    """clip_denoised: x0_hat is clamped to [-1, 1] and then, as for any x0, mean = mu_tilde(clamp(x0_hat), x_t)
    (Eq. 7) and eps = (x_t - sqrt(a_bar) x0) / sqrt(1 - a_bar) from the clamped x0 (PosteriorEstimate's contract:
    x0 and eps agree with x_t). An x0 of +-3 makes the clamp bite; without clipping x0 is returned as is."""
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    d = GaussianDiffusion(s, prediction=prediction)
    x0 = torch.tensor([[3.0, -3.0, 0.25], [-0.5, 2.0, -1.5]], dtype=F64)
    noise = torch.tensor([[0.3, -1.2, 0.7], [1.1, 0.0, -0.4]], dtype=F64)
    t = torch.tensor([10, 60])
    x_t = d.q_sample(x0, t, noise)
    output = d.prediction_target(x0, noise, t)
    clamped = x0.clamp(-1.0, 1.0)
    est = d.posterior_estimate(output, x_t, t, clip_denoised=True)
    torch.testing.assert_close(est.x0, clamped, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(est.mean, d.q_posterior(clamped, x_t, t)[0], rtol=1e-9, atol=1e-9)
    sqrt_ab, sqrt_1m_ab = s.sqrt_alpha_bars[t][:, None], s.sqrt_one_minus_alpha_bars[t][:, None]
    torch.testing.assert_close(est.eps, (x_t - sqrt_ab * clamped) / sqrt_1m_ab, rtol=1e-9, atol=1e-9)
    raw = d.posterior_estimate(output, x_t, t, clip_denoised=False)
    torch.testing.assert_close(raw.x0, x0, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(raw.mean, est.mean)


def test_variance_choices():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    x_t = torch.zeros(3, 2, dtype=F64)
    t = torch.tensor([0, 1, 99])
    small = GaussianDiffusion(s, variance="fixed_small").posterior_estimate(torch.zeros(3, 2, dtype=F64), x_t, t)
    torch.testing.assert_close(small.variance[:, 0], s.beta_tilde[t])
    large = GaussianDiffusion(s, variance="fixed_large").posterior_estimate(torch.zeros(3, 2, dtype=F64), x_t, t)
    torch.testing.assert_close(large.variance[:, 0], torch.stack([s.beta_tilde[1], s.betas[1], s.betas[99]]))
    torch.testing.assert_close(large.log_variance, large.variance.log())
    # learned_range: v = +1 gives log beta_t, v = -1 the clipped log beta_tilde_t (Improved DDPM Eq. 15).
    lr = GaussianDiffusion(s, variance="learned_range", loss="hybrid")
    for v, expected in ((1.0, s.betas.log()), (-1.0, s.log_beta_tilde_clipped)):
        out = torch.cat([torch.zeros(3, 2, dtype=F64), torch.full((3, 2), v, dtype=F64)], dim=1)
        torch.testing.assert_close(lr.posterior_estimate(out, x_t, t).log_variance[:, 0], expected[t])
    learned = GaussianDiffusion(s, variance="learned", loss="kl")
    out = torch.cat([torch.zeros(3, 2, dtype=F64), torch.full((3, 2), -3.0, dtype=F64)], dim=1)
    torch.testing.assert_close(learned.posterior_estimate(out, x_t, t).variance,
                               torch.full((3, 2), math.exp(-3.0), dtype=F64))


def test_hybrid_loss_stops_the_mean_gradient_in_the_vb_term():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    d = GaussianDiffusion(s, variance="learned_range", loss="hybrid")
    mean_param = torch.zeros(1, 1, dtype=F64, requires_grad=True)
    var_param = torch.zeros(1, 1, dtype=F64, requires_grad=True)

    def model(x_t, t):
        return torch.cat([x_t * 0 + mean_param, x_t * 0 + var_param], dim=1)

    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(16, 1, generator=g, dtype=F64).clamp(-1, 1)
    t = torch.randint(1, 100, (16,), generator=g)
    terms = d.training_losses(model, x0, t, torch.randn(16, 1, generator=g, dtype=F64))
    (g_mean_vb, g_var_vb) = torch.autograd.grad(terms["vb"].sum(), [mean_param, var_param], allow_unused=True)
    assert g_mean_vb is None or g_mean_vb.abs().item() == 0
    assert g_var_vb.abs().item() > 0
    torch.testing.assert_close(terms["loss"], terms["mse"] + 1e-3 * 100 * terms["vb"])


def test_kl_loss_is_zero_for_the_true_posterior_and_losses_are_validated():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    d = GaussianDiffusion(s, variance="fixed_small", loss="kl")
    x0 = torch.rand(4, 3, dtype=F64) * 2 - 1
    t = torch.tensor([1, 5, 50, 99])
    known = lambda x_t, model_t: d.eps_from_x0(x_t, t, x0)  # noqa: E731
    # KL of two equal Gaussians computed from means that differ by rounding (~1e-16 / beta_tilde): ~1e-20.
    assert d.training_losses(known, x0, t)["loss"].abs().max().item() < 1e-9
    rescaled = GaussianDiffusion(s, loss="rescaled_kl")
    noise = torch.randn(4, 3, dtype=F64)
    zero = lambda x_t, model_t: torch.zeros_like(x_t)  # noqa: E731
    torch.testing.assert_close(rescaled.training_losses(zero, x0, t, noise)["loss"],
                               100 * d.training_losses(zero, x0, t, noise)["loss"])
    with pytest.raises(ValueError, match="hybrid"):
        GaussianDiffusion(s, variance="learned_range", loss="mse")
    with pytest.raises(ValueError, match="prediction"):
        GaussianDiffusion(s, prediction="score")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2C channels"):
        GaussianDiffusion(s, variance="learned", loss="kl").p_mean_variance(zero, x0, t)
    # A model that returns no tensor (a diffusers UNet2DModel's output object; a tuple here) is named as such.
    with pytest.raises(TypeError, match="the model returned a tuple, not a Tensor"):
        d.training_losses(lambda x_t, model_t: (x_t,), x0, t)


def quantized_gaussian(n, mean, std, g):
    """8-bit data from a 2-D Gaussian and each point's exact NLL in bits/dim under the quantized law."""
    x = (mean + std * torch.randn(n, 2, generator=g, dtype=F64)).clamp(-1, 1)
    x = torch.round((x + 1) * 127.5) / 127.5 - 1
    d = Normal(torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64))
    upper = torch.where(x > 0.999, torch.ones_like(x), d.cdf(x + 1 / 255))
    lower = torch.where(x < -0.999, torch.zeros_like(x), d.cdf(x - 1 / 255))
    return x, -(upper - lower).log().mean(1) / math.log(2)


def exact_reverse_model(s, mean, std):
    """For Gaussian data x0 ~ N(mean, std^2) the true q(x_{t-1} | x_t) is Gaussian: its mean follows from
    E[x0 | x_t] (the oracle) and its variance from the joint of (x_{t-1}, x_t), whose marginal
    variances are v_t = a_bar_t std^2 + 1 - a_bar_t and covariance sqrt(alpha_t) v_{t-1}:
    Var(x_{t-1} | x_t) = v_{t-1} - alpha_t v_{t-1}^2 / v_t. Returned as a "learned"-variance model."""
    eps_model = OptimalDenoiser(GaussianMixture([[mean, mean]], [std], [1.0]), s)
    v = s.alpha_bars * std**2 + 1 - s.alpha_bars
    v_prev = s.alpha_bars_prev * std**2 + 1 - s.alpha_bars_prev
    log_var = (v_prev - s.alphas * v_prev**2 / v).log()

    def model(x_t, t):
        return torch.cat([eps_model(x_t, t), log_var[t][:, None].expand_as(x_t)], dim=1)

    return eps_model, model


@pytest.mark.parametrize("steps", [None, 100])
def test_variational_bound_of_fixed_variance_lies_above_the_exact_nll(steps):
    """E[L_vlb] >= E[-log p_model(x0)] >= H(data): with the optimal mean but fixed beta_tilde variance,
    the bound must exceed the data's exact NLL (paired per example, by many standard errors)."""
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s)
    if steps is not None:
        d = d.respace(steps)
    g = torch.Generator().manual_seed(6)
    x0, nll = quantized_gaussian(2000, 0.1, 0.3, g)
    eps_model, _ = exact_reverse_model(s, 0.1, 0.3)
    like = d.bpd(eps_model, x0, clip_denoised=False, generator=g)
    assert like.vb.shape == (2000, d.num_steps) and like.x0_mse.shape == like.vb.shape
    torch.testing.assert_close(like.total, like.vb.sum(1) + like.prior)
    gap = like.total - nll
    assert gap.mean().item() > 5 * gap.std().item() / math.sqrt(2000), gap.mean().item()


def test_variational_bound_is_tight_with_the_exact_reverse_process():
    """When p_theta(x_{t-1} | x_t) equals the true reverse conditional, the bound's slack
    E_q[KL(q(x_{1:T} | x0) || p(x_{1:T} | x0))] vanishes up to L_T and the 8-bit decoder, so the bound
    must match the exact NLL to a few hundredths of a bit per dimension."""
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s, variance="learned", loss="kl")
    g = torch.Generator().manual_seed(7)
    x0, nll = quantized_gaussian(2000, 0.1, 0.3, g)
    _, model = exact_reverse_model(s, 0.1, 0.3)
    like = d.bpd(model, x0, clip_denoised=False, generator=g)
    gap = like.total - nll
    stderr = gap.std().item() / math.sqrt(2000)
    # The slack left is L_T (computed: the prior term) and Monte Carlo error of the per-step draws: 4 SEs.
    assert abs(gap.mean().item()) < like.prior.mean().item() + 4 * stderr, (gap.mean().item(), stderr)


def test_l1_and_mse_losses_are_the_mean_absolute_and_squared_errors_of_the_target():
    """L_simple's variants per example: mean |pred - target| (l1) and mean (pred - target)^2 (mse), with the
    target of each parameterization; a model that outputs zeros has error -target."""
    s = NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(8)
    x0, noise = torch.randn(2, 6, 3, 4, generator=g, dtype=F64)
    t = torch.randint(0, 100, (6,), generator=g)
    zero = lambda x_t, model_t: torch.zeros_like(x_t)  # noqa: E731
    for prediction in ("eps", "x0", "v"):
        target = GaussianDiffusion(s, prediction=prediction).prediction_target(x0, noise, t)
        l1 = GaussianDiffusion(s, prediction=prediction, loss="l1").training_losses(zero, x0, t, noise)
        mse = GaussianDiffusion(s, prediction=prediction, loss="mse").training_losses(zero, x0, t, noise)
        # Both are the same few float64 operations as the reference: equal to rounding.
        torch.testing.assert_close(l1["loss"], target.abs().mean(dim=(1, 2)), rtol=1e-12, atol=0)
        torch.testing.assert_close(mse["loss"], (target**2).mean(dim=(1, 2)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_eps_at_continuous_t_recovers_the_noise_from_every_parameterization(prediction):
    """The ODE's conversion (alpha_bar from the schedule's log-linear interpolation, exact at the steps)
    turns the true target of each parameterization back into eps. Float64: a handful of roundings,
    amplified by at most 1 / sqrt(1 - alpha_bar) < 100 at these steps."""
    s = NoiseSchedule.cosine(1000)
    d = GaussianDiffusion(s, prediction=prediction)
    g = torch.Generator().manual_seed(9)
    x0, eps = torch.randn(2, 3, 4, generator=g, dtype=F64)
    i = torch.tensor([10, 500, 990])
    x_t = d.q_sample(x0, i, eps)
    torch.testing.assert_close(d.eps_at(d.prediction_target(x0, eps, i), x_t, i.double()), eps, rtol=0, atol=1e-12)
