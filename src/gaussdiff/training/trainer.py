"""The diffusion training loop (Ho et al. 2020 Algorithm 1): sample x0, t, eps; step on the loss; keep an EMA.

Boring on purpose: the optimisation step is :class:`~gaussdiff.training.loop.Optimization`'s;
``channels_last`` where it is faster, optional ``torch.compile``. Conditions come from the data as a
dict and go to ``model(x_t, t, **cond)``, each dropped for classifier-free training by its own
probability; the trainer knows none by name. It writes checkpoints; everything a person looks at
(metrics.jsonl, previews, plots) goes to the :class:`Logger` it is handed. Every source of
randomness is either a pure function of the step (the data order) or a generator whose state is
checkpointed, so a resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conditioning.conditions import drop_conditions
from ..data.datasets import ImageData, load_configured, to_model_range, to_uint8
from ..diffusion.timestep_sampling import make_timestep_sampler
from ..errors import CheckpointError
from ..nets.unet import UNet
from ..samplers.run import sample
from .checkpoint import latest_checkpoint, load_state_dict_strict, load_training_state, load_weights, save_checkpoint
from .config import RunConfig, save_config
from .latent import check_autoencoder_fits, load_latent_space
from .loop import DataOrder, Optimization, check_precision, resolve_device

LOSS_BUCKETS = 10


class Logger(Protocol):
    """Where a run's figures and pictures go; the CLI's writes metrics.jsonl, sample grids and loss.png."""

    def start(self, run_dir: Path, step: int) -> None:
        """A run in ``run_dir`` starts (or resumes) at ``step``."""

    def log(self, row: dict[str, Any]) -> None:
        """One row of metrics: step, loss, lr, grad_norm, images_per_s, loss_by_t."""

    def images(self, step: int, images: Tensor, per_row: int | None, row_labels: Sequence[str] = ()) -> None:
        """The preview grid at ``step``: ``uint8 [N, C, H, W]``, ``per_row`` a row (None: square), with
        ``row_labels`` to write beside the rows (prompts)."""

    def close(self) -> None:
        """The run stopped (finished, or interrupted)."""


class NullLogger:
    """Keeps nothing: for benchmarks and tests that look only at the losses."""

    def start(self, run_dir: Path, step: int) -> None:
        pass

    def log(self, row: dict[str, Any]) -> None:
        pass

    def images(self, step: int, images: Tensor, per_row: int | None, row_labels: Sequence[str] = ()) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float]


class Trainer:
    """One training run in ``run_dir``: config.json and checkpoints/, and what it hands ``logger``.

    ``config`` is resolved against the data into :attr:`config` (the one saved); the given one is not changed.
    """

    def __init__(self, config: RunConfig, run_dir: Path, data: ImageData | None = None, progress: bool = True,
                 logger: Logger | None = None) -> None:
        self.run_dir = run_dir
        self.progress = progress
        self.logger = logger or NullLogger()
        t = config.train
        # Device and precision first: a bad pair fails before the data is read or the model built.
        self.device = resolve_device(t.device)
        self.cuda = self.device.type == "cuda"
        check_precision(t.optim.precision, self.device)
        self.data = data if data is not None else load_configured(config.data, "train")
        self.latent, latent_shape = None, None
        if config.latent.latent is not None:
            self.latent, ae_config, sha = load_latent_space(config.latent.latent, self.device,
                                                            config.latent.latent_sha256)
            check_autoencoder_fits(config.latent.latent, ae_config, self.data)
            latent_shape = (self.latent.channels, self.latent.size, sha)
        self.config = config.resolve(self.data, latent_shape)
        self.conditions = self.config.conditions()
        # Every condition of every example, read once (labels; captions tokenized): [N, ...] each.
        self.offered = {c.key: c.of_data(self.data) for c in self.conditions}
        # Latent runs encode the data once (Rombach et al. train on cached latents too); pixel runs scale on the fly.
        self.latents = None if self.latent is None else self.latent.encode_all(to_model_range(self.data.images))
        # The initial weights and dropout draw from the global RNG: seed it so runs repeat.
        torch.manual_seed(t.seed)
        self.diffusion = self.config.diffusion.build()
        self.model = UNet(self.config.model).to(self.device)
        # auto: convolutions in channels_last win on CUDA, and on CPU in fp32 from 32x32 up
        # (bench/train_speed.py); at 8x8 the layout's slower norms and activations outweigh them,
        # and oneDNN's bf16 convolutions run faster on CPU in the default layout.
        auto_channels_last = self.cuda or (self.config.model.image_size >= 32 and t.optim.precision == "fp32")
        self.channels_last = t.memory_format == "channels_last" or (t.memory_format == "auto" and auto_channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optim = Optimization(self.model, t.optim, t.train_steps, self.device)
        self.forward = torch.compile(self.model) if t.compile else self.model
        self.timestep_sampler = make_timestep_sampler(self.config.diffusion.timestep_sampler, self.diffusion.num_steps)
        self.generator = torch.Generator().manual_seed(t.seed)
        self.noise_generator = torch.Generator(self.device).manual_seed(t.seed + 1)
        self.order = DataOrder(len(self.data), t.batch_size, t.seed)
        self.step = 0

    @property
    def ema_model(self) -> torch.nn.Module:
        """The averaged network (the model itself when the run keeps no EMA)."""
        return self.optim.ema.module if self.optim.ema is not None else self.model

    def batch_indices(self, step: int) -> Tensor:
        """Indices of batch ``step`` (:class:`~gaussdiff.training.loop.DataOrder`)."""
        return self.order.indices(step)

    # -- one optimisation step -----------------------------------------------------------------

    def train_step(self) -> tuple[float, Tensor, Tensor, float | None]:
        idx = self.batch_indices(self.step)
        x0 = (to_model_range(self.data.images[idx]) if self.latents is None else self.latents[idx]).to(self.device)
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        cond = drop_conditions({k: v[idx] for k, v in self.offered.items()}, self.conditions, self.generator)
        cond = {k: v.to(self.device) for k, v in cond.items()}
        cond = {k: v for c in self.conditions for k, v in c.augment(cond[c.key], self.generator).items()}
        t, weights = self.timestep_sampler.sample(len(idx), generator=self.generator)
        t, weights = t.to(self.device), weights.to(self.device)
        noise = torch.randn(x0.shape, generator=self.noise_generator, device=self.device)
        with self.optim.autocast():
            terms = self.diffusion.training_losses(self.forward, x0, t, noise, **cond)
        per_example = terms["loss"].float()
        loss = (per_example * weights).mean()
        grad_norm = self.optim.step(loss)
        self.timestep_sampler.update(t, terms.get("vb", per_example).detach())
        self.step += 1
        return loss.item(), t.cpu(), per_example.detach().cpu(), grad_norm

    # -- state ---------------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            **self.optim.state_dict(),
            "generator": self.generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "timestep_sampler": self.timestep_sampler.state_dict(),
        }
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path:
        weights = {"model": self.model.state_dict(), "ema": self.ema_model.state_dict()}
        return save_checkpoint(self.run_dir, self.step, self.config, weights, self.training_state(),
                               self.config.train.bookkeeping.keep_checkpoints)

    def load(self, checkpoint: Path) -> None:
        """Restore everything from ``checkpoint`` (weights, EMA, optimizer, scaler, RNG, step)."""
        load_state_dict_strict(self.model, load_weights(checkpoint, "model"), checkpoint)
        load_state_dict_strict(self.ema_model, load_weights(checkpoint, "ema"), checkpoint)
        state = load_training_state(checkpoint)
        try:
            self.optim.load_state_dict(state)
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
    def preview(self, n: int = 64) -> tuple[Tensor, int | None, list[str]]:
        """EMA samples ``uint8 [n, C, H, W]`` from a fixed seed, so that previews are comparable across
        steps, their grid's row length (one row per condition value) and what to write beside the rows."""
        t = self.config.train
        cond = {c.key: c.examples(n, self.device) for c in self.conditions}
        if any(v is None for v in cond.values()):  # a super-resolution stage: the data's first n, all conditions
            cond = {k: v[:n].to(self.device) for k, v in self.offered.items()}
        level = self.config.super_res.cond_aug_level
        keep = torch.Generator().manual_seed(4321)
        cond = {k: v for c in self.conditions for k, v in c.augment(cond[c.key], keep, level).items()}
        g = torch.Generator(self.device).manual_seed(1234)
        ema = self.ema_model.eval()
        m = self.config.model
        x = sample(ema, self.diffusion, (n, m.in_channels, m.image_size, m.image_size), sampler=t.preview_sampler,
                   steps=t.preview_steps, generator=g, clip_denoised=self.latent is None, progress=False,
                   device=self.device, **cond)
        ema.train()
        if self.latent is not None:
            x = self.latent.decode(x)
        # The grid follows the last condition: a text run's prompts a row each (its labels, if any, cycle).
        last = self.conditions[-1] if self.conditions else None
        return to_uint8(x).cpu(), last.per_row if last else None, last.example_names(n) if last else []

    # -- the loop ------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainResult:
        t = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load(latest_checkpoint(self.run_dir))
        save_config(self.config, self.run_dir / "config.json")
        self.logger.start(self.run_dir, self.step)

        losses: list[float] = []
        window: list[float] = []
        bucket_sum = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)
        bucket_n = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)
        bar = tqdm(total=t.train_steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        b = t.bookkeeping
        tick = time.perf_counter()
        try:
            while self.step < t.train_steps:
                loss, steps, per_example, grad_norm = self.train_step()
                losses.append(loss)
                window.append(loss)
                buckets = steps * LOSS_BUCKETS // self.diffusion.num_steps
                bucket_sum.index_add_(0, buckets, per_example.double())
                bucket_n.index_add_(0, buckets, torch.ones_like(per_example, dtype=torch.float64))
                bar.update(1)
                if b.due(b.log_every, self.step, t.train_steps):
                    elapsed = time.perf_counter() - tick
                    row = {
                        "step": self.step,
                        "loss": sum(window) / len(window),
                        "lr": self.optim.lr,
                        "grad_norm": grad_norm,
                        "images_per_s": len(window) * t.batch_size / max(elapsed, 1e-9),
                        "loss_by_t": (bucket_sum / bucket_n.clamp(min=1)).tolist(),
                    }
                    self.logger.log(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
                    window.clear()
                    bucket_sum.zero_(), bucket_n.zero_()
                    tick = time.perf_counter()
                if b.due(b.checkpoint_every, self.step, t.train_steps):
                    self.save()
                if b.due(b.sample_every, self.step, t.train_steps):
                    self.logger.images(self.step, *self.preview())
        finally:
            bar.close()
            self.logger.close()
        return TrainResult(self.run_dir, self.step, losses)

