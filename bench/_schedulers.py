"""A diffusers scheduler's sampling loop around any ``model(x_t, t) -> eps``, as its pipelines run it: the
benchmarks' reference row beside gaussdiff's sampler at the same network evaluations."""

from __future__ import annotations

import inspect

import torch


def solve_with_scheduler(scheduler, model, x_T: torch.Tensor, steps: int, t_dtype: torch.dtype) -> torch.Tensor:
    """x_0 from the variance-preserving ``x_T [B, ...]`` by ``scheduler`` at ``steps`` steps (``set_timesteps``);
    ``t`` goes to ``model`` as ``t_dtype [B]``. A variance-exploding scheduler (k-diffusion's sigmas: Euler, Heun)
    starts from ``x_T`` scaled to its first sigma, sqrt(sigma_max^2 + 1). Stochastic steps draw from a generator
    seeded 0 on ``x_T``'s device."""
    scheduler.set_timesteps(steps)
    ve = scheduler.init_noise_sigma != 1
    x = x_T * (scheduler.sigmas.max().to(x_T.dtype) ** 2 + 1).sqrt() if ve else x_T
    g = torch.Generator(x_T.device).manual_seed(0)
    noise = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}
    with torch.no_grad():
        for t in scheduler.timesteps:
            t_batch = torch.as_tensor(t, device=x.device).to(t_dtype).expand(len(x))
            out = model(scheduler.scale_model_input(x, t), t_batch)
            x = scheduler.step(out.to(x.dtype), t, x, **noise).prev_sample
    return x
