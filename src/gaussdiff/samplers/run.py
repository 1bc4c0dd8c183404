"""The front door: :func:`sample` runs a sampler by name, on all or a respacing of the steps."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model
from ..diffusion.schedule import Spacing
from .base import Callback, Sampler
from .ddpm import ancestral, ddim
from .solvers import dpm_solver_2m

SamplerName = Literal["ddpm", "ddim", "dpm++2m"]

SAMPLERS: dict[str, Sampler] = {"ddpm": ancestral, "ddim": ddim, "dpm++2m": dpm_solver_2m}


def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    sampler: SamplerName = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
    spacing: Spacing = "linspace",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **cond: Tensor,
) -> Tensor:
    """Draw samples from a diffusion model.

    Args:
        model: ``model(x_t, t, **cond)``; ``t`` is always on the original 0..T-1 scale.
        diffusion: the process the model was trained with.
        shape: ``[B, ...]`` of the samples (images, latents, points alike).
        sampler: ``"ddpm"`` (ancestral, Algorithm 2), ``"ddim"`` (Song et al. 2021) or ``"dpm++2m"``
            (DPM-Solver++(2M), Lu et al. 2022: second order, one evaluation a step).
        steps: run on this many respaced steps ("every S steps"); None for all T.
        eta: DDIM's stochasticity (0 deterministic; 1 matches DDPM's beta_tilde).
        x_T: the starting noise; drawn from N(0, I) with ``generator`` when None. The samples
            follow its dtype and device (else ``dtype`` and ``device``).
        generator: makes the run deterministic.
        clip_denoised: clip each x0 estimate to [-1, 1] (for data in that range).
        progress: show a tqdm bar.
        callback: called with a :class:`SamplerStep` after every step.
        spacing: which steps ``steps`` keeps (see :meth:`NoiseSchedule.respace`).
        **cond: passed to the model (class labels ``y``, prompt ``tokens``).
    Returns:
        ``[B, ...]`` samples.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if steps is not None and steps != diffusion.num_steps:
        diffusion = diffusion.respace(steps, spacing)
    if x_T is None:
        x_T = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    elif tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
    return SAMPLERS[sampler](
        model,
        diffusion,
        x_T,
        generator=generator,
        clip_denoised=clip_denoised,
        callback=callback,
        progress=progress,
        eta=eta,
        cond=cond,
    )
