"""What every sampler shares: one signature, the step record its callback sees, and the reverse chain.

Every sampler is ``sampler(model, diffusion, x_T, *, generator, clip_denoised, callback, progress,
eta, cond) -> x0`` and runs the whole chain of ``diffusion``'s schedule; strided sampling is the same
sampler on a respaced diffusion (:meth:`GaussianDiffusion.respace`), so no sampler knows about
respacing, guidance or latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.process import GaussianDiffusion, Model, PosteriorEstimate


@dataclass
class SamplerStep:
    """What a sampler's callback sees after each step.

    Attributes:
        i: the step's position in the run, 0 first. t: ``[B]`` the original-scale step just taken.
        x_t: ``[B, ...]`` the new sample x_{t-1}. x0: ``[B, ...]`` the x0 estimate at this step.
    """

    i: int
    t: Tensor
    x_t: Tensor
    x0: Tensor


Callback = Callable[[SamplerStep], None]


class Sampler(Protocol):
    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: Tensor,
        *,
        generator: torch.Generator | None = None,
        clip_denoised: bool = False,
        callback: Callback | None = None,
        progress: bool = True,
        eta: float = 0.0,
        cond: Mapping[str, Tensor] | None = None,
    ) -> Tensor: ...


def noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


Update = Callable[[Tensor, Tensor, int, PosteriorEstimate], Tensor]


def reverse_chain(
    model: Model,
    diffusion: GaussianDiffusion,
    x_T: Tensor,
    update: Update,
    desc: str,
    clip_denoised: bool,
    callback: Callback | None,
    progress: bool,
    cond: Mapping[str, Tensor] | None,
) -> Tensor:
    """Run t = T-1, ..., 0: estimate p(x_{t-1} | x_t) with the model, then ``update(x_t, t, step, estimate)``."""
    cond = dict(cond or {})
    x = x_T
    steps = range(diffusion.num_steps - 1, -1, -1)
    for i, step in enumerate(tqdm(steps, desc=desc, disable=not progress, leave=False)):
        t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
        est = diffusion.p_mean_variance(model, x, t, clip_denoised=clip_denoised, **cond)
        x = update(x, t, step, est)
        if callback is not None:
            callback(SamplerStep(i, diffusion.model_timesteps(t), x, est.x0))
    return x
