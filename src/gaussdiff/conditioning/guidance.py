"""Guidance as model wrappers: each keeps ``model(x_t, t, **cond)``, so every sampler works unchanged.

- :class:`ClassifierFreeGuidance` (Ho & Salimans 2022): eps~ = (w + 1) eps(x_t, t, c) - w eps(x_t, t),
  both branches in one batched forward pass, the unconditional one with every condition replaced by
  its null (:mod:`gaussdiff.conditioning.conditions`). w = 0 is the plain conditional model.
  The combination is applied to the model's prediction: its weights w + 1 and -w sum to one, and x0 and v
  are affine in eps at a given (x_t, t), so it means the same for every parameterization.
  A learned variance is taken from the conditional branch.
- :class:`ClassifierGuidance` (Dhariwal & Nichol 2021) with a noise-aware classifier p_phi(y | x_t, t):
  ``mode="eps"`` (their Algorithm 2, for DDIM): eps~ = eps - s sqrt(1 - alpha_bar_t) grad log p_phi(y | x_t);
  ``mode="mean"`` (their Algorithm 1, for ancestral sampling): the mean of p(x_{t-1} | x_t) moves by
  s Sigma grad log p_phi(y | x_t), which the wrapper returns as the equivalent change of the model's
  prediction (x0 moves by s Sigma grad / c_x0, c_x0 the posterior-mean coefficient of x0; exact when
  x0 is not clipped). The wrapper is given the diffusion the sampler runs on (respaced or not).
  Dhariwal & Nichol pair Algorithm 1 with ancestral sampling and Algorithm 2 with DDIM;
  :data:`PAIRED_MODE` keeps that pairing as data, and ``--classifier-mode`` overrides it.

:func:`guide` wraps a model as a :class:`GuidanceConfig` asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model, to_eps, to_prediction, to_x0
from ..diffusion.schedule import extract
from ..errors import ConfigError, check_finite_at_least_zero
from .conditions import Condition, null_conditions

GuidanceMode = Literal["mean", "eps"]
# Dhariwal & Nichol 2021: Algorithm 1 (the mean moves) for ancestral sampling, Algorithm 2 (eps moves) for DDIM.
# Ancestral sampling pairs with the mean shift; every other sampler (DDIM, the ODE solvers, Euler ancestral, the
# SDE solver) with the eps form, which holds at any noise level, between the training steps too.
PAIRED_MODE: dict[str, GuidanceMode] = {"ddpm": "mean"}


def paired_mode(sampler: str) -> GuidanceMode:
    """The classifier-guidance form that goes with ``sampler`` (Dhariwal & Nichol Alg. 1 or 2)."""
    return PAIRED_MODE.get(sampler, "eps")


@dataclass(frozen=True)
class GuidanceConfig:
    """How to steer sampling: classifier-free scale w, and/or a noise-aware classifier with scale s."""

    guidance: float = 0.0
    """Classifier-free guidance weight w (0: the plain conditional model)."""
    classifier: Path | None = None
    """A classifier run from ``gaussdiff train-classifier`` for classifier guidance."""
    classifier_scale: float = 1.0
    """Classifier guidance scale s."""
    classifier_mode: Literal["paired", "mean", "eps"] = "paired"
    """Which update classifier guidance moves: ``mean`` (Algorithm 1), ``eps`` (Algorithm 2), or ``paired``:
    the paper's pairing, mean for ddpm and eps for every other sampler."""

    def check(self) -> None:
        """Refuse a scale that is not a finite number >= 0 (NaN would pass a plain ``< 0`` and sample NaN images)."""
        check_finite_at_least_zero("--guidance", self.guidance)
        check_finite_at_least_zero("--classifier-scale", self.classifier_scale)


class ClassifierFreeGuidance:
    """``(w + 1) model(x_t, t, **cond) - w model(x_t, t, **null cond)`` in one batched call.

    Args:
        model: a conditional ``model(x_t, t, **cond)`` that learned the null of each condition as
            its unconditional branch.
        scale: w >= 0.
        conditions: the conditions to guide by (each replaced by its null in the unconditional branch).
        variance_channels: how many trailing output channels (on dim 1) are a learned variance,
            which is not guided (0 for fixed variance; C for a 2C-channel output).
    """

    def __init__(self, model: Model, scale: float, conditions: Sequence[Condition], variance_channels: int = 0) -> None:
        check_finite_at_least_zero("scale", scale)  # NaN would pass a plain < 0 and sample NaN images
        self.model = model
        self.scale = scale
        self.conditions = tuple(conditions)
        self.variance_channels = variance_channels

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        null = null_conditions(cond, self.conditions)
        both = {k: torch.cat([v, null[k]]) for k, v in cond.items()}
        out = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), **both)
        conditional, unconditional = out.chunk(2)
        guided = (self.scale + 1.0) * conditional - self.scale * unconditional
        if self.variance_channels:
            c = self.variance_channels
            guided = torch.cat([guided[:, :-c], conditional[:, -c:]], dim=1)
        return guided


