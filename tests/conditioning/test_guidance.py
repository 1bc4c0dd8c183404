"""Guidance wrappers: classifier-free identities, the classifier gradient, and both guided updates."""

import pytest
import torch
from torch import nn

from gaussdiff import GaussianDiffusion, NoiseSchedule
from gaussdiff.errors import ConfigError
from gaussdiff.conditioning import ClassLabel, ClassifierFreeGuidance, ClassifierGuidance, classifier_log_prob_grad
from gaussdiff.nets import NoisyClassifier, NoisyClassifierConfig, UNet, UNetConfig
from gaussdiff.nets.unet import Attention
from gaussdiff.samplers.ddpm import ddim_step

F64 = torch.float64
EPS = torch.finfo(F64).eps  # 2 u: one correctly rounded float64 operation errs by at most u = EPS / 2
EPS32 = torch.finfo(torch.float32).eps
LABELS = [ClassLabel(10)]  # ten classes; label 10 is the null label


def forward_roundings(net, size):
    """How many roundings a forward pass chains at most, summed over its layers: each convolution's or linear
    layer's fan-in, each norm's group (at most size^2 pixels), each attention's two sums over at most size^2 tokens.

    A sum of n terms is within n u of the sum of their magnitudes (Higham's gamma_n); with O(1) activations
    (GroupNorm) and layers that do not amplify errors (weights ~ 0.05-0.1), two float64 evaluations of the
    network that order their sums differently (batch 8 vs 4) differ by at most 2 u N = EPS N.
    """
    n = 0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            n += m.weight[0].numel()
        elif isinstance(m, nn.GroupNorm):
            n += m.num_channels // m.num_groups * size * size
        elif isinstance(m, Attention):
            n += 2 * size * size
    return n


def conditional_unet(out_channels=1):
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=out_channels, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, num_classes=10)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def inputs(b=4):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 1, 8, 8, generator=g, dtype=F64), torch.tensor([5, 300, 600, 999])[:b],
            torch.tensor([1, 3, 7, 9])[:b])


def test_classifier_free_guidance_identities():
    net = conditional_unet()
    x, t, y = inputs()
    conditional, unconditional = net(x, t, y=y), net(x, t, y=torch.full_like(y, 10))
    # One batched pass against separate ones: each output within EPS N (forward_roundings), and
    # (w + 1) c - w u scales that by 2w + 1, plus the combination's own 2 roundings of |(w + 1) c| + |w u|.
    net_tol = EPS * forward_roundings(net, 8)
    # w = 0 is the plain conditional model.
    torch.testing.assert_close(ClassifierFreeGuidance(net, 0.0, LABELS)(x, t, y=y), conditional, rtol=0, atol=net_tol)
    # The batched pass equals two separate passes: (w + 1) eps(x, t, y) - w eps(x, t, null).
    for w in (1.0, 3.0):
        combined = (w + 1) * conditional - w * unconditional
        tol = (2 * w + 1) * net_tol + EPS * ((w + 1) * conditional.abs() + w * unconditional.abs()).max().item()
        torch.testing.assert_close(ClassifierFreeGuidance(net, w, LABELS)(x, t, y=y), combined, rtol=0, atol=tol)
    # The unconditional branch is the null-label model, which is also what y=None gives: the same batch through
    # the same kernels, so bitwise.
    torch.testing.assert_close(net(x, t), unconditional, rtol=0, atol=0)


def test_classifier_free_guidance_keeps_the_conditional_variance():
    net = conditional_unet(out_channels=2)
    x, t, y = inputs()
    guided = ClassifierFreeGuidance(net, 2.0, LABELS, variance_channels=1)(x, t, y=y)
    conditional, unconditional = net(x, t, y=y), net(x, t)
    net_tol = EPS * forward_roundings(net, 8)  # batched against separate passes, as above
    torch.testing.assert_close(guided[:, 1:], conditional[:, 1:], rtol=0, atol=net_tol)
    tol = 5 * net_tol + EPS * (3 * conditional.abs() + 2 * unconditional.abs()).max().item()  # 2w + 1 = 5
    torch.testing.assert_close(guided[:, :1], 3 * conditional[:, :1] - 2 * unconditional[:, :1], rtol=0, atol=tol)


