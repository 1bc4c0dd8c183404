"""Step schedules optimized for one model, one sampler and one budget of evaluations.

The idea of "Align Your Steps" (Sabour et al. 2024), by a simpler route: choose the times of a deterministic
sampler's steps to minimize its global error on the model itself, measured against a fine solve of the same
probability-flow ODE from the same x_T. With S steps the times are

    t_k = t_max (1 - c_k),  c_0 = 0,  c_k = softmax(u)_1 + ... + softmax(u)_k,  k = 0..S-1,

from S numbers u (their softmax gives the shares of the time axis between consecutive steps and from the last
step to 0, positive and summing to one: every schedule from t_max towards 0 is reachable and none is out of
order; a shared offset cancels, so the search moves S - 1 degrees of freedom); u = 0 is uniform spacing. The objective
is the mean squared difference between the sampler's x0 and the reference's, over a batch of x_T, and
Nelder-Mead (scipy) minimizes it without gradients through the network. Measured on the exact denoiser of a
Gaussian mixture (``bench/fewstep.py``), a schedule tuned on 512 draws of x_T lowers the sliced Wasserstein
distance of 20 000 *other* draws by 3-4x at 10 and 20 NFE: it does not overfit its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.process import GaussianDiffusion, Model
from .run import SAMPLERS, SamplerName, sample, steps_for_nfe

STOCHASTIC = ("ddpm", "euler-a", "dpm++2m-sde")

MIN_EVALS = 8
"""The fewest trial solves a budget of :func:`tune_timesteps` should take: up to 4 starting points (uniform
steps and the standard spacings), 3 judgements on the held-out draws (uniform, the best start, the search's
result), and at least one step of the search."""


@dataclass
class TunedSteps:
    """An optimized schedule and what it was measured to do.

    Attributes:
        sampler, nfe: what it is for. timesteps: the original-scale times, noisiest first.
        error, error_uniform: mean squared error against the reference solve on the held-out half of the
            draws, with the chosen steps and with uniform steps t_max (1 - k / S) (u = 0; about trailing spacing).
        batch, evals, reference_nfe: the optimization's size.
    """

    sampler: str
    nfe: int
    timesteps: list[float]
    error: float
    error_uniform: float
    batch: int
    evals: int
    reference_nfe: int


def timesteps_of(u: np.ndarray, t_max: float) -> list[float]:
    """The times of the parameters ``u: [S]`` (module docstring), noisiest first."""
    w = np.exp(u - u.max())
    c = np.concatenate([[0.0], np.cumsum(w / w.sum())[:-1]])
    return (t_max * (1.0 - c)).tolist()


def parameters_of(times: list[float], t_max: float) -> np.ndarray:
    """The inverse of :func:`timesteps_of` (a last step at t = 0 gets a share of e^-20)."""
    c = 1.0 - np.asarray(times, dtype=np.float64) / t_max
    w = np.diff(np.concatenate([c, [1.0]]))
    return np.log(np.maximum(w, np.exp(-20.0)))


def tuning_steps(sampler: str, nfe: int) -> int:
    """How many step times ``sampler`` has to tune at ``nfe`` evaluations. Tuned times run as an explicit list,
    where plain Heun makes 2 S - 1 evaluations on S steps; ``ValueError`` for what cannot be tuned."""
    if sampler not in SAMPLERS:  # each trial would fail, and tuning would return uniform steps as its finding
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler in STOCHASTIC:
        raise ValueError(f"{sampler} is stochastic: tune a deterministic sampler (ddim, euler, heun, dpm++2m, "
                         "dpm++3m, dpm++2s, unipc, unipc-bh1), whose error has one reference")
    if sampler == "heun":
        if nfe % 2 == 0:
            raise ValueError("heun's tuned steps take an odd --nfe (2 S - 1 evaluations on S steps)")
        return (nfe + 1) // 2
    return steps_for_nfe(sampler, nfe)


@torch.no_grad()
def reference_solve(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, cond: Mapping[str, Tensor] | None = None,
                    reference_nfe: int = 500, clip_denoised: bool = False) -> Tensor:
    """The fine solve tuning measures against: UniPC on ``reference_nfe`` trailing (uniform) steps from
    ``x_T: [B, ...]``, x0 of the same shape. Compute it once to tune several budgets on the same draws."""
    if not 1 <= reference_nfe <= diffusion.num_steps:
        raise ValueError(f"reference_nfe must lie in 1..{diffusion.num_steps} (the diffusion's steps), got "
                         f"{reference_nfe}")
    return sample(model, diffusion, x_T.shape, sampler="unipc", steps=reference_nfe, spacing="trailing", x_T=x_T,
                  clip_denoised=clip_denoised, progress=False, **dict(cond or {}))


@torch.no_grad()
def tune_timesteps(model: Model, diffusion: GaussianDiffusion, sampler: SamplerName, nfe: int, x_T: Tensor,
                   cond: Mapping[str, Tensor] | None = None, evals: int = 600, reference_nfe: int = 500,
                   clip_denoised: bool = False, progress: bool = True, reference: Tensor | None = None) -> TunedSteps:
    """The times for ``sampler`` at ``nfe`` evaluations that minimize its error on ``model`` from ``x_T: [B, ...]``
    (with ``cond``), against UniPC with ``reference_nfe`` trailing steps; at most ``evals`` trial solves.
    ``reference``: that solve, ``reference_solve``'s output for the same arguments, when already computed."""
    steps = tuning_steps(sampler, nfe)
    if steps < 2:
        raise ValueError("tuning needs at least 2 steps")
    if steps > diffusion.num_steps:
        raise ValueError(f"{sampler} at nfe {nfe} takes {steps} steps, more than the diffusion's {diffusion.num_steps}")
    cond = dict(cond or {})
    if reference is None:
        reference = reference_solve(model, diffusion, x_T, cond, reference_nfe, clip_denoised)
    elif reference.shape != x_T.shape:
        raise ValueError(f"reference has shape {tuple(reference.shape)}, x_T {tuple(x_T.shape)}")
    t_max = float(diffusion.schedule.timesteps[-1])
    # Half of the draws choose the steps, the other half judges them: tuned steps are kept only if they also
    # beat the best standard spacing on draws they were not fitted to (few trials can overfit the fitting half).
    half = max(len(x_T) // 2, 1)
    fit, held = (slice(0, half), slice(half, None)) if len(x_T) > 1 else (slice(None), slice(None))
    bar = tqdm(total=evals, desc=f"tuning {sampler} @ {nfe} NFE", disable=not progress, leave=False)

    def solver_error(part: slice):
        x, c = x_T[part], {k: v[part] for k, v in cond.items()}
        run = dict(x_T=x, clip_denoised=clip_denoised, progress=False, **c)
        target = reference[part]

        def error(u: np.ndarray) -> float:
            bar.update(1)
            try:
                x0 = sample(model, diffusion, x.shape, sampler=sampler, timesteps=timesteps_of(u, t_max), **run)
            except ValueError:  # two steps so close that they round to one time
                return 1e30
            value = float((x0 - target).double().pow(2).mean())
            return value if np.isfinite(value) else 1e30

        return error

    error, judge = solver_error(fit), solver_error(held)
    starts = [np.zeros(steps)]
    zero_snr = diffusion.schedule.zero_terminal_snr  # no finite largest sigma for karras or logsnr
    for spacing in ("linspace",) if zero_snr else ("linspace", "logsnr", "karras"):
        times = diffusion.respace(steps, spacing).schedule.timesteps.double().flip(0).tolist()
        starts.append(parameters_of(times, t_max))
    errors = [error(u) for u in starts]
    u0 = starts[int(np.argmin(errors))]
    found = minimize(error, u0, method="Nelder-Mead",
                     options={"maxfev": max(evals - len(starts) - 3, 1), "xatol": 1e-3,
                              "fatol": 1e-12 * max(min(errors), 1e-30)})
    bar.close()
    uniform, start_held, found_held = judge(starts[0]), judge(u0), judge(found.x)
    # The best on the held-out draws; uniform steps first, so that a search that gained nothing keeps them.
    value, _, best = min((uniform, 0, starts[0]), (start_held, 1, u0), (found_held, 2, found.x))
    return TunedSteps(sampler, nfe, timesteps_of(best, t_max), value, uniform, len(x_T),
                      int(found.nfev) + len(starts) + 3, reference_nfe)
