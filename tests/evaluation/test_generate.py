"""Sampling a run: guidance wraps the network as asked, and leaves a learned variance to the conditional branch."""

import torch

from gaussdiff.conditioning import GuidanceConfig
from gaussdiff.evaluation.generate import guided_model


def test_classifier_free_guidance_guides_the_mean_and_keeps_the_conditional_variance(conditional_trained):
    d = conditional_trained.diffusion.respace(5)
    model = guided_model(conditional_trained, d, "ddim", GuidanceConfig(guidance=2.0))
    net = conditional_trained.model
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t, y = d.schedule.timesteps[torch.tensor([4, 1])], torch.tensor([3, 5])
    with torch.no_grad():
        out, cond, null = model(x, t, y=y), net(x, t, y=y), net(x, t, y=torch.full_like(y, 10))
    # One batched pass against two separate ones: float32 rounding of the network, ~1e-6 of its outputs.
    torch.testing.assert_close(out[:, 1:], cond[:, 1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, :1], 3 * cond[:, :1] - 2 * null[:, :1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond[:, 1:], null[:, 1:])  # the branches differ, so keeping one is a choice