def tiny_classifier():
    torch.manual_seed(2)
    clf = NoisyClassifier(NoisyClassifierConfig(UNetConfig(image_size=8, in_channels=1, channels=16,
                                                    channel_mult=(1, 2),
                                                    num_res_blocks=1, attention_resolutions=(4,)))).double()
    for p in clf.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return clf.eval()


def test_classifier_gradient_matches_finite_differences():
    clf = tiny_classifier()
    x, t, y = inputs(2)
    grad = classifier_log_prob_grad(clf, x, t, y)
    f = lambda z: torch.log_softmax(clf(z, t), -1)[torch.arange(2), y].sum()  # noqa: E731
    logits = clf(x, t)
    # This classifier's gradients are ~1e-7..1e-5, so an absolute 1e-6 could not tell them from 0; the
    # tolerance is the error budget of both sides instead:
    # - the central difference with h = 1e-2: its truncation c h^2 from Richardson, (4/3) |D(h) - D(h/2)|, and its
    #   rounding: f(x +- h e), a sum of B = 2 log-probabilities each within u N (forward_roundings), so each
    #   within EPS N and their difference within 2 EPS N, over 2 h;
    # - the wrapper's float32 log_softmax: d log p_y / d z = e_y - p with p to (2 max|z| + 16) u32 relative
    #   (the logits' rounding through exp, then exp, the sum of 10 and the division) and e_y - p stored to u32,
    #   so the gradient moves by at most u32 sum_k ((2 max|z| + 16) p_k + |e_y - p|_k) |dz_k / dx|.
    jac = torch.autograd.functional.jacobian(lambda z: clf(z, t), x)  # [2, 10, *x.shape]
    p = torch.softmax(logits, -1)
    rounding = 2 * EPS * forward_roundings(clf, 8)  # of f(x + h e) - f(x - h e)
    h = 1e-2
    for index in [(0, 0, 3, 4), (1, 0, 0, 7), (1, 0, 5, 5)]:
        e = torch.zeros_like(x)
        e[index] = 1.0
        central = lambda h: ((f(x + h * e) - f(x - h * e)) / (2 * h)).item()  # noqa: E731
        numeric, half = central(h), central(h / 2)
        b = index[0]
        weights = (2 * logits[b].abs().max() + 16) * p[b] + (torch.nn.functional.one_hot(y[b], 10) - p[b]).abs()
        fp32 = EPS32 / 2 * (weights * jac[b, :][(slice(None),) + index].abs()).sum().item()
        tol = 4 / 3 * abs(numeric - half) + rounding / (2 * h) + fp32
        assert abs(grad[index].item() - numeric) <= tol, (index, grad[index].item(), numeric, tol)
        assert tol < abs(numeric)  # else a zero gradient would pass too


