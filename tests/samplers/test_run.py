"""sample and plan, the front door: what a library user hands them."""

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.samplers import plan

DIFFUSION = GaussianDiffusion(NoiseSchedule.linear(20))


@pytest.mark.parametrize("sampler, budget, match", [
    ("ddim", {"nfe": 30}, "nfe 30 takes 30 steps of ddim, more than the diffusion's 20"),
    ("heun", {"nfe": 100}, "nfe 100 takes 51 steps of heun, more than the diffusion's 20"),
    ("ddim", {"steps": 0}, r"steps must lie in 1\.\.20 \(the diffusion's steps\), got 0"),
    ("ddim", {"steps": 21}, r"steps must lie in 1\.\.20 \(the diffusion's steps\), got 21"),
])
def test_a_budget_the_schedule_cannot_hold_is_refused_naming_the_argument(sampler, budget, match):
    """It read 'cannot respace 20 steps to 51' for nfe = 100: neither the argument nor the number given."""
    with pytest.raises(ValueError, match=match):
        plan(DIFFUSION, sampler, **budget)


def test_a_condition_of_another_batch_size_is_refused_before_the_model_sees_it():
    """Labels of 3 rows for a batch of 4 failed deep inside the network (a broadcast of mismatched sizes); one
    row broadcast silently to the whole batch."""
    model = lambda x_t, t, y: x_t * 0  # noqa: E731
    for rows in (3, 1):
        with pytest.raises(ValueError, match=f"the condition y has {rows} rows for a batch of 4"):
            sample(model, DIFFUSION, (4, 2), steps=2, progress=False, y=torch.zeros(rows, dtype=torch.long))


@pytest.mark.parametrize("sampler", ["ddim", "dpm++2m"])  # the reverse chain's and the ODE solvers' model calls
def test_a_model_that_returns_no_tensor_is_refused_saying_how_to_unwrap_it(sampler):
    """A diffusers UNet2DModel returns an output object (here a tuple stands for it): ``.to`` on it failed with an
    AttributeError deep in the diffusion's math."""
    model = lambda x_t, t: (x_t * 0,)  # noqa: E731
    with pytest.raises(TypeError, match=r"the model returned a tuple, not a Tensor.*unet\(x_t, t, \*\*cond\)\.sample"):
        sample(model, DIFFUSION, (4, 2), sampler=sampler, steps=2, progress=False)
