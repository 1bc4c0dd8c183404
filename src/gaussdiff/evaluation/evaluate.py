"""Measuring a trained model the way the DDPM and Improved DDPM papers do.

- :func:`evaluate_bpd`: the variational bound in bits/dim on held-out 8-bit data, mean and standard
  error, split into L_0, sum L_{t-1} and L_T, with the per-step terms and progressive
  compression's rate and distortion (Ho et al. 2020 §4.3, Table 2; Nichol & Dhariwal 2021 Fig. 2).
- :func:`generate` and :func:`evaluate_quality`: FID, KID, precision/recall and (for conditional
  samples) the domain classifier's accuracy, against the real training set.
- :func:`evaluate_ode`: bits/dim from the probability-flow ODE (:mod:`gaussdiff.likelihood`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..training.run import GuidanceOptions, Trained, sampling_model
from ..training.config import ConfigError
from ..data.datasets import ImageData, to_model_range, to_uint8
from ..diffusion.process import Likelihood
from .features import ExtractorName, make_extractor, reference_features
from ..diffusion.likelihood import ode_likelihood, rate_distortion
from .metrics import fid_from_features, kernel_inception_distance, precision_recall
from ..samplers.ddpm import sample


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


def evaluate_bpd(
    trained: Trained,
    images: Tensor,
    steps: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> BpdReport:
    """The variational bound of ``images`` (``uint8 [N, C, H, W]``), on a respaced schedule if ``steps``."""
    diffusion = trained.diffusion if steps is None else trained.diffusion.respace(steps)
    device = next(trained.model.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    parts = []
    for i in tqdm(range(0, len(images), batch_size), desc="bpd", disable=not progress, leave=False):
        x0 = to_model_range(images[i : i + batch_size]).to(device)
        parts.append(diffusion.bpd(trained.model, x0, clip_denoised=True, generator=g, progress=progress))
    like = Likelihood(*(torch.cat([getattr(p, f.name) for p in parts]).cpu().double() for f in fields(Likelihood)))
    rd = rate_distortion(like, diffusion.schedule.timesteps)
    n = len(images)
    return BpdReport(
        n=n,
        steps=diffusion.num_steps,
        bpd=float(like.total.mean()),
        bpd_stderr=float(like.total.std() / math.sqrt(n)) if n > 1 else float("nan"),
        l0=float(like.vb[:, 0].mean()),
        sum_l_t=float(like.vb[:, 1:].sum(1).mean()),
        prior=float(like.prior.mean()),
        timesteps=diffusion.schedule.timesteps.tolist(),
        vb_per_step=like.vb.mean(0).tolist(),
        rate=rd.rate.tolist(),
        distortion=rd.distortion.tolist(),
    )


def rate_distortion_rows(report: BpdReport, rows: int = 8) -> list[tuple[int, float, float]]:
    """A few (t, rate, distortion) rows, evenly over the steps, for a table."""
    idx = sorted({round(i * (len(report.timesteps) - 1) / (rows - 1)) for i in range(rows)}, reverse=True)
    return [(report.timesteps[i], report.rate[i], report.distortion[i]) for i in idx]


def generate(
    trained: Trained,
    n: int,
    sampler: str = "ddim",
    steps: int | None = 50,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 256,
    labels: Tensor | None = None,
    guidance: GuidanceOptions | None = None,
    progress: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """``n`` samples as ``uint8 [n, C, H, W]``, conditioned on ``labels: [n]`` and guided as asked,
    with the labels they were drawn with (None for an unconditional, unguided model).

    A conditional or guided model without ``labels`` samples classes uniformly from the seed.
    """
    d = trained.config.data
    device = next(trained.model.parameters()).device
    diffusion = trained.diffusion if steps is None else trained.diffusion.respace(steps)
    model, needs_labels = sampling_model(trained, diffusion, sampler, guidance or GuidanceOptions())
    if needs_labels and labels is None:
        if d.num_classes is None:
            raise ConfigError("guidance needs class labels, and this run's data has none")
        labels = torch.randint(0, d.num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    g = torch.Generator(device).manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress or n <= batch_size, leave=False):
        b = min(batch_size, n - i)
        cond = {"y": labels[i : i + b].to(device)} if needs_labels else {}
        x = sample(model, diffusion, (b, d.image_channels, d.image_size, d.image_size), sampler=sampler,  # type: ignore[arg-type]
                   eta=eta, generator=g, clip_denoised=True, progress=progress and n <= batch_size, device=device, **cond)
        out.append(to_uint8(x).cpu())
    return torch.cat(out), labels if needs_labels else None


@dataclass
class QualityReport:
    n: int
    features: str
    fid: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    accuracy: float | None = None
    """The domain classifier's agreement with the requested labels (conditional samples)."""


def evaluate_quality(
    images: Tensor,
    data_name: str,
    reference: ImageData,
    features: ExtractorName = "classifier",
    labels: Tensor | None = None,
    reference_limit: int | None = None,
    device: str = "cpu",
) -> QualityReport:
    """Sample quality of ``uint8 [N, C, H, W]`` images against ``reference`` (the real training set)."""
    extractor = make_extractor(features, data_name, reference, device=device)
    real = reference_features(extractor, data_name, reference, limit=reference_limit)
    fake = extractor(images)
    kid, kid_std = kernel_inception_distance(real, fake.features, subsets=50)
    precision, recall = precision_recall(real, fake.features)
    accuracy = None
    if labels is not None and fake.logits is not None:
        accuracy = float((fake.logits.argmax(1) == labels).double().mean())
    return QualityReport(len(images), features, fid_from_features(real, fake.features), kid, kid_std, precision, recall, accuracy)


def evaluate_ode(trained: Trained, images: Tensor, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Bits/dim of the probability-flow ODE (dequantized, Hutchinson), mean and standard error."""
    device = next(trained.model.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    diffusion = trained.diffusion

    def eps_model(x_t: Tensor, t: Tensor) -> Tensor:
        out = trained.model(x_t, t)
        pred, _ = diffusion.split_output(out, x_t)  # a learned variance plays no part in the ODE
        # Convert an x0 or v prediction to eps at continuous t through alpha_bar(t).
        if diffusion.prediction == "eps":
            return pred
        ab = diffusion.schedule.alpha_bar_at(t).to(x_t.device, x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))
        x0 = pred if diffusion.prediction == "x0" else ab.sqrt() * x_t - (1 - ab).sqrt() * pred
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    bpds, nfe = [], 0
    for i in range(0, len(images), batch_size):
        r = ode_likelihood(eps_model, diffusion, to_model_range(images[i : i + batch_size]).to(device), generator=g)
        bpds.append(r.bpd)
        nfe = max(nfe, r.nfe)
    b = torch.cat(bpds)
    return {"ode_bpd": float(b.mean()), "ode_bpd_stderr": float(b.std() / math.sqrt(len(b))) if len(b) > 1 else float("nan"), "ode_nfe": nfe}
