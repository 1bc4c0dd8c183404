"""Samples from a trained run as images: the model wrapped for the guidance asked for, batch by batch,
conditioned on class labels and/or text prompts (and, for a super-resolution stage, low-resolution images);
:func:`generate_cascade` runs a base run and its super-resolution stages in turn.

Sample i's noise comes from its own generator, seeded by (seed, i), and batches are fixed chunks of
the index range, so sample i is the same whatever the batching around it is run on: under torchrun
the ranks take chunk k when k = rank (mod N) and gather the result, equal bit for bit to one process
on CPU. With a ``parts`` directory every finished chunk is written there, and an interrupted run
(a kill, a preempted job) computes only the chunks that are missing.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conditioning.guidance import GuidanceConfig, guide
from ..data.datasets import mix_seed, to_model_range
from ..conditioning.super_res import LowResolution, check_level
from ..conditioning.text import TextPrompt, refuse_one_string
from ..diffusion.process import GaussianDiffusion, Model
from ..errors import ConfigError, NonFiniteError
from ..diffusion.schedule import Spacing
from ..nets.fast import CompileMode, SampleLayout, SamplePrecision, Setup, sampling_network
from ..samplers.run import SamplerName, default_spacing, plan, sample
from ..training.classifier import load_noisy_classifier
from ..training.distributed import Distributed, fingerprint
from ..training.files import atomic_write
from ..training.run import Trained


@dataclass(frozen=True)
class SpeedConfig:
    """How sampling calls the network (:func:`~gaussdiff.nets.fast.sampling_network`); the samples are the same
    function of the weights either way, to bf16's rounding when it is used."""

    precision: SamplePrecision = "auto"
    """The network's arithmetic while sampling: ``auto`` is bf16 autocast on CUDA with bf16; on a CPU with native
    bf16 (AMX or AVX-512 BF16) bf16 if, timed on the run's first batch before sampling, it takes at most 0.85 of
    fp32's time; else fp32. ``fp32``; ``bf16``."""
    cuda_graph: bool = True
    """On CUDA, replay each network call from a captured CUDA graph (one launch instead of hundreds: small batches
    are launch-bound); the samples are those of plain calls."""
    compile: CompileMode = "auto"
    """``torch.compile`` the network in this mode; ``auto``: on CUDA ``reduce-overhead`` (``default`` with
    --no-cuda-graph) for runs of at least 500k image evaluations (images through the network: samples x steps, x2
    under classifier-free guidance, a rank's share under torchrun), where its fused kernels should
    repay its ~25 s a batch shape; on CPU ``default`` when the call time measured on the first batch projects 600 s
    of sampling or more (compiling costs 30-35 s a batch shape there); else ``off``."""
    memory_format: SampleLayout = "auto"
    """The activations' layout: ``auto`` is channels_last on CUDA, and on CPU whichever of the two is faster timed
    on the run's first batch (channels_last only at 0.95 of the default layout's time or less)."""


PLAIN = SpeedConfig(precision="fp32", compile="off", memory_format="contiguous")
"""Plain fp32 calls in the default layout on every device (CUDA graphs on CUDA only): the library's default, so
that a script's samples are exact and nothing is measured."""


def sample_seed(seed: int, i: int, stream: int = 0) -> int:
    """The seed of sample i's noise (stream 0), or of its low-resolution image's augmentation (stream 1).

    torch's CPU generator (mt19937) reads only the low 32 bits of a seed, so (seed, stream) picks a
    pseudo-random 32-bit offset (a splitmix64 hash) and sample i takes offset + i: distinct for every i of
    one seed, and two seeds' ranges of n samples overlap with probability about 2n / 2^32.
    """
    return (mix_seed(seed, stream) + i) & 0xFFFFFFFF


