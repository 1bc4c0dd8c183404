"""Exponential-integrator solvers of the probability-flow ODE: DPM-Solver++ and UniPC, in data prediction.

They walk the steps of ``diffusion`` (:class:`~.base.Levels`: the respaced schedule's steps from the
noisiest down, then zero noise), evaluating the model once a step at those steps' times. In the
variables x_t = alpha x0 + sigma eps, with lambda = log(alpha / sigma) (half the log-SNR), a step from
level s to level t with h = lambda_t - lambda_s is, to first order (DPM-Solver++(1) = DDIM),

    x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) D,    D = x0_theta(x_s)

and the solvers below raise the order by finite differences of earlier x0 estimates:

- :func:`dpm_solver_2m`, :func:`dpm_solver_3m`: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2;
  the midpoint form of diffusers) and the third-order multistep form of the authors' code (not in the paper), as
  diffusers and k-diffusion have it: its second difference weighs half of what the exact integral of the
  quadratic through three x0 estimates gives, which leaves it second order (see :func:`_multistep`).
- :func:`dpm_solver_2s`: DPM-Solver++(2S), singlestep: pairs of steps, the second reusing the first's start
  (Lu et al. 2022, Algorithm 1 with the intermediate point on the step grid, as diffusers places it).
- :func:`dpm_solver_2m_sde`: DPM-Solver++(2M) for the reverse SDE (Lu et al. 2022, Sec. 5; Eq. of
  diffusers' ``sde-dpmsolver++``): x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D +
  sigma_t sqrt(1 - e^{-2h}) z.
- :func:`unipc`: UniPC (Zhao et al. 2023) of order 2: the predictor UniP-2 and the corrector UniC, which
  reuses the next step's evaluation, so it costs no extra NFE; B(h) = e^h - 1 (bh2, the default) or
  B(h) = h (bh1, :func:`unipc_bh1`).

**Lower order at the end.** The last step always ends at zero noise, where h is infinite and every
finite-difference correction undefined: it is first order and returns D. With fewer than 15 steps the
third-order solver also drops to second order on the step before (diffusers' ``lower_order_final``:
at few steps the last, large steps are where higher order is unstable). The first steps warm up
(order k needs k - 1 earlier estimates).
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import Tensor

from ..diffusion.process import GaussianDiffusion, Model
from .base import Callback, Generators, Walk, noise_like


def _first_order(w: Walk, x: Tensor, i: int, D: Tensor) -> Tensor:
    """DPM-Solver++(1) from level i to level i + 1: DDIM, exact for a constant x0 estimate."""
    a, s, lam = w.levels.alpha, w.levels.sigma, w.lam
    h = lam[i + 1] - lam[i]
    return ((s[i + 1] / s[i]) * x + a[i + 1] * (-torch.expm1(-h)) * D).to(x.dtype)


@torch.no_grad()
def dpm_solver_2m(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
                  clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True,
                  eta: float = 0.0, cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(2M), deterministic (``eta`` and ``generator`` unused). ``x_T: [B, ...]`` -> x0.

    D = x0_i + (x0_i - x0_{i-1}) / (2 r), r = h_{i-1} / h_i: the second-order multistep correction.
    """
    return _multistep(model, diffusion, x_T, 2, "dpm++2m", clip_denoised, callback, progress, cond)


