"""The optimisation step every trainer shares: AdamW, its learning-rate schedule, AMP, clipping, EMA.

Boring on purpose (EDM's ``training_loop.py``, nanoGPT's ``train.py``): ``torch.amp`` autocast (bf16
on CUDA or CPU, fp16 with a ``GradScaler`` on CUDA), the fused AdamW kernel, and an EMA of the
weights through ``torch.optim.swa_utils.AveragedModel``. The diffusion trainer, the noise-aware
classifier's and the domain classifier's all step through :class:`Optimization`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ..errors import ConfigError
from ..nets.fast import BF16_PAYS, CompileMode, bf16_supported

Precision = Literal["auto", "fp32", "bf16", "fp16"]
LrSchedule = Literal["constant", "cosine", "one_cycle"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and what surrounds it."""

    lr: float = 2e-3
    """Peak learning rate (> 0)."""
    warmup: int = 200
    """Steps of linear warm-up (constant and cosine schedules; >= 0)."""
    lr_schedule: LrSchedule = "cosine"
    """After warm-up: constant, or cosine decay to zero at --train-steps (the last step, 0-based --train-steps - 1,
    takes the last rate above zero); ``one_cycle`` is torch's OneCycleLR (its own warm-up over 30% of the steps)."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay (>= 0)."""
    grad_clip: float | None = 1.0
    """Clip the gradient's global norm to this (> 0; None: no clipping)."""
    ema_decay: float | None = 0.999
    """Keep an EMA of the weights with this decay, in [0, 1) (None: no EMA); gaussdiff train only (train-classifier
    and train-autoencoder keep none)."""
    precision: Precision = "auto"
    """Mixed precision: ``auto`` (bf16 where it pays and is safe: on CUDA with bf16, and on a CPU with AMX or
    AVX-512 BF16 when a measured training pass of this network is at least 1/0.85 times faster; fp32
    elsewhere; the run's config records the choice), ``fp32``, ``bf16`` autocast on CUDA or CPU, or
    ``fp16`` with a gradient scaler (CUDA only)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...; a name torch does not know, or a CUDA
    device without CUDA, is a :class:`ConfigError` (torch's own is a many-line RuntimeError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device: torch.device | None = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):  # torch knows others ("meta") that cannot train
        raise ConfigError(f"--device {name!r}: not a device (auto, cpu, cuda, cuda:N, mps)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} asked for, but MPS is not available")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return device


COMPILE_ON_CUDA: CompileMode = "reduce-overhead"
"""``--compile auto``'s mode on CUDA: measured by bench/train_speed.py on an H200 (docs/speed.md), bf16 training of
the CIFAR-sized U-Net at batch 128 ran 10 170 img/s with ``reduce-overhead`` (inductor's kernels replayed from CUDA
graphs), 3 244 with ``default`` and 2 272 eager: at this size a step is bound by kernel launches."""


def resolve_compile(mode: CompileMode, device: torch.device, distributed: bool = False) -> CompileMode:
    """``auto`` -> :data:`COMPILE_ON_CUDA` on CUDA where Triton (inductor's GPU code generator) is installed, else
    ``off``; under DDP ``default``, since DDP's gradient hooks in the backward pass break CUDA graph capture.
    Any other mode is returned as it is."""
    if mode != "auto":
        return mode
    if device.type != "cuda" or importlib.util.find_spec("triton") is None:
        return "off"
    return "default" if distributed else COMPILE_ON_CUDA


def resolve_precision(precision: Precision, device: torch.device,
                      time_pass: Callable[[Precision], float] | None = None, repeats: int = 3) -> Precision:
    """``auto`` -> ``fp32`` or ``bf16`` (any other choice is returned as it is). bf16 needs native support
    (:func:`bf16_supported`); on CUDA it is then taken, on CPU only if ``time_pass(precision)`` (the seconds of
    one training pass of the run's network) measures bf16 at most :data:`BF16_PAYS` of fp32 in every one of
    ``repeats`` paired passes after a warm-up of each; without ``time_pass`` a CPU keeps fp32.

    Every pair, not their median: on a loaded machine (another job on the same cores) single passes vary 2-4x,
    and a median of 3 ratios took bf16 for the digits network in 4 of 8 tries where a quiet machine measures
    0.93-1.07; a gain that every pair shows is real, and a doubtful one keeps fp32, the exact choice."""
    if precision != "auto":
        return precision
    if not bf16_supported(device):
        return "fp32"
    if device.type == "cuda":
        return "bf16"
    if time_pass is None:
        return "fp32"
    ratios = []
    for i in range(repeats + 1):
        fp32, bf16 = time_pass("fp32"), time_pass("bf16")
        if i > 0:
            ratios.append(bf16 / fp32)
    return "bf16" if max(ratios) <= BF16_PAYS else "fp32"


def check_precision(precision: Precision, device: torch.device) -> None:
    """fp16 needs CUDA; a trainer calls this before it reads data or builds a network."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs CUDA (its gradient scaler and kernels); on CPU use bf16")


def ema_with_warmup(decay: float):
    """EMA update for AveragedModel: decay min(decay, (1 + n) / (10 + n)), so early averages are not
    dominated by the random initialisation (the warm-up of TensorFlow's ExponentialMovingAverage)."""

    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


class Optimization:
    """AdamW on ``model`` for ``total_steps`` steps, as ``config`` asks; :meth:`step` takes one.

    Build it after the model is on its device and in its memory layout: the EMA copies the model.
    """

    def __init__(self, model: nn.Module, config: OptimConfig, total_steps: int, device: torch.device) -> None:
        check_precision(config.precision, device)
        # A trainer resolves auto by measuring and records it; here it falls back to the unmeasured choice.
        config = replace(config, precision=resolve_precision(config.precision, device))
        self.model, self.config, self.total_steps, self.device = model, config, total_steps, device
        # The fused kernel updates all tensors in one pass: 5x faster than the per-tensor loop on CPU,
        # about 5% of a step of the small default network.
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           fused=device.type in ("cpu", "cuda"))
        if config.lr_schedule == "one_cycle":
            # A run of 0 steps (train-autoencoder --train-steps 0 measures the latent scale only) never steps it,
            # but torch refuses a cycle of 0 steps.
            self.scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=config.lr,
                                                                      total_steps=max(total_steps, 1))
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.ema = None
        if config.ema_decay is not None:
            self.ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)

    def lr_factor(self, step: int) -> float:
        """The learning rate at ``step`` over the peak: linear warm-up, then constant or cosine to zero."""
        c = self.config
        if step < c.warmup:
            return (step + 1) / c.warmup
        if c.lr_schedule == "constant":
            return 1.0
        progress = (step - c.warmup) / max(1, self.total_steps - c.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's mixed-precision context (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None)

    @property
    def lr(self) -> float:
        """The rate of the next step."""
        return self.optimizer.param_groups[0]["lr"]

    def step(self, loss: Tensor) -> tuple[float, bool]:
        """Backpropagate ``loss`` and update the weights, the schedule and the EMA. Returns the gradient's
        global norm before clipping, and whether the update was applied: a non-finite gradient (NaN or
        inf anywhere, as a NaN loss gives) is never applied, so the weights and the EMA stay as they were.
        Under fp16 the gradient scaler makes that choice itself (an overflow there is routine: it skips
        the step and lowers its scale), so the update counts as applied."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        # With max_norm = inf the call only measures, so every run sees a non-finite gradient.
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        applied = math.isfinite(grad_norm) or self.scaler.is_enabled()
        if applied:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():
            # A first update not applied (a NaN skipped, or fp16's routine overflow at its first scale) makes
            # torch warn that the schedule steps before the optimizer: here that is the intent, not a slip.
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.scheduler.step()  # the learning rate stays a function of the step, applied or not
        if self.ema is not None and applied:
            self.ema.update_parameters(self.model)
        return grad_norm, applied

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:
            state["ema_n_averaged"] = self.ema.n_averaged.cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the EMA's weights are loaded by the caller, from safetensors). A run resumed
        in fp16 from steps without it (--precision may change on --resume) starts its gradient scaler afresh: a
        disabled scaler saved an empty state, which torch's ``load_state_dict`` refuses."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            # The optimizer's saved rate is the old schedule's: a resume with a longer --train-steps stretches the
            # cosine, and its next step (a finished run's: rate 0) takes this schedule's rate, as every later one.
            step = self.scheduler.last_epoch
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base * self.lr_factor(step)
        if state["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.n_averaged.copy_(state["ema_n_averaged"])
