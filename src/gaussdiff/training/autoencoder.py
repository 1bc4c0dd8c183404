"""Training the KL autoencoder of latent diffusion (Rombach et al. 2022 §3.1, App. G).

Loss per example: the reconstruction (L1 or L2, mean per pixel) + ``kl_weight`` x KL(q(z | x) || N(0, I))
per pixel, and, from step ``gan_start``, the patch-GAN generator loss -D(x_hat) weighted adaptively by
lambda = |grad_L rec| / (|grad_L gan| + 1e-4) at the decoder's last layer L (Esser et al. 2021 Eq. 7),
while the discriminator learns the hinge loss. Both networks step through the shared
:class:`~gaussdiff.training.loop.Optimization`; checkpoints and the data order are the diffusion
trainer's, so a run resumes exactly.

A finished run directory holds ``autoencoder.safetensors``, ``config.json`` and ``latent.json`` (the
latent scale, 1 / std of the encoded training set, so that nobody types 0.18215), each written atomically.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..conditioning.latent import LatentSpace
from ..data.datasets import ImageData, check_center_crop, load_configured, mix_seed, to_model_range, to_uint8
from ..errors import CheckpointError, ConfigError
from ..nets.autoencoder import Autoencoder, PatchDiscriminator
from .batches import DataOrder, generator_seed
from .checkpoint import (load_state_dict_strict, load_training_state, load_weights, save_checkpoint,
                         save_weights, verify_checkpoint)
from .config import AutoencoderTrainConfig, save_config
from .files import atomic_write
from .distributed import Distributed
from .loop import Optimization, check_precision, resolve_device, resolve_precision
from .control import Logger, NullLogger, StopSignals, TrainResult, end_of_step, restore_generator, resume_checkpoint


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, scale: float) -> Tensor:
    """lambda = scale |grad_L rec_loss| / (|grad_L gan_loss| + 1e-4), clamped to [0, 1e4] and detached
    (Esser et al. 2021 Eq. 7): the adversarial term's gradient at the decoder's last layer ``L`` is
    brought to the size of the reconstruction's."""
    (rec_grad,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (gan_grad,) = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    return (scale * rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator's hinge loss: mean relu(1 - D(x)) + mean relu(1 + D(x_hat)), halved."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


@dataclass
class ReconstructionPreview:
    """Held-out originals above their reconstructions, ``uint8 [2n, C, H, W]``, n per row."""

    images: Tensor
    per_row: int


class AutoencoderTrainer:
    """One autoencoder run in ``run_dir``: config.json, checkpoints/, and, when done, the weights and latent scale."""

    def __init__(self, config: AutoencoderTrainConfig, run_dir: Path, data: ImageData | None = None,
                 progress: bool = True, logger: Logger | None = None, dist: Distributed | None = None) -> None:
        self.dist = dist or Distributed()
        self.run_dir, self.progress = run_dir, progress and self.dist.is_main
        self.logger = (logger or NullLogger()) if self.dist.is_main else NullLogger()
        self.device = self.dist.device_for(resolve_device(config.device))
        check_precision(config.optim.precision, self.device)
        check_center_crop(config.data, "train-autoencoder")
        self.data = data if data is not None else load_configured(config.data, "train")
        # --precision auto without measuring: bf16 on CUDA that has it, fp32 on CPU (recorded in the config).
        precision = resolve_precision(config.optim.precision, self.device)
        config = replace(config, optim=replace(config.optim, precision=precision))
        self.config = c = config.resolve(self.data)
        self.dist.share(c.batch_size)
        if self.dist.active and c.gan_start is not None:
            # adaptive_weight differentiates with torch.autograd.grad, which DDP does not synchronize.
            raise ConfigError("--gan-start under torchrun: the adaptive GAN weight is not data-parallel; train an "
                              "autoencoder with an adversarial phase in one process")
        # The preview shows held-out images; data handed in directly previews its own first images.
        self.held_out = (load_configured(c.data, "test") if data is None else self.data).images[:8]
        torch.manual_seed(c.seed)
        self.model = Autoencoder(c.autoencoder).to(self.device)
        self.optim = Optimization(self.model, c.optim, c.train_steps, self.device)
        self.replica: torch.nn.Module = self.model
        if self.dist.active:
            self.replica = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda"
                                                   else None)
        self.disc = self.disc_optim = None
        if c.gan_start is not None:
            self.disc = PatchDiscriminator(c.discriminator).to(self.device)
            # It steps from --gan-start on: its warm-up and decay span those steps, ending with the autoencoder's.
            self.disc_optim = Optimization(self.disc, c.optim, max(c.train_steps - c.gan_start, 0), self.device)
        self.order = DataOrder(len(self.data), c.batch_size, c.seed)
        self.generator = torch.Generator(self.device).manual_seed(generator_seed(c.seed + 1))
        self.step = 0

    @property
    def adversarial(self) -> bool:
        return self.disc is not None and self.step >= self.config.gan_start

    def losses(self, x: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """The terms of the loss on a batch ``x: [B, C, H, W]`` in [-1, 1] (scalars); ``noise`` samples the
        posterior (default: drawn from the run's generator)."""
        c = self.config
        with self.optim.autocast():
            x_hat, posterior = self.replica(x, self.generator, noise)
        error = (x_hat.float() - x).abs() if c.reconstruction == "l1" else (x_hat.float() - x) ** 2
        rec = error.mean()
        kl = posterior.kl().float().mean() / x[0].numel()  # per pixel, like the reconstruction
        terms = {"rec": rec, "kl": kl, "loss": rec + c.kl_weight * kl, "x_hat": x_hat}
        if self.adversarial:
            gan = -self.disc(x_hat).float().mean()
            terms["gan_weight"] = adaptive_weight(rec, gan, self.model.last_layer, c.gan_weight)
            terms["gan"] = gan
            terms["loss"] = terms["loss"] + terms["gan_weight"] * gan
        return terms

    def train_step(self) -> dict[str, float]:
        idx = self.order.indices(self.step)
        x = to_model_range(self.data.images[self.dist.part(idx)]).to(self.device)
        noise = None
        if self.dist.active:  # the whole batch's posterior noise on every rank, each keeping its part
            ae = self.config.autoencoder
            shape = (len(idx), ae.latent_channels, ae.latent_size, ae.latent_size)
            noise = self.dist.part(torch.randn(shape, generator=self.generator, device=self.device))
        terms = self.losses(x, noise)
        terms["grad_norm"] = torch.tensor(self.optim.step(terms["loss"])[0])
        if self.adversarial:
            terms["d_loss"] = hinge_d_loss(self.disc(x), self.disc(terms["x_hat"].detach()))
            self.disc_optim.step(terms["d_loss"])
        self.step += 1
        scalars = {k: v.detach().float().reshape(()) for k, v in terms.items() if k != "x_hat"}
        if self.dist.active:  # the ranks' means of equal parts: their mean is the global batch's
            names = [k for k in scalars if k != "grad_norm"]
            means = self.dist.sum(torch.stack([scalars[k] for k in names]).to(self.device)) / self.dist.world_size
            scalars.update(zip(names, means))
        return {k: float(v) for k, v in scalars.items()}

    @torch.no_grad()
    def preview(self) -> ReconstructionPreview:
        self.model.eval()
        x = self.held_out.to(self.device)
        x_hat = self.model.decode(self.model.encode(to_model_range(x)).mean)
        self.model.train()
        return ReconstructionPreview(torch.cat([x.cpu(), to_uint8(x_hat).cpu()]), len(x))

    # -- state ---------------------------------------------------------------------------------

    def save(self) -> Path:
        if not self.dist.is_main:
            self.dist.barrier()
            return self.run_dir / "checkpoints"
        weights = {"model": self.model.state_dict()}
        state: dict[str, Any] = {"step": self.step, **self.optim.state_dict(), "generator": self.generator.get_state(),
                                 "torch_rng": torch.get_rng_state()}
        if self.disc is not None:
            weights["discriminator"] = self.disc.state_dict()
            state["discriminator"] = self.disc_optim.state_dict()
        path = save_checkpoint(self.run_dir, self.step, self.config, weights, state,
                               self.config.bookkeeping.keep_checkpoints)
        self.dist.barrier()
        return path

    def load(self, checkpoint: Path) -> None:
        verify_checkpoint(checkpoint)
        load_state_dict_strict(self.model, load_weights(checkpoint, "model"), checkpoint)
        state = load_training_state(checkpoint)
        try:
            self.optim.load_state_dict(state)
            if self.disc is not None:
                load_state_dict_strict(self.disc, load_weights(checkpoint, "discriminator"), checkpoint)
                self.disc_optim.load_state_dict(state["discriminator"])
            restore_generator(self.generator, state["generator"], mix_seed(self.config.seed, int(state["step"])),
                              "the posterior samples' generator")
            torch.set_rng_state(state["torch_rng"])
            self.step = int(state["step"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{checkpoint}: training state does not match this run ({e})") from None

    # -- the loop ------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> TrainResult:
        c = self.config
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            resume_checkpoint(self.run_dir, self.load)
        if self.dist.is_main:
            save_config(c, self.run_dir / "config.json")
        self.logger.start(self.run_dir, self.step)
        losses, window = [], []
        bar = tqdm(total=c.train_steps, initial=self.step, desc="autoencoder", disable=not self.progress,
                   dynamic_ncols=True)
        b = c.bookkeeping
        tick = time.perf_counter()

        def preview() -> None:
            p = self.preview()
            self.logger.images(self.step, p.images, p.per_row, ("original", "reconstruction"),
                               caption=f"step {self.step}, held-out images and their reconstructions "
                                       f"(the posterior's mean decoded)")

        try:
            with StopSignals() as signals:
                while self.step < c.train_steps:
                    terms = self.train_step()
                    losses.append(terms["loss"])
                    window.append(terms)
                    bar.update(1)
                    if b.due(b.log_every, self.step, c.train_steps):
                        # Each term over the steps that have it: the GAN terms begin at gan_start, within a row.
                        row = {k: statistics.fmean(w[k] for w in window if k in w) for k in window[-1]}
                        elapsed = time.perf_counter() - tick
                        row.update(step=self.step, lr=self.optim.lr,
                                   images_per_s=len(window) * c.batch_size / max(elapsed, 1e-9))
                        self.logger.log(row)
                        bar.set_postfix(rec=f"{row['rec']:.4f}", kl=f"{row['kl']:.3g}")
                        window.clear()
                        tick = time.perf_counter()
                    # a checkpoint and a preview when due; Ctrl-C or a preemption keeps this step's work
                    end_of_step(b, self.step, c.train_steps, self.dist, signals, self.run_dir, self.save, preview)
        finally:
            bar.close()
            self.logger.close()
        if self.dist.is_main:
            self.finish()
        self.dist.barrier()
        return TrainResult(self.run_dir, self.step, losses)

    def finish(self, n: int = 2048) -> float:
        """Estimate the latent scale on up to ``n`` training images and write the finished run's files."""
        self.model.eval()
        space = LatentSpace(self.model, 1.0)
        z = space.encode_all(to_model_range(self.data.images[:n]))
        scale = float(1.0 / z.float().std())
        atomic_write(self.run_dir / "autoencoder.safetensors", lambda tmp: save_weights(self.model.state_dict(), tmp))
        atomic_write(self.run_dir / "latent.json", lambda tmp: tmp.write_text(json.dumps({"scale": scale}) + "\n"))
        return scale
