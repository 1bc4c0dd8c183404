"""Training the noise-aware classifier for classifier guidance: cross-entropy on x_t ~ q(x_t | x0) at
uniformly drawn t (Dhariwal & Nichol 2021 §4.1), on the same schedule as the diffusion model.

A classifier run directory holds ``classifier.safetensors``, ``config.json`` and ``metrics.json``
(held-out accuracy at a few noise levels), each written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
import tyro
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .run import build_diffusion, resolve_device
from .checkpoint import CheckpointError, load_state_dict_strict
from .config import ConfigError, DataConfig, DiffusionConfig, from_dict, to_dict
from ..data.datasets import DataError, load_configured, to_model_range
from ..nets.noisy_classifier import NoisyClassifier, NoisyClassifierConfig


@dataclass
class ClassifierTrainConfig:
    """A noise-aware classifier and its training."""

    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """Only the schedule matters: it must match the diffusion model's."""
    classifier_channels: int = 32
    classifier_channel_mult: tuple[int, ...] = (1, 2)
    classifier_pool: Literal["attention", "mean"] = "attention"
    classifier_steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    device: str = "auto"
    network: Annotated[NoisyClassifierConfig, tyro.conf.Suppress] = field(default_factory=NoisyClassifierConfig)
    """The resolved network (the knobs above and the data's shape), filled in by training."""


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def train_noisy_classifier(config: ClassifierTrainConfig, run_dir: Path, progress: bool = True) -> dict[str, float]:
    """Train, save into ``run_dir`` and return the held-out accuracies by noise level."""
    d = config.data
    data = load_configured(d, "train")
    if data.labels is None or data.num_classes is None:
        raise DataError(f"{d.data}: classifier guidance needs a labelled dataset")
    held_out = load_configured(d, "test")
    d.image_channels, d.image_size, d.num_classes = data.shape[0], data.shape[-1], data.num_classes
    n = config.network
    n.image_size, n.in_channels, n.num_classes = data.shape[-1], data.shape[0], data.num_classes
    n.channels, n.channel_mult, n.pool = config.classifier_channels, tuple(config.classifier_channel_mult), config.classifier_pool
    n.attention_resolutions = tuple(r for r in n.attention_resolutions if r < data.shape[-1]) or ((data.shape[-1] + 1) // 2,)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    diffusion = build_diffusion(config.diffusion)
    model = NoisyClassifier(n).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.classifier_steps)
    g = torch.Generator().manual_seed(config.seed)
    T = diffusion.num_steps
    bar = tqdm(range(config.classifier_steps), desc="classifier", disable=not progress, dynamic_ncols=True)
    for step in bar:
        idx = torch.randint(0, len(data), (config.batch_size,), generator=g)
        x0 = to_model_range(data.images[idx]).to(device)
        t = torch.randint(0, T, (len(idx),), generator=g).to(device)
        noise = torch.randn(x0.shape, generator=g).to(device)
        logits = model(diffusion.q_sample(x0, t, noise), diffusion.model_timesteps(t))
        loss = F.cross_entropy(logits, data.labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    accuracy = {}
    with torch.no_grad():
        x0 = to_model_range(held_out.images).to(device)
        for frac in (0.0, 0.25, 0.5, 0.75):
            t = torch.full((len(x0),), int(frac * (T - 1)), device=device)
            x_t = diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=g).to(device))
            pred = model(x_t, diffusion.model_timesteps(t)).argmax(1).cpu()
            accuracy[f"accuracy_at_t={int(frac * (T - 1))}"] = float((pred == held_out.labels).double().mean())
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / "classifier.safetensors", lambda p: save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, p))
    _atomic_write(run_dir / "config.json", lambda p: p.write_text(json.dumps(to_dict(config), indent=2) + "\n"))
    _atomic_write(run_dir / "metrics.json", lambda p: p.write_text(json.dumps(accuracy, indent=2) + "\n"))
    return accuracy


def load_noisy_classifier(path: Path, device: torch.device | str = "cpu") -> tuple[NoisyClassifier, ClassifierTrainConfig]:
    """A trained noise-aware classifier from its run directory."""
    weights, config_path = path / "classifier.safetensors", path / "config.json"
    if not weights.exists() or not config_path.exists():
        raise CheckpointError(f"{path}: not a classifier run (no classifier.safetensors/config.json)")
    try:
        config = from_dict(ClassifierTrainConfig, json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{config_path}: not a classifier config ({e})") from None
    model = NoisyClassifier(config.network)
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error type for a corrupt file
        raise CheckpointError(f"{weights}: cannot read weights ({type(e).__name__})") from None
    load_state_dict_strict(model, state, weights)
    return model.to(device).eval(), config
