"""NoiseSchedule: the closed forms of Ho et al. 2020 §2/§4 and Nichol & Dhariwal 2021 §3.2, §4."""

import math

import pytest
import torch

from gaussdiff import NoiseSchedule


def test_linear_endpoints_and_alpha_bar_is_the_running_product():
    s = NoiseSchedule.linear(1000)
    assert s.betas.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # alpha_bar_t = prod_{s<=t} (1 - beta_s), computed here by a plain loop.
    running, expected = 1.0, []
    for b in s.betas.tolist():
        running *= 1.0 - b
        expected.append(running)
    torch.testing.assert_close(s.alpha_bars, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
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
    torch.testing.assert_close(s.alpha_bars[:first_clipped], expected[:first_clipped], rtol=1e-10, atol=1e-15)
    assert bool((s.alpha_bars[1:] < s.alpha_bars[:-1]).all())
    assert s.betas.max().item() <= 0.999


def test_posterior_quantities_match_eq_7():
    s = NoiseSchedule.linear(100, 1e-3, 0.05)
    for t in (1, 7, 99):
        beta, ab, ab_prev = s.betas[t].item(), s.alpha_bars[t].item(), s.alpha_bars[t - 1].item()
        assert s.beta_tilde[t].item() == pytest.approx(beta * (1 - ab_prev) / (1 - ab), rel=1e-12)
        assert s.posterior_mean_coef_x0[t].item() == pytest.approx(math.sqrt(ab_prev) * beta / (1 - ab), rel=1e-12)
        assert s.posterior_mean_coef_xt[t].item() == pytest.approx(
            math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab), rel=1e-12
        )
        assert s.snr[t].item() == pytest.approx(ab / (1 - ab), rel=1e-12)
    assert s.beta_tilde[0].item() == 0.0
    assert s.alpha_bars_prev[0].item() == 1.0
    # log(0) is replaced by log beta_tilde_1 (improved-diffusion's clipping).
    assert s.log_beta_tilde_clipped[0].item() == pytest.approx(math.log(s.beta_tilde[1].item()), rel=1e-12)
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
    torch.testing.assert_close(r.alpha_bars, s.alpha_bars[r.timesteps], rtol=1e-12, atol=0)
    if spacing == "leading":
        assert r.timesteps.tolist() == list(range(0, 1000, 20))


def test_respace_all_steps_is_the_identity_and_respacing_composes():
    s = NoiseSchedule.cosine(200)
    torch.testing.assert_close(s.respace(200).betas, s.betas, rtol=1e-12, atol=1e-15)
    twice = s.respace(100, "leading").respace(10, "leading")
    # The inner map is composed: the outer steps point at original steps.
    assert twice.timesteps.tolist() == list(range(0, 200, 20))
    torch.testing.assert_close(twice.alpha_bars, s.alpha_bars[twice.timesteps], rtol=1e-12, atol=0)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError):
        NoiseSchedule.from_betas(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError):
        NoiseSchedule.linear(10).respace(11)
    with pytest.raises(ValueError):
        NoiseSchedule.linear(10).respace(5, "every-other")  # type: ignore[arg-type]
