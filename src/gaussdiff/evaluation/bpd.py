"""The likelihood of a trained model the way the DDPM and Improved DDPM papers measure it.

- :func:`evaluate_bpd`: the variational bound in bits/dim on held-out 8-bit data, mean and standard
  error, split into L_0, sum L_{t-1} and L_T, with the per-step terms and progressive
  compression's rate and distortion (Ho et al. 2020 §4.3, Fig. 5; Nichol & Dhariwal 2021 Fig. 2).
- :func:`evaluate_ode`: bits/dim from the probability-flow ODE (:mod:`gaussdiff.diffusion.likelihood`).

A conditional model is measured given the held-out data's own conditions (``cond``: each ``[N, ...]``),
so that the figure is the likelihood of the model that samples: log p(x0 | c). A latent run is measured
on the latents of the images: its bits/dim are in latent units, not comparable with an image's (the
bound's decoder term is the 8-bit one of images, applied to latents).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.likelihood import ode_likelihood, rate_distortion
from ..diffusion.process import Likelihood
from ..training.run import Trained


@dataclass
class BpdReport:
    """The bound on ``n`` held-out images, bits/dim. Per-step lists are indexed by the schedule's step."""

    n: int
    steps: int
    bpd: float
    bpd_stderr: float
    l0: float
    sum_l_t: float
    prior: float
    timesteps: list[int]
    vb_per_step: list[float]
    rate: list[float]
    distortion: list[float]

    def summary(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if not isinstance(v, list)}


def _check(images: Tensor, cond: Mapping[str, Tensor], batch_size: int) -> None:
    """Refuse no images, a batch size below 1, and a condition that is not one row an image, naming them."""
    if len(images) < 1 or batch_size < 1:
        raise ValueError(f"bits/dim needs at least one image and batch_size >= 1, got {len(images)} and {batch_size}")
    for key, value in cond.items():  # one row would broadcast to every image, silently
        if len(value) != len(images):
            raise ValueError(f"the condition {key} has {len(value)} rows for {len(images)} images")


def _batches(trained: Trained, images: Tensor, cond: Mapping[str, Tensor], batch_size: int):
    """``(x0, cond of those b)`` on the model's device, batch by batch: x0 the pixels in [-1, 1], or their latents."""
    for i in range(0, len(images), batch_size):
        yield (trained.x0_of(images[i : i + batch_size]),
               {k: v[i : i + batch_size].to(trained.device) for k, v in cond.items()})


def _mean_stderr(x: Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std() / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def evaluate_bpd(
    trained: Trained,
    images: Tensor,
    cond: Mapping[str, Tensor] | None = None,
    steps: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> BpdReport:
    """The variational bound of ``images`` (``uint8 [N, C, H, W]``) given ``cond``, on a respaced schedule if
    ``steps``."""
    _check(images, cond or {}, batch_size)
    diffusion = trained.diffusion if steps is None else trained.diffusion.respace(steps)
    g = torch.Generator(trained.device).manual_seed(seed)
    parts = []
    batches = _batches(trained, images, cond or {}, batch_size)
    count = -(-len(images) // batch_size)
    # One bar: over the batches when there are several, else over the one batch's steps (two nested bars write
    # cursor moves that garble a log file).
    for x0, c in tqdm(batches, desc="bpd", total=count, disable=not progress or count == 1, leave=False):
        parts.append(diffusion.bpd(trained.model, x0, clip_denoised=trained.clip_denoised, generator=g,
                                   progress=progress and count == 1, **c))
    like = Likelihood(*(torch.cat([getattr(p, f.name) for p in parts]).cpu().double() for f in fields(Likelihood)))
    rd = rate_distortion(like, diffusion.schedule.timesteps)
    bpd, bpd_stderr = _mean_stderr(like.total)
    return BpdReport(
        n=len(images),
        steps=diffusion.num_steps,
        bpd=bpd,
        bpd_stderr=bpd_stderr,
        l0=float(like.vb[:, 0].mean()),
        sum_l_t=float(like.vb[:, 1:].sum(1).mean()),
        prior=float(like.prior.mean()),
        timesteps=diffusion.schedule.timesteps.tolist(),
        vb_per_step=like.vb.mean(0).tolist(),
        rate=rd.rate.tolist(),
        distortion=rd.distortion.tolist(),
    )


def rate_distortion_rows(report: BpdReport, rows: int = 8) -> list[tuple[int, float, float]]:
    """A few (t, rate, distortion) rows, evenly over the steps from the noisiest to t = 0, for a table."""
    if rows < 2:
        raise ValueError(f"rows must be at least 2 (the noisiest step and t = 0), not {rows}")
    idx = sorted({round(i * (len(report.timesteps) - 1) / (rows - 1)) for i in range(rows)}, reverse=True)
    return [(report.timesteps[i], report.rate[i], report.distortion[i]) for i in idx]


def evaluate_ode(trained: Trained, images: Tensor, cond: Mapping[str, Tensor] | None = None, batch_size: int = 256,
                 seed: int = 0) -> dict[str, float]:
    """Bits/dim of the probability-flow ODE (Hutchinson; dequantized on pixels, not on a latent run's latents) given
    ``cond``: ``ode_bpd``, its standard error ``ode_bpd_stderr``, and ``ode_nfe``, the most evaluations a batch
    took."""
    _check(images, cond or {}, batch_size)
    g = torch.Generator(trained.device).manual_seed(seed)
    diffusion = trained.diffusion

    def eps_model(x_t: Tensor, t: Tensor, **c: Tensor) -> Tensor:
        return diffusion.eps_at(trained.model(x_t, t, **c), x_t, t)

    bpds, nfe = [], 0
    for x0, c in _batches(trained, images, cond or {}, batch_size):
        r = ode_likelihood(eps_model, diffusion, x0, dequantize=trained.latent is None, generator=g, **c)
        bpds.append(r.bpd)
        nfe = max(nfe, r.nfe)
    bpd, stderr = _mean_stderr(torch.cat(bpds))
    return {"ode_bpd": bpd, "ode_bpd_stderr": stderr, "ode_nfe": nfe}
