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
from ..training.checkpoint import latest_checkpoint, load_checkpoint_config
from ..training.distributed import Distributed, joined
from ..training.loop import resolve_device
from ..training.config import AutoencoderTrainConfig
from ..training.files import atomic_write
from ..training.latent import load_latent_space
from .logger import RunLogger
from .options import check_new_run_dir


@dataclass
class TrainAutoencoder:
    """Train a KL autoencoder (Rombach et al. 2022) and measure its reconstructions of the held-out split."""

    config: Annotated[AutoencoderTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=AutoencoderTrainConfig)
    run_dir: Path = Path("runs/autoencoder")
    """Where the run lives."""
    resume: bool = False
    """Continue the run in --run-dir from its newest checkpoint, with its saved config."""

    def __call__(self) -> None:
        config = self.config
        if self.resume:
            config = load_checkpoint_config(latest_checkpoint(self.run_dir), AutoencoderTrainConfig)
        else:
            check_new_run_dir(self.run_dir)
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
        except KeyboardInterrupt:
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
