"""Training the noise-aware classifier for classifier guidance: cross-entropy on x_t ~ q(x_t | x0) at
uniformly drawn t (Dhariwal & Nichol 2021 §4.1), on the same schedule as the diffusion model.

A classifier run directory holds ``classifier.safetensors``, ``config.json`` and ``metrics.json``
(held-out accuracy at a few noise levels), each written atomically.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.datasets import check_center_crop, load_configured, to_model_range
from ..errors import CheckpointError, NonFiniteError
from ..nets.noisy_classifier import NoisyClassifier
from .checkpoint import load_state_dict_strict, save_weights
from .config import ClassifierTrainConfig, load_config, save_config
from .files import atomic_write
from .distributed import Distributed
from .loop import Optimization, check_precision, resolve_device, resolve_precision

WEIGHTS = "classifier.safetensors"
"""The classifier's weights in its run directory (which no other run may share)."""


def train_noisy_classifier(config: ClassifierTrainConfig, run_dir: Path, progress: bool = True,
                           dist: Distributed | None = None) -> dict[str, float]:
    """Train, save into ``run_dir`` and return the held-out accuracies by noise level. Under torchrun
    (``dist``) each rank takes its part of every global batch, whose examples, t and noise are drawn whole
    on every rank, and rank 0 writes the run."""
    dist = dist or Distributed()
    device = dist.device_for(resolve_device(config.device))
    check_precision(config.optim.precision, device)
    check_center_crop(config.data, "train-classifier")
    data = load_configured(config.data, "train")
    # --precision auto without measuring: bf16 on CUDA that has it, fp32 on CPU (recorded in the config).
    config = replace(config, optim=replace(config.optim, precision=resolve_precision(config.optim.precision, device)))
    config = config.resolve(data)
    dist.share(config.batch_size)
    held_out = load_configured(config.data, "test")
    torch.manual_seed(config.seed)
    diffusion = config.diffusion.build()
    model = NoisyClassifier(config.classifier).to(device)
    optim = Optimization(model, config.optim, config.classifier_steps, device)
    replica = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if dist.active else model
    g = torch.Generator().manual_seed(config.seed)
    T = diffusion.num_steps
    bar = tqdm(range(config.classifier_steps), desc="classifier", disable=not progress or not dist.is_main,
               dynamic_ncols=True)
    part = dist.part
    for step in bar:
        idx = torch.randint(0, len(data), (config.batch_size,), generator=g)
        t = torch.randint(0, T, (len(idx),), generator=g)
        noise = torch.randn((len(idx), *data.shape), generator=g)
        mine = part(idx)
        x0 = to_model_range(data.images[mine]).to(device)
        t_mine = part(t).to(device)
        with optim.autocast():
            logits = replica(diffusion.q_sample(x0, t_mine, part(noise).to(device)), diffusion.model_timesteps(t_mine))
        loss = F.cross_entropy(logits.float(), data.labels[mine].to(device))
        _, applied = optim.step(loss)
        if not applied:
            raise NonFiniteError(f"classifier step {step + 1}: non-finite loss or gradient; nothing was saved")
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
    if not dist.is_main:
        return accuracy
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / WEIGHTS, lambda tmp: save_weights(model.state_dict(), tmp))
    save_config(config, run_dir / "config.json")
    atomic_write(run_dir / "metrics.json", lambda tmp: tmp.write_text(json.dumps(accuracy, indent=2) + "\n"))
    return accuracy


def load_noisy_classifier(path: Path,
                          device: torch.device | str = "cpu") -> tuple[NoisyClassifier, ClassifierTrainConfig]:
    """A trained noise-aware classifier from its run directory."""
    weights, config_path = path / WEIGHTS, path / "config.json"
    if not weights.exists() or not config_path.exists():
        raise CheckpointError(f"{path}: not a classifier run (no {WEIGHTS}/config.json)")
    config = load_config(config_path, ClassifierTrainConfig)
    model = NoisyClassifier(config.classifier)
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises its own error type for a corrupt file
        raise CheckpointError(f"{weights}: cannot read weights ({type(e).__name__})") from None
    load_state_dict_strict(model, state, weights)
    return model.to(device).eval(), config
