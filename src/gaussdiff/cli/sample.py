"""``gaussdiff sample``: a PNG grid and/or a .npz of samples from a trained run, guided if asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from ..conditioning.guidance import GuidanceConfig
from ..errors import UsageError
from ..evaluation.generate import generate, takes_labels
from ..samplers.run import SamplerName
from ..training.loop import resolve_device
from ..training.run import load_trained
from ..viz import save_grid
from .options import check_steps, parse_class


@dataclass
class Sample:
    """Draw samples from a trained run: a PNG grid and/or a .npz (uint8 [N, H, W, C] in arr_0, labels in arr_1)."""

    checkpoint: tyro.conf.Positional[Path]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    guide: Annotated[GuidanceConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceConfig)
    n: int = 64
    label: Annotated[str | None, tyro.conf.arg(name="class")] = None
    """A class index, or 'all' for one row per class (conditional or guided sampling)."""
    sampler: SamplerName = "ddim"
    steps: int | None = 50
    """Respaced steps (None: all of the run's steps)."""
    eta: float = 0.0
    seed: int = 0
    out: tuple[Path, ...] = (Path("samples.png"),)
    """One or more of FILE.png, FILE.npz."""
    ema: bool = True
    """Use the EMA weights (--no-ema: the raw weights)."""
    batch_size: int = 256
    device: str = "auto"

    def __call__(self) -> None:
        for path in self.out:
            if path.suffix not in (".png", ".npz"):
                raise UsageError(f"--out {path}: expected a .png or .npz file")
        if self.n < 1:
            raise UsageError("--n must be at least 1")
        trained = load_trained(self.checkpoint, ema=self.ema, device=resolve_device(self.device))
        check_steps(self.steps, trained)
        if self.label is not None and not takes_labels(trained, self.guide):
            raise UsageError("--class needs a class-conditional run or --classifier")
        labels, row = parse_class(self.label, trained.config.data.num_classes, self.n)
        n = self.n if labels is None else len(labels)
        images, labels = generate(trained, n, self.sampler, self.steps, self.eta, self.seed, self.batch_size, labels, self.guide)
        for path in self.out:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".png":
                save_grid(images, path, nrow=row)
            elif labels is not None:
                np.savez(path, images.permute(0, 2, 3, 1).numpy(), labels.numpy())
            else:
                np.savez(path, images.permute(0, 2, 3, 1).numpy())
            print(f"wrote {path}")
