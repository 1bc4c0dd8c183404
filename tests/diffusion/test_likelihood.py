"""The probability-flow ODE likelihood against closed forms, and progressive compression."""

import math

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule
from gaussdiff.diffusion.likelihood import ode_likelihood, rate_distortion
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser

EPS = torch.finfo(torch.float64).eps
MIX = GaussianMixture([[0.1, -0.2]], [0.3], [1.0])
# The ODE solver's rtol = atol in these tests: small enough that the error bound of GaussianFlow.solver_bound
# (which grows with it) stays far below every effect the tests look at.
SOLVER_TOL = 1e-7


class GaussianFlow:
    """The probability-flow ODE in closed form for x0 ~ N(mean, axes diag(stds^2) axes^T) and the exact eps.

    In x_bar = x_t / sqrt(alpha_bar), sigma^2 = 1 / alpha_bar - 1, the ODE is d x_bar / d log sigma =
    sigma^2 (S + sigma^2 I)^-1 (x_bar - mean): along each axis x_bar - mean grows by
    g = sqrt((s^2 + sigma_T^2) / (s^2 + sigma_0^2)), and the log-density integral is I_T = sum log g.
    ``ode_likelihood`` starts from p_sigma_0 = N(mean, S + sigma_0^2 I) and ends at the N(0, I) prior in x_T
    instead of the true marginal there; both are Gaussians, so its exact answer is known pointwise.
    """

    def __init__(self, schedule, mean, stds, axes):
        self.mean, self.stds, self.axes = (torch.as_tensor(a, dtype=torch.float64) for a in (mean, stds, axes))
        self.alpha_bar_T = schedule.alpha_bars[-1].item()
        self.var_0 = self.stds**2 + 1 / schedule.alpha_bars[0].item() - 1
        self.var_T = self.stds**2 + 1 / self.alpha_bar_T - 1
        self.growth = (self.var_T / self.var_0).sqrt()
        self.integral = self.growth.log().sum().item()

    def log_density(self, x):
        """log p_sigma_0(x) ``[B]``, the answer of a perfect prior, and the endpoint x_bar_T ``[B, D]``."""
        z = (x - self.mean) @ self.axes
        x_bar_T = self.mean + (z * self.growth) @ self.axes.T
        return -0.5 * (z**2 / self.var_0).sum(1) - 0.5 * torch.log(2 * math.pi * self.var_0).sum(), x_bar_T

    def prior_error(self, x):
        """log N(x_bar_T; 0, I / alpha_bar_T) - log q(x_bar_T), what the N(0, I) prior adds to log p(x) ``[B]``."""
        _, x_bar_T = self.log_density(x)
        z_T = (x_bar_T - self.mean) @ self.axes
        D = x.shape[1]
        prior = -0.5 * self.alpha_bar_T * (x_bar_T**2).sum(1) - 0.5 * D * math.log(2 * math.pi / self.alpha_bar_T)
        return prior + 0.5 * (z_T**2 / self.var_T).sum(1) + 0.5 * torch.log(2 * math.pi * self.var_T).sum()

    def expected_log_p(self, x):
        """``ode_likelihood`` at x ``[B, D]`` with its ODE solved exactly: log p_sigma_0 + the prior's error."""
        return self.log_density(x)[0] + self.prior_error(x)

    def solver_bound(self, nfe, x, rtol=SOLVER_TOL, atol=SOLVER_TOL, jitter=0.0):
        """A bound ``[B]`` on the RK45 error in log p(x), from scipy's step control.

        RK45 accepts a step when its local error estimate is within atol + rtol |y| on every component
        (in RMS; taken as spread evenly, since every component follows a lambda_d(u) of the same shape), and
        takes at most nfe / 6 steps. The integral I, growing monotonically to I_T, gathers atol + rtol I_T per
        step. An error in x_bar is carried to T by the linear flow (the rtol |x_bar - mean| part keeps its
        relative size; atol and rtol |mean| grow by at most g) and moves log N(x_bar_T; 0, I / alpha_bar_T)
        by alpha_bar_T |x_bar_T| times its norm (sqrt(D) times a component's). ``jitter`` widens x by the
        dequantization noise's reach.
        """
        g = self.growth.max().item()
        _, x_bar_T = self.log_density(x)
        reach = (x_bar_T - self.mean).norm(dim=1) + jitter * g
        x_part = self.alpha_bar_T * (x_bar_T.norm(dim=1) + jitter * g) * math.sqrt(x.shape[1]) * (
            rtol * reach + g * (atol + rtol * self.mean.abs().max().item()))
        return nfe / 6 * (atol + rtol * self.integral + x_part)


