"""NoiseSchedule: the closed forms of Ho et al. 2020 §2/§4 and Nichol & Dhariwal 2021 §3.2, §4."""

import math

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule

EPS = torch.finfo(torch.float64).eps  # 2 u: one correctly rounded float64 operation errs by at most u = EPS / 2


def test_linear_endpoints_and_alpha_bar_is_the_running_product():
    s = NoiseSchedule.linear(1000)
    assert s.betas.dtype == torch.float64
    # linspace's endpoints are start and end, or one rounding from them.
    assert s.betas[0].item() == pytest.approx(1e-4, rel=EPS, abs=0)
    assert s.betas[-1].item() == pytest.approx(0.02, rel=EPS, abs=0)
    # alpha_bar_t = prod_{s<=t} (1 - beta_s), computed here by a plain loop.
    running, expected = 1.0, []
    for b in s.betas.tolist():
        running *= 1.0 - b
        expected.append(running)
    # Two products of the same T = 1000 factors, each within T u relative of the exact one (Higham's gamma_T).
    torch.testing.assert_close(s.alpha_bars, torch.tensor(expected, dtype=torch.float64), rtol=1000 * EPS, atol=0)
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all()), "alpha_bar must decrease strictly"


def test_cosine_alpha_bar_matches_the_formula():
    T, s_ = 1000, 0.008
    s = NoiseSchedule.cosine(T, s=s_)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    # Nichol & Dhariwal Eq. 17: alpha_bar at the 1-based step t+1 is f(t+1)/f(0); clipping at
    # max_beta only touches the very last steps.
    expected = torch.tensor([f(t + 1) / f(0) for t in range(T)], dtype=torch.float64)
    unclipped = s.betas < 0.999
    assert unclipped[: T - 5].all()
    first_clipped = int((~unclipped).nonzero()[0]) if (~unclipped).any() else T
    # Both evaluate f at bitwise the same angle; the schedule's product of T ratios f(t+1)/f(t) telescopes to
    # f(t+1)/f(0), each factor with <= 4 roundings (ratio, 1 - r, 1 - beta, product): 4 T u = 2 T eps; cos
    # (<= 1 ulp on each side) and the squares add a few u more, well inside.
    torch.testing.assert_close(s.alpha_bars[:first_clipped], expected[:first_clipped], rtol=2 * T * EPS, atol=0)
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())
    assert s.betas.max().item() <= 0.999


def test_posterior_quantities_match_eq_7():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    # From the same float64 inputs, each side takes <= 4 correctly rounded operations (1 - x, sqrt, *, /) after
    # the shared ones: they differ by <= 8 u = 4 eps relative.
    rel = 4 * EPS
    for t in (1, 7, 99):
        beta, ab, ab_prev = s.betas[t].item(), s.alpha_bars[t].item(), s.alpha_bars[t - 1].item()
        assert s.beta_tilde[t].item() == pytest.approx(beta * (1 - ab_prev) / (1 - ab), rel=rel, abs=0)
        assert s.posterior_mean_coef_x0[t].item() == pytest.approx(math.sqrt(ab_prev) * beta / (1 - ab), rel=rel, abs=0)
        assert s.posterior_mean_coef_xt[t].item() == pytest.approx(
            math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab), rel=rel, abs=0
        )
        assert s.snr[t].item() == pytest.approx(ab / (1 - ab), rel=rel, abs=0)
    assert s.beta_tilde[0].item() == 0.0
    assert s.alpha_bars_prev[0].item() == 1.0
    # log(0) is replaced by log beta_tilde_1 (improved-diffusion's clipping).
    # The log of the same number by torch and by libm, each within 1 ulp (<= eps relative).
    assert s.log_beta_tilde_clipped[0].item() == pytest.approx(math.log(s.beta_tilde[1].item()), rel=2 * EPS, abs=0)
    assert torch.isfinite(s.log_beta_tilde_clipped).all()


@pytest.mark.parametrize(
    "spacing, first, last",
    [("leading", 0, 980), ("trailing", 19, 999), ("linspace", 0, 999)],
)
def test_respace_keeps_alpha_bar_at_kept_steps(spacing, first, last):
    s = NoiseSchedule.linear(1000)
    r = s.respace(50, spacing)
    assert len(r) == 50
    assert r.timesteps[0].item() == first and r.timesteps[-1].item() == last
    # The kept alpha_bars telescope from 50 ratios alpha_bar[k_i] / alpha_bar[k_{i-1}], each with <= 4 roundings
    # (ratio, 1 - r, 1 - beta, product): 4 * 50 u = 100 eps relative.
    torch.testing.assert_close(r.alpha_bars, s.alpha_bars[r.timesteps], rtol=2 * 50 * EPS, atol=0)
    if spacing == "leading":
        assert r.timesteps.tolist() == list(range(0, 1000, 20))


def test_trailing_spacing_rounds_half_to_even_before_taking_one():
    """Trailing keeps round(T - i T / steps) - 1 (Lin et al. 2024 Table 2, as diffusers computes it). At 16 of 1000
    steps T / steps = 62.5, so every other value is a half: by hand, 937.5 -> 938 (even) -> 937 and 812.5 -> 812 ->
    811; rounding after the - 1 would keep 936 and 812. At 30 no value is a half, and exact rationals give it."""
    from fractions import Fraction

    s = NoiseSchedule.linear(1000)
    assert s.respace(16, "trailing").timesteps.flip(0).tolist() == [
        999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]
    exact = [round(1000 - Fraction(1000 * i, 30)) - 1 for i in range(30)]
    assert s.respace(30, "trailing").timesteps.flip(0).tolist() == exact


