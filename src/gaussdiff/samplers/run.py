"""The front door: :func:`sample` runs a sampler by name, on all or a respacing of the steps."""

from __future__ import annotations

import math
from typing import Literal, Sequence, get_args

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model
from ..diffusion.schedule import Spacing
from .base import Callback, Generators, Sampler, randn
from .ddpm import ancestral, ddim
from .karras import euler, euler_ancestral, heun, heun_budget, heun_within
from .solvers import dpm_solver_2m, dpm_solver_2m_sde, dpm_solver_2s, dpm_solver_3m, unipc, unipc_bh1

SamplerName = Literal["ddpm", "ddim", "euler", "euler-a", "heun", "dpm++2m", "dpm++3m", "dpm++2s", "dpm++2m-sde",
                      "unipc", "unipc-bh1"]

SAMPLERS: dict[str, Sampler] = {
    "ddpm": ancestral, "ddim": ddim, "euler": euler, "euler-a": euler_ancestral, "heun": heun,
    "dpm++2m": dpm_solver_2m, "dpm++3m": dpm_solver_3m, "dpm++2s": dpm_solver_2s, "dpm++2m-sde": dpm_solver_2m_sde,
    "unipc": unipc, "unipc-bh1": unipc_bh1,
}
assert set(SAMPLERS) == set(get_args(SamplerName))

# The eta a sampler runs with when none is given: deterministic, except the samplers that are stochastic by nature.
DEFAULT_ETA = {"euler-a": 1.0}
# The samplers that read eta: DDIM's stochasticity, S_churn of Euler and Heun, Euler ancestral's noise scale.
TAKES_ETA = ("ddim", "euler", "heun", "euler-a")

# The steps a sampler takes when none are named (spacing "auto"). DPM-Solver++ and UniPC end with a step from
# their last time to zero noise, so linspace's last evaluation, at t = 0, is spent where the sample is already
# x0; trailing steps spend every evaluation at a noise level (Lin et al. 2024 recommend them too). On the
# mixture of bench/fewstep.py trailing cut UniPC's distance 7x at 5 NFE and 3.6x at 20, DPM++2M's 4x and 2.4x,
# and on the digits main job DPM++2M's FID at 8 NFE from 5.92 to 3.67. DDPM and DDIM keep linspace, as before.
TRAILING = ("dpm++2m", "dpm++3m", "dpm++2s", "dpm++2m-sde", "unipc", "unipc-bh1")


def default_spacing(sampler: str) -> Spacing:
    """The spacing ``"auto"`` means for ``sampler``: trailing for DPM-Solver++ and UniPC, else linspace."""
    return "trailing" if sampler in TRAILING else "linspace"


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """How many steps make exactly ``nfe`` network evaluations: one a step, except Heun's two (one on the last
    step, to zero noise, and on its first one or two steps, :func:`~.karras.heun_budget`).

    One evaluation is one call of the model on the batch; a guidance wrapper that runs its conditional and
    unconditional halves as one batched call counts once (it costs about twice a plain call).
    """
    if nfe < 1:
        raise ValueError(f"{sampler} needs nfe >= 1, got {nfe}")
    return heun_budget(nfe)[0] if sampler == "heun" else nfe


