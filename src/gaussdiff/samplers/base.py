"""What every sampler shares: one signature, the step record its callback sees, and the reverse chain.

Every sampler is ``sampler(model, diffusion, x_T, *, generator, clip_denoised, callback, progress,
eta, cond) -> x0`` and runs the whole chain of ``diffusion``'s schedule; strided sampling is the same
sampler on a respaced diffusion (:meth:`GaussianDiffusion.respace`), so no sampler knows about
respacing, guidance or latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.process import GaussianDiffusion, Model, PosteriorEstimate, model_output, to_x0


@dataclass
class SamplerStep:
    """What a sampler's callback sees after each step.

    Attributes:
        i: the step's position in the run, 0 first. t: ``[B]`` the original-scale step just taken.
        x_t: ``[B, ...]`` the new sample x_{t-1}. x0: ``[B, ...]`` the x0 estimate at this step.
        nfe: the network evaluations so far (a guidance wrapper's one batched call counts once).
    """

    i: int
    t: Tensor
    x_t: Tensor
    x0: Tensor
    nfe: int = 0


Callback = Callable[[SamplerStep], None]

Generators = Union[torch.Generator, Sequence[torch.Generator], None]
"""One generator for a batch, or one per sample (as diffusers' pipelines take them): with one per sample, sample
i's noise depends on its own generator only, so it is the same in any batch, on any rank of a sharded run."""


class Sampler(Protocol):
    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: Tensor,
        *,
        generator: Generators = None,
        clip_denoised: bool = False,
        callback: Callback | None = None,
        progress: bool = True,
        eta: float = 0.0,
        cond: Mapping[str, Tensor] | None = None,
    ) -> Tensor: ...


def randn(shape: Sequence[int], generator: Generators, device: torch.device | str | None = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """N(0, I) noise ``[B, ...]`` from one generator, or from ``generator[i]`` for row i."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])


def noise_like(x: Tensor, generator: Generators) -> Tensor:
    return randn(x.shape, generator, x.device, x.dtype)


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
            callback(SamplerStep(i, diffusion.model_timesteps(t), x, est.x0, i + 1))
    return x


@dataclass
class Levels:
    """The noise levels an ODE solver walks: the (respaced) schedule's steps from the noisiest down, then
    zero noise, in the variables of x_t = alpha x0 + sigma eps.

    Attributes:
        t: ``[S]`` the original-scale time of each step (what the model is called with), noisiest first.
        alpha: ``[S + 1]`` sqrt(alpha_bar), float64; ``alpha[S] = 1``.
        sigma: ``[S + 1]`` sqrt(1 - alpha_bar), float64; ``sigma[S] = 0``.
    """

    t: Tensor
    alpha: Tensor
    sigma: Tensor

    @classmethod
    def of(cls, diffusion: GaussianDiffusion, device: torch.device | str | None = None) -> "Levels":
        ab = diffusion.schedule.alpha_bars.double().flip(0)
        ab = torch.cat([ab, ab.new_ones(1)]).to(device)
        return cls(diffusion.schedule.timesteps.flip(0), ab.sqrt(), (1.0 - ab).clamp(min=0).sqrt())

    def __len__(self) -> int:
        return len(self.t)

    @property
    def lam(self) -> Tensor:
        """lambda = log(alpha / sigma), half the log-SNR (DPM-Solver's time variable): +inf at the end."""
        return torch.log(self.alpha) - torch.log(self.sigma)

    @property
    def sigma_ve(self) -> Tensor:
        """Karras et al.'s sigma = sigma / alpha, the noise of x / alpha (the variance-exploding view)."""
        return self.sigma / self.alpha


class Denoiser:
    """``D(x, i)``: the model's x0 estimate at step ``i`` of ``levels`` (or at any alpha_bar with
    :meth:`at`), counting network evaluations. A learned variance is dropped (the ODE needs the mean)."""

    def __init__(self, model: Model, diffusion: GaussianDiffusion, levels: Levels, clip_denoised: bool,
                 cond: Mapping[str, Tensor] | None) -> None:
        self.model, self.diffusion, self.levels = model, diffusion, levels
        self.clip, self.cond, self.nfe = clip_denoised, dict(cond or {}), 0

    def __call__(self, x: Tensor, i: int) -> Tensor:
        return self.evaluate(x, self.levels.t[i], self.levels.alpha[i])

    def at(self, x: Tensor, alpha_bar: Tensor) -> Tensor:
        """At a noise level between the steps: the model is called at t = :meth:`NoiseSchedule.timestep_at`."""
        return self.evaluate(x, self.diffusion.schedule.timestep_at(alpha_bar), alpha_bar.sqrt())

    def evaluate(self, x: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        if float(alpha) == 0.0 and self.diffusion.prediction == "eps":
            raise ValueError("an eps model cannot estimate x0 at zero SNR (alpha_bar = 0): use v prediction "
                             "(Lin et al. 2024)")
        t_batch = t.reshape(1).expand(x.shape[0]).to(x.device)
        output = model_output(self.model(x, t_batch, **self.cond), x)
        self.nfe += 1
        pred, _ = self.diffusion.split_output(output, x)
        a = alpha.to(device=x.device, dtype=torch.float64)
        x0 = to_x0(self.diffusion.prediction, pred, x, a.to(x.dtype), (1.0 - a**2).clamp(min=0).sqrt().to(x.dtype))
        return x0.clamp(-1.0, 1.0) if self.clip else x0


class Walk:
    """What every ODE solver's loop shares: levels, the counted denoiser, the progress bar and the callback."""

    def __init__(self, model: Model, diffusion: GaussianDiffusion, x_T: Tensor, desc: str, clip_denoised: bool,
                 callback: Callback | None, progress: bool, cond: Mapping[str, Tensor] | None) -> None:
        self.levels = Levels.of(diffusion, x_T.device)
        self.lam = self.levels.lam
        self.D = Denoiser(model, diffusion, self.levels, clip_denoised, cond)
        self.callback, self.progress, self.desc = callback, progress, desc

    def steps(self) -> "tqdm[int]":
        return tqdm(range(len(self.levels)), desc=self.desc, disable=not self.progress, leave=False)

    def report(self, i: int, x: Tensor, x0: Tensor) -> None:
        if self.callback is not None:
            t = self.levels.t[i].reshape(1).expand(x.shape[0])
            self.callback(SamplerStep(i, t, x, x0, self.D.nfe))
