"""``gaussdiff train-classifier``: the noise-aware classifier p(y | x_t, t) of classifier guidance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from ..training.classifier import train_noisy_classifier
from ..training.config import ClassifierTrainConfig
from ..training.distributed import joined, launched_by_torchrun
from ..training.loop import resolve_device
from .options import check_new_run_dir, check_writable_dir

# gaussdiff 0.1 named the classifier's network options apart; they still work.
LEGACY_FLAGS = {"--classifier-channels": "--channels", "--classifier-channel-mult": "--channel-mult",
                "--classifier-pool": "--pool"}


@dataclass
class TrainClassifier:
    """Train the noise-aware classifier p(y | x_t, t) used by classifier guidance (--classifier RUN)."""

    config: Annotated[ClassifierTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ClassifierTrainConfig)
    run_dir: Path = Path("runs/classifier")
    """Where the classifier run is written (it must not hold one already)."""

    def __call__(self) -> None:
        check_new_run_dir(self.run_dir, can_resume=False)
        check_writable_dir(self.run_dir, keep=launched_by_torchrun())  # a file in the way: one line, before training
        with joined(resolve_device(self.config.device)) as dist:
            accuracy = train_noisy_classifier(self.config, self.run_dir, dist=dist)
        if dist.is_main:
            print(f"classifier in {self.run_dir}; held-out accuracy: "
                  + ", ".join(f"{k.split('_at_')[1]}: {v:.3f}" for k, v in accuracy.items()))
