"""``gaussdiff train``: train a diffusion model; ``--resume`` continues a run exactly."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from ..errors import UsageError
from ..training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint_config
from ..training.config import RunConfig, describe
from ..training.trainer import Trainer
from .logger import RunLogger


@dataclass
class Train:
    """Train a diffusion model (with no options: the main job, digits in about 5 minutes on 2 CPU cores)."""

    config: Annotated[RunConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RunConfig)
    run_dir: Path | None = None
    """Where the run lives (default: runs/<data>-<date>-<time>)."""
    resume: bool = False
    """Continue the run in --run-dir from its newest checkpoint, with its saved config."""
    dry_run: bool = False
    """Print the resolved config and exit."""

    def __call__(self) -> None:
        if self.resume:
            if self.run_dir is None:
                raise UsageError("--resume needs --run-dir")
            config = load_checkpoint_config(latest_checkpoint(self.run_dir))
        else:
            config = self.config
            if self.run_dir is not None and list_checkpoints(self.run_dir):
                raise UsageError(f"{self.run_dir} already holds a run: pass --resume to continue it, or another --run-dir")
        if self.dry_run:
            print(describe(config))
            return
        run_dir = self.run_dir or Path("runs") / f"{Path(config.data.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        trainer = Trainer(config, run_dir, logger=RunLogger())
        if config.latent.latent is not None and config.diffusion.schedule == "cosine":
            # Latents cannot be clipped to [-1, 1], and the cosine schedule's last steps (alpha_bar ~ 1e-9)
            # multiply the eps error by 1 / sqrt(alpha_bar) in the x0 estimate (docs/latent.md).
            print("gaussdiff: note: latent runs sample far better on --schedule linear (LDM's) than on cosine",
                  file=sys.stderr)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        print(f"run {run_dir}: {len(trainer.data)} images {trainer.data.shape}, {n_params / 1e6:.2f}M parameters, "
              f"{trainer.device}", file=sys.stderr)
        try:
            result = trainer.run(resume=self.resume)
        except KeyboardInterrupt:
            found = list_checkpoints(run_dir)
            last = f"; resume from {found[-1]} with --resume --run-dir {run_dir}" if found else ""
            print(f"gaussdiff: interrupted at step {trainer.step}{last}", file=sys.stderr)
            sys.exit(130)
        print(f"done: {result.step} steps; samples in {run_dir / 'samples.png'}, loss curve in {run_dir / 'loss.png'}")