@torch.no_grad()
def dpm_solver_3m(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
                  clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True,
                  eta: float = 0.0, cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(3M), deterministic: second differences of three x0 estimates. ``x_T: [B, ...]`` -> x0."""
    return _multistep(model, diffusion, x_T, 3, "dpm++3m", clip_denoised, callback, progress, cond)


def _multistep(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, order: int, desc: str, clip_denoised: bool,
               callback: Callback | None, progress: bool, cond: Mapping[str, Tensor] | None) -> Tensor:
    w = Walk(model, diffusion, x_T, desc, clip_denoised, callback, progress, cond)
    a, s, lam, S = w.levels.alpha, w.levels.sigma, w.lam, len(w.levels)
    x, history = x_T, []  # earlier x0 estimates, newest last
    for i in w.steps():
        m0 = w.D(x, i)
        history = (history + [m0])[-order:]
        k = min(order, len(history))
        if i == S - 1:
            k = 1  # to zero noise: h is infinite
        elif i == S - 2 and S < 15:
            k = min(k, 2)
        h = lam[i + 1] - lam[i]
        phi = -torch.expm1(-h)  # 1 - e^{-h}
        if k == 1:
            x = _first_order(w, x, i, m0)
        elif k == 2:
            r0 = (lam[i] - lam[i - 1]) / h
            D1 = (m0 - history[-2]) / r0
            x = ((s[i + 1] / s[i]) * x + a[i + 1] * phi * (m0 + 0.5 * D1)).to(x.dtype)
        else:
            m1, m2 = history[-2], history[-3]
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            D1_0, D1_1 = (m0 - m1) / r0, (m1 - m2) / r1
            D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
            D2 = (D1_0 - D1_1) / (r0 + r1)
            # The weights of D1 ~ h x0' and D2 are the exact integrals over the step of e^lambda tau and
            # e^lambda tau^2 / 2 (tau = (lambda - lambda_i) / h): alpha_t ((e^-h - 1) / h + 1) and -alpha_t ((e^-h -
            # 1 + h) / h^2 - 1/2). D2 is the plain second divided difference, h^2 x0'' / 2, where the second weight
            # asks for h^2 x0'': the term is half its exact size, as in the authors' multistep code, diffusers' and
            # k-diffusion's (their singlestep third order has the 2). Kept for parity: with the 2 the method is third
            # order, but on few and uneven steps no better (docs/fewstep.md, "DPM-Solver++(3M)").
            x = ((s[i + 1] / s[i]) * x + a[i + 1] * phi * m0 + a[i + 1] * (torch.expm1(-h) / h + 1) * D1
                 - a[i + 1] * ((torch.expm1(-h) + h) / h**2 - 0.5) * D2).to(x.dtype)
        w.report(i, x, m0)
    return x


@torch.no_grad()
def dpm_solver_2m_sde(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *,
                      generator: Generators = None, clip_denoised: bool = False,
                      callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
                      cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(2M) for the reverse SDE (stochastic; ``eta`` unused, ``generator`` draws z every step,
    the last step's times zero). ``x_T: [B, ...]`` -> x0."""
    w = Walk(model, diffusion, x_T, "dpm++2m-sde", clip_denoised, callback, progress, cond)
    a, s, lam, S = w.levels.alpha, w.levels.sigma, w.lam, len(w.levels)
    x, previous = x_T, None
    for i in w.steps():
        m0 = w.D(x, i)
        z = noise_like(x, generator)
        h = lam[i + 1] - lam[i]
        decay = -torch.expm1(-2.0 * h)  # 1 - e^{-2h}
        D = m0
        if previous is not None and i < S - 1:
            D = m0 + 0.5 * (m0 - previous) * h / (lam[i] - lam[i - 1])
        x = ((s[i + 1] / s[i]) * torch.exp(-h) * x + a[i + 1] * decay * D + s[i + 1] * decay.sqrt() * z).to(x.dtype)
        previous = m0
        w.report(i, x, m0)
    return x


def singlestep_orders(steps: int) -> list[int]:
    """The order of each step of DPM-Solver++(2S) on ``steps`` steps: pairs (1, 2), the last step first
    order (diffusers' ``get_order_list`` with ``lower_order_final`` and a final sigma of zero)."""
    return [1, 2] * (steps // 2 - 1) + [1, 1] if steps % 2 == 0 else [1, 2] * (steps // 2) + [1]


@torch.no_grad()
def dpm_solver_2s(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
                  clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True,
                  eta: float = 0.0, cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(2S), deterministic. A second-order step goes from the start of its pair, level i - 1, to
    level i + 1 with x0 estimates at i - 1 and at the intermediate level i (reached by a first-order step
    that only serves to evaluate the model there). ``x_T: [B, ...]`` -> x0."""
    w = Walk(model, diffusion, x_T, "dpm++2s", clip_denoised, callback, progress, cond)
    a, s, lam = w.levels.alpha, w.levels.sigma, w.lam
    orders = singlestep_orders(len(w.levels))
    x, start, m_start = x_T, x_T, None
    for i in w.steps():
        m0 = w.D(x, i)
        if orders[i] == 1:
            start, m_start = x, m0
            x = _first_order(w, x, i, m0)
        else:  # from level i - 1 through i to i + 1
            h, h0 = lam[i + 1] - lam[i - 1], lam[i] - lam[i - 1]
            # From zero SNR (lambda = -inf) both are infinite; their ratio's limit is 1.
            ratio = h / h0 if bool(torch.isfinite(lam[i - 1])) else torch.ones_like(h)
            D = m_start + 0.5 * (m0 - m_start) * ratio
            x = ((s[i + 1] / s[i - 1]) * start + a[i + 1] * (-torch.expm1(-h)) * D).to(x.dtype)
        w.report(i, x, m0)
    return x


def _unipc_b(order: int, h: Tensor, variant: Literal["bh1", "bh2"]) -> tuple[Tensor, Tensor]:
    """B and b_k = k! hh phi_{k+1}(hh) / B(hh), k = 1..order, of UniPC in data prediction (Zhao et al. 2023;
    hh = -h, B(hh) = e^hh - 1 for bh2 or hh for bh1), with phi_1(z) = (e^z - 1) / z and the recursion
    phi_{k+1}(z) = (phi_k(z) - 1/k!) / z."""
    hh = -h
    B_h = hh if variant == "bh1" else torch.expm1(hh)
    h_phi_k, factorial, b = torch.expm1(hh) / hh - 1.0, 1.0, []
    for k in range(1, order + 1):
        b.append(h_phi_k * factorial / B_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return B_h, torch.stack(b)


def _unipc(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, variant: Literal["bh1", "bh2"], clip_denoised: bool,
           callback: Callback | None, progress: bool, cond: Mapping[str, Tensor] | None) -> Tensor:
    w = Walk(model, diffusion, x_T, f"unipc-{variant}", clip_denoised, callback, progress, cond)
    a, s, lam, S = w.levels.alpha, w.levels.sigma, w.lam, len(w.levels)
    outputs: list[Tensor] = []  # x0 estimates, newest (at the level the step starts from) last

    def step(x_s: Tensor, i: int, k: int, m_t: Tensor | None = None) -> Tensor:
        """From level i to i + 1 at order k (1 or 2): UniP (``m_t`` None: k - 1 earlier estimates) or UniC (the
        estimate ``m_t`` at level i + 1 too), data prediction."""
        m_s, h = outputs[-1], lam[i + 1] - lam[i]
        x_next = (s[i + 1] / s[i]) * x_s + a[i + 1] * (-torch.expm1(-h)) * m_s
        if (m_t is None and k == 1) or not bool(torch.isfinite(h)):
            # First order; from zero SNR (h infinite) no correction is defined (bh1's B(h) = -h would be -inf).
            return x_next.to(x_s.dtype)
        rks = [(lam[i - n] - lam[i]) / h for n in range(1, k)]
        D1s = [(outputs[-1 - n] - m_s) / r for n, r in zip(range(1, k), rks)]
        B_h, b = _unipc_b(k, h, variant)
        if m_t is None:  # UniP-2 fixes rho = 1/2
            res = 0.5 * D1s[0]
        else:
            R = torch.stack([torch.stack([*rks, torch.ones_like(h)]) ** p for p in range(k)])
            rhos = torch.full((1,), 0.5, dtype=h.dtype) if k == 1 else torch.linalg.solve(R, b)
            res = sum((r * d for r, d in zip(rhos[:-1], D1s)), torch.zeros_like(x_s)) + rhos[-1] * (m_t - m_s)
        return (x_next - a[i + 1] * B_h * res).to(x_s.dtype)

    x, last, last_order = x_T, x_T, 1
    for i in w.steps():
        m0 = w.D(x, i)
        if i > 0:  # UniC: correct the last step with the new estimate, which the next step reuses
            x = step(last, i - 1, last_order, m_t=m0)
        outputs = (outputs + [m0])[-2:]
        last, last_order = x, min(2, S - i, len(outputs))  # warm-up; lower order at the end
        x = step(x, i, last_order)
        w.report(i, x, m0)
    return x


@torch.no_grad()
def unipc(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
          clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
          cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """UniPC-2 with B(h) = e^h - 1 (bh2; diffusers' default), deterministic. ``x_T: [B, ...]`` -> x0."""
    return _unipc(model, diffusion, x_T, "bh2", clip_denoised, callback, progress, cond)


@torch.no_grad()
def unipc_bh1(model: Model, diffusion: GaussianDiffusion, x_T: Tensor, *, generator: Generators = None,
              clip_denoised: bool = False, callback: Callback | None = None, progress: bool = True, eta: float = 0.0,
              cond: Mapping[str, Tensor] | None = None) -> Tensor:
    """UniPC-2 with B(h) = h (bh1), deterministic. ``x_T: [B, ...]`` -> x0."""
    return _unipc(model, diffusion, x_T, "bh1", clip_denoised, callback, progress, cond)
