"""Typed configs: saved as JSON with every run and checkpoint, and the source of the CLI's flags.

Field names are unique across the nested configs so that the CLI can show them flat
(``--data digits --lr 2e-3``). ``to_dict``/``from_dict`` round-trip them through JSON.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from ..diffusion.process import LossType, Prediction, Variance
from ..nets.kernels.winograd import ConvAlgorithm

ScheduleName = Literal["linear", "cosine"]
Precision = Literal["fp32", "bf16", "fp16"]
SamplerChoice = Literal["ddpm", "ddim"]


class ConfigError(ValueError):
    """A config file that does not match this version of gaussdiff."""


@dataclass
class DataConfig:
    """What to train on."""

    data: str = "digits"
    """``digits``, ``fashion-mnist``, a folder of images (sub-folders = classes) or a ``.npz``."""
    image_size: int | None = None
    """Resolution; built-in datasets fix it, folders default to 32."""
    image_channels: int | None = None
    """1 (grey) or 3 (RGB); folders default to 3."""
    data_dir: Path | None = None
    """Where Fashion-MNIST's IDX files are (default /usr/share/datasets/fashion-mnist)."""
    # Filled in from the data when training starts (None: unlabelled); not an option.
    num_classes: Annotated[int | None, tyro.conf.Suppress] = None


@dataclass
class ModelConfig:
    """The U-Net (see :class:`gaussdiff.nets.UNetConfig`); the data fixes its input shape."""

    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 4
    dropout: float = 0.0
    scale_shift: bool = True
    class_conditional: bool = False
    """Embed the dataset's labels (for guidance); needs a labelled dataset."""
    p_uncond: float = 0.0
    """Classifier-free guidance training: the share of labels replaced by the null label."""
    conv: ConvAlgorithm = "auto"
    """How the residual blocks' 3x3 convolutions compute: ``winograd`` (F(4x4, 3x3), 4x fewer multiply-adds),
    ``direct``, or ``auto``: Winograd when training on CPU in fp32, for layers of 64+ channels at 8x8 and up.
    Same weights either way."""


@dataclass
class DiffusionConfig:
    """The process and its training objective (see :class:`gaussdiff.GaussianDiffusion`)."""

    diffusion_steps: int = 1000
    schedule: ScheduleName = "cosine"
    prediction: Prediction = "eps"
    variance: Variance = "fixed_small"
    loss: LossType = "mse"
    timestep_sampler: Literal["uniform", "loss_second_moment"] = "uniform"


@dataclass
class TrainConfig:
    """The optimisation and the run's bookkeeping."""

    train_steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 200
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """After warm-up: constant, or cosine decay to zero at the last step."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: Precision = "fp32"
    """Mixed precision: bf16 autocast on CUDA or CPU (faster on CPUs with AVX-512 BF16 or AMX), or fp16
    with a gradient scaler (CUDA only)."""
    compile: bool = False
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    """``auto``: channels_last on CUDA, and on CPU in fp32 for images of 32x32 and larger (bench/train_speed.py)."""
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    preview_sampler: SamplerChoice = "ddim"
    preview_steps: int = 50
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""


@dataclass
class RunConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a (nested) config dataclass."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value

    return convert(config)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from :func:`to_dict`'s output; unknown keys are a :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value)
        elif typing.get_origin(hint) is tuple:
            kwargs[name] = tuple(value)
        elif value is not None and Path in typing.get_args(hint):
            kwargs[name] = Path(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_config(path: Path) -> RunConfig:
    try:
        return from_dict(RunConfig, json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{path}: not a gaussdiff config ({e})") from None
