"""Timestep samplers: importance weights keep the uniform-t objective unbiased (Improved DDPM §3.3)."""

import torch

from gaussdiff.diffusion.timestep_sampling import LossSecondMomentSampler, UniformSampler, make_timestep_sampler


def test_uniform_sampler_has_unit_weights_and_covers_all_steps():
    t, w = UniformSampler(10).sample(5000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(w, torch.ones(5000)) and set(t.tolist()) == set(range(10))


def test_second_moment_sampler_is_uniform_until_warm_then_proportional_to_rms_loss():
    T = 20
    s = LossSecondMomentSampler(T, history=4, uniform_prob=0.0)
    losses = torch.arange(1, T + 1, dtype=torch.float64)  # L_t = t + 1, constant in time
    for _ in range(3):
        s.update(torch.arange(T), losses)
    assert not s.warmed_up() and torch.allclose(s.probabilities(), torch.full((T,), 1 / T, dtype=torch.float64))
    s.update(torch.arange(T), losses)
    assert s.warmed_up()
    torch.testing.assert_close(s.probabilities(), losses / losses.sum())


def test_second_moment_weights_by_the_root_mean_square_not_the_mean_absolute_loss():
    """Improved DDPM Eq. 18: p(t) ∝ sqrt(E[L_t^2]). With histories {1, 3} at t = 0 and {2, 2} at t = 1 the
    mean absolute losses tie (2 and 2) while the root mean squares are sqrt(5) and 2."""
    s = LossSecondMomentSampler(2, history=2, uniform_prob=0.0)
    s.update(torch.tensor([0, 1, 0, 1]), torch.tensor([1.0, 2.0, 3.0, 2.0]))
    expected = torch.tensor([5**0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(s.probabilities(), expected / expected.sum(), rtol=1e-12, atol=0)


def test_importance_weights_keep_the_estimate_unbiased():
    """E_{t~p}[w(t) L_t] with w = 1/(T p(t)) equals the uniform mean of L_t, exactly and by Monte Carlo."""
    T = 50
    s = make_timestep_sampler("loss_second_moment", T)
    L = torch.linspace(0.1, 5.0, T, dtype=torch.float64) ** 2
    for _ in range(10):
        s.update(torch.arange(T), L)
    p = s.probabilities()
    # A sum of 50 float64 terms of size ~1: rounding below 50 eps ~ 1e-14.
    assert abs((p * L / (T * p)).sum().item() - L.mean().item()) < 1e-12
    t, w = s.sample(200_000, generator=torch.Generator().manual_seed(1))
    estimate = (w.double() * L[t]).mean().item()
    # 5 standard errors of a mean of 200 000 draws of w(t) L_t, t ~ p: sqrt(Var_p[w L] / n), computed exactly.
    values = L / (T * p)
    stderr = (((p * values**2).sum() - L.mean() ** 2) / 200_000).sqrt().item()
    assert abs(estimate - L.mean().item()) < 5 * stderr, (estimate, L.mean().item(), stderr)
    # The history rolls: a new loss replaces the oldest.
    s.update(torch.tensor([0]), torch.tensor([100.0]))
    assert s.losses[0, -1].item() == 100.0 and s.counts[0].item() == 10


def test_state_round_trip():
    a = LossSecondMomentSampler(5, history=2)
    a.update(torch.tensor([0, 1, 1]), torch.tensor([1.0, 2.0, 3.0]))
    b = LossSecondMomentSampler(5, history=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.losses, b.losses) and torch.equal(a.counts, b.counts)


def test_the_history_keeps_the_last_losses_of_each_step_in_order():
    """IDDPM keeps, per step, its last ``history`` losses (dropping the oldest): after 2H losses at one step the
    history is exactly the last H, oldest first."""
    s = LossSecondMomentSampler(4, history=3)
    for loss in range(6):
        s.update(torch.tensor([2]), torch.tensor([float(loss)]))
    assert s.losses[2].tolist() == [3.0, 4.0, 5.0] and s.counts[2].item() == 3


def test_a_step_with_zero_loss_keeps_the_uniform_floor():
    """IDDPM mixes in uniform_prob = 1e-3 of the uniform distribution (its default): a step whose losses are all
    0 keeps p(t) = 1e-3 / T, so its weight 1 / (T p(t)) = 1000 stays finite; the rest share 1 - 1e-3 by RMS."""
    T = 4
    s = make_timestep_sampler("loss_second_moment", T)
    for _ in range(10):
        s.update(torch.arange(T), torch.tensor([0.0, 1.0, 1.0, 2.0]))
    expected = torch.tensor([0.0, 0.25, 0.25, 0.5], dtype=torch.float64) * (1 - 1e-3) + 1e-3 / T
    torch.testing.assert_close(s.probabilities(), expected, rtol=1e-14, atol=0)
    t, w = s.sample(1000, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(w).all() and w.max().item() <= 1000 * (1 + 1e-6)


def test_steps_and_weights_go_to_the_device_asked():
    """Both the steps and their weights land on ``device`` (the weights multiply the losses there); the meta
    device stands for an accelerator."""
    for sampler in (UniformSampler(8), LossSecondMomentSampler(8)):
        t, w = sampler.sample(4, device="meta", generator=torch.Generator().manual_seed(3))
        assert t.device.type == w.device.type == "meta" and t.dtype == torch.long and w.dtype == torch.float32