class Parts:
    """A directory of finished chunks ``chunk-K.npz`` (uint8 images) and ``meta.json``, naming what they are
    samples of, so that a run with other settings never mixes its samples in."""

    def __init__(self, root: Path, key: dict) -> None:
        """Refuse a ``root`` whose chunks were drawn with settings other than ``key``; the network's setup they
        were drawn in, which the caller settles, is kept as :attr:`setup`."""
        self.root = root
        self.key = key
        self.setup: list | None = None
        """The network setup the chunks already here were drawn in (None if there are none)."""
        meta = root / "meta.json"
        if meta.exists():
            try:
                found = json.loads(meta.read_text())
            except ValueError:
                found = None
            mine = isinstance(found, dict) and "setup" in found  # parts of an earlier gaussdiff recorded none
            if not mine or {k: v for k, v in found.items() if k != "setup"} != key:
                raise ConfigError(f"{root} holds samples drawn with other settings; remove it, or write elsewhere")
            self.setup = found["setup"]

    def start(self, setup: Setup) -> None:
        """Record the settings, and the network ``setup`` the chunks are drawn in, before the first chunk."""
        if not (self.root / "meta.json").exists():
            meta = {**self.key, "setup": list(setup)}
            atomic_write(self.root / "meta.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))

    def path(self, k: int) -> Path:
        return self.root / f"chunk-{k:06d}.npz"

    def load(self, k: int, shape: tuple[int | None, ...]) -> Tensor | None:
        """Chunk k if it was finished: uint8 images of ``shape`` (a damaged or foreign one is drawn again)."""
        try:
            with np.load(self.path(k), allow_pickle=False) as f:
                images = f["images"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        # (C, H, W) unknown (None) in a hand-built config: the count and kind still tell a foreign chunk
        fits = len(images.shape) == len(shape) and all(s is None or s == i for s, i in zip(shape, images.shape))
        return torch.from_numpy(images) if images.dtype == np.uint8 and fits else None

    def save(self, k: int, images: Tensor) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, images=images.numpy())

        atomic_write(self.path(k), write)


def settings_key(trained: Trained, **settings) -> dict:
    """What samples depend on: the weights (a fingerprint), and every setting of the call, hashed where large."""
    def plain(v):
        if isinstance(v, Tensor):
            return hashlib.sha256(v.cpu().numpy().tobytes()).hexdigest()[:16]
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v if v is None or isinstance(v, (int, float, str, bool)) else repr(v)

    return {"weights": fingerprint(trained.model).tolist(), **{k: plain(v) for k, v in settings.items()}}


def takes_labels(trained: Trained, guidance: GuidanceConfig) -> bool:
    """Whether sampling takes class labels: a class-conditional model, classifier guidance, or classifier-free
    guidance of a model that takes no other condition (which :func:`guide` refuses in one line)."""
    keys = {c.key for c in trained.conditions}
    return "y" in keys or guidance.classifier is not None or (guidance.guidance > 0 and not keys)


def super_res_condition(trained: Trained) -> LowResolution | None:
    """The run's low-resolution condition (None: not a super-resolution stage)."""
    return next((c for c in trained.conditions if isinstance(c, LowResolution)), None)


def text_condition(trained: Trained) -> TextPrompt | None:
    """The run's text condition (None: the model reads no prompts)."""
    return next((c for c in trained.conditions if isinstance(c, TextPrompt)), None)


def check_cond_aug_level(stages: Sequence[Trained], level: float | None) -> None:
    """Refuse a sampling augmentation level (None: each stage's own) that some stage cannot take, or that no
    stage would read (none is a super-resolution run): before any stage samples."""
    if level is None:
        return
    conditions = [c for c in map(super_res_condition, stages) if c is not None]
    if not conditions:
        raise ConfigError("--cond-aug-level is for super-resolution runs (train --super-res), and this is not one")
    for condition in conditions:
        check_level("--cond-aug-level", level, condition.cond_aug)


def check_request(trained: Trained, n: int, batch_size: int, labels: Tensor | None, prompts: Sequence[str] | None,
                  low_res: Tensor | None) -> None:
    """Refuse, in one line naming the argument, what :func:`generate` would otherwise fail on deep inside (a
    broadcast of mismatched sizes in the network, an embedding index out of range) or draw silently wrong: a
    count or batch size below 1, labels that are not ``[n]`` integers among the data's classes, a single string
    for ``prompts`` (a TypeError, as the tokenizer's), low-resolution images that are not ``float [n, C, LOW, LOW]``."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be at least 1, got n = {n} and batch_size = {batch_size}")
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex \
                or tuple(labels.shape) != (n,):
            what = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor)
                    else type(labels).__name__)
            raise ValueError(f"labels must be an integer tensor [n] = [{n}], got {what}")
        k = trained.config.data.num_classes
        if k is not None and len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < k):
            raise ValueError(f"labels must lie in 0..{k - 1} (the data's classes), got {int(labels.min())}.."
                             f"{int(labels.max())}")
    refuse_one_string("prompts", prompts)  # before its length is compared with n: it would count letters
    stage = super_res_condition(trained)
    if stage is not None and low_res is not None:
        shape = (n, trained.image_shape[0], stage.low, stage.low)
        if not low_res.dtype.is_floating_point or tuple(low_res.shape) != shape:
            raise ValueError(f"low_res must be float {list(shape)} in [-1, 1] (n low-resolution images of this "
                             f"stage), got {low_res.dtype} {list(low_res.shape)}")


def guided_model(trained: Trained, diffusion: GaussianDiffusion, sampler: SamplerName, guidance: GuidanceConfig,
                 net: Model | None = None) -> Model:
    """The model a sampler on ``diffusion`` (respaced or not) should call: ``net`` (default ``trained.model``)
    wrapped as ``guidance`` asks, its classifier loaded and checked against the run."""
    if guidance.guidance and trained.source == "diffusers":
        raise ConfigError("classifier-free guidance needs the model's null label, which a diffusers UNet2DModel does "
                          "not mark: sample it unguided (or with --classifier)")
    classifier = None
    if guidance.classifier is not None:
        classifier, cfg = load_noisy_classifier(guidance.classifier, trained.device)
        mine, theirs = trained.config.diffusion, cfg.diffusion
        if (mine.schedule, mine.diffusion_steps, mine.zero_terminal_snr) != (
                theirs.schedule, theirs.diffusion_steps, theirs.zero_terminal_snr):
            snr = lambda c: " (zero terminal SNR)" if c.zero_terminal_snr else ""  # noqa: E731
            raise ConfigError(f"{guidance.classifier}: trained on a {theirs.schedule} schedule of "
                              f"{theirs.diffusion_steps} steps{snr(theirs)}, the model on {mine.schedule} with "
                              f"{mine.diffusion_steps}{snr(mine)}")
        encoder = cfg.classifier.encoder
        channels, size = trained.sample_shape[0], trained.sample_shape[-1]
        if (encoder.in_channels, encoder.image_size) != (channels, size):
            # Its attention pool has one position embedding per pixel of its own size, and a classifier of other
            # images would steer by gradients that mean nothing to this model.
            raise ConfigError(f"{guidance.classifier}: classifies {encoder.image_size}x{encoder.image_size} images of "
                              f"{encoder.in_channels} channel(s), the model samples {size}x{size} of {channels}")
        num_classes = trained.config.data.num_classes
        if num_classes is not None and cfg.classifier.num_classes != num_classes:
            raise ConfigError(f"{guidance.classifier}: {cfg.classifier.num_classes} classes, the model's data has "
                              f"{num_classes}")
    variance_channels = trained.sample_shape[0] if diffusion.learns_variance else 0
    return guide(trained.model if net is None else net, diffusion, guidance, sampler, trained.conditions,
                 variance_channels, classifier)


def generate(
    trained: Trained,
    n: int,
    sampler: SamplerName = "ddim",
    steps: int | None = 50,
    eta: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    labels: Tensor | None = None,
    guidance: GuidanceConfig | None = None,
    progress: bool = True,
    prompts: Sequence[str] | None = None,
    low_res: Tensor | None = None,
    cond_aug_level: float | None = None,
    *,
    nfe: int | None = None,
    spacing: Spacing | Literal["auto"] = "auto",
    timesteps: Sequence[float] | None = None,
    dist: Distributed | None = None,
    parts: Path | None = None,
    speed: SpeedConfig = PLAIN,
    on_setup: Callable[[Setup, dict[Setup, float]], None] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``n`` samples as ``uint8 [n, C, H, W]``, conditioned on ``labels: [n]`` and/or ``prompts`` (n of them)
    and guided as asked, with the labels they were drawn with (None for a model that takes none).
    Sample i's noise and augmentation depend on (``seed``, i) alone, not on ``batch_size``; under torchrun
    (``dist``) the ranks share the chunks of ``batch_size`` and every rank returns all n. ``parts``: a directory
    that keeps finished chunks, so that an interrupted call computes only the rest.

    A conditional or guided model without ``labels`` samples classes uniformly from the seed; a text
    model without ``prompts`` takes the run's preview prompts in turn. A super-resolution stage takes
    ``low_res: [n, C, LOW, LOW]`` in [-1, 1], augmented at ``cond_aug_level`` (default: the run's).
    The steps: ``steps`` of ``spacing``, or a budget of ``nfe`` evaluations, or explicit ``timesteps``
    (either of these replaces ``steps``; see :func:`~gaussdiff.samplers.sample`). ``speed``: how the network is
    called (the CLI's default is ``SpeedConfig()``: bf16, graphs and compiling where they pay; on CPU measured
    once, on the main process, before sampling; a resumed ``parts`` keeps the setup it was drawn in, and the
    network leaves in the memory layout it came in); ``on_setup`` is told the setup the network computes in, and
    the seconds a call measured to choose it (empty if nothing was), before sampling, and told again after it if
    the setup changed on the way (a compile that failed on a later batch shape: the rest were drawn uncompiled).
    """
    guidance = guidance or GuidanceConfig()
    check_cond_aug_level([trained], cond_aug_level)
    d = trained.config.data
    check_request(trained, n, batch_size, labels, prompts, low_res)
    if nfe is not None or timesteps is not None:
        steps = None
    spacing = default_spacing(sampler) if spacing == "auto" else spacing  # resolved once: the parts key names it
    diffusion, _ = plan(trained.diffusion, sampler, steps, nfe, spacing, timesteps)
    calls = nfe or (len(timesteps) if timesteps is not None else steps) or trained.diffusion.num_steps
    if sampler == "heun" and nfe is None:  # two evaluations a step but the last (the budget is a compile's estimate)
        calls = 2 * calls - 1
    dist = dist or Distributed()
    # The images the network sees on this rank: classifier-free guidance runs both branches in one batch.
    evaluations = n * calls * (2 if guidance.guidance else 1) // dist.world_size
    net = sampling_network(trained.model, speed.precision, speed.cuda_graph, speed.compile, evaluations=evaluations,
                           memory_format=speed.memory_format)
    model = guided_model(trained, diffusion, sampler, guidance, net)
    labelled = takes_labels(trained, guidance)
    if labelled and labels is None:
        if d.num_classes is None:
            raise ConfigError("guidance needs class labels, and this run's data has none")
        labels = torch.randint(0, d.num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    text = text_condition(trained)
    tokens = None
    if prompts is not None:
        if text is None:
            raise ConfigError("prompts need a text run (gaussdiff train --text)")
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} samples")
    if text is not None:
        # Cut as training captions are (a user's prompts were checked in full by the CLI).
        tokens = text.tokenizer.encode(prompts if prompts is not None else
                                       [text.prompts[i % len(text.prompts)] for i in range(n)], truncate=True)
    stage = super_res_condition(trained)
    if (stage is None) != (low_res is None):
        raise ConfigError("a super-resolution stage needs low-resolution images, and only it takes them")
    level = trained.config.super_res.cond_aug_level if cond_aug_level is None else cond_aug_level
    chunks = range(-(-n // batch_size))

    def span(k: int) -> tuple[int, int]:
        """Chunk k's first sample and the one after its last."""
        return k * batch_size, min(n, (k + 1) * batch_size)

    def conditions(k: int) -> dict[str, Tensor]:
        """Chunk k's conditions (its low-resolution images augmented): built only for a chunk that is drawn."""
        lo, hi = span(k)
        cond = {"y": labels[lo:hi].to(trained.device)} if labelled else {}
        if tokens is not None:
            cond[text.key] = tokens[lo:hi].to(trained.device)
        if stage is not None:
            # Image i augmented by its own generator (seed, i, stream 1): the same in any batch, as its noise is.
            each = [stage.augment(low_res[i : i + 1].to(trained.device),
                                  torch.Generator().manual_seed(sample_seed(seed, i, stream=1)), level)
                    for i in range(lo, hi)]
            cond.update({name: torch.cat([e[name] for e in each]) for name in each[0]})
        return cond

    key = settings_key(trained, n=n, sampler=sampler, steps=steps, eta=eta, seed=seed, batch_size=batch_size,
                       labels=labels, guidance=repr(guidance), tokens=tokens, low_res=low_res, level=level, nfe=nfe,
                       spacing=spacing, timesteps=timesteps)
    store = Parts(parts, key) if parts is not None else None  # before measuring: other settings refused
    recorded = store.setup if store is not None else None
    if recorded is not None and not net.accepts(recorded):
        raise ConfigError(f"{parts} holds samples drawn in {recorded}, not as asked now: remove it, or write elsewhere")
    if net.candidates:  # CPU: one setup for the whole run, chosen on the main process
        if dist.is_main and recorded is not None:
            net.use(recorded)  # a resumed run computes as its finished chunks were computed
        elif dist.is_main and net.setup is None:  # timed on chunk 0's network call, guidance included
            lo, hi = span(0)
            cond = conditions(0)
            x = torch.randn(hi - lo, *trained.sample_shape, generator=torch.Generator().manual_seed(0))
            # The sampler's first step, contiguous as the sampler's own t (a compiled graph guards on strides).
            t = diffusion.schedule.timesteps[-1:].repeat(hi - lo)
            try:
                with torch.no_grad():
                    model(x.to(trained.device), t.to(trained.device), **cond)
            except BaseException:  # an error, or Ctrl-C, while measuring: the network leaves as it came
                net.restore()
                raise
        if dist.active:
            net.use(dist.broadcast(net.setup))
    told = net.setup
    if on_setup is not None:
        on_setup(told, net.seconds)
    if store is not None and dist.is_main:
        store.start(net.setup)
    mine = {}
    pixels = trained.image_shape
    todo = [k for k in chunks if k % dist.world_size == dist.rank]
    try:
        for k in tqdm(todo, desc="sampling", disable=not progress or not dist.is_main or len(todo) < 2, leave=False):
            lo, hi = span(k)
            done = store.load(k, (hi - lo, *pixels)) if store is not None else None
            if done is not None:
                mine[k] = done
                continue
            cond = conditions(k)
            generators = [torch.Generator(trained.device).manual_seed(sample_seed(seed, i)) for i in range(lo, hi)]
            x = sample(model, trained.diffusion, (hi - lo, *trained.sample_shape), sampler=sampler, steps=steps,
                       eta=eta, generator=generators, clip_denoised=trained.clip_denoised,
                       progress=progress and len(chunks) == 1, device=trained.device, spacing=spacing, nfe=nfe,
                       timesteps=timesteps, **cond)
            if not torch.isfinite(x).all():  # would be written as black or white images without a word
                raise NonFiniteError(f"samples {lo}..{hi - 1} hold NaN or inf: the network's output is not finite "
                                     f"(are the weights of {trained.checkpoint} finite?)")
            mine[k] = trained.images_of(x)
            if store is not None:
                store.save(k, mine[k])
        if on_setup is not None and net.setup != told:
            on_setup(net.setup, net.seconds)
    finally:
        net.restore()  # the run's network leaves in the layout it came in
    every = {}
    for part in dist.gather_objects(mine):
        every.update(part)
    return torch.cat([every[k] for k in chunks]), labels if labelled else None


def generate_cascade(
    runs: Sequence[Trained],
    n: int,
    sampler: SamplerName = "ddim",
    steps: Sequence[int | None] = (50,),
    eta: float | None = None,
    seed: int = 0,
    batch_size: int = 256,
    labels: Tensor | None = None,
    guidance: GuidanceConfig | None = None,
    progress: bool = True,
    prompts: Sequence[str] | None = None,
    cond_aug_level: float | None = None,
    *,
    nfe: int | None = None,
    spacing: Spacing | Literal["auto"] = "auto",
    timesteps: Sequence[float] | None = None,
    dist: Distributed | None = None,
    parts: Path | None = None,
    speed: SpeedConfig = PLAIN,
    on_setup: Callable[[Setup, dict[Setup, float]], None] | None = None,
) -> tuple[list[Tensor], Tensor | None]:
    """A cascade (Ho et al. 2022): ``n`` samples of the base run ``runs[0]``, then each super-resolution stage
    on the samples of the stage before, with ``steps[i]`` steps (the last repeats) and the same labels and
    prompts, to each stage that reads them (or ``nfe`` evaluations a stage, on ``spacing``, or the explicit
    ``timesteps`` in every stage).
    Classifier-free guidance steers every stage, a classifier only the base.
    Every stage's output ``uint8 [n, C, H_i, W_i]``, and the labels drawn. ``dist``, ``parts`` (a subdirectory
    a stage), ``speed`` and ``on_setup`` (told once a stage) as for :func:`generate`."""
    guidance = guidance or GuidanceConfig()
    # A classifier guides the base stage, which decides what the samples show; the super-resolution stages
    # follow its images (and its labels, when they are class-conditional) at sizes the classifier never saw.
    refine = replace(guidance, classifier=None)
    check_cond_aug_level(runs[1:], cond_aug_level)
    step = lambda i: steps[min(i, len(steps) - 1)]  # noqa: E731
    images, labels = generate(runs[0], n, sampler, step(0), eta, seed, batch_size, labels, guidance, progress, prompts,
                              nfe=nfe, spacing=spacing, timesteps=timesteps, dist=dist,
                              parts=None if parts is None else parts / "stage-0", speed=speed, on_setup=on_setup)
    outputs = [images]
    for i, run in enumerate(runs[1:], start=1):
        images, _ = generate(run, n, sampler, step(i), eta, seed + i, batch_size,
                             labels if takes_labels(run, refine) else None, refine, progress,
                             prompts if text_condition(run) is not None else None,
                             low_res=to_model_range(images), cond_aug_level=cond_aug_level, nfe=nfe, spacing=spacing,
                             timesteps=timesteps, dist=dist, parts=None if parts is None else parts / f"stage-{i}",
                             speed=speed, on_setup=on_setup)
        outputs.append(images)
    return outputs, labels
