"""The training loop (Ho et al. 2020 Algorithm 1): sample x0, t, eps; step on the loss; keep an EMA.

Boring on purpose: AdamW with linear warm-up, gradient clipping, an EMA of the weights through
``torch.optim.swa_utils.AveragedModel``, ``torch.amp`` autocast (bf16 on CUDA or CPU, fp16 with a
``GradScaler`` on CUDA), ``channels_last`` where it is faster, optional ``torch.compile``. Every source of
randomness is either a pure function of the step (the data order) or a generator whose state
is checkpointed, so a resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_state_dict_strict,
    load_training_state,
    load_weights,
    save_checkpoint,
)
from .run import build_diffusion, build_model, resolve_device
from .config import ConfigError, RunConfig, save_config, to_dict
from ..data.datasets import ImageData, load_configured, to_model_range, to_uint8
from ..samplers.ddpm import sample
from ..diffusion.timestep_sampling import make_timestep_sampler
from ..viz import plot_loss, read_metrics, save_grid

LOSS_BUCKETS = 10


def ema_with_warmup(decay: float):
    """EMA update for AveragedModel: decay min(decay, (1 + n) / (10 + n)), so early averages are not
    dominated by the random initialisation (the warm-up of TensorFlow's ExponentialMovingAverage)."""

    def update(ema_params: list[Tensor], params: list[Tensor], num_averaged: Tensor) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float]


