"""The Gaussian diffusion process: forward q, reverse p_theta, training losses and bits/dim.

Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (Improved DDPM), Salimans & Ho 2022 (v-prediction).
Notation as in :mod:`gaussdiff.diffusion.schedule`; ``t`` is the 0-based step of *this* diffusion's schedule
(``[B]`` long), and the model is always called on the original scale, ``schedule.timesteps[t]``.

=============================  ==============================================================
symbol                          here
=============================  ==============================================================
x_0, x_t, epsilon               ``x0``, ``x_t``, ``eps``           ``[B, ...]``
v = sqrt(a_bar) eps - sqrt(1-a_bar) x0   ``v``  (Salimans & Ho 2022 §4)
q(x_t | x_0)                    :meth:`GaussianDiffusion.q_mean_variance`, ``q_sample`` (Eq. 4)
q(x_{t-1} | x_t, x_0)           :meth:`GaussianDiffusion.q_posterior` (Eq. 6-7)
p_theta(x_{t-1} | x_t)          :meth:`GaussianDiffusion.p_mean_variance` (Eq. 1, 11; IDDPM Eq. 15)
L_simple, L_vlb, L_hybrid       :meth:`GaussianDiffusion.training_losses` (Eq. 14; IDDPM Eq. 16)
=============================  ==============================================================

The diffusion object owns no weights: every method that needs the network takes it as
``model(x_t, t, **cond)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError
from .losses import discretized_gaussian_log_likelihood, mean_flat, nats_to_bits, normal_kl
from .schedule import NoiseSchedule, ScheduleName, Spacing, extract
from .timestep_sampling import TimestepSamplerName

Prediction = Literal["eps", "x0", "v"]
Variance = Literal["fixed_small", "fixed_large", "learned", "learned_range"]
LossType = Literal["mse", "l1", "kl", "rescaled_kl", "hybrid"]
Model = Callable[..., Tensor]


def model_output(output: object, x_t: Tensor) -> Tensor:
    """The network's output, a tensor ``[B, C, ...]`` (or ``[B, 2C, ...]``), in x_t's dtype. Anything else (a tuple, the
    output object of diffusers' ``UNet2DModel``) is refused in one line that says how to unwrap it, where ``.to``
    would fail with an AttributeError."""
    if not isinstance(output, Tensor):
        raise TypeError(f"the model returned a {type(output).__name__}, not a Tensor: a network that returns more is "
                        "wrapped to return its prediction, as lambda x_t, t, **cond: unet(x_t, t, **cond).sample for "
                        "diffusers' UNet2DModel (or load a diffusers folder with gaussdiff.training.load_trained)")
    return output.to(x_t.dtype)


def to_x0(prediction: Prediction, pred: Tensor, x_t: Tensor, sqrt_ab: Tensor, sqrt_1m_ab: Tensor) -> Tensor:
    """The x0 a prediction implies, from x_t = sqrt(a_bar) x0 + sqrt(1 - a_bar) eps (Eq. 4).

    eps: x0 = (x_t - sqrt(1 - a_bar) eps) / sqrt(a_bar); v (Salimans & Ho 2022 §4):
    x0 = sqrt(a_bar) x_t - sqrt(1 - a_bar) v. ``sqrt_ab``, ``sqrt_1m_ab`` broadcast against ``x_t``;
    they may come from a step of the schedule or from a continuous t (the probability-flow ODE).
    """
    if prediction == "eps":
        return (x_t - sqrt_1m_ab * pred) / sqrt_ab
    if prediction == "x0":
        return pred
    return sqrt_ab * x_t - sqrt_1m_ab * pred


def to_eps(x_t: Tensor, x0: Tensor, sqrt_ab: Tensor, sqrt_1m_ab: Tensor) -> Tensor:
    """eps = (x_t - sqrt(a_bar) x0) / sqrt(1 - a_bar) (Eq. 4 solved for eps)."""
    return (x_t - sqrt_ab * x0) / sqrt_1m_ab


def to_prediction(prediction: Prediction, x0: Tensor, eps: Tensor, sqrt_ab: Tensor, sqrt_1m_ab: Tensor) -> Tensor:
    """What a model of type ``prediction`` should output for this x0 and eps: eps, x0, or
    v = sqrt(a_bar) eps - sqrt(1 - a_bar) x0."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return sqrt_ab * eps - sqrt_1m_ab * x0


@dataclass
class PosteriorEstimate:
    """p_theta(x_{t-1} | x_t) = N(mean, variance), and the estimates it was built from.

    All tensors ``[B, ...]`` like ``x_t``; ``x0`` is clipped when clipping was asked for and
    ``eps`` is re-derived from that ``x0``, so the two always agree with ``x_t``.
    """

    mean: Tensor
    variance: Tensor
    log_variance: Tensor
    x0: Tensor
    eps: Tensor


@dataclass
class Likelihood:
    """The variational bound of :meth:`GaussianDiffusion.bpd`, in bits/dim.

    Attributes:
        total: ``[B]`` L_T + sum_t L_{t-1} + L_0 per example.
        prior: ``[B]`` L_T = KL(q(x_T | x0) || N(0, I)).
        vb: ``[B, T]`` the terms L_{t-1} (decoder NLL L_0 at index 0).
        x0_mse: ``[B, T]`` mean squared error of the x0 estimate at each step.
        eps_mse: ``[B, T]`` mean squared error of the eps estimate at each step.
    """

    total: Tensor
    prior: Tensor
    vb: Tensor
    x0_mse: Tensor
    eps_mse: Tensor


class GaussianDiffusion:
    """Forward and reverse Gaussian diffusion on a :class:`NoiseSchedule`.

    Args:
        schedule: the betas (possibly respaced).
        prediction: what the model's (first C channels of) output estimate: ``"eps"`` (Ho et al.),
            ``"x0"``, or ``"v"`` (Salimans & Ho 2022).
        variance: Sigma_theta of p(x_{t-1} | x_t): ``"fixed_small"`` = beta_tilde_t,
            ``"fixed_large"`` = beta_t (beta_tilde_1 at t = 0, as improved-diffusion), ``"learned"``
            = the model's extra C channels are log sigma^2, ``"learned_range"`` = they are v in
            [-1, 1] interpolating log beta_tilde_t and log beta_t (Improved DDPM Eq. 15).
        loss: ``"mse"`` (L_simple, Algorithm 1), ``"l1"``, ``"kl"`` (the variational bound term
            L_{t-1} in bits), ``"rescaled_kl"`` (that times T, the scale of the whole bound),
            ``"hybrid"`` (L_simple + lambda L_vlb with the mean's gradient stopped in the vlb term,
            Improved DDPM Eq. 16; improved-diffusion's RESCALED_MSE).
        vlb_weight: lambda of the hybrid loss; the bound is summed over T steps, so the per-step
            term is weighted by ``vlb_weight * T``.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: Prediction = "eps",
        variance: Variance = "fixed_small",
        loss: LossType = "mse",
        vlb_weight: float = 1e-3,
    ) -> None:
        for name, value, choices in (
            ("prediction", prediction, get_args(Prediction)),
            ("variance", variance, get_args(Variance)),
            ("loss", loss, get_args(LossType)),
        ):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if variance in ("learned", "learned_range") and loss in ("mse", "l1"):
            raise ValueError(
                f"variance {variance!r} is trained only by the bound: use loss 'hybrid', 'kl' or 'rescaled_kl'"
            )
        self.schedule = schedule
        self.prediction: Prediction = prediction
        self.variance: Variance = variance
        self.loss: LossType = loss
        self.vlb_weight = vlb_weight

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion({self.schedule!r}, prediction={self.prediction!r}, "
            f"variance={self.variance!r}, loss={self.loss!r})"
        )

    @property
    def num_steps(self) -> int:
        """T of this diffusion's schedule."""
        return len(self.schedule)

    @property
    def learns_variance(self) -> bool:
        """Whether the model outputs 2C channels (mean part, then variance part) on dim 1."""
        return self.variance in ("learned", "learned_range")

    def out_channels(self, channels: int) -> int:
        """How many output channels a model needs for data with ``channels`` channels."""
        return 2 * channels if self.learns_variance else channels

    def respace(self, steps: int, spacing: Spacing = "linspace") -> GaussianDiffusion:
        """The same process on ``steps`` of the schedule's steps (see :meth:`NoiseSchedule.respace`)."""
        return GaussianDiffusion(
            self.schedule.respace(steps, spacing), self.prediction, self.variance, self.loss, self.vlb_weight
        )

    def at(self, timesteps: Tensor | list[float]) -> GaussianDiffusion:
        """The same process on the given original-scale times (see :meth:`NoiseSchedule.at`)."""
        return GaussianDiffusion(self.schedule.at(timesteps), self.prediction, self.variance, self.loss,
                                 self.vlb_weight)

    def model_timesteps(self, t: Tensor) -> Tensor:
        """The original-schedule step the model sees for this schedule's step ``t`` ([B] long)."""
        return self.schedule.timesteps.to(t.device)[t]

    # -- forward process ---------------------------------------------------------------------

    def q_mean_variance(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_t | x_0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I) (Eq. 4): mean, variance, log variance."""
        s = self.schedule
        mean = extract(s.sqrt_alpha_bars, t, x0) * x0
        variance = extract(1.0 - s.alpha_bars, t, x0).expand_as(x0)
        log_variance = extract(torch.log1p(-s.alpha_bars), t, x0).expand_as(x0)
        return mean, variance, log_variance

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) in closed form (Eq. 4): sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
        if noise is None:
            noise = torch.randn_like(x0)
        s = self.schedule
        return extract(s.sqrt_alpha_bars, t, x0) * x0 + extract(s.sqrt_one_minus_alpha_bars, t, x0) * noise

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde_t I) (Eq. 6-7): mean, variance, clipped log variance."""
        s = self.schedule
        mean = extract(s.posterior_mean_coef_x0, t, x_t) * x0 + extract(s.posterior_mean_coef_xt, t, x_t) * x_t
        variance = extract(s.beta_tilde, t, x_t).expand_as(x_t)
        log_variance = extract(s.log_beta_tilde_clipped, t, x_t).expand_as(x_t)
        return mean, variance, log_variance

    # -- parameterizations (x_t = sqrt(a_bar) x0 + sqrt(1 - a_bar) eps) ---------------------

    def coefficients(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) at steps ``t: [B]``, shaped to broadcast against ``x``."""
        s = self.schedule
        return extract(s.sqrt_alpha_bars, t, x), extract(s.sqrt_one_minus_alpha_bars, t, x)

    def coefficients_at(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """The same at continuous original-scale times ``t: [B]`` (:meth:`NoiseSchedule.alpha_bar_at`)."""
        ab = self.schedule.alpha_bar_at(t).to(x.device, x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return ab.sqrt(), (1.0 - ab).sqrt()

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Eq. 4 solved for x0)."""
        return to_x0("eps", eps, x_t, *self.coefficients(t, x_t))

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)."""
        return to_eps(x_t, x0, *self.coefficients(t, x_t))

    def v_from_x0_eps(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans & Ho 2022 §4)."""
        return to_prediction("v", x0, eps, *self.coefficients(t, x0))

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """x0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
        return to_x0("v", v, x_t, *self.coefficients(t, x_t))

    def prediction_target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """What the model's mean output should equal for this x0 and noise: eps, x0 or v."""
        return to_prediction(self.prediction, x0, eps, *self.coefficients(t, x0))

    def x0_from_prediction(self, x_t: Tensor, t: Tensor, pred: Tensor) -> Tensor:
        """The x0 estimate implied by a model prediction of type ``self.prediction``."""
        return to_x0(self.prediction, pred, x_t, *self.coefficients(t, x_t))

    def eps_at(self, output: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The eps implied by a raw model output at continuous original-scale times ``t: [B]``, for
        the probability-flow ODE; a learned variance plays no part there and is dropped."""
        pred, _ = self.split_output(output.to(x_t.dtype), x_t)
        if self.prediction == "eps":
            return pred
        coefs = self.coefficients_at(t, x_t)
        return to_eps(x_t, to_x0(self.prediction, pred, x_t, *coefs), *coefs)

    # -- reverse process ---------------------------------------------------------------------

    def split_output(self, output: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """Split a model output into its mean part ``[B, C, ...]`` and variance part (or None)."""
        if not self.learns_variance:
            if output.shape != x_t.shape:
                raise ValueError(f"model output {tuple(output.shape)} does not match x_t {tuple(x_t.shape)}")
            return output, None
        if output.shape[0] != x_t.shape[0] or output.shape[1] != 2 * x_t.shape[1] or output.shape[2:] != x_t.shape[2:]:
            raise ValueError(
                f"variance {self.variance!r} needs a model output of 2C channels on dim 1: "
                f"got {tuple(output.shape)} for x_t {tuple(x_t.shape)}"
            )
        mean_part, var_part = output.chunk(2, dim=1)
        return mean_part, var_part

    def posterior_estimate(
        self,
        output: Tensor,
        x_t: Tensor,
        t: Tensor,
        clip_denoised: bool = False,
    ) -> PosteriorEstimate:
        """Turn a raw model output into p_theta(x_{t-1} | x_t) (Eq. 11 via the posterior mean, Eq. 7).

        Args:
            output: the model's output, ``[B, C, ...]`` or ``[B, 2C, ...]`` when the variance is learned.
            x_t: ``[B, C, ...]``. t: ``[B]`` steps of this schedule.
            clip_denoised: clip the x0 estimate to [-1, 1] before forming the mean.
        """
        output = model_output(output, x_t)
        pred, var_part = self.split_output(output, x_t)
        s = self.schedule
        if self.variance == "fixed_small":
            variance = extract(s.beta_tilde, t, x_t).expand_as(x_t)
            log_variance = extract(s.log_beta_tilde_clipped, t, x_t).expand_as(x_t)
        elif self.variance == "fixed_large":
            # beta_tilde_1 stands in for beta_0 so that the decoder's log-scale at t = 0 is the
            # posterior's (improved-diffusion's choice); sampling adds no noise at t = 0 anyway.
            large = torch.cat([s.beta_tilde[1:2] if len(s) > 1 else s.betas[:1], s.betas[1:]])
            variance = extract(large, t, x_t).expand_as(x_t)
            log_variance = extract(large.log(), t, x_t).expand_as(x_t)
        elif self.variance == "learned":
            log_variance = var_part
            variance = torch.exp(log_variance)
        else:  # learned_range, Improved DDPM Eq. 15
            frac = (var_part + 1.0) / 2.0
            min_log = extract(s.log_beta_tilde_clipped, t, x_t)
            max_log = extract(s.betas.log(), t, x_t)
            log_variance = frac * max_log + (1.0 - frac) * min_log
            variance = torch.exp(log_variance)

        x0 = self.x0_from_prediction(x_t, t, pred)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(x0, x_t, t)
        return PosteriorEstimate(mean, variance, log_variance, x0, self.eps_from_x0(x_t, t, x0))

    def p_mean_variance(
        self, model: Model, x_t: Tensor, t: Tensor, clip_denoised: bool = False, **cond: Tensor
    ) -> PosteriorEstimate:
        """Run the model on (x_t, t) and return p_theta(x_{t-1} | x_t); see :meth:`posterior_estimate`."""
        return self.posterior_estimate(model(x_t, self.model_timesteps(t), **cond), x_t, t, clip_denoised)

    # -- losses ------------------------------------------------------------------------------

    def vb_terms_bpd(self, estimate: PosteriorEstimate, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """The bound's term at step t in bits/dim, ``[B]``.

        L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t)) for t > 0 (Eq. 5), and the
        discretized decoder's NLL L_0 = -log p_theta(x0 | x_1) at t = 0 (Eq. 13).
        """
        true_mean, _, true_log_variance = self.q_posterior(x0, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, estimate.mean, estimate.log_variance))
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, estimate.mean, 0.5 * estimate.log_variance))
        return nats_to_bits(torch.where(t == 0, nll, kl))

    def prior_bpd(self, x0: Tensor) -> Tensor:
        """L_T = KL(q(x_T | x0) || N(0, I)) in bits/dim, ``[B]``: no parameters, so not trained."""
        t = torch.full((x0.shape[0],), self.num_steps - 1, device=x0.device, dtype=torch.long)
        mean, _, log_variance = self.q_mean_variance(x0, t)
        return nats_to_bits(mean_flat(normal_kl(mean, log_variance, torch.zeros_like(mean), torch.zeros_like(mean))))

    def training_losses(
        self, model: Model, x0: Tensor, t: Tensor, noise: Tensor | None = None, **cond: Tensor
    ) -> dict[str, Tensor]:
        """Per-example training losses at steps ``t`` (Algorithm 1; Improved DDPM §3.1).

        Args:
            model: ``model(x_t, t, **cond)``.
            x0: ``[B, C, ...]`` data in [-1, 1]. t: ``[B]`` steps of this schedule.
            noise: ``[B, C, ...]`` the eps of q_sample (drawn when None).
        Returns:
            ``{"loss": [B], ...}`` with the parts (``"mse"``/``"l1"``, ``"vb"``) alongside.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        output = model_output(model(x_t, self.model_timesteps(t), **cond), x0)
        terms: dict[str, Tensor] = {}

        if self.loss in ("kl", "rescaled_kl"):
            terms["vb"] = self.vb_terms_bpd(self.posterior_estimate(output, x_t, t), x0, x_t, t)
            terms["loss"] = terms["vb"] * (self.num_steps if self.loss == "rescaled_kl" else 1.0)
            return terms

        pred, var_part = self.split_output(output, x_t)
        error = pred - self.prediction_target(x0, noise, t)
        if self.loss == "l1":
            terms["l1"] = mean_flat(error.abs())
            terms["loss"] = terms["l1"]
            return terms
        terms["mse"] = mean_flat(error**2)
        terms["loss"] = terms["mse"]
        if self.loss == "hybrid" and var_part is not None:
            # The vb term trains only the variance: the mean is detached so L_simple alone
            # shapes it (Improved DDPM §3.1).
            frozen = torch.cat([pred.detach(), var_part], dim=1)
            terms["vb"] = self.vb_terms_bpd(self.posterior_estimate(frozen, x_t, t), x0, x_t, t)
            terms["loss"] = terms["loss"] + self.vlb_weight * self.num_steps * terms["vb"]
        return terms

    # -- likelihood --------------------------------------------------------------------------

    @torch.no_grad()
    def bpd(
        self,
        model: Model,
        x0: Tensor,
        clip_denoised: bool = True,
        generator: torch.Generator | None = None,
        progress: bool = False,
        **cond: Tensor,
    ) -> Likelihood:
        """The variational bound -log p(x0) <= L_T + sum L_{t-1} + L_0 in bits/dim (Eq. 5).

        Every term is evaluated at every step of this schedule (respaced or not), each with its
        own draw of x_t ~ q(x_t | x0).

        Args:
            x0: ``[B, C, ...]`` 8-bit data scaled to [-1, 1] (the decoder is discretized).
            clip_denoised: clip the x0 estimate (sharpens the decoder on [-1, 1] data).
            generator: for the noise draws, so that the bound is reproducible.
        """
        T = self.num_steps
        vb, x0_mse, eps_mse = (x0.new_zeros(x0.shape[0], T) for _ in range(3))
        for i in tqdm(range(T - 1, -1, -1), desc="bpd", disable=not progress, leave=False):
            t = torch.full((x0.shape[0],), i, device=x0.device, dtype=torch.long)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
            x_t = self.q_sample(x0, t, noise)
            est = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, **cond)
            vb[:, i] = self.vb_terms_bpd(est, x0, x_t, t)
            x0_mse[:, i] = mean_flat((est.x0 - x0) ** 2)
            eps_mse[:, i] = mean_flat((est.eps - noise) ** 2)
        prior = self.prior_bpd(x0)
        return Likelihood(vb.sum(dim=1) + prior, prior, vb, x0_mse, eps_mse)