class RotatedGaussianEps:
    """The exact eps* = sqrt(1 - a) (a S + (1 - a) I)^-1 (x_t - sqrt(a) mean) of a :class:`GaussianFlow`'s data."""

    def __init__(self, schedule, flow):
        self.schedule, self.flow = schedule, flow

    def __call__(self, x_t, t):
        a = self.schedule.alpha_bar_at(t).reshape(-1, 1).to(x_t.dtype)
        z = (x_t - a.sqrt() * self.flow.mean) @ self.flow.axes
        return ((1 - a).sqrt() * z / (a * self.flow.stds**2 + 1 - a)) @ self.flow.axes.T


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ode_likelihood_with_exact_divergence_matches_the_gaussian_density(schedule):
    s = getattr(NoiseSchedule, schedule)(1000)
    flow = GaussianFlow(s, MIX.means[0], [0.3, 0.3], torch.eye(2, dtype=torch.float64))
    x = MIX.sample(32, torch.Generator().manual_seed(0))[0]
    result = ode_likelihood(OptimalDenoiser(MIX, s), GaussianDiffusion(s), x, divergence="exact", dequantize=False,
                            rtol=SOLVER_TOL, atol=SOLVER_TOL)
    # The N(0, I) prior's error is computed exactly (up to 4e-3 nats for linear, whose x_T keeps
    # sqrt(alpha_bar_T) = 7e-3 of x0; 3e-5 for cosine); what is left is the solver's (solver_bound).
    err, bound = (result.log_p - flow.expected_log_p(x)).abs(), flow.solver_bound(result.nfe, x)
    assert bool((err <= bound).all()), (err.max().item(), bound.max().item())


def test_hutchinson_divergence_is_unbiased():
    # Data with unequal stds along rotated axes: the eps Jacobian has off-diagonal terms, so the probe matters
    # (for MIX's isotropic Gaussian, J = c I and v^T J v = c D = tr J for every Rademacher v: no variance).
    s = NoiseSchedule.cosine(1000)
    c = math.sqrt(0.5)
    flow = GaussianFlow(s, [0.1, -0.2], [0.3, 0.2], [[c, -c], [c, c]])
    z = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = flow.mean + (z * flow.stds) @ flow.axes.T
    result = ode_likelihood(RotatedGaussianEps(s, flow), GaussianDiffusion(s), x, dequantize=False,
                            rtol=SOLVER_TOL, atol=SOLVER_TOL, generator=torch.Generator().manual_seed(2))
    err = result.log_p - flow.expected_log_p(x)
    bound = flow.solver_bound(result.nfe, x)
    # One probe v per example over the whole ODE: the estimate is v^T K v with K = int sigma J du =
    # axes diag(log g) axes^T, so for v in {-1, 1}^2 it is off from tr K by exactly 2 v1 v2 K12 = +-|log g1 - log g2|.
    spread = abs(flow.growth.log()[0].item() - flow.growth.log()[1].item())
    assert bool(((err.abs() - spread).abs() <= bound).all())  # every probe was used, and is Rademacher
    # v1 v2 is a fair coin: the mean of 200 is within 4 of its standard errors, spread / sqrt(200) (two-sided p = 6e-5).
    assert abs(err.mean().item()) < 4 * spread / math.sqrt(200) + bound.max().item()