class Trainer:
    """One training run in ``run_dir``: config.json, checkpoints/, metrics.jsonl, loss.png, samples/."""

    def __init__(self, config: RunConfig, run_dir: Path, data: ImageData | None = None, progress: bool = True) -> None:
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        d, t = config.data, config.train
        # Device and precision first: a bad pair fails before the data is read or the model built.
        self.device = resolve_device(t.device)
        self.cuda = self.device.type == "cuda"
        if t.precision == "fp16" and not self.cuda:
            raise ConfigError("--precision fp16 needs CUDA (its gradient scaler and kernels); on CPU use bf16")
        self.data = data if data is not None else load_configured(d, "train")
        d.image_channels, d.image_size = self.data.shape[0], self.data.shape[-1]
        d.num_classes = self.data.num_classes
        # The initial weights and dropout draw from the global RNG: seed it so runs repeat.
        torch.manual_seed(t.seed)
        self.diffusion = build_diffusion(config.diffusion)
        self.model = build_model(config).to(self.device)
        # auto: convolutions in channels_last win on CUDA, and on CPU in fp32 from 32x32 up
        # (bench/train_speed.py); at 8x8 the layout's slower norms and activations outweigh them,
        # and oneDNN's bf16 convolutions run faster on CPU in the default layout.
        auto_channels_last = self.cuda or (d.image_size >= 32 and t.precision == "fp32")
        self.channels_last = t.memory_format == "channels_last" or (t.memory_format == "auto" and auto_channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_with_warmup(t.ema_decay), use_buffers=True)
        self.forward = torch.compile(self.model) if t.compile else self.model
        # The fused kernel updates all tensors in one pass: 5x faster than the per-tensor loop on CPU,
        # about 5% of a step of the small default network.
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda and t.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
        self.timestep_sampler = make_timestep_sampler(config.diffusion.timestep_sampler, self.diffusion.num_steps)
        self.generator = torch.Generator().manual_seed(t.seed)
        self.noise_generator = torch.Generator(self.device).manual_seed(t.seed + 1)
        self.step = 0
        self._perm: tuple[int, Tensor] | None = None

    def _lr_factor(self, step: int) -> float:
        t = self.config.train
        if step < t.warmup:
            return (step + 1) / t.warmup
        if t.lr_schedule == "constant":
            return 1.0
        progress = (step - t.warmup) / max(1, t.train_steps - t.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # -- data order: a pure function of the step ---------------------------------------------

    def batch_indices(self, step: int) -> Tensor:
        """Indices of batch ``step``: a stream of per-epoch permutations seeded by (seed, epoch)."""
        n, b = len(self.data), self.config.train.batch_size
        pos, end, parts = step * b, (step + 1) * b, []
        while pos < end:
            epoch, offset = divmod(pos, n)
            if self._perm is None or self._perm[0] != epoch:
                g = torch.Generator().manual_seed(self.config.train.seed * 1_000_003 + epoch)
                self._perm = (epoch, torch.randperm(n, generator=g))
            take = min(end - pos, n - offset)
            parts.append(self._perm[1][offset : offset + take])
            pos += take
        return torch.cat(parts)

    # -- one optimisation step -----------------------------------------------------------------

    def train_step(self) -> tuple[float, Tensor, Tensor, float]:
        t_cfg = self.config.train
        idx = self.batch_indices(self.step)
        x0 = to_model_range(self.data.images[idx]).to(self.device, non_blocking=True)
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        cond = {}
        if self.config.model.class_conditional:
            y = self.data.labels[idx].clone()
            # Label dropout (Ho & Salimans 2022): one network learns eps(x_t, t, y) and eps(x_t, t).
            drop = torch.rand(len(y), generator=self.generator) < self.config.model.p_uncond
            y[drop] = self.data.num_classes
            cond["y"] = y.to(self.device)
        t, weights = self.timestep_sampler.sample(len(idx), generator=self.generator)
        t, weights = t.to(self.device), weights.to(self.device)
        noise = torch.randn(x0.shape, generator=self.noise_generator, device=self.device)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            terms = self.diffusion.training_losses(self.forward, x0, t, noise, **cond)
        per_example = terms["loss"].float()
        loss = (per_example * weights).mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), t_cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update_parameters(self.model)
        self.timestep_sampler.update(t, terms.get("vb", per_example).detach())
        self.step += 1
        return loss.item(), t.cpu(), per_example.detach().cpu(), grad_norm

    # -- state ---------------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema_n_averaged": self.ema.n_averaged.cpu(),
            "generator": self.generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "timestep_sampler": self.timestep_sampler.state_dict(),
        }
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path:
        return save_checkpoint(
            self.run_dir,
            self.step,
            self.config,
            self.model.state_dict(),
            self.ema.module.state_dict(),
            self.training_state(),
            self.config.train.keep_checkpoints,
        )

    def load(self, checkpoint: Path) -> None:
        """Restore everything from ``checkpoint`` (weights, EMA, optimizer, scaler, RNG, step)."""
        load_state_dict_strict(self.model, load_weights(checkpoint, ema=False), checkpoint)
        load_state_dict_strict(self.ema.module, load_weights(checkpoint, ema=True), checkpoint)
        state = load_training_state(checkpoint)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.ema.n_averaged.copy_(state["ema_n_averaged"])
            self.generator.set_state(state["generator"])
            self.noise_generator.set_state(state["noise_generator"])
            torch.set_rng_state(state["torch_rng"])
            if self.cuda and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.timestep_sampler.load_state_dict(state["timestep_sampler"])
            self.step = int(state["step"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint}: training state does not match this run ({e})") from None

    # -- pictures ------------------------------------------------------------------------------

    @torch.no_grad()
    def preview(self, n: int = 64) -> Path:
        """A grid of EMA samples from a fixed seed, so that previews are comparable across steps."""
        t = self.config.train
        cond = {}
        if self.config.model.class_conditional:
            cond["y"] = torch.arange(n, device=self.device) % self.data.num_classes
        g = torch.Generator(self.device).manual_seed(1234)
        x = sample(self.ema.module.eval(), self.diffusion, (n, *self.data.shape), sampler=t.preview_sampler,
                   steps=t.preview_steps, generator=g, clip_denoised=True, progress=False, device=self.device, **cond)
        self.ema.module.train()
        path = save_grid(to_uint8(x), self.run_dir / "samples" / f"step-{self.step:07d}.png",
                         nrow=self.data.num_classes if cond else None)
        save_grid(to_uint8(x), self.run_dir / "samples.png", nrow=self.data.num_classes if cond else None)
        return path

    # -- the loop ------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainResult:
        t = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume:
            found = list_checkpoints(self.run_dir)
            if not found:
                raise CheckpointError(f"{self.run_dir}: nothing to resume (no checkpoint)")
            self.load(found[-1])
            # Metrics logged after the checkpoint would be repeated: drop them.
            kept = [r for r in read_metrics(metrics_path) if r.get("step", 0) <= self.step]
            metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        else:
            metrics_path.write_text("")
        save_config(self.config, self.run_dir / "config.json")

        losses: list[float] = []
        window: list[float] = []
        bucket_sum = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)
        bucket_n = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)
        bar = tqdm(total=t.train_steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        tick = time.perf_counter()
        with open(metrics_path, "a") as metrics:
            while self.step < t.train_steps:
                loss, steps, per_example, grad_norm = self.train_step()
                losses.append(loss)
                window.append(loss)
                buckets = steps * LOSS_BUCKETS // self.diffusion.num_steps
                bucket_sum.index_add_(0, buckets, per_example.double())
                bucket_n.index_add_(0, buckets, torch.ones_like(per_example, dtype=torch.float64))
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == t.train_steps:
                    elapsed = time.perf_counter() - tick
                    row = {
                        "step": self.step,
                        "loss": sum(window) / len(window),
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm,
                        "images_per_s": len(window) * t.batch_size / max(elapsed, 1e-9),
                        "loss_by_t": (bucket_sum / bucket_n.clamp(min=1)).tolist(),
                    }
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
                    window.clear()
                    bucket_sum.zero_(), bucket_n.zero_()
                    tick = time.perf_counter()
                if self.step % t.checkpoint_every == 0 or self.step == t.train_steps:
                    self.save()
                if self.step % t.sample_every == 0 or self.step == t.train_steps:
                    self.preview()
                    plot_loss(metrics_path, self.run_dir / "loss.png")
        bar.close()
        plot_loss(metrics_path, self.run_dir / "loss.png")
        return TrainResult(self.run_dir, self.step, losses)


def describe(config: RunConfig) -> str:
    """The resolved config as indented JSON (for ``--dry-run``)."""
    return json.dumps(to_dict(config), indent=2)
