"""Which steps t to train on: uniform, or importance-sampled (Improved DDPM §3.3).

Each sampler returns ``(t, weights)`` with ``weights = 1 / (T p(t))`` so that the weighted loss is
an unbiased estimate of the uniform-t objective (L_vlb = T E_{t~U}[L_t] = E_{t~p}[L_t / p(t)]).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

TimestepSamplerName = Literal["uniform", "loss_second_moment"]


class UniformSampler:
    """t ~ U{0, ..., T-1}, weights 1."""

    def __init__(self, num_steps: int) -> None:
        self.num_steps = num_steps

    def probabilities(self) -> Tensor:
        """p(t), ``[T]`` float64."""
        return torch.full((self.num_steps,), 1.0 / self.num_steps, dtype=torch.float64)

    def sample(
        self, batch_size: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``t: [B]`` (long) and the importance weights ``[B]`` (float32)."""
        p = self.probabilities()
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        weights = 1.0 / (self.num_steps * p[t])
        return t.to(device), weights.float().to(device)

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record the losses seen at steps t (nothing for the uniform sampler)."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class LossSecondMomentSampler(UniformSampler):
    """p(t) proportional to sqrt(E[L_t^2]) over the last ``history`` losses at each t (Improved DDPM Eq. 18).

    Uniform until every step has a full history; then mixed with ``uniform_prob`` of the uniform
    distribution so that no step's probability reaches zero (the weights would blow up).
    """

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 1e-3) -> None:
        super().__init__(num_steps)
        self.uniform_prob = uniform_prob
        self.losses = torch.zeros(num_steps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_steps, dtype=torch.long)

    def warmed_up(self) -> bool:
        return bool((self.counts >= self.losses.shape[1]).all())

    def probabilities(self) -> Tensor:
        if not self.warmed_up():
            return super().probabilities()
        p = (self.losses**2).mean(dim=1).sqrt()
        p = p / p.sum()
        return (1.0 - self.uniform_prob) * p + self.uniform_prob / self.num_steps

    def update(self, t: Tensor, losses: Tensor) -> None:
        history = self.losses.shape[1]
        for step, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.counts[step] == history:
                self.losses[step] = torch.roll(self.losses[step], -1)
                self.losses[step, -1] = loss
            else:
                self.losses[step, self.counts[step]] = loss
                self.counts[step] += 1

    def state_dict(self) -> dict[str, Tensor]:
        return {"losses": self.losses.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.losses = state["losses"].to(torch.float64).clone()
        self.counts = state["counts"].long().clone()


def make_timestep_sampler(name: TimestepSamplerName, num_steps: int) -> UniformSampler:
    """The timestep sampler called ``name``."""
    if name == "uniform":
        return UniformSampler(num_steps)
    if name == "loss_second_moment":
        return LossSecondMomentSampler(num_steps)
    raise ValueError(f"unknown timestep sampler {name!r}; choose uniform or loss_second_moment")