def plan(
    diffusion: GaussianDiffusion,
    sampler: SamplerName,
    steps: int | None = None,
    nfe: int | None = None,
    spacing: Spacing | Literal["auto"] = "auto",
    timesteps: Sequence[float] | None = None,
) -> tuple[GaussianDiffusion, Sampler]:
    """The diffusion a sampler walks (respaced to ``steps``, to the steps of an ``nfe`` budget, or to explicit
    ``timesteps``, noisiest first) and the sampler function; see :func:`sample` for the arguments."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sum(v is not None for v in (steps, nfe, timesteps)) > 1:
        raise ValueError("give one of steps, nfe and timesteps")
    run = SAMPLERS[sampler]
    spacing = default_spacing(sampler) if spacing == "auto" else spacing
    T = diffusion.num_steps
    if nfe is not None:
        steps = steps_for_nfe(sampler, nfe)
        if steps > T:
            raise ValueError(f"nfe {nfe} takes {steps} steps of {sampler}, more than the diffusion's {T}")
        if sampler == "heun":
            run = heun_within(nfe)
    elif steps is not None and not 1 <= steps <= T:
        raise ValueError(f"steps must lie in 1..{T} (the diffusion's steps), got {steps}")
    if timesteps is not None:
        times = [float(t) for t in timesteps]
        if any(b >= a for a, b in zip(times, times[1:])):
            raise ValueError("timesteps must decrease strictly, noisiest first")
        return diffusion.at(times[::-1]), run
    if steps is not None and (steps != T or spacing in ("karras", "logsnr")):
        if spacing == "leading" and diffusion.schedule.zero_terminal_snr:
            # Lin et al. 2024: a zero-terminal-SNR model must start from its last step, which leading skips.
            raise ValueError("leading spacing skips the last step, where a zero-terminal-SNR model starts: use "
                             "trailing or linspace")
        diffusion = diffusion.respace(steps, spacing)
    return diffusion, run


def sample(
    model: Model,
    diffusion: GaussianDiffusion,
    shape: Sequence[int],
    sampler: SamplerName = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    x_T: Tensor | None = None,
    generator: Generators = None,
    clip_denoised: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
    spacing: Spacing | Literal["auto"] = "auto",
    nfe: int | None = None,
    timesteps: Sequence[float] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **cond: Tensor,
) -> Tensor:
    """Draw samples from a diffusion model.

    Args:
        model: ``model(x_t, t, **cond)``; ``t`` is always on the original 0..T-1 scale.
        diffusion: the process the model was trained with.
        shape: ``[B, ...]`` of the samples (images, latents, points alike).
        sampler: ``"ddpm"`` (ancestral, Algorithm 2), ``"ddim"`` (Song et al. 2021), the Karras et al.
            2022 samplers ``"euler"``, ``"heun"``, ``"euler-a"`` (:mod:`.karras`), DPM-Solver++
            ``"dpm++2m"``, ``"dpm++3m"``, ``"dpm++2s"``, ``"dpm++2m-sde"`` and UniPC ``"unipc"`` (bh2),
            ``"unipc-bh1"`` (:mod:`.solvers`).
        steps: run on this many respaced steps ("every S steps"), 1..T; None for all T.
        eta: DDIM's stochasticity (0 deterministic; 1 matches DDPM's beta_tilde); S_churn of euler and
            heun; euler-a's ancestral noise scale. None: the sampler's default (1 for euler-a, else 0).
        x_T: the starting noise; drawn from N(0, I) with ``generator`` when None. The samples
            follow its dtype and device (else ``dtype`` and ``device``).
        generator: makes the run deterministic; a list of B generators, one per sample, makes each sample
            depend on its own generator only (the same sample in any batch).
        clip_denoised: clip each x0 estimate to [-1, 1] (for data in that range).
        progress: show a tqdm bar.
        callback: called with a :class:`SamplerStep` after every step.
        spacing: which steps ``steps`` keeps (see :meth:`NoiseSchedule.respace`): leading, trailing,
            linspace, or continuous times: karras (rho = 7 sigmas), logsnr (uniform in log-SNR); auto:
            trailing for DPM-Solver++ and UniPC, linspace for the rest (:func:`default_spacing`).
        nfe: the budget of network evaluations instead of ``steps`` (:func:`steps_for_nfe`).
        timesteps: an explicit list of original-scale times, noisiest first, strictly decreasing
            (integers or not; non-integer times are evaluated on the continuous schedule).
        **cond: passed to the model (class labels ``y``, prompt ``tokens``, a super-resolution stage's ``low_res``
            and ``low_res_level``), each ``[B, ...]``.
    Returns:
        ``[B, ...]`` samples.
    """
    diffusion, run = plan(diffusion, sampler, steps, nfe, spacing, timesteps)
    if x_T is None:
        x_T = randn(shape, generator, device, dtype)
    elif tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
    for key, value in cond.items():  # a condition of another batch broadcasts, or fails deep in the model
        if isinstance(value, Tensor) and value.dim() > 0 and len(value) != len(x_T):
            raise ValueError(f"the condition {key} has {len(value)} rows for a batch of {len(x_T)}")
    eta = DEFAULT_ETA.get(sampler, 0.0) if eta is None else eta
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0, got {eta}")
    return run(
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
