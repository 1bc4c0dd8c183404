"""Samplers of the reverse process: plain functions with one signature.

Every sampler is ``sampler(model, diffusion, x_T, *, generator, clip_denoised, callback, progress,
eta, cond) -> x0`` and runs the whole chain of ``diffusion``'s schedule; strided sampling is the same
sampler on a respaced diffusion (:meth:`GaussianDiffusion.respace`), so no sampler knows about
respacing, guidance or latents. :func:`sample` is the front door.

- :func:`ancestral`: Ho et al. 2020 Algorithm 2, x_{t-1} = mu_theta + sigma_t z.
- :func:`ddim`: Song et al. 2021 Eq. 12; eta = 0 is deterministic, eta = 1 has beta_tilde variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Protocol, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.process import GaussianDiffusion, Model, PosteriorEstimate
from ..diffusion.schedule import Spacing, extract

SamplerName = Literal["ddpm", "ddim"]


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


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


Update = Callable[[Tensor, Tensor, int, PosteriorEstimate], Tensor]


def _reverse_chain(
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


@torch.no_grad()
def ancestral(
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
) -> Tensor:
    """Ancestral sampling, Ho et al. 2020 Algorithm 2: x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    sigma_t^2 is the diffusion's (fixed or learned) variance; no noise is added at the last step.
    ``eta`` is unused (the variance is the model's); it is in the signature so that all samplers
    are called alike.

    Args:
        x_T: ``[B, ...]`` the starting noise; the result has its shape, dtype and device.
    Returns:
        x0: ``[B, ...]``.
    """

    def update(x: Tensor, t: Tensor, step: int, est: PosteriorEstimate) -> Tensor:
        if step == 0:
            return est.mean
        return est.mean + torch.exp(0.5 * est.log_variance) * _noise(x, generator)

    return _reverse_chain(model, diffusion, x_T, update, "ddpm", clip_denoised, callback, progress, cond)


def ddim_sigma(diffusion: GaussianDiffusion, t: Tensor, x: Tensor, eta: float) -> Tensor:
    """sigma_t(eta) = eta sqrt((1 - a_bar_{t-1}) / (1 - a_bar_t)) sqrt(1 - a_bar_t / a_bar_{t-1}) (Song et al. Eq. 16)."""
    s = diffusion.schedule
    var = (1.0 - s.alpha_bars_prev) / (1.0 - s.alpha_bars) * (1.0 - s.alpha_bars / s.alpha_bars_prev)
    return eta * extract(var.sqrt(), t, x)


def ddim_step(diffusion: GaussianDiffusion, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor, eta: float, noise: Tensor) -> Tensor:
    """One DDIM update (Song et al. 2021 Eq. 12).

    x_{t-1} = sqrt(a_bar_{t-1}) x0 + sqrt(1 - a_bar_{t-1} - sigma_t^2) eps + sigma_t z, with x0 and eps
    the model's estimates at (x_t, t); z is ignored at t = 0.
    """
    s = diffusion.schedule
    sigma = ddim_sigma(diffusion, t, x_t, eta)
    a_bar_prev = extract(s.alpha_bars_prev, t, x_t)
    x = a_bar_prev.sqrt() * x0 + (1.0 - a_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
    nonzero = (t > 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return x + nonzero * sigma * noise


@torch.no_grad()
def ddim(
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
) -> Tensor:
    """DDIM sampling (Song et al. 2021 Eq. 12) with stochasticity ``eta``: 0 deterministic, 1 = DDPM's beta_tilde.

    Args:
        x_T: ``[B, ...]`` the starting noise; the result has its shape, dtype and device.
    Returns:
        x0: ``[B, ...]``.
    """

    def update(x: Tensor, t: Tensor, step: int, est: PosteriorEstimate) -> Tensor:
        # Draw noise only when it is used, so that eta = 1 consumes the generator as DDPM does.
        noise = _noise(x, generator) if eta > 0 and step > 0 else torch.zeros_like(x)
        return ddim_step(diffusion, x, t, est.x0, est.eps, eta, noise)

    return _reverse_chain(model, diffusion, x_T, update, "ddim", clip_denoised, callback, progress, cond)


SAMPLERS: dict[str, Sampler] = {"ddpm": ancestral, "ddim": ddim}


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
        sampler: ``"ddpm"`` (ancestral, Algorithm 2) or ``"ddim"`` (Song et al. 2021).
        steps: run on this many respaced steps ("every S steps"); None for all T.
        eta: DDIM's stochasticity (0 deterministic; 1 matches DDPM's beta_tilde).
        x_T: the starting noise; drawn from N(0, I) with ``generator`` when None. The samples
            follow its dtype and device (else ``dtype`` and ``device``).
        generator: makes the run deterministic.
        clip_denoised: clip each x0 estimate to [-1, 1] (for data in that range).
        progress: show a tqdm bar.
        callback: called with a :class:`SamplerStep` after every step.
        spacing: which steps ``steps`` keeps (see :meth:`NoiseSchedule.respace`).
        **cond: passed to the model (class labels, context).
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
