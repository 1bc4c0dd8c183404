"""From a config to objects: the diffusion, the network, the device, a trained model from disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_checkpoint_config, load_state_dict_strict, load_weights, resolve_checkpoint
from .config import ConfigError, DiffusionConfig, RunConfig
from ..diffusion.process import GaussianDiffusion, Model
from ..nets import UNet, UNetConfig
from ..diffusion.schedule import NoiseSchedule


def build_diffusion(cfg: DiffusionConfig) -> GaussianDiffusion:
    schedule = getattr(NoiseSchedule, cfg.schedule)(cfg.diffusion_steps)
    return GaussianDiffusion(schedule, cfg.prediction, cfg.variance, cfg.loss)


def build_model(config: RunConfig) -> UNet:
    """The U-Net for ``config``, whose data fields (size, channels, classes) must be resolved."""
    m, d = config.model, config.data
    if d.image_size is None or d.image_channels is None:
        raise ConfigError("the config's image_size and image_channels are not resolved")
    c, num_classes = d.image_channels, d.num_classes
    if m.class_conditional and num_classes is None:
        raise ConfigError("class_conditional needs a labelled dataset")
    if not 0.0 <= m.p_uncond < 1.0 or (m.p_uncond > 0 and not m.class_conditional):
        raise ConfigError("p_uncond must lie in [0, 1) and needs --class-conditional")
    diffusion = build_diffusion(config.diffusion)
    return UNet(
        UNetConfig(
            image_size=d.image_size,
            in_channels=c,
            out_channels=diffusion.out_channels(c),
            channels=m.channels,
            channel_mult=tuple(m.channel_mult),
            num_res_blocks=m.num_res_blocks,
            attention_resolutions=tuple(m.attention_resolutions),
            num_heads=m.num_heads,
            dropout=m.dropout,
            scale_shift=m.scale_shift,
            num_classes=num_classes if m.class_conditional else None,
            conv=m.conv,
        )
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return device


@dataclass
class Trained:
    """A trained model ready to sample: network (eval mode), diffusion, the run's config, its checkpoint."""

    model: UNet
    diffusion: GaussianDiffusion
    config: RunConfig
    checkpoint: Path


def load_trained(path: Path, ema: bool = True, device: torch.device | str = "cpu") -> Trained:
    """Load a run directory (its newest checkpoint) or a checkpoint directory, EMA weights by default."""
    checkpoint = resolve_checkpoint(path)
    config = load_checkpoint_config(checkpoint)
    model = build_model(config)
    load_state_dict_strict(model, load_weights(checkpoint, ema=ema), checkpoint)
    return Trained(model.to(device).eval(), build_diffusion(config.diffusion), config, checkpoint)


@dataclass
class GuidanceOptions:
    """How to steer sampling: classifier-free scale w, and/or a noise-aware classifier with scale s."""

    guidance: float = 0.0
    """Classifier-free guidance weight w (0: the plain conditional model)."""
    classifier: Path | None = None
    """A classifier run from ``gaussdiff train-classifier`` for classifier guidance."""
    classifier_scale: float = 1.0
    """Classifier guidance scale s."""


def needs_labels(trained: Trained, options: GuidanceOptions) -> bool:
    """Whether sampling takes class labels: a conditional model, or any guidance."""
    return trained.config.model.class_conditional or options.guidance > 0 or options.classifier is not None


def sampling_model(
    trained: Trained, diffusion: GaussianDiffusion, sampler: str, options: GuidanceOptions
) -> tuple[Model, bool]:
    """The model a sampler should call (wrapped for guidance) and whether it needs labels ``y``.

    ``diffusion`` is the one the sampler runs on (respaced when sampling strided).
    """
    from ..conditioning.guidance import ClassifierFreeGuidance, ClassifierGuidance
    from .classifier import load_noisy_classifier

    conditional = trained.config.model.class_conditional
    model: Model = trained.model
    if options.guidance < 0:
        raise ConfigError("--guidance must be >= 0")
    if options.guidance > 0:
        if not conditional:
            raise ConfigError("classifier-free guidance needs a class-conditional run (--class-conditional --p-uncond 0.1)")
        channels = trained.config.data.image_channels if diffusion.learns_variance else 0
        model = ClassifierFreeGuidance(model, options.guidance, trained.config.data.num_classes, channels)
    if options.classifier is not None:
        device = next(trained.model.parameters()).device
        classifier, cfg = load_noisy_classifier(options.classifier, device)
        mine, theirs = trained.config.diffusion, cfg.diffusion
        if (mine.schedule, mine.diffusion_steps) != (theirs.schedule, theirs.diffusion_steps):
            raise ConfigError(f"{options.classifier}: trained on a {theirs.schedule} schedule of {theirs.diffusion_steps} "
                              f"steps, the model on {mine.schedule} with {mine.diffusion_steps}")
        if cfg.network.num_classes != trained.config.data.num_classes and trained.config.data.num_classes is not None:
            raise ConfigError(f"{options.classifier}: {cfg.network.num_classes} classes, the model's data has "
                              f"{trained.config.data.num_classes}")
        model = ClassifierGuidance(model, classifier, diffusion, options.classifier_scale,
                                   mode="mean" if sampler == "ddpm" else "eps", pass_labels=conditional)
    return model, needs_labels(trained, options)
