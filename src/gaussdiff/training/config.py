"""The run configs: typed, saved as JSON with every run and checkpoint, and the source of the CLI's flags.

Each config lives beside what it configures (:class:`~gaussdiff.nets.UNetConfig` with the U-Net,
:class:`~gaussdiff.diffusion.DiffusionConfig` with the diffusion, :class:`~gaussdiff.data.DataConfig`
with the datasets, :class:`~gaussdiff.training.loop.OptimConfig` with the optimisation step); the
run configs here nest them, so that every field is declared once. Field names are unique across a
command's nested configs so that the CLI shows them flat (``--data digits --lr 2e-3``).

Configs are frozen: a run resolves the fields its data decides (:meth:`RunConfig.resolve`) into a
new config, the one it saves, and never changes the one it was given.

``format`` says which layout a saved config has. Configs of gaussdiff 0.1 (no ``format``; the
U-Net's knobs, the labels and the optimiser flat in ``model`` and ``train``) are converted on load
by :func:`upgrade`, so runs saved by 0.1 still load, sample and resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from ..conditioning.conditions import Condition, ConditioningConfig
from ..conditioning.latent import LatentConfig
from ..conditioning.super_res import SuperResConfig
from ..conditioning.text import Tokenizer, preview_prompts
from ..data.datasets import DataConfig, ImageData
from ..diffusion.process import DiffusionConfig
from ..errors import ConfigError, DataError, check_finite_at_least_zero
from ..nets.autoencoder import AutoencoderConfig, DiscriminatorConfig
from ..nets.noisy_classifier import NoisyClassifierConfig
from ..nets.unet import UNetConfig
from ..samplers.run import SamplerName
from .files import atomic_write
from .loop import CompileMode, OptimConfig

FORMAT = 2


@dataclass(frozen=True)
class Bookkeeping:
    """When a run logs its metrics, draws its previews and writes checkpoints (each also at the last step)."""

    log_every: int = 50
    """Steps between rows of metrics.jsonl (each the mean over its steps; >= 1)."""
    sample_every: int = 1000
    """Steps between previews (samples.png, an autoencoder's reconstructions.png; the loss plot redrawn; >= 1)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (>= 1)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep (>= 0; 0: all)."""

    def check(self) -> None:
        """Refuse an interval below one step (a ZeroDivisionError at the first step) or a negative count."""
        for name in ("log_every", "sample_every", "checkpoint_every"):
            at_least(name, getattr(self, name), 1)
        at_least("keep_checkpoints", self.keep_checkpoints, 0)

    @staticmethod
    def due(every: int, step: int, last: int) -> bool:
        """Whether something done every ``every`` steps is due after ``step`` of ``last``."""
        return step % every == 0 or step == last


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation and the run's bookkeeping."""

    train_steps: int = 2000
    """Optimisation steps (>= 1)."""
    batch_size: int = 64
    """Images per step (>= 1; under torchrun the global batch, shared among the processes)."""
    optim: Annotated[OptimConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=OptimConfig)
    compile: CompileMode = "auto"
    """``torch.compile`` the network (under torchrun, the DDP replica) in this mode. ``auto``: on CUDA with Triton
    ``reduce-overhead`` (measured fastest on an H200: 3.3x diffusers' eager fp32, 4.5x its own eager bf16;
    docs/speed.md), ``default`` under torchrun;
    elsewhere ``off`` (on CPU compiling takes minutes and the convolutions, most of a step, are oneDNN's either
    way)."""
    gradient_checkpointing: bool = False
    """Recompute each residual block's activations in the backward pass instead of holding them: a run's peak
    memory falls (3.75 to 2.02 GiB at 64x64, batch 64, on CPU; docs/data.md) for about 24% more time a step (34.1
    to 27.5 images/s there)."""
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    """``auto``: channels_last on CUDA, and on CPU in fp32 for images of 32x32 and larger (bench/train_speed.py)."""
    seed: int = 0
    """Seeds the initial weights, the data order and every draw of training."""
    bookkeeping: Annotated[Bookkeeping, tyro.conf.OmitArgPrefixes] = field(default_factory=Bookkeeping)
    preview_sampler: SamplerName = "ddim"
    """The sampler of the previews (samples.png)."""
    preview_steps: int = 50
    """The previews' respaced steps: 1..--diffusion-steps."""
    preview_images: int | None = None
    """Samples in each preview (>= 1; None: 64 up to 32x32 or on CUDA, fewer for larger images on CPU: 16 at
    64x64, 4 from 128x128)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``... (under torchrun each rank takes its own GPU)."""
    skip_nonfinite: int = 0
    """Steps with a NaN or inf loss or gradient to skip (not applied, counted in metrics.jsonl) before the run
    stops (>= 0); 0: stop at the first, naming the step (the last good checkpoint stays)."""
    dist_timeout: float = 1800.0
    """Under torchrun: seconds a rank waits for the others before the job ends with an error naming it (> 0)."""

    def check(self, diffusion_steps: int) -> None:
        """Refuse what would fail only later: no steps, an empty batch, or previews of more steps than the
        ``diffusion_steps`` of the run's schedule (which would fail at the first preview, after training)."""
        at_least("train_steps", self.train_steps, 1)
        at_least("batch_size", self.batch_size, 1)
        if self.preview_images is not None:
            at_least("preview_images", self.preview_images, 1)
        check_optim(self.optim)
        self.bookkeeping.check()
        if not 1 <= self.preview_steps <= diffusion_steps:
            raise ConfigError(f"--preview-steps must lie in 1..{diffusion_steps} (the --diffusion-steps), "
                              f"not {self.preview_steps}")
        at_least("skip_nonfinite", self.skip_nonfinite, 0)
        if not self.dist_timeout > 0 or not math.isfinite(self.dist_timeout):
            raise ConfigError(f"--dist-timeout must be a number of seconds > 0, not {self.dist_timeout:g}")


def option_name(field_name: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def at_least(field_name: str, value: int, low: int) -> None:
    """Refuse ``value`` of the option ``field_name`` below ``low``, as one line naming the flag."""
    if value < low:
        raise ConfigError(f"{option_name(field_name)} must be at least {low}, not {value}")


def check_optim(optim: OptimConfig) -> None:
    """The ranges of :class:`~gaussdiff.training.loop.OptimConfig`: --lr > 0, --warmup >= 0, --weight-decay >= 0,
    --grad-clip > 0 (or None), --ema-decay in [0, 1) (or None). Checked here, with the run configs that nest it,
    so that every trainer refuses them before it builds anything."""
    if not (optim.lr > 0 and math.isfinite(optim.lr)):
        raise ConfigError(f"--lr must be > 0, not {optim.lr:g}")
    at_least("warmup", optim.warmup, 0)
    if not optim.weight_decay >= 0:
        raise ConfigError(f"--weight-decay must be >= 0, not {optim.weight_decay:g}")
    if optim.grad_clip is not None and not optim.grad_clip > 0:
        raise ConfigError(f"--grad-clip must be > 0 (None: no clipping), not {optim.grad_clip:g}")
    if optim.ema_decay is not None and not 0 <= optim.ema_decay < 1:
        raise ConfigError(f"--ema-decay must lie in [0, 1) (None: no EMA), not {optim.ema_decay:g}")


def refuse_ema(optim: OptimConfig, command: str) -> None:
    """--ema-decay for a trainer that keeps no EMA (``command`` saves and uses the weights it trains): refused, where
    an average would be computed every step and never saved."""
    if optim.ema_decay is not None:
        raise ConfigError(f"--ema-decay: gaussdiff {command} keeps no EMA of its weights (it saves the trained "
                          "weights and uses them): leave the option out")


def _main_job_unet() -> UNetConfig:
    # The main job's network: narrow, so that 2000 steps fit in minutes on 2 CPU cores (README).
    return UNetConfig(channels=32, channel_mult=(1, 2), attention_resolutions=(4,))


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory and every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=_main_job_unet)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    latent: Annotated[LatentConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=LatentConfig)
    super_res: Annotated[SuperResConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SuperResConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    format: Annotated[int, tyro.conf.Suppress] = FORMAT

    def conditions(self) -> tuple[Condition, ...]:
        """The conditions the model takes (``model(x_t, t, **cond)``): a super-resolution stage's low-resolution
        image first, then labels and prompts (a preview grid follows the last)."""
        return self.super_res.conditions() + self.conditioning.conditions(self.data.num_classes)

    def check(self) -> None:
        """Refuse the options whose ranges do not depend on the data (``--dry-run`` checks these; :meth:`resolve`
        all)."""
        at_least("diffusion_steps", self.diffusion.diffusion_steps, 1)
        self.diffusion.build()  # a combination it cannot make (a learned variance with --loss mse) fails here
        self.train.check(self.diffusion.diffusion_steps)
        if self.data.workers is not None:
            at_least("workers", self.data.workers, 0)
        self.super_res.check()
        self.conditioning.check()
        self.model.check(sized=False)
        if self.diffusion.zero_terminal_snr and self.diffusion.prediction == "eps":
            raise ConfigError("--zero-terminal-snr needs --prediction v (or x0): an eps model learns nothing about "
                              "x0 at zero SNR (Lin et al. 2024)")

    def resolve(self, data: ImageData, latent: tuple[int, int, str] | None = None) -> RunConfig:
        """This config with what ``data`` decides filled in: its size, channels and classes, and the
        U-Net's input, output (2C when the variance is learned) and label embedding. For a latent run,
        ``latent`` = (channels, size, sha256) of the autoencoder's latents: the U-Net's input is those.

        Every option's range is checked here, so that a trainer (which resolves its config before it builds
        anything) refuses a bad one at once, not in the middle or at the end of the run."""
        self.check()
        d = data.resolve(self.data)
        conditioning, text = self.conditioning, self.model.text
        if conditioning.text:
            if data.captions is None:
                raise DataError(f"{self.data.data}: --text needs captions (built-in: shapes, digits, fashion-mnist; "
                                "a folder with metadata.jsonl or metadata.csv)")
            if not conditioning.vocabulary:  # a resumed run keeps the vocabulary it was trained with
                tokenizer = Tokenizer.build(data.captions)
                conditioning = replace(conditioning, vocabulary=tokenizer.vocabulary, max_tokens=tokenizer.max_length,
                                       preview_prompts=preview_prompts(data.captions))
            if text.text_layers < 1 or text.text_width < 1 or text.text_heads < 1 or text.text_width % text.text_heads:
                raise ConfigError("the caption encoder needs --text-layers >= 1 and --text-heads dividing "
                                  f"--text-width (got {text.text_layers} layers, {text.text_heads} heads, "
                                  f"width {text.text_width})")
            tokenizer = conditioning.tokenizer
            text = replace(text, vocab_size=tokenizer.vocab_size, max_length=tokenizer.max_length)
        conditioning.conditions(d.num_classes)  # refuses labels the data does not have
        self.super_res.check(d.image_size)
        if self.super_res.super_res is not None and latent is not None:
            raise ConfigError("--super-res runs in pixel space: it takes no --latent")
        c, size, resolved = d.image_channels, d.image_size, replace(self, conditioning=conditioning)
        if latent is not None:
            c, size, sha = latent
            resolved = replace(resolved, latent=replace(self.latent, latent_sha256=sha))
        model = replace(self.model, image_size=size, in_channels=c, out_channels=self.diffusion.build().out_channels(c),
                        num_classes=d.num_classes if conditioning.class_conditional else None, text=text,
                        context_dim=text.text_width if conditioning.text else self.model.context_dim,
                        low_res_channels=d.image_channels if self.super_res.super_res is not None else 0)
        model.check()
        return replace(resolved, data=d, model=model)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """A noise-aware classifier and its training."""

    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    """Only the schedule matters: it must match the diffusion model's."""
    classifier: Annotated[NoisyClassifierConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=NoisyClassifierConfig)
    classifier_steps: Annotated[int, tyro.conf.arg(aliases=("--train-steps",))] = 3000
    """Optimisation steps (>= 1; --train-steps, as for the other trainers, says the same)."""
    batch_size: int = 128
    """Images per step (>= 1; under torchrun the global batch)."""
    optim: Annotated[OptimConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=lambda: OptimConfig(
        lr=1e-3, warmup=0, lr_schedule="one_cycle", weight_decay=0.05, grad_clip=None, ema_decay=None))
    seed: int = 0
    """Seeds the weights, the batches, t and the noise."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""
    format: Annotated[int, tyro.conf.Suppress] = FORMAT

    def resolve(self, data: ImageData) -> ClassifierTrainConfig:
        """The network's input and classes from ``data``; attention only below the input resolution."""
        if self.classifier_steps < 1:  # either name may have been typed
            raise ConfigError(f"--classifier-steps (--train-steps) must be at least 1, not {self.classifier_steps}")
        at_least("batch_size", self.batch_size, 1)
        at_least("diffusion_steps", self.diffusion.diffusion_steps, 1)
        check_optim(self.optim)
        refuse_ema(self.optim, "train-classifier")
        if data.num_classes is None:
            raise DataError(f"{self.data.data}: classifier guidance needs a labelled dataset")
        size, c = data.shape[-1], data.shape[0]
        encoder = self.classifier.encoder
        attention = tuple(r for r in encoder.attention_resolutions if r < size) or ((size + 1) // 2,)
        encoder = replace(encoder, image_size=size, in_channels=c, out_channels=c, attention_resolutions=attention)
        encoder.check()  # --channels, --num-heads and the like, as train checks the U-Net's
        return replace(self, data=data.resolve(self.data),
                       classifier=replace(self.classifier, encoder=encoder, num_classes=data.num_classes))


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """A KL autoencoder for latent diffusion, its optional patch-GAN, and their training."""

    data: DataConfig = field(default_factory=lambda: DataConfig(data="fashion-mnist"))
    autoencoder: Annotated[AutoencoderConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=AutoencoderConfig)
    discriminator: Annotated[DiscriminatorConfig, tyro.conf.OmitArgPrefixes] = field(
        default_factory=DiscriminatorConfig)
    train_steps: int = 3000
    """Optimisation steps (>= 0; 0 only measures the latent scale on the data)."""
    batch_size: int = 64
    """Images per step (>= 1; under torchrun the global batch)."""
    optim: Annotated[OptimConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=lambda: OptimConfig(
        lr=1e-3, warmup=100, lr_schedule="cosine", grad_clip=1.0, ema_decay=None))
    reconstruction: Literal["l1", "l2"] = "l1"
    """The reconstruction loss per pixel: |x - x_hat| or (x - x_hat)^2."""
    kl_weight: float = 1e-6
    """Weight of KL(q(z | x) || N(0, I)), summed over the latent and divided by the image's pixels, against the
    reconstruction loss per pixel."""
    gan_start: int | None = None
    """Switch on the patch-GAN's hinge loss at this step (None: no adversarial loss)."""
    gan_weight: float = 0.5
    """Scale of the adaptive adversarial weight (Esser et al. 2021 Eq. 7)."""
    seed: int = 0
    """Seeds the weights, the data order and the posterior noise."""
    bookkeeping: Annotated[Bookkeeping, tyro.conf.OmitArgPrefixes] = field(
        default_factory=lambda: Bookkeeping(sample_every=500, checkpoint_every=500))
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""
    format: Annotated[int, tyro.conf.Suppress] = FORMAT

    def resolve(self, data: ImageData) -> AutoencoderTrainConfig:
        """The networks' input from ``data``; the factor must divide the image size."""
        at_least("train_steps", self.train_steps, 0)  # 0: only the latent scale, measured on the data
        at_least("batch_size", self.batch_size, 1)
        at_least("latent_channels", self.autoencoder.latent_channels, 1)
        at_least("channels", self.autoencoder.channels, 1)
        at_least("num_res_blocks", self.autoencoder.num_res_blocks, 0)
        if self.gan_start is not None:  # the patch discriminator is built only then
            at_least("gan_start", self.gan_start, 0)
            at_least("disc_channels", self.discriminator.disc_channels, 1)
            at_least("disc_layers", self.discriminator.disc_layers, 1)
        for name in ("kl_weight", "gan_weight"):
            check_finite_at_least_zero(option_name(name), getattr(self, name))
        check_optim(self.optim)
        refuse_ema(self.optim, "train-autoencoder")
        self.bookkeeping.check()
        size, c = data.shape[-1], data.shape[0]
        if size % self.autoencoder.factor:
            raise ConfigError(f"--factor {self.autoencoder.factor} does not divide the {size}x{size} images of "
                              f"{self.data.data}; choose a factor that does (no padding is added)")
        layers = self.discriminator.disc_layers
        if self.gan_start is not None and 2**layers > size:  # each stride-2 layer halves; a 4x4 kernel needs 2x2
            raise ConfigError(f"--disc-layers {layers} halves the {size}x{size} images of {self.data.data} {layers} "
                              f"times, past one pixel: at most {size.bit_length() - 1} fit")
        return replace(self, data=data.resolve(self.data),
                       autoencoder=replace(self.autoencoder, image_size=size, in_channels=c),
                       discriminator=replace(self.discriminator, in_channels=c))


# -- JSON -----------------------------------------------------------------------------------------


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


def check_value(name: str, value: Any, hint: Any) -> None:
    """That a value read from a saved config has its field's type (a file edited by hand, or from another
    program, is refused field by field instead of failing somewhere later)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return check_value(name, value, args[0])
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return check_value(name, value, option)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    ok = True
    if hint is type(None):
        ok = value is None
    elif origin is typing.Literal:
        ok = value in args
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint in (str, Path):
        ok = isinstance(value, str)
    elif origin is tuple:
        ok = isinstance(value, list)
        if ok:
            items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
            ok = len(items) == len(value)
            for i, (item, item_hint) in enumerate(zip(value, items) if ok else ()):
                check_value(f"{name}[{i}]", item, item_hint)
    if not ok:
        if origin is typing.Literal:  # name the choices, not the type
            raise ConfigError(f"field {name} is {value!r}, not one of {', '.join(map(repr, args))}")
        kind = {bool: "true or false", int: "whole number", float: "number", str: "string", Path: "path"}.get(
            hint, "list" if origin is tuple else getattr(hint, "__name__", str(hint)))
        raise ConfigError(f"field {name} is {value!r}, not a {kind}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Rebuild a config dataclass from :func:`to_dict`'s output, checking every field's type; unknown keys are
    a :class:`ConfigError`."""
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(data, dict):
        raise ConfigError(f"field {where.rstrip('.') or cls.__name__} is {data!r}, not a section")
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if dataclasses.is_dataclass(bare):
            kwargs[name] = from_dict(bare, value, f"{where}{name}.")
            continue
        check_value(f"{where}{name}", value, hint)
        if typing.get_origin(bare) is tuple:
            kwargs[name] = tuple(value)
        elif value is not None and Path in (bare, *typing.get_args(bare)):
            kwargs[name] = Path(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_OPTIM_FIELDS = ("lr", "warmup", "lr_schedule", "weight_decay", "grad_clip", "ema_decay", "precision")


def upgrade(raw: dict[str, Any], cls: type) -> dict[str, Any]:
    """A saved config of gaussdiff 0.1 in today's layout (today's configs pass through unchanged), and fields that
    keep an older run's shape where today's default differs (a U-Net saved without ``up_attention`` is ``doubled``).

    0.1 kept the U-Net's knobs with the labels in ``model`` (its shape in ``data``), the optimiser
    flat in ``train``, and the classifier's knobs flat beside a resolved ``network``.
    """
    train = raw.get("train")
    if cls is RunConfig and isinstance(train, dict) and isinstance(train.get("compile"), bool):
        # Before compile modes (and in 0.1), ``compile`` was a switch.
        raw = {**raw, "train": {**train, "compile": "default" if train["compile"] else "off"}}
    model = raw.get("model")
    if cls is RunConfig and isinstance(model, dict) and "up_attention" not in model:
        # Saved before the way up mirrored the way down: its weights have the doubled shape (UNetConfig.up_attention).
        raw = {**raw, "model": {**model, "up_attention": "doubled"}}
    if "format" in raw:
        return raw
    raw = json.loads(json.dumps(raw))  # a deep copy
    if cls is RunConfig:
        data, model, diffusion, train = raw["data"], raw["model"], raw["diffusion"], raw["train"]
        conditioning = {"class_conditional": model.pop("class_conditional"), "p_uncond": model.pop("p_uncond")}
        if data.get("image_size") is not None:
            c = data["image_channels"]
            learned = diffusion["variance"] in ("learned", "learned_range")
            model.update(image_size=data["image_size"], in_channels=c, out_channels=2 * c if learned else c,
                         num_classes=data["num_classes"] if conditioning["class_conditional"] else None)
        train["optim"] = {k: train.pop(k) for k in _OPTIM_FIELDS}
        train["bookkeeping"] = {k: train.pop(k) for k in ("log_every", "sample_every", "checkpoint_every",
                                                           "keep_checkpoints")}
        return {**raw, "conditioning": conditioning, "format": FORMAT}
    if cls is ClassifierTrainConfig:
        network = raw.pop("network")
        for knob in ("classifier_channels", "classifier_channel_mult", "classifier_pool"):
            raw.pop(knob)
        pool, num_classes = network.pop("pool"), network.pop("num_classes")
        encoder = {**network, "out_channels": network["in_channels"]}
        raw["classifier"] = {"encoder": encoder, "pool": pool, "num_classes": num_classes}
        raw["optim"] = {"lr": raw.pop("lr"), "warmup": 0, "lr_schedule": "one_cycle",
                        "weight_decay": raw.pop("weight_decay"), "grad_clip": None, "ema_decay": None,
                        "precision": "fp32"}
        return {**raw, "format": FORMAT}
    return raw


REQUIRED_SECTIONS: dict[type, tuple[str, ...]] = {
    RunConfig: ("data", "model", "diffusion", "train"),
    ClassifierTrainConfig: ("data", "diffusion", "classifier"),
}
"""Sections every config of that class has held since gaussdiff 0.1 (after :func:`upgrade`)."""
RUN_KINDS: dict[type, tuple[str, str, str]] = {
    RunConfig: ("model", "a diffusion run", "gaussdiff train; sample it with gaussdiff sample DIR"),
    AutoencoderTrainConfig: ("autoencoder", "an autoencoder run", "gaussdiff train-autoencoder; train a diffusion "
                                                                  "model in its latents with train --latent DIR"),
    ClassifierTrainConfig: ("classifier", "a classifier run", "gaussdiff train-classifier; guide sampling with "
                                                              "--classifier DIR"),
}
"""The section that marks each kind of run's config, and what to call that run (instead of "damaged" or a list of
fields another kind does not know)."""


def save_config(config: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(to_dict(config), indent=2) + "\n"))


def load_config(path: Path, cls: type = RunConfig) -> Any:
    """A config saved by :func:`save_config` (or by gaussdiff 0.1), as ``cls``; one from a newer gaussdiff, or
    with a field of the wrong type, is refused in one line."""
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and isinstance(raw.get("format"), int) and raw["format"] > FORMAT:
            raise ConfigError(f"{path}: written by a newer gaussdiff (config format {raw['format']}; this one reads "
                              f"up to {FORMAT}): upgrade gaussdiff to use it")
        raw = upgrade(raw, cls)
        missing = [name for name in REQUIRED_SECTIONS.get(cls, ()) if isinstance(raw, dict) and name not in raw]
        other = next((f"{kind} ({how})" for k, (section, kind, how) in RUN_KINDS.items()
                      if k is not cls and isinstance(raw, dict) and section in raw), None)
        if cls in RUN_KINDS and other is not None and RUN_KINDS[cls][0] not in raw:  # whole, but another kind of run
            raise ConfigError(f"{path}: {other}, not {RUN_KINDS[cls][1]}")
        if missing:
            # A field or section added after a run was saved takes its default; these every run has saved since
            # 0.1, so their absence is damage, and defaults would sample with another schedule or network.
            raise ConfigError(f"{path}: no {' or '.join(missing)} section, which every saved {cls.__name__} has: "
                              "the file is damaged")
        return from_dict(cls, raw)
    except ConfigError as e:
        if str(e).startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {e}") from None
    except (OSError, json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{path}: not a gaussdiff config ({type(e).__name__}: {e})") from None


def describe(config: Any) -> str:
    """A config as indented JSON."""
    return json.dumps(to_dict(config), indent=2)


def describe_before_data(config: RunConfig) -> str:
    """``--dry-run``'s JSON: ``config`` as given, with the network's sizes that the data (or the autoencoder) sets
    at start null, as the data's own are, rather than placeholders that read as what will train."""
    shown = to_dict(config)
    unset = ["image_size", "in_channels", "out_channels"]
    if config.super_res.super_res is not None:
        unset.append("low_res_channels")
    shown["model"].update(dict.fromkeys(unset))
    return json.dumps(shown, indent=2)