def test_dequantized_bits_per_dim_bound_the_discrete_nll():
    """For 8-bit data, the dequantized ODE bound lies above the exact discrete NLL of the data."""
    s = NoiseSchedule.cosine(1000)
    flow = GaussianFlow(s, MIX.means[0], [0.3, 0.3], torch.eye(2, dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    x = torch.round((MIX.sample(400, g)[0].clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    d = torch.distributions.Normal(MIX.means[0], torch.tensor(0.3, dtype=torch.float64))
    nll_bits = -(d.cdf(x + 1 / 255) - d.cdf(x - 1 / 255)).log().mean(1) / math.log(2)
    result = ode_likelihood(OptimalDenoiser(MIX, s), GaussianDiffusion(s), x, divergence="exact", generator=g,
                            rtol=SOLVER_TOL, atol=SOLVER_TOL)
    to_bits = 1 / (2 * math.log(2))  # nats -> bits per dim, D = 2
    solver = flow.solver_bound(result.nfe, x, jitter=1 / 255).max().item() * to_bits
    gap = result.bpd - nll_bits
    # E[gap] >= 0: Jensen over the dequantization noise, and the model N(mean, s^2 + sigma_0^2) is no closer to
    # the data than the data itself (Gibbs); 3 standard errors one-sided (p = 1e-3), and the solver's error.
    assert gap.mean().item() > -3 * gap.std().item() / math.sqrt(400) - solver
    # And the bound is as tight as the closed form says: E_u log p(x + u) for u ~ U(+-1/255)^2 is the quadratic
    # log-density at x less (Var u / 2) alpha_bar_T sum g^2 (the sigma_0 terms cancel); the residual is the
    # noise u alone, within 4 standard errors (two-sided p = 6e-5).
    var_u = (2 / 255) ** 2 / 12
    expected_log_p = flow.expected_log_p(x) - 0.5 * var_u * flow.alpha_bar_T * (flow.growth**2).sum()
    residual = result.bpd - (-expected_log_p * to_bits + math.log2(127.5))
    assert abs(residual.mean().item()) < 4 * residual.std().item() / math.sqrt(400) + solver


def test_rate_distortion_is_monotone():
    s = NoiseSchedule.linear(200, 1e-3, 0.05)
    d = GaussianDiffusion(s)
    x = torch.round((MIX.sample(200, torch.Generator().manual_seed(4))[0].clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
    like = d.bpd(OptimalDenoiser(MIX, s), x, clip_denoised=False, generator=torch.Generator().manual_seed(5))
    rd = rate_distortion(like, s.timesteps)
    # Going down in t, more bits have been sent and the estimate of x0 gets better. Each term is a KL or an NLL,
    # >= 0 up to its rounding (fixed_small: equal variances, so normal_kl's bound of test_losses is <= 20 eps
    # nats = 29 eps bits); adding it to the running sum (<= 8.2 bits) costs one more ulp (4 eps), and rounding and
    # the mean over examples are monotone.
    assert bool((rd.rate[:-1] >= rd.rate[1:] - 33 * EPS).all())
    # x_0's rate is the whole bound less the decoder's term, which sends the data itself: both sides sum the same
    # T - 1 = 199 nonnegative terms and the prior per example, in different orders, and average B = 200 examples
    # (within (T + B) u relative of the exact value each). x_{T-1}'s rate is the prior alone.
    sent = (like.total - like.vb[:, 0]).mean().item()
    assert rd.rate[0].item() == pytest.approx(sent, rel=(200 + 200) * EPS, abs=0)
    assert rd.rate[-1].item() == pytest.approx(like.prior.mean().item(), rel=200 * EPS, abs=0)
    assert rd.distortion[0].item() < rd.distortion[100].item() < rd.distortion[-1].item()


def test_the_ode_refuses_a_model_that_returns_no_tensor():
    """As the samplers and the bound do: a tuple (or diffusers' output object) is named, not an AttributeError."""
    x = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(TypeError, match="the model returned a tuple, not a Tensor"):
        ode_likelihood(lambda x_t, t: (x_t,), GaussianDiffusion(NoiseSchedule.linear(10)), x, divergence="exact")


def test_the_ode_refuses_a_zero_terminal_snr_schedule():
    """It integrates in log sigma up to sigma_T = sqrt((1 - alpha_bar_T) / alpha_bar_T), infinite at zero terminal
    SNR, and its prior N(0, sigma_T^2) has no density there: refused in one line (an OverflowError from math.exp)."""
    diffusion = GaussianDiffusion(NoiseSchedule.cosine(10).rescale_zero_terminal_snr(), prediction="v")
    with pytest.raises(ValueError, match="needs alpha_bar_T > 0"):
        ode_likelihood(lambda x_t, t: x_t, diffusion, torch.zeros(2, 1, dtype=torch.float64), divergence="exact")


def test_dequantization_noise_fills_the_bin_of_width_2_over_255():
    """8-bit data x is dequantized to x + u, u ~ U(-1/255, 1/255): the whole bin of width 2/255 around x, centred.

    With eps = 0 the ODE stands still (x_bar_T = x + u, no divergence), so log p = log N(x + u; 0, 1/alpha_bar_T)
    in closed form, and u is read back from it, for D = 1 and x = 191/127.5 - 1 > 0: x + u = sqrt(-2 var_T (log p +
    log(2 pi var_T) / 2)). 2000 draws of U(-1, 1) / 255 reach within 1% of each end (each missed with
    p = 0.995^2000 = 4e-5) and average within 4 standard errors of 0.
    """
    s = NoiseSchedule.linear(100)  # alpha_bar_T = 0.36: the prior's quadratic reads u to 1e-13
    x = torch.full((2000, 1), 191 / 127.5 - 1, dtype=torch.float64)
    result = ode_likelihood(lambda x_t, t: 0 * x_t, GaussianDiffusion(s), x, divergence="exact",
                            generator=torch.Generator().manual_seed(6))
    var_T = 1 / s.alpha_bars[-1].item()
    u = (-2 * var_T * (result.log_p + 0.5 * math.log(2 * math.pi * var_T))).sqrt() - x[:, 0]
    half = 1 / 255
    assert bool((u.abs() <= half * (1 + 1e-9)).all())
    assert u.min().item() < -0.99 * half and u.max().item() > 0.99 * half
    assert abs(u.mean().item()) < 4 * half / math.sqrt(3 * 2000)
    # The discrete bound in bits/dim: -log p / ln 2 (D = 1) plus log2 of the bin density's 127.5.
    assert torch.allclose(result.bpd, -result.log_p / math.log(2) + math.log2(127.5), rtol=1e-14, atol=0)


def test_rate_distortion_by_hand():
    """Rate at step t: the prior L_T and the terms of every step s > t (step s's term sends the latent below it, so
    it is paid before x_{s-1} is known; sent from T-1 down), averaged over examples; distortion: the RMSE over
    examples of the x0 estimate, with one 8-bit level (2/255 in [-1, 1]) as 1."""
    from gaussdiff.diffusion.process import Likelihood

    level = 2 / 255
    vb = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], dtype=torch.float64)
    prior = torch.tensor([0.5, 1.5], dtype=torch.float64)
    # At t = 0 one estimate is exact and the other 2 levels off: RMS over examples sqrt((0 + 4) / 2) = sqrt(2)
    # levels (not the mean of the RMSEs, 1); at t = 1 both are 1 level off, at t = 2 both 3.
    x0_mse = torch.tensor([[0.0, 1.0, 9.0], [4.0, 1.0, 9.0]], dtype=torch.float64) * level**2
    like = Likelihood(prior + vb.sum(1), prior, vb, x0_mse, torch.zeros_like(vb))
    steps = torch.tensor([0, 5, 10])  # a respaced schedule's steps: the result's t, index for index
    rd = rate_distortion(like, steps)
    assert rd.t.tolist() == [0, 5, 10]
    # rate[2] = mean(0.5, 1.5), rate[1] = mean(0.5 + 3, 1.5 + 5), rate[0] = mean(0.5 + 2 + 3, 1.5 + 4 + 5): the
    # decoder's terms (1, 3) are never part of it.
    assert rd.rate.tolist() == [8.0, 5.0, 1.0]
    assert rd.distortion.tolist() == pytest.approx([math.sqrt(2), 1.0, 3.0], rel=1e-14)