def test_linspace_spacing_is_the_rounded_ramp_with_exact_ends():
    """round(linspace(0, T - 1, steps)): the ends exactly 0 and T - 1, and in between round(i (T - 1) / (steps - 1)).
    At 9 of 1000 steps (999 / 8 = 124.875) no value is a half, so exact rationals give it."""
    from fractions import Fraction

    s = NoiseSchedule.linear(1000)
    assert s.respace(9, "linspace").timesteps.tolist() == [round(Fraction(999 * i, 8)) for i in range(9)]
    assert s.respace(1, "linspace").timesteps.tolist() == [0]
    # The default spacing of a schedule's respace is the diffusion's (it was leading, which never reaches step 999).
    default = GaussianDiffusion(s).respace(50).schedule.timesteps
    assert torch.equal(s.respace(50).timesteps, default) and default[-1].item() == 999


def test_respace_all_steps_is_the_identity_and_respacing_composes():
    s = NoiseSchedule.cosine(200)
    # beta' = 1 - alpha_bar_k / alpha_bar_{k-1}, with alpha_bar_k = fl(alpha_bar_{k-1} (1 - beta_k)) (cumprod in
    # order): 1 - beta is within u/2, the ratio 2u of alpha <= 1, and 1 - ratio within u/2 (exact when the ratio
    # >= 1/2, Sterbenz): |beta' - beta| <= 3 u = 1.5 eps, absolutely (relative to small betas it is not).
    torch.testing.assert_close(s.respace(200).betas, s.betas, rtol=0, atol=1.5 * EPS)
    twice = s.respace(100, "leading").respace(10, "leading")
    # The inner map is composed: the outer steps point at original steps.
    assert twice.timesteps.tolist() == list(range(0, 200, 20))
    # As in test_respace_keeps_alpha_bar_at_kept_steps, through 100 and then 10 telescoped ratios: 4 (100 + 10) u.
    torch.testing.assert_close(twice.alpha_bars, s.alpha_bars[twice.timesteps], rtol=2 * (100 + 10) * EPS, atol=0)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError):
        NoiseSchedule.from_betas(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError):
        NoiseSchedule.linear(10).respace(11)
    with pytest.raises(ValueError):
        NoiseSchedule.linear(10).respace(5, "every-other")  # type: ignore[arg-type]


def test_alpha_bar_at_interpolates_log_sigma_and_timestep_at_inverts_it():
    """Between two steps k and k + 1, log sigma = 1/2 log((1 - a) / a) is linear in t (exact at the steps), so at
    t = k + w, alpha_bar = 1 / (1 + sigma^2) with sigma = sigma_k^(1 - w) sigma_(k+1)^w; beyond the ends it is
    clamped. timestep_at maps that alpha_bar back to t. A respaced schedule answers with the one it came from."""
    s = NoiseSchedule.cosine(1000)
    sigma = ((1 - s.alpha_bars) / s.alpha_bars).sqrt()
    for k, w in [(0, 0.25), (417, 0.5), (998, 0.9)]:
        expected = 1 / (1 + (sigma[k] ** (1 - w) * sigma[k + 1] ** w) ** 2)
        got = s.alpha_bar_at(torch.tensor([k + w], dtype=torch.float64))
        # A power, a product and a sigmoid against the same in another order: a few ulps of log sigma.
        torch.testing.assert_close(got, expected.reshape(1), rtol=1e-12, atol=0)
        torch.testing.assert_close(s.timestep_at(got), torch.tensor([k + w], dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(s.alpha_bar_at(torch.tensor([-5.0, 1500.0], dtype=torch.float64)),
                               s.alpha_bars[[0, -1]], rtol=1e-14, atol=0)
    respaced = s.respace(10, "trailing")
    t = torch.tensor([500.5], dtype=torch.float64)
    assert torch.equal(respaced.alpha_bar_at(t), s.alpha_bar_at(t))


def test_zero_terminal_snr_is_lin_et_al_algorithm_1():
    """Lin et al. 2024 Algorithm 1: sqrt(alpha_bar) shifted so that its last value is 0 and scaled so that its
    first is kept. An affine function of the original sqrt(alpha_bar) is fixed by those two ends, so: the last is 0,
    the first kept, and a least-squares line through all 1000 points (root, new root) leaves no residual."""
    s = NoiseSchedule.linear(1000)
    z = s.rescale_zero_terminal_snr()
    root = s.alpha_bars.sqrt()
    assert z.alpha_bars[-1].item() == 0.0 and z.zero_terminal_snr and not s.zero_terminal_snr
    torch.testing.assert_close(z.alpha_bars[0], s.alpha_bars[0], rtol=1e-13, atol=0)
    design = torch.stack([root, torch.ones_like(root)], dim=1)
    fit = torch.linalg.lstsq(design, z.alpha_bars.sqrt().unsqueeze(1)).solution
    # alpha_bar's cumulative product and the square and root back: each point within ~1e-14 of the line.
    assert (design @ fit - z.alpha_bars.sqrt().unsqueeze(1)).abs().max() < 1e-12
    assert bool((z.betas[:-1] < 1).all()) and z.betas[-1].item() == 1.0
