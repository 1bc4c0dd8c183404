"""Guidance wrappers: classifier-free identities, the classifier gradient, and both guided updates."""

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule
from gaussdiff.conditioning import ClassLabel, ClassifierFreeGuidance, ClassifierGuidance, classifier_log_prob_grad
from gaussdiff.nets import NoisyClassifier, NoisyClassifierConfig, UNet, UNetConfig
from gaussdiff.samplers.ddpm import ddim_step

F64 = torch.float64
LABELS = [ClassLabel(10)]  # ten classes; label 10 is the null label


def conditional_unet(out_channels=1):
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=out_channels, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, num_classes=10)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def inputs(b=4):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 8, 8, generator=g, dtype=F64), torch.tensor([5, 300, 600, 999])[:b], torch.tensor([1, 3, 7, 9])[:b]


def test_classifier_free_guidance_identities():
    net = conditional_unet()
    x, t, y = inputs()
    conditional, unconditional = net(x, t, y=y), net(x, t, y=torch.full_like(y, 10))
    # w = 0 is the plain conditional model.
    torch.testing.assert_close(ClassifierFreeGuidance(net, 0.0, LABELS)(x, t, y=y), conditional)
    # The batched pass equals two separate passes: (w + 1) eps(x, t, y) - w eps(x, t, null).
    for w in (1.0, 3.0):
        torch.testing.assert_close(ClassifierFreeGuidance(net, w, LABELS)(x, t, y=y), (w + 1) * conditional - w * unconditional)
    # The unconditional branch is the null-label model, which is also what y=None gives.
    torch.testing.assert_close(net(x, t), unconditional)


def test_classifier_free_guidance_keeps_the_conditional_variance():
    net = conditional_unet(out_channels=2)
    x, t, y = inputs()
    guided = ClassifierFreeGuidance(net, 2.0, LABELS, variance_channels=1)(x, t, y=y)
    torch.testing.assert_close(guided[:, 1:], net(x, t, y=y)[:, 1:])
    torch.testing.assert_close(guided[:, :1], 3 * net(x, t, y=y)[:, :1] - 2 * net(x, t)[:, :1])


def tiny_classifier():
    torch.manual_seed(2)
    clf = NoisyClassifier(NoisyClassifierConfig(UNetConfig(image_size=8, in_channels=1, channels=16, channel_mult=(1, 2),
                                                    num_res_blocks=1, attention_resolutions=(4,)))).double()
    for p in clf.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return clf.eval()


def test_classifier_gradient_matches_finite_differences():
    clf = tiny_classifier()
    x, t, y = inputs(2)
    grad = classifier_log_prob_grad(clf, x, t, y)
    h = 1e-6
    for index in [(0, 0, 3, 4), (1, 0, 0, 7), (1, 0, 5, 5)]:
        e = torch.zeros_like(x)
        e[index] = h
        f = lambda z: torch.log_softmax(clf(z, t), -1)[torch.arange(2), y].sum()  # noqa: E731
        numeric = (f(x + e) - f(x - e)) / (2 * h)
        assert abs(grad[index].item() - numeric.item()) < 1e-6 * max(1.0, abs(numeric.item()))


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
    torch.testing.assert_close(x_next, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction, variance", [("eps", "fixed_small"), ("v", "fixed_large"), ("x0", "learned_range")])
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
    torch.testing.assert_close(guided.mean, plain.mean + 3.0 * plain.variance * grad, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(guided.variance, plain.variance)


def test_classifier_guidance_with_scale_zero_and_wrong_steps():
    d = GaussianDiffusion(NoiseSchedule.linear(1000)).respace(10)
    net, clf = conditional_unet(), tiny_classifier()
    x, _, y = inputs()
    t = d.schedule.timesteps[torch.tensor([9, 5, 2, 0])]
    torch.testing.assert_close(ClassifierGuidance(net, clf, d, 0.0, pass_labels=True)(x, t, y=y), net(x, t, y=y))
    with pytest.raises(ValueError, match="do not include t"):
        ClassifierGuidance(net, clf, d, 1.0, pass_labels=True)(x, t + 1, y=y)