def test_classifier_guided_ddim_step_is_algorithm_2():
    """eps~ = eps - s sqrt(1 - alpha_bar_t) grad, then the DDIM update with eps~ (Dhariwal & Nichol Alg. 2)."""
    s = NoiseSchedule.cosine(1000)
    d = GaussianDiffusion(s).respace(50)
    net, clf = conditional_unet(), tiny_classifier()
    x, _, y = inputs()
    i = torch.tensor([49, 30, 10, 1])
    t = d.schedule.timesteps[i]
    scale = 2.5
    guided = ClassifierGuidance(net, clf, d, scale, mode="eps", pass_labels=True)
    est = d.p_mean_variance(guided, x, i, y=y)
    x_next = ddim_step(d, x, i, est.x0, est.eps, 0.0, torch.zeros_like(x))

    eps = net(x, t, y=y)
    grad = classifier_log_prob_grad(clf, x, t, y)
    eps_tilde = eps - scale * (1 - d.schedule.alpha_bars[i]).sqrt().reshape(-1, 1, 1, 1) * grad
    ab, ab_prev = (a[i].reshape(-1, 1, 1, 1) for a in (d.schedule.alpha_bars, d.schedule.alpha_bars_prev))
    x0 = (x - (1 - ab).sqrt() * eps_tilde) / ab.sqrt()
    expected = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps_tilde
    # Same net and classifier outputs on both sides; the guided path converts eps -> x0 -> eps and back three
    # times where this one does once. Each x0 = (x - sqrt(1 - ab) eps) / sqrt(ab) is ~4 roundings of terms of
    # size |x| + |eps~|, amplified by its condition number 1/sqrt(ab) (2e4 at the last step): 4 conversions
    # and the eps round trips between them, <= 32 u = 16 eps of that.
    bound = 16 * EPS * (x.abs() + eps_tilde.abs()) / ab.sqrt()
    assert bool(((x_next - expected).abs() <= bound).all())


@pytest.mark.parametrize("prediction, variance",
                         [("eps", "fixed_small"), ("v", "fixed_large"), ("x0", "learned_range")])
def test_classifier_guided_mean_is_algorithm_1(prediction, variance):
    """The guided model's p(x_{t-1} | x_t) has mean mu + s Sigma grad and the same Sigma (Alg. 1)."""
    s = NoiseSchedule.linear(1000)
    d = GaussianDiffusion(s, prediction=prediction, variance=variance, loss="hybrid").respace(100)
    net = conditional_unet(out_channels=2 if d.learns_variance else 1)
    clf = tiny_classifier()
    x, _, y = inputs()
    i = torch.tensor([99, 60, 20, 1])
    t = d.schedule.timesteps[i]
    plain = d.p_mean_variance(lambda a, b, y: net(a, b, y=y), x, i, y=y)
    guided = d.p_mean_variance(ClassifierGuidance(net, clf, d, 3.0, mode="mean", pass_labels=True), x, i, y=y)
    grad = classifier_log_prob_grad(clf, x, t, y)
    # Both means are c0 x0 + cxt x_t; the guided x0 passes through up to three conversions x0 <-> eps <-> the
    # prediction, each a few roundings amplified by at most G = max(1/sqrt(ab), 1/sqrt(1 - ab)) (157 and 21
    # here), on terms of size |x_t| + |x0| + |eps|; then c0 scales it, and the sums round on their own terms.
    ab = d.schedule.alpha_bars[i].reshape(-1, 1, 1, 1)
    c0 = d.schedule.posterior_mean_coef_x0[i].reshape(-1, 1, 1, 1)
    G = torch.maximum(ab.rsqrt(), (1 - ab).rsqrt())
    size = (c0 * G * (x.abs() + plain.x0.abs() + plain.eps.abs()) + plain.mean.abs()
            + 3.0 * (plain.variance * grad).abs())
    assert bool(((guided.mean - (plain.mean + 3.0 * plain.variance * grad)).abs() <= 16 * EPS * size).all())
    torch.testing.assert_close(guided.variance, plain.variance, rtol=0, atol=0)  # never touched by the guidance


def test_classifier_guidance_with_scale_zero_and_wrong_steps():
    d = GaussianDiffusion(NoiseSchedule.linear(1000)).respace(10)
    net, clf = conditional_unet(), tiny_classifier()
    x, _, y = inputs()
    t = d.schedule.timesteps[torch.tensor([9, 5, 2, 0])]
    # Scale 0 returns the model's own output, the same call: bitwise.
    unguided = ClassifierGuidance(net, clf, d, 0.0, pass_labels=True)(x, t, y=y)
    torch.testing.assert_close(unguided, net(x, t, y=y), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="mean form needs the sampler's steps on the schedule's steps"):
        ClassifierGuidance(net, clf, d, 1.0, mode="mean", pass_labels=True)(x, t + 1, y=y)