MAX_STEPS = 1 << 24
"""The most diffusion steps a run can have: ``torch.multinomial``, which draws the training timesteps under
importance sampling (``--timestep-sampler loss_second_moment``), takes at most 2^24 categories; one limit for every
run, so that a run can switch samplers."""


@dataclass(frozen=True)
class DiffusionConfig:
    """The process and its training objective; :meth:`build` makes the :class:`GaussianDiffusion`."""

    diffusion_steps: int = 1000
    """T, the number of diffusion steps (>= 1)."""
    schedule: ScheduleName = "cosine"
    """The beta schedule: linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021)."""
    prediction: Prediction = "eps"
    """What the network predicts: the noise eps, x0, or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans &
    Ho 2022)."""
    variance: Variance = "fixed_small"
    """The reverse variance: fixed_small (beta_tilde), fixed_large (beta), or learned / learned_range (Nichol &
    Dhariwal 2021: the network's extra output channels)."""
    loss: LossType = "mse"
    """The training loss: mse (L_simple), l1, kl (the variational bound), rescaled_kl (the bound times T), or
    hybrid (L_simple + 0.001 L_vlb, Nichol & Dhariwal 2021)."""
    timestep_sampler: TimestepSamplerName = "uniform"
    """How training draws t: uniform, or loss_second_moment (importance sampling by the recent L_vlb of each t,
    Nichol & Dhariwal 2021)."""
    zero_terminal_snr: bool = False
    """Rescale the schedule so that alpha_bar at the last step is 0 (Lin et al. 2024): the model then learns to
    start from pure noise, as sampling does. Needs v (or x0) prediction: an eps model learns nothing of x0 there."""

    def build(self) -> GaussianDiffusion:
        """The diffusion this config describes; a combination it cannot make (a learned variance with a loss that
        does not train it, an unknown schedule) is a :class:`~gaussdiff.errors.ConfigError`, one line."""
        builders = {"linear": NoiseSchedule.linear, "cosine": NoiseSchedule.cosine}
        if self.schedule not in builders:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(builders)}")
        if not 1 <= self.diffusion_steps <= MAX_STEPS:
            raise ConfigError(f"--diffusion-steps must lie in 1..{MAX_STEPS}, not {self.diffusion_steps}")
        schedule = builders[self.schedule](self.diffusion_steps)
        if self.zero_terminal_snr:  # a diffusion model's run refuses it with eps prediction (RunConfig.resolve)
            schedule = schedule.rescale_zero_terminal_snr()
        try:
            return GaussianDiffusion(schedule, self.prediction, self.variance, self.loss)
        except ValueError as e:  # the library's own check of a bad combination, as the CLI's one line
            message = f"{e}".replace("variance '", "--variance '").replace("use loss '", "use --loss '")
            raise ConfigError(message) from None