def classifier_log_prob_grad(classifier: Callable[..., Tensor], x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """grad_{x_t} log p_phi(y | x_t, t), ``[B, ...]``; the classifier returns logits ``[B, K]``."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = torch.log_softmax(classifier(x, t).float(), dim=-1)
        selected = log_probs[torch.arange(len(y), device=y.device), y]
        (grad,) = torch.autograd.grad(selected.sum(), x)
    return grad


class ClassifierGuidance:
    """Dhariwal & Nichol's classifier guidance around a diffusion model (see the module docstring).

    Args:
        model: the diffusion model (conditional or not); ``y`` is passed on if it is conditional.
        classifier: ``classifier(x_t, t) -> logits`` on the original timestep scale.
        diffusion: the diffusion the sampler uses (respaced when sampling strided).
        scale: s >= 0.
        mode: ``"mean"`` for ancestral sampling (Algorithm 1), ``"eps"`` for DDIM (Algorithm 2).
        pass_labels: whether the diffusion model itself takes ``y``.
    """

    def __init__(
        self,
        model: Model,
        classifier: Callable[..., Tensor],
        diffusion: GaussianDiffusion,
        scale: float,
        mode: GuidanceMode = "mean",
        pass_labels: bool = False,
    ) -> None:
        if mode not in ("mean", "eps"):
            raise ValueError(f"unknown guidance mode {mode!r}; choose mean or eps")
        check_finite_at_least_zero("scale", scale)
        self.model, self.classifier, self.diffusion = model, classifier, diffusion
        self.scale, self.mode, self.pass_labels = scale, mode, pass_labels

    def _index(self, t: Tensor) -> Tensor:
        """This diffusion's step for each original-scale ``t``."""
        steps = self.diffusion.schedule.timesteps.to(t.device)
        idx = torch.searchsorted(steps, t.long())
        if not bool((steps[idx.clamp(max=len(steps) - 1)] == t).all()):
            raise ConfigError("classifier guidance in its mean form needs the sampler's steps on the schedule's "
                              "steps: use --classifier-mode eps with karras, logsnr or tuned steps")
        return idx

    def __call__(self, x_t: Tensor, t: Tensor, y: Tensor | None = None, **cond: Tensor) -> Tensor:
        if y is None:
            raise ValueError("classifier guidance needs class labels y")
        output = self.model(x_t, t, y=y, **cond) if self.pass_labels else self.model(x_t, t, **cond)
        if self.scale == 0:
            return output
        d = self.diffusion
        grad = classifier_log_prob_grad(self.classifier, x_t, t, y).to(x_t.dtype)
        output = output.to(x_t.dtype)
        pred, var_part = d.split_output(output, x_t)
        if self.mode == "eps":
            # At the model's own (possibly non-integer) time: alpha_bar of the continuous schedule, exact at steps.
            coefs = d.coefficients_at(t, x_t)
            eps = to_eps(x_t, to_x0(d.prediction, pred, x_t, *coefs), *coefs)
            eps = eps - self.scale * coefs[1] * grad
            guided = to_prediction(d.prediction, to_x0("eps", eps, x_t, *coefs), eps, *coefs)
            # At zero SNR (alpha_bar = 0: a zero-terminal-SNR run's first step) x_t says nothing of the class.
            guided = torch.where(coefs[0] > 0, guided, pred)
        else:
            i = self._index(t)
            est = d.posterior_estimate(output, x_t, i)
            coef = extract(d.schedule.posterior_mean_coef_x0, i, x_t)
            x0 = est.x0 + self.scale * est.variance * grad / coef
            guided = d.prediction_target(x0, d.eps_from_x0(x_t, i, x0), i)
        return guided if var_part is None else torch.cat([guided, var_part], dim=1)


def guide(
    model: Model,
    diffusion: GaussianDiffusion,
    config: GuidanceConfig,
    sampler: str,
    conditions: Sequence[Condition],
    variance_channels: int = 0,
    classifier: Callable[..., Tensor] | None = None,
) -> Model:
    """``model`` wrapped for the guidance ``config`` asks for, for sampling with ``sampler`` on ``diffusion``.

    ``conditions`` are the model's own; ``classifier`` is the loaded network of ``config.classifier``.
    Classifier-free guidance wraps first, so that classifier guidance moves the guided prediction.
    """
    config.check()
    if config.guidance > 0:
        if not conditions:
            raise ConfigError("classifier-free guidance needs a conditional run (--class-conditional or --text, "
                              "with --p-uncond 0.1)")
        model = ClassifierFreeGuidance(model, config.guidance, conditions, variance_channels)
    if classifier is not None:
        mode = paired_mode(sampler) if config.classifier_mode == "paired" else config.classifier_mode
        model = ClassifierGuidance(model, classifier, diffusion, config.classifier_scale, mode=mode,
                                   pass_labels=any(c.key == "y" for c in conditions))
    return model
