"""``gaussdiff train-autoencoder``: the KL autoencoder whose latent space ``train --latent RUN`` diffuses in."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from ..data.datasets import load_configured
from ..evaluation.autoencoder import evaluate_reconstructions
from ..training.autoencoder import AutoencoderTrainer
from ..training.checkpoint import resumed_run_config
from ..training.distributed import Distributed, joined, launched_by_torchrun
from ..training.loop import resolve_device
from ..training.config import AutoencoderTrainConfig
from ..training.files import atomic_write
from ..training.latent import load_latent_space
from ..training.control import Stopped
from .logger import RunLogger
from .options import check_new_run_dir, check_writable_dir
from .train import refuse_changes, refuse_ending_before, refuse_one_cycle_length, reparsed_over_saved

CHANGEABLE = ("train_steps", "bookkeeping.", "device")
"""What a resumed autoencoder run may change: its length, intervals and device (not its networks, data or losses)."""


@dataclass
class TrainAutoencoder:
    """Train a KL autoencoder (Rombach et al. 2022) and measure its reconstructions of the held-out split."""

    config: Annotated[AutoencoderTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=AutoencoderTrainConfig)
    run_dir: Path = Path("runs/autoencoder")
    """Where the run lives."""
    resume: bool = False
    """Continue the run in --run-dir from its newest intact checkpoint, with its saved config; --train-steps
    (longer extends a finished run), the intervals and --device may change."""

    def reparse(self, args: list[str]) -> TrainAutoencoder:
        """For --resume: the command line again, over the run's saved config (:func:`reparsed_over_saved`)."""
        return reparsed_over_saved(self, args, AutoencoderTrainConfig, "gaussdiff train-autoencoder")

    def __call__(self) -> None:
        config = self.config
        if self.resume:
            saved = resumed_run_config(self.run_dir, AutoencoderTrainConfig)
            refuse_changes(saved, config, CHANGEABLE, "--train-steps, the intervals and --device")
            refuse_one_cycle_length(saved.train_steps, config.train_steps, saved.optim.lr_schedule)
            refuse_ending_before(self.run_dir, config.train_steps)
        else:
            check_new_run_dir(self.run_dir)
            check_writable_dir(self.run_dir, keep=launched_by_torchrun())  # a file in the way: one line, now
        with joined(resolve_device(config.device)) as dist:
            self.train(config, dist)

    def train(self, config: AutoencoderTrainConfig, dist: Distributed) -> None:
        trainer = AutoencoderTrainer(config, self.run_dir, logger=RunLogger(picture="reconstructions"), dist=dist)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        ae = trainer.config.autoencoder
        if dist.is_main:
            print(f"run {self.run_dir}: {len(trainer.data)} images {trainer.data.shape} -> latents "
                  f"{(ae.latent_channels, ae.latent_size, ae.latent_size)}, {n_params / 1e6:.2f}M parameters, "
                  f"{trainer.device}" + (f", {dist.world_size} processes" if dist.active else ""), file=sys.stderr)
        try:
            trainer.run(resume=self.resume)
        except Stopped as e:  # Ctrl-C or SIGTERM, at the end of a step, with a checkpoint
            where = f"checkpoint {e.checkpoint}" if e.checkpoint else "no checkpoint"
            if dist.is_main:
                print(f"gaussdiff: {e} ({where}); continue with --resume --run-dir {self.run_dir}", file=sys.stderr)
            sys.exit(128 + e.signum)
        except KeyboardInterrupt:  # before the signal handlers are in place, or a second Ctrl-C
            print(f"gaussdiff: interrupted at step {trainer.step}; resume with --resume --run-dir {self.run_dir}",
                  file=sys.stderr)
            sys.exit(130)
        if not dist.is_main:
            return
        report = measure_autoencoder(self.run_dir, str(trainer.device))
        atomic_write(self.run_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(asdict(report), indent=2)))
        print("\n".join(describe_reconstructions(report)))


def measure_autoencoder(run: Path, device: str = "cpu"):
    space, config, _ = load_latent_space(run, device)
    held_out = load_configured(config.data, "test")
    reference = load_configured(config.data, "train")
    return evaluate_reconstructions(space, held_out.images, config.data.data, reference, device=device)


def describe_reconstructions(report) -> list[str]:
    return [
        f"reconstructions of {report.n} held-out images, {report.features} features",
        f"  PSNR               {report.psnr:.2f} ± {report.psnr_stderr:.2f} dB",
        f"  FID                {report.fid:.3f}  (held-out originals: {report.fid_originals:.3f})",
    ]
