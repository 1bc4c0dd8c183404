"""Noise schedules: the betas of the forward process and everything derived from them.

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", §2; Nichol & Dhariwal
2021, "Improved DDPM", §3.2). The step index ``t`` is 0-based: ``t = 0`` is the paper's t = 1.

=====================  =====================================================================
symbol                  attribute
=====================  =====================================================================
beta_t                  ``betas[t]``
alpha_t = 1 - beta_t    ``alphas[t]``
alpha_bar_t             ``alpha_bars[t]`` = prod_{s<=t} alpha_s
alpha_bar_{t-1}         ``alpha_bars_prev[t]`` (1 at t = 0)
beta_tilde_t            ``beta_tilde[t]`` = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)  (Eq. 7)
log beta_tilde_t        ``log_beta_tilde_clipped[t]`` (beta_tilde_0 = 0, so t = 0 uses beta_tilde_1)
mu_tilde coefficients   ``posterior_mean_coef_x0``, ``posterior_mean_coef_xt``  (Eq. 7)
SNR_t                   ``snr[t]`` = alpha_bar_t / (1 - alpha_bar_t)
=====================  =====================================================================

Every quantity is a float64 tensor of shape ``[T]``: schedules are data, computed once in double
precision and cast to the working dtype only where they meet ``x_t``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Spacing = Literal["leading", "trailing", "linspace", "karras", "logsnr"]
ScheduleName = Literal["linear", "cosine"]


class NoiseSchedule:
    """A discrete variance schedule beta_0..beta_{T-1} and its derived quantities.

    Args:
        betas: ``[T]`` noise variances in (0, 1].
        timesteps: ``[T]`` the step of the original schedule each step stands for; a respaced
            schedule remembers them so that the model is always called on the original scale.
            Defaults to ``0..T-1``. Integers stay ``long``; a schedule at continuous times (Karras
            sigmas, uniform log-SNR, an explicit list) keeps them as float64.
        source: the schedule this one was taken from, whose continuous extension
            (:meth:`alpha_bar_at`) a respaced schedule keeps using: the model was trained on it.
    """

    def __init__(self, betas: Tensor, timesteps: Tensor | None = None, source: NoiseSchedule | None = None) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() == 0:
            raise ValueError("a schedule needs at least one step")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        self.betas = betas
        if timesteps is None:
            self.timesteps = torch.arange(len(betas))
        else:
            timesteps = torch.as_tensor(timesteps)
            integral = not timesteps.is_floating_point() or bool((timesteps == timesteps.round()).all())
            self.timesteps = timesteps.long() if integral else timesteps.to(torch.float64)
        self.source = source.source if source is not None and source.source is not None else source
        if self.timesteps.shape != betas.shape:
            raise ValueError("timesteps and betas must have the same length")

        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.alpha_bars_prev = torch.cat([betas.new_ones(1), self.alpha_bars[:-1]])
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.sqrt_one_minus_alpha_bars = (1.0 - self.alpha_bars).sqrt()
        # Eq. 7. beta_tilde_0 = 0 because x_0 is known exactly given x_1 and x0.
        self.beta_tilde = betas * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)
        # log(0) at t = 0 would poison the learned-range interpolation; improved-diffusion
        # substitutes beta_tilde_1, and so do we (a one-step schedule has only beta_0 to offer).
        first = self.beta_tilde[1] if len(betas) > 1 else betas[0]
        self.log_beta_tilde_clipped = torch.cat([first.reshape(1), self.beta_tilde[1:]]).log()
        self.posterior_mean_coef_x0 = betas * self.alpha_bars_prev.sqrt() / (1.0 - self.alpha_bars)
        self.posterior_mean_coef_xt = (
            (1.0 - self.alpha_bars_prev) * self.alphas.sqrt() / (1.0 - self.alpha_bars)
        )
        self.snr = self.alpha_bars / (1.0 - self.alpha_bars)

    def __len__(self) -> int:
        return len(self.betas)

    @property
    def num_steps(self) -> int:
        """T, the number of steps of this schedule."""
        return len(self.betas)

    @property
    def zero_terminal_snr(self) -> bool:
        """Whether alpha_bar_T = 0 (Lin et al. 2024): the last step is pure noise, at sigma = infinity."""
        return float(self.alpha_bars[-1]) == 0.0

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(T={len(self)}, beta=[{self.betas[0]:.3g}..{self.betas[-1]:.3g}], "
            f"alpha_bar_T={self.alpha_bars[-1]:.3g})"
        )

    @property
    def log_sigmas(self) -> Tensor:
        """log sigma_t = 0.5 log((1 - alpha_bar_t) / alpha_bar_t), minus half the log-SNR, ``[T]`` float64
        (increasing with t; -inf where alpha_bar = 1, +inf where alpha_bar = 0)."""
        return 0.5 * (torch.log1p(-self.alpha_bars) - self.alpha_bars.log())

    def alpha_bar_at(self, t: Tensor) -> Tensor:
        """alpha_bar at continuous original-scale times ``t`` (any shape), float64.

        log sigma is piecewise linear in t between the steps (exact at them; the continuous extension
        that diffusers' Karras and log-SNR schedules use too), clamped to the first and last step. A
        respaced schedule uses the schedule it came from, on which the model was trained.
        """
        if self.source is not None:
            return self.source.alpha_bar_at(t)
        grid = self.timesteps.to(torch.float64)
        log_sigma = self.log_sigmas
        s = t.detach().to(torch.float64).cpu().clamp(grid[0], grid[-1])
        if len(grid) == 1:
            return self.alpha_bars[0].expand_as(s).clone()
        i = (torch.searchsorted(grid, s.contiguous(), right=True) - 1).clamp(0, len(grid) - 2)
        w = (s - grid[i]) / (grid[i + 1] - grid[i])
        # Between two steps both ends are finite, except at an end of zero terminal SNR: keep that step's value.
        inner = torch.where(w == 0, log_sigma[i], torch.where(w == 1, log_sigma[i + 1],
                                                               log_sigma[i] + w * (log_sigma[i + 1] - log_sigma[i])))
        alpha_bar = torch.sigmoid(-2.0 * inner)  # 1 / (1 + sigma^2)
        # Into a last step of zero SNR (sigma infinite) sqrt(alpha_bar) falls linearly to 0 instead (Lin et al.'s
        # rescaling makes it an affine function of the original's), so that the times before it keep some signal.
        to_zero = torch.isinf(log_sigma[i + 1]) & (w < 1)
        return torch.where(to_zero, ((1 - w) * self.alpha_bars[i].sqrt()) ** 2, alpha_bar)

    def timestep_at(self, alpha_bar: Tensor) -> Tensor:
        """The inverse of :meth:`alpha_bar_at`: the continuous original-scale t with that alpha_bar."""
        if self.source is not None:
            return self.source.timestep_at(alpha_bar)
        grid = self.timesteps.to(torch.float64)
        log_sigma = self.log_sigmas
        ab = alpha_bar.detach().to(torch.float64).cpu()
        target = (0.5 * (torch.log1p(-ab) - ab.log())).clamp(log_sigma[0], log_sigma[-1])
        if len(grid) == 1:
            return grid[0].expand_as(target).clone()
        i = (torch.searchsorted(log_sigma, target.contiguous(), right=True) - 1).clamp(0, len(grid) - 2)
        span = log_sigma[i + 1] - log_sigma[i]
        w = torch.where(torch.isfinite(span) & (span > 0), (target - log_sigma[i]) / span, torch.zeros_like(span))
        w = torch.where(target >= log_sigma[i + 1], torch.ones_like(w), w)
        # The last interval into zero SNR: sqrt(alpha_bar) linear there (see alpha_bar_at).
        w = torch.where(torch.isinf(span), 1 - (ab / self.alpha_bars[i]).clamp(0, 1).sqrt(), w)
        return grid[i] + w * (grid[i + 1] - grid[i])

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_betas(cls, betas: Tensor) -> NoiseSchedule:
        """A schedule from explicit betas ``[T]``."""
        return cls(betas)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """Ho et al. 2020 §4: betas linear from ``beta_start`` to ``beta_end``.

        The defaults are the paper's for T = 1000; improved-diffusion scales them by 1000 / T
        for other T, which callers can do explicitly.
        """
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal 2021 Eq. 17: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2).

        betas = 1 - alpha_bar(t+1) / alpha_bar(t), clipped at ``max_beta`` to avoid the
        singularity at t = T.
        """
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas)

    def rescale_zero_terminal_snr(self) -> NoiseSchedule:
        """This schedule with its last alpha_bar moved to 0 (Lin et al. 2024, "Common Diffusion Noise Schedules
        and Sample Steps Are Flawed", Algorithm 1): sqrt(alpha_bar) shifted so that its last value is 0 and
        scaled so that its first is kept. Train it with v prediction: at alpha_bar = 0 an eps model cannot
        say anything about x0, and a sampler should start at the last step (trailing or linspace spacing)."""
        root = self.alpha_bars.sqrt()
        root = (root - root[-1]) * root[0] / (root[0] - root[-1])
        alpha_bars = root**2
        prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        return NoiseSchedule(1.0 - alpha_bars / prev, self.timesteps)

    # -- respacing --------------------------------------------------------------------------

    def respace(self, steps: int, spacing: Spacing = "linspace") -> NoiseSchedule:
        """A schedule on ``steps`` of this schedule's noise levels (Nichol & Dhariwal 2021 §4).

        The kept steps keep their alpha_bar exactly; the new betas are
        ``1 - alpha_bar[k_i] / alpha_bar[k_{i-1}]``, so q(x_t | x0) is unchanged at every kept step.

        Args:
            steps: how many steps to keep, 1..T.
            spacing: which steps (T = 1000, steps = 50 shown; by default linspace, as
                :meth:`GaussianDiffusion.respace` and the CLI's samplers take):
                ``"leading"``: 0, 20, ..., 980 (diffusers' default for DDIM);
                ``"trailing"``: 19, 39, ..., 999 (ends at the last step, Lin et al. 2024);
                ``"linspace"``: round(linspace(0, T-1, steps)) = 0, 20, ..., 999;
                ``"karras"``: continuous times whose sigma = sqrt((1 - alpha_bar) / alpha_bar) follow
                Karras et al. 2022 Eq. 5 with rho = 7 from the last step's sigma to the first's;
                ``"logsnr"``: continuous times uniform in log-SNR between the same ends (the
                DPM-Solver paper's choice). Both map sigma to t by :meth:`timestep_at`.
        """
        T = len(self)
        if not 1 <= steps <= T:
            raise ValueError(f"cannot respace {T} steps to {steps}")
        if spacing in ("karras", "logsnr"):
            lo, hi = self.log_sigmas[0], self.log_sigmas[-1]
            if not bool(torch.isfinite(hi)):
                raise ValueError(f"{spacing} spacing needs a finite largest sigma; with zero terminal SNR use trailing")
            ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
            if spacing == "karras":
                rho = 7.0
                log_sigma = rho * torch.log(hi.exp() ** (1 / rho)
                                            + ramp * (lo.exp() ** (1 / rho) - hi.exp() ** (1 / rho)))
            else:
                log_sigma = hi + ramp * (lo - hi)
            times = self.timestep_at(torch.sigmoid(-2.0 * log_sigma))
            if steps > 1:  # exact ends, whatever the interpolation's rounding
                times[0], times[-1] = self.timesteps[-1].double(), self.timesteps[0].double()
            return self.at(times.flip(0))
        if spacing == "leading":
            kept = torch.arange(steps, dtype=torch.long) * (T // steps)
        elif spacing == "trailing":
            # round(T - i T / steps) - 1, rounding half to even before the - 1 (at steps = 16, 1000 - 62.5 = 937.5
            # keeps 937, where round(936.5) would keep 936), and in the floats numpy's arange computes it in
            # (its step is the difference of its first two values), so that the kept steps are diffusers' at every
            # step count: where T / steps is inexact a half can land on either side.
            delta = (T - T / steps) - T
            kept = ((T + torch.arange(steps, dtype=torch.float64) * delta).round() - 1).long().flip(0)
        elif spacing == "linspace":
            # round(linspace(0, T - 1, steps)) in numpy's floats (i times one step, the last exact), as diffusers.
            ramp = torch.arange(steps, dtype=torch.float64) * ((T - 1) / max(steps - 1, 1))
            if steps > 1:
                ramp[-1] = T - 1
            kept = ramp.round().long()
        else:
            raise ValueError(f"unknown spacing {spacing!r}; choose leading, trailing, linspace, karras or logsnr")
        kept = torch.unique(kept)  # sorted; rounding cannot collide for steps <= T, but be sure
        alpha_bars = self.alpha_bars[kept]
        prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        return NoiseSchedule(1.0 - alpha_bars / prev, timesteps=self.timesteps[kept], source=self)

    def at(self, timesteps: Tensor | list[float]) -> NoiseSchedule:
        """A schedule on the given original-scale times, increasing (integers or not): alpha_bar at each
        from :meth:`alpha_bar_at`, exact at this schedule's own steps.

        Raises ``ValueError`` unless the times increase strictly and lie within this schedule's steps.
        """
        times = torch.as_tensor(timesteps, dtype=torch.float64).flatten()
        grid = self.timesteps.to(torch.float64)
        if times.numel() == 0:
            raise ValueError("a schedule needs at least one step")
        if not bool((times[1:] > times[:-1]).all()):
            raise ValueError("timesteps must be distinct and in order")
        if times[0] < grid[0] or times[-1] > grid[-1]:
            raise ValueError(f"timesteps must lie in [{grid[0]:g}, {grid[-1]:g}]")
        alpha_bars = self.alpha_bar_at(times)
        prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        betas = 1.0 - alpha_bars / prev
        if not bool((betas > 0).all()):
            raise ValueError("timesteps too close: two of them have the same alpha_bar")
        return NoiseSchedule(betas, timesteps=times, source=self)


def extract(coef: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """``coef[t]`` shaped to broadcast against ``x`` ([B] -> [B, 1, ..., 1]), in ``x``'s dtype and device."""
    out = coef.to(device=x.device)[t.to(x.device)].to(x.dtype)
    return out.reshape(len(t), *([1] * (x.dim() - 1)))
