"""``gaussdiff sample``: a PNG grid and/or a .npz of samples from a trained run, guided if asked, for classes
or text prompts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from ..conditioning.guidance import GuidanceConfig
from ..errors import UsageError
from ..evaluation.generate import generate, takes_labels, text_condition
from ..samplers.run import SamplerName
from ..training.loop import resolve_device
from ..training.run import load_trained
from ..viz import save_grid
from .options import check_steps, parse_class, read_prompts


@dataclass
class Sample:
    """Draw samples from a trained run: a PNG grid and/or a .npz (uint8 [N, H, W, C] in arr_0, labels in arr_1,
    the prompt of each sample in ``prompts``)."""

    checkpoint: tyro.conf.Positional[Path]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    guide: Annotated[GuidanceConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceConfig)
    n: int = 64
    label: Annotated[str | None, tyro.conf.arg(name="class")] = None
    """A class index, or 'all' for one row per class (conditional or guided sampling)."""
    prompt: tuple[str, ...] = ()
    """Text prompts (a text run): one grid row each, --n samples shared among them (default: the run's
    preview prompts)."""
    prompt_file: Path | None = None
    """A file of prompts, one per line."""
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
        text = text_condition(trained)
        prompts = read_prompts(self.prompt, self.prompt_file)
        if prompts and text is None:
            raise UsageError("--prompt needs a text run (gaussdiff train --text)")
        if text is not None and self.guide.classifier is not None and labels is None:
            # Random labels would steer the samples away from their prompts.
            raise UsageError("classifier guidance of a text run needs --class: the class the prompts ask for")
        row_labels: list[str] = []
        if text is not None:
            prompts = prompts or list(text.prompts)
            text.encode(prompts)  # an unknown word fails before any sampling
            row = math.ceil(n / len(prompts))
            n, row_labels = row * len(prompts), prompts
            if labels is not None:
                if self.label == "all":
                    raise UsageError("--class all and prompts do not combine: give one class with the prompts")
                labels = labels[:1].repeat(n)
        per_sample = [p for p in row_labels for _ in range(row)] if row_labels else None
        images, labels = generate(trained, n, self.sampler, self.steps, self.eta, self.seed, self.batch_size, labels,
                                  self.guide, prompts=per_sample)
        for path in self.out:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".png":
                save_grid(images, path, nrow=row, row_labels=row_labels)
            else:
                arrays = {"arr_0": images.permute(0, 2, 3, 1).numpy()}
                if labels is not None:
                    arrays["arr_1"] = labels.numpy()
                if per_sample is not None:
                    arrays["prompts"] = np.array(per_sample)
                np.savez(path, **arrays)
            print(f"wrote {path}")
