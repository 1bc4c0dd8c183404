"""The diffusion training loop (Ho et al. 2020 Algorithm 1): sample x0, t, eps; step on the loss; keep an EMA.

Boring on purpose: the optimisation step is :class:`~gaussdiff.training.loop.Optimization`'s;
``channels_last`` where it is faster, ``torch.compile`` on CUDA. Conditions come from the data as a
dict and go to ``model(x_t, t, **cond)``, each dropped for classifier-free training by its own
probability; the trainer knows none by name. It writes checkpoints; everything a person looks at
(metrics.jsonl, previews, plots) goes to the :class:`Logger` it is handed. Every source of
randomness is either a pure function of the step (the data order) or a generator whose state is
checkpointed, so a resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..conditioning.conditions import drop_conditions
from ..data.datasets import ImageData, load_configured, mix_seed, to_model_range, to_uint8
from ..diffusion.timestep_sampling import make_timestep_sampler
from ..errors import CheckpointError, DataError, NonFiniteError, WriteError
from ..nets.kernels.winograd import conv_choices, measuring_seconds, restore_conv_choices, share_conv_verdicts
from ..nets.unet import UNet
from ..samplers.run import sample
from .batches import DataOrder, generator_seed, stream_batches
from .checkpoint import (load_state_dict_strict, load_training_state, load_weights, save_checkpoint,
                         verify_checkpoint)
from .config import RunConfig, save_config
from .control import (Logger, NullLogger, StopSignals, TrainResult, end_of_step, restore_generator,
                      resume_checkpoint, warn)
from .conv_cache import keep_verdicts, load_verdicts
from .distributed import Distributed, fingerprint
from .latent import check_autoencoder_fits, load_latent_space
from .loop import Optimization, Precision, check_precision, resolve_compile, resolve_device, resolve_precision

LOSS_BUCKETS = 10

PREVIEW_SEED = 1234
"""The previews' noise: the same at every step, so that a run's previews show the same samples improving."""


class Trainer:
    """One training run in ``run_dir``: config.json and checkpoints/, and what it hands ``logger``.

    ``config`` is resolved against the data into :attr:`config` (the one saved); the given one is not changed.
    Under torchrun (``dist``) every rank builds the same trainer; each computes its part of every global
    batch in a DistributedDataParallel replica, and rank 0 alone writes logs, pictures and checkpoints.
    ``conv_cache``: a directory keeping ``--conv auto``'s verdicts per machine (:mod:`.conv_cache`; the CLI's is
    ``gaussdiff/conv`` in the user's cache, :func:`.files.user_cache_dir`), so that a run measures only layer
    configurations no earlier run here has; None keeps them for this run only (and its checkpoints).
    """

    def __init__(self, config: RunConfig, run_dir: Path, data: ImageData | None = None, progress: bool = True,
                 logger: Logger | None = None, dist: Distributed | None = None, conv_cache: Path | None = None) -> None:
        self.run_dir = run_dir
        self.dist = dist or Distributed()
        self.progress = progress and self.dist.is_main
        self.logger = (logger or NullLogger()) if self.dist.is_main else NullLogger()
        t = config.train
        # Device and precision first: a bad pair fails before the data is read or the model built.
        self.device = self.dist.device_for(resolve_device(t.device))
        self.cuda = self.device.type == "cuda"
        check_precision(t.optim.precision, self.device)
        self.dist.share(t.batch_size)
        self.data = data if data is not None else load_configured(config.data, "train", stream=True)
        self.latent, latent_shape = None, None
        if config.latent.latent is not None:
            self.latent, ae_config, sha = load_latent_space(config.latent.latent, self.device,
                                                            config.latent.latent_sha256)
            check_autoencoder_fits(config.latent.latent, ae_config, self.data)
            latent_shape = (self.latent.channels, self.latent.size, sha)
        self.config = config.resolve(self.data, latent_shape)
        self.conditions = self.config.conditions()
        # Conditions computed from the pixels (a super-resolution stage's low-resolution image) come from each
        # step's decoded, flipped batch (:meth:`conditions_of`); the others are read once for every example
        # (labels; captions tokenized): [N, ...] each.
        self.from_pixels = [c for c in self.conditions if c.from_pixels]
        self.offered = {c.key: c.of_data(self.data) for c in self.conditions if c not in self.from_pixels}
        # Latent runs in memory encode the data once (Rombach et al. train on cached latents too); streamed ones
        # encode each step's batch, as latent-diffusion's own trainer does; pixel runs scale on the fly.
        self.latents = None
        if self.latent is not None and not self.data.streamed:
            self.latents = self.latent.encode_all(to_model_range(self.data.images))
        # The initial weights and dropout draw from the global RNG: seed it so runs repeat.
        torch.manual_seed(t.seed)
        self.diffusion = self.config.diffusion.build()
        self.model = UNet(self.config.model).to(self.device)
        self.model.set_gradient_checkpointing(t.gradient_checkpointing)
        # --conv auto's verdicts, shared by the layers (one measurement a configuration) from before --precision
        # auto's timed passes, which measure too; on CPU only, where auto measures.
        self.conv_cache = conv_cache if self.device.type == "cpu" else None
        self.conv_known = load_verdicts(self.conv_cache) if self.conv_cache is not None else {}
        self.conv_told = dict(self.conv_known)  # what the table on disk (or the last note) already holds
        share_conv_verdicts(self.model, self.conv_known)
        if t.optim.precision == "auto":
            # Measured on this machine and this network (rank 0's verdict for every rank), then recorded.
            precision = self.dist.broadcast(resolve_precision("auto", self.device, self.time_training_pass))
            optim = replace(self.config.train.optim, precision=precision)
            self.config = replace(self.config, train=replace(self.config.train, optim=optim))
            t = self.config.train
        self.channels_last = self.channels_last_for(t.optim.precision)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optim = Optimization(self.model, t.optim, t.train_steps, self.device)
        replica: torch.nn.Module = self.model
        if self.dist.active:
            # Averages the gradients over the ranks during backward; every replica starts from rank 0's weights.
            replica = DistributedDataParallel(self.model, device_ids=[self.device] if self.cuda else None)
        # Resolved at every start and not recorded (unlike the precision, it does not change the results): a run
        # resumed under torchrun or on CPU takes the mode that suits it there.
        self.compile_mode = resolve_compile(t.compile, self.device, self.dist.active)
        self.forward = replica if self.compile_mode == "off" else torch.compile(replica, mode=self.compile_mode)
        self.timestep_sampler = make_timestep_sampler(self.config.diffusion.timestep_sampler, self.diffusion.num_steps)
        # Every rank draws the whole global batch's conditions, t and noise from these and keeps its part, so
        # example i of a batch gets the same draws whatever the number of ranks.
        self.generator = torch.Generator().manual_seed(t.seed)
        self.noise_generator = torch.Generator(self.device).manual_seed(generator_seed(t.seed + 1))
        self.order = DataOrder(len(self.data), t.batch_size, t.seed)
        self.batches: Iterator[Tensor] | None = None  # a streamed folder's batches, from run()
        self.step = 0
        self.skipped = 0
        # The steps since the last row of metrics.jsonl: checkpointed, so a resumed run logs the rows an
        # uninterrupted one would even when checkpoints and rows do not line up.
        self.window: list[float] = []
        self.bucket_sum = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)
        self.bucket_n = torch.zeros(LOSS_BUCKETS, dtype=torch.float64)

    def channels_last_for(self, precision: Precision) -> bool:
        """``--memory-format auto``: convolutions in channels_last win on CUDA, and on CPU in fp32 from 32x32 up
        (bench/train_speed.py); at 8x8 the layout's slower norms and activations outweigh them, and oneDNN's
        bf16 convolutions run faster on CPU in the default layout."""
        t = self.config.train
        auto = self.cuda or (self.config.model.image_size >= 32 and precision == "fp32")
        return t.memory_format == "channels_last" or (t.memory_format == "auto" and auto)

    def time_training_pass(self, precision: Precision) -> float:
        """Seconds of one forward and backward pass of the network on this rank's batch, in ``precision`` (and
        the layout it would train in), for ``--precision auto``. Leaves the weights, their gradients and the
        global RNG as they were."""
        b = self.dist.share(self.config.train.batch_size)
        g = torch.Generator().manual_seed(0)
        idx = torch.arange(b) % len(self.data)
        x0, pixels = self.x0_of(self.data.images[idx] if self.latents is None else None, idx)
        cond = {k: v.to(self.device) for k, v in self.conditions_of(idx, pixels, whole=False).items()}
        cond = {k: v for c in self.conditions for k, v in c.augment(cond[c.key], g).items()}
        t = torch.randint(0, self.diffusion.num_steps, (b,), generator=g).to(self.device)
        noise = torch.randn(x0.shape, generator=g).to(self.device)
        layout = torch.channels_last if self.channels_last_for(precision) else torch.contiguous_format
        self.model.to(memory_format=layout)
        x0 = x0.contiguous(memory_format=layout)
        params = [p for p in self.model.parameters() if p.requires_grad]
        rng = torch.get_rng_state()
        dtype = torch.bfloat16 if precision == "bf16" else None
        start = time.perf_counter()
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            loss = self.diffusion.training_losses(self.model, x0, t, noise, **cond)["loss"].float().mean()
        torch.autograd.grad(loss, params)
        if self.cuda:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        torch.set_rng_state(rng)
        self.model.to(memory_format=torch.contiguous_format)
        return seconds

    def keep_conv_verdicts(self) -> str | None:
        """After a step: the verdicts ``--conv auto`` measured since the last call, added to the machine's table
        (rank 0), and a line saying what measuring cost and found (None when nothing was measured)."""
        new = {k: v for k, v in self.conv_known.items() if self.conv_told.get(k) != v}
        if not new:
            return None
        self.conv_told = dict(self.conv_known)
        where = ""
        if self.conv_cache is not None and self.dist.is_main:
            try:
                where = f"; kept for this machine in {keep_verdicts(self.conv_cache, new)}"
            except WriteError as e:
                where = f" ({e}: the next run measures again)"
        winograd = sum(new.values())
        return (f"--conv auto measured {len(new)} layer configuration(s) in {measuring_seconds(self.model):.1f} s: "
                f"Winograd on {winograd}, the direct kernel on {len(new) - winograd}{where}")

    @property
    def ema_model(self) -> torch.nn.Module:
        """The averaged network (the model itself when the run keeps no EMA)."""
        return self.optim.ema.module if self.optim.ema is not None else self.model

    def batch_indices(self, step: int) -> Tensor:
        """Indices of global batch ``step`` (:class:`~gaussdiff.training.batches.DataOrder`)."""
        return self.order.indices(step)

    # -- one optimisation step -----------------------------------------------------------------

    def images_of_step(self, mine: Tensor) -> Tensor:
        """This rank's ``uint8`` images of the current step: decoded ahead by the DataLoader of a streamed folder
        (whose batches follow the same DataOrder), or indexed in memory."""
        if self.batches is None:
            return self.data.images[mine]
        batch = next(self.batches)
        if isinstance(batch, str):  # a worker could not decode an image: its message, one line
            raise DataError(f"step {self.step + 1}: {batch}")
        return batch

    def x0_of(self, images: Tensor | None, mine: Tensor, flip: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(x0, pixels) of this rank's examples ``mine: [b]`` on the device, flipped where ``flip: [b]``: x0 the
        pixels ``[b, C, H, W]`` in [-1, 1] from ``uint8`` ``images: [b, C, H, W]``, or their latents ``[b, c, h, w]``
        (encoded here for a streamed latent run; cached for one in memory, when ``images`` is None, and then
        flipped as latents); ``pixels`` is None for cached latents."""
        if images is None:
            x0, pixels = self.latents[mine].to(self.device), None
        else:
            x0 = pixels = to_model_range(images).to(self.device)
        if flip is not None:
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            pixels = None if pixels is None else x0
        if self.latent is not None and pixels is not None:
            with torch.no_grad():
                x0 = self.latent.encode(pixels)
        return x0, pixels

    def conditions_of(self, idx: Tensor, pixels: Tensor | None, whole: bool = True) -> dict[str, Tensor]:
        """Every condition of examples ``idx: [B]``, ``{key: [B, ...]}``: read ones indexed, pixel ones computed
        from this rank's ``pixels: [b, C, H, W]``. With ``whole`` (``idx`` the global batch) a pixel condition
        fills this rank's part of a global-size tensor of zeros, so that the draws made for the global batch
        (dropout, augmentation) are every rank's."""
        values = {k: v[idx] for k, v in self.offered.items()}
        for c in self.from_pixels:
            mine = c.of_images(pixels)
            if whole:
                full = torch.zeros((len(idx), *mine.shape[1:]), dtype=mine.dtype, device=mine.device)
                self.dist.part(full).copy_(mine)
                mine = full
            values[c.key] = mine
        return values

    def train_step(self) -> tuple[float, Tensor, Tensor, float]:
        """One step on the global batch; its weighted mean loss, t, per-example losses and gradient norm."""
        part = self.dist.part
        idx = self.batch_indices(self.step)
        mine = part(idx)
        images = None if self.latents is not None else self.images_of_step(mine)
        flip = None
        if self.config.data.hflip:  # drawn for the whole batch, so that example i flips whatever the ranks
            flip = part(torch.rand(len(idx), generator=self.generator) < 0.5).to(self.device)
        x0, pixels = self.x0_of(images, mine, flip)
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        cond = drop_conditions(self.conditions_of(idx, pixels), self.conditions, self.generator)
        cond = {k: v.to(self.device) for k, v in cond.items()}
        cond = {k: part(v) for c in self.conditions for k, v in c.augment(cond[c.key], self.generator).items()}
        t, weights = self.timestep_sampler.sample(len(idx), generator=self.generator)
        noise = torch.randn((len(idx), *x0.shape[1:]), generator=self.noise_generator, device=self.device)
        t_mine, w_mine = part(t).to(self.device), part(weights).to(self.device)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are no longer read
        with self.optim.autocast():
            terms = self.diffusion.training_losses(self.forward, x0, t_mine, part(noise), **cond)
        per_example = terms["loss"].float()
        # Each rank's mean over its part; DDP averages the gradients over the ranks: the global batch's mean.
        grad_norm, applied = self.optim.step((per_example * w_mine).mean())
        everyone = self.dist.gather(per_example.detach()).cpu()
        loss = float((everyone * weights).mean())
        if not applied:
            self.skipped += 1
            if self.skipped > self.config.train.skip_nonfinite:
                raise NonFiniteError(f"step {self.step + 1}: non-finite loss or gradient (loss {loss:.4g}, "
                                     f"gradient norm {grad_norm:.4g}); the update was not applied and the last "
                                     f"checkpoint stays (--skip-nonfinite N skips up to N such steps)")
            warn(f"step {self.step + 1}: non-finite loss or gradient, skipped ({self.skipped} so far)")
        else:
            vb = self.dist.gather(terms["vb"].detach().float()) if "vb" in terms else everyone.to(self.device)
            self.timestep_sampler.update(t.to(self.device), vb)
        self.step += 1
        return loss, t.cpu(), everyone, grad_norm

    # -- state ---------------------------------------------------------------------------------

    def training_state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            **self.optim.state_dict(),
            "generator": self.generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "timestep_sampler": self.timestep_sampler.state_dict(),
            "skipped": self.skipped,
            "log_window": torch.tensor(self.window, dtype=torch.float64),
            "bucket_sum": self.bucket_sum.clone(),
            "bucket_n": self.bucket_n.clone(),
            "conv_choices": conv_choices(self.model),
        }
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self) -> Path:
        """Rank 0 writes checkpoint ``step``; every rank first checks that the replicas still agree."""
        if not self.dist.same_everywhere(torch.cat([fingerprint(self.model), fingerprint(self.ema_model)])):
            raise CheckpointError(f"step {self.step}: the ranks' weights or EMAs differ; not writing a checkpoint")
        path = self.run_dir / "checkpoints"
        if self.dist.is_main:
            weights = {"model": self.model.state_dict(), "ema": self.ema_model.state_dict()}
            path = save_checkpoint(self.run_dir, self.step, self.config, weights, self.training_state(),
                                   self.config.train.bookkeeping.keep_checkpoints)
        self.dist.barrier()
        return path

    def load(self, checkpoint: Path) -> None:
        """Restore everything from ``checkpoint`` (weights, EMA, optimizer, scaler, RNG, step)."""
        verify_checkpoint(checkpoint)
        load_state_dict_strict(self.model, load_weights(checkpoint, "model"), checkpoint)
        load_state_dict_strict(self.ema_model, load_weights(checkpoint, "ema"), checkpoint)
        state = load_training_state(checkpoint)
        try:
            self.optim.load_state_dict(state)
            self.generator.set_state(state["generator"])
            reseed = mix_seed(self.config.train.seed, int(state["step"]), salt=1)
            restore_generator(self.noise_generator, state["noise_generator"], reseed, "the training noise's generator")
            torch.set_rng_state(state["torch_rng"])
            if self.cuda and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self.timestep_sampler.load_state_dict(state["timestep_sampler"])
            self.step = int(state["step"])
            self.skipped = int(state.get("skipped", 0))
            self.window = [float(v) for v in state.get("log_window", torch.zeros(0))]
            self.bucket_sum.copy_(state.get("bucket_sum", torch.zeros(LOSS_BUCKETS)))
            self.bucket_n.copy_(state.get("bucket_n", torch.zeros(LOSS_BUCKETS)))
            restore_conv_choices(self.model, state.get("conv_choices", []))
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint}: training state does not match this run ({e})") from None

    # -- pictures ------------------------------------------------------------------------------

    def preview_count(self) -> int:
        """``--preview-images``, or by default 64 at up to 32x32 (and on CUDA), fewer for larger images on CPU (the
        same pixels in all: 16 at 64x64, 4 at 128x128 and up), so that a preview stays a small share of a run."""
        t, size = self.config.train, self.config.model.image_size
        if t.preview_images is not None:
            return t.preview_images
        return 64 if self.cuda else max(4, min(64, 64 * 32 * 32 // (size * size)))

    def preview_caption(self) -> str:
        """How :meth:`preview` draws, in words: ``step 2000, EMA weights, ddim, 50 steps, seed 1234``."""
        t = self.config.train
        weights = "EMA weights" if self.optim.ema is not None else "weights (no EMA kept)"
        return f"step {self.step}, {weights}, {t.preview_sampler}, {t.preview_steps} steps, seed {PREVIEW_SEED}"

    @torch.no_grad()
    def preview(self, n: int | None = None) -> tuple[Tensor, int | None, list[str]]:
        """EMA samples ``uint8 [n, C, H, W]`` from a fixed seed, so that previews are comparable across
        steps, their grid's row length (one row per condition value) and what to write beside the rows."""
        n = self.preview_count() if n is None else n
        t = self.config.train
        cond = {c.key: c.examples(n, self.device) for c in self.conditions}
        if any(v is None for v in cond.values()):  # a super-resolution stage: the data's first n, all conditions
            n = min(n, len(self.data))  # as many as there are
            first = torch.arange(n)
            pixels = to_model_range(self.data.images[first]).to(self.device)
            cond = {k: v.to(self.device) for k, v in self.conditions_of(first, pixels, whole=False).items()}
        level = self.config.super_res.cond_aug_level
        keep = torch.Generator().manual_seed(4321)
        cond = {k: v for c in self.conditions for k, v in c.augment(cond[c.key], keep, level).items()}
        g = torch.Generator(self.device).manual_seed(PREVIEW_SEED)
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
        """Train to ``train_steps`` (from the newest readable checkpoint when ``resume``). SIGTERM or SIGINT
        stops at the end of the current step with a checkpoint (:class:`Stopped`)."""
        t = self.config.train
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            checkpoint = resume_checkpoint(self.run_dir, self.load)
            if self.dist.is_main and self.progress:  # the bar starts part-full: say from where
                print(f"gaussdiff: resuming from {checkpoint}: step {self.step} of {t.train_steps}", file=sys.stderr)
        if self.dist.is_main:
            save_config(self.config, self.run_dir / "config.json")
            if self.data.skipped:
                (self.run_dir / "bad-images.txt").write_text("".join(f"{p}\n" for p in self.data.skipped))
                warn(f"{len(self.data.skipped)} unreadable image(s) left out; listed in "
                     f"{self.run_dir / 'bad-images.txt'}")
        if self.data.streamed:
            crop_seed = t.seed if self.config.data.crop == "random" else None
            self.batches = stream_batches(self.data.images, self.order, self.dist, self.step, t.train_steps,
                                          self.config.data.workers, crop_seed)
        self.logger.start(self.run_dir, self.step)

        losses: list[float] = []
        bar = tqdm(total=t.train_steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        try:
            with StopSignals() as signals:
                self.train_loop(signals, losses, bar)
        finally:
            bar.close()
            self.logger.close()
        return TrainResult(self.run_dir, self.step, losses)

    def train_loop(self, signals: StopSignals, losses: list[float], bar: tqdm) -> None:
        """Steps to ``train_steps``, logging, checkpointing and previewing as the bookkeeping says; a signal
        stops it at the end of a step with a checkpoint (:class:`Stopped`)."""
        t = self.config.train
        b = t.bookkeeping
        tick, tick_step = time.perf_counter(), self.step

        def preview() -> None:
            started = time.perf_counter()
            self.logger.images(self.step, *self.preview(), caption=self.preview_caption())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", preview=f"{time.perf_counter() - started:.1f}s")

        while self.step < t.train_steps:
            skipped = self.skipped
            loss, steps, per_example, grad_norm = self.train_step()
            losses.append(loss)
            if len(losses) == 1 and (measured := self.keep_conv_verdicts()) and self.dist.is_main:
                tqdm.write(f"gaussdiff: note: {measured}", file=sys.stderr)
            if self.skipped == skipped:  # a skipped step's loss is not the model's: it stays out of the rows
                self.window.append(loss)
                buckets = steps * LOSS_BUCKETS // self.diffusion.num_steps
                self.bucket_sum.index_add_(0, buckets, per_example.double())
                self.bucket_n.index_add_(0, buckets, torch.ones_like(per_example, dtype=torch.float64))
            bar.update(1)
            if b.due(b.log_every, self.step, t.train_steps):
                elapsed = time.perf_counter() - tick
                row = {
                    "step": self.step,
                    "loss": sum(self.window) / len(self.window) if self.window else None,
                    "lr": self.optim.lr,
                    "grad_norm": grad_norm,  # NaN when skipped: the logger writes strict JSON (null)
                    "images_per_s": (self.step - tick_step) * t.batch_size / max(elapsed, 1e-9),
                    "loss_by_t": (self.bucket_sum / self.bucket_n.clamp(min=1)).tolist(),
                }
                if self.skipped:
                    row["skipped"] = self.skipped
                self.logger.log(row)
                bar.set_postfix(loss=f"{row['loss'] or math.nan:.4f}", lr=f"{row['lr']:.2e}")
                self.window.clear()
                self.bucket_sum.zero_(), self.bucket_n.zero_()
                tick, tick_step = time.perf_counter(), self.step
            end_of_step(b, self.step, t.train_steps, self.dist, signals, self.run_dir, self.save, preview)
