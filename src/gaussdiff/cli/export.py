"""``gaussdiff export``: a trained run as a diffusers pipeline folder (docs/diffusers.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from ..errors import UsageError
from ..training.interop import export_diffusers, exportable
from ..training.run import load_trained
from .options import check_writable_dir


@dataclass
class Export:
    """Write a run as a diffusers DDPMPipeline folder (unet/ in safetensors, scheduler/, model_index.json) that
    DDPMPipeline.from_pretrained and DDIMPipeline load without gaussdiff."""

    checkpoint: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    diffusers: Path
    """The folder to write (it must not exist, or be empty)."""
    ema: bool = True
    """Export the EMA weights (--no-ema: the raw weights)."""

    def __call__(self) -> None:
        if self.diffusers.exists() and (not self.diffusers.is_dir() or any(self.diffusers.iterdir())):
            raise UsageError(f"--diffusers {self.diffusers}: exists and is not an empty folder")
        trained = load_trained(self.checkpoint, ema=self.ema)
        exportable(trained)  # before anything is written
        check_writable_dir(self.diffusers, "--diffusers", keep=True)
        export_diffusers(trained, self.diffusers)
        print(f"wrote {self.diffusers}: DDPMPipeline.from_pretrained({str(self.diffusers)!r}) loads it")