def test_classifier_guided_eps_holds_between_the_steps():
    """Off the schedule's steps (Karras, log-SNR or tuned times), Alg. 2's eps~ = eps - s sqrt(1 - alpha_bar(t)) grad
    with alpha_bar(t) of the continuous schedule."""
    s = NoiseSchedule.cosine(1000)
    d = GaussianDiffusion(s)
    net, clf = conditional_unet(), tiny_classifier()
    x, _, y = inputs()
    t = torch.tensor([990.5, 500.25, 100.75, 3.5], dtype=torch.float64)
    guided = ClassifierGuidance(net, clf, d, 2.0, mode="eps", pass_labels=True)(x, t, y=y)
    ab = s.alpha_bar_at(t).float().reshape(-1, 1, 1, 1)
    expected = net(x, t, y=y) - 2.0 * (1 - ab).sqrt() * classifier_log_prob_grad(clf, x, t, y)
    # eps -> x0 -> eps and back: a few roundings amplified by 1/sqrt(alpha_bar) (11 at t = 990.5), in float32.
    torch.testing.assert_close(guided, expected, rtol=0, atol=1e-4)


def test_guide_pairs_each_sampler_with_its_algorithm_unless_told_otherwise():
    """Dhariwal & Nichol: Algorithm 1 (the mean) with ancestral sampling, Algorithm 2 (eps) with DDIM;
    --classifier-mode overrides the pairing for either sampler."""
    from gaussdiff.conditioning import GuidanceConfig, guide

    d = GaussianDiffusion(NoiseSchedule.linear(1000)).respace(10)
    net, clf = conditional_unet(), tiny_classifier()
    for sampler, mode, expected in [("ddpm", "paired", "mean"), ("ddim", "paired", "eps"), ("unipc", "paired", "eps"),
                                    ("ddim", "mean", "mean"), ("ddpm", "eps", "eps")]:
        wrapped = guide(net, d, GuidanceConfig(classifier_mode=mode), sampler, LABELS, classifier=clf)
        assert isinstance(wrapped, ClassifierGuidance) and wrapped.mode == expected, (sampler, mode)


def test_classifier_guidance_leaves_zero_snr_unguided():
    """At alpha_bar = 0 (a zero-terminal-SNR run's first step) x_t holds no information about the class and eps -> x0
    would divide by zero: the guided output there is the model's own, finite; elsewhere it is guided."""
    s = NoiseSchedule.cosine(1000).rescale_zero_terminal_snr()
    d = GaussianDiffusion(s, prediction="v")
    net, clf = conditional_unet(), tiny_classifier()
    x, _, y = inputs()
    t = torch.tensor([999, 999, 500, 100])
    guided = ClassifierGuidance(net, clf, d, 2.0, mode="eps", pass_labels=True)(x, t, y=y)
    plain = net(x, t, y=y)
    assert bool(torch.isfinite(guided).all())
    torch.testing.assert_close(guided[:2], plain[:2], rtol=0, atol=0)
    assert not torch.allclose(guided[2:], plain[2:])


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -1.0])
def test_a_wrapper_refuses_a_scale_that_is_not_a_finite_number_at_least_0(scale):
    """Built directly (not through guide, which checks its config), a NaN scale sampled NaN images without a word."""
    model, d = (lambda x_t, t, y: x_t), GaussianDiffusion(NoiseSchedule.linear(10))
    with pytest.raises(ConfigError, match=f"scale must be a finite number >= 0, got {scale}"):
        ClassifierFreeGuidance(model, scale, LABELS)
    with pytest.raises(ConfigError, match=f"scale must be a finite number >= 0, got {scale}"):
        ClassifierGuidance(model, lambda x, t: x.flatten(1), d, scale)
