"""Samples from a trained run as images: the model wrapped for the guidance asked for, batch by batch,
conditioned on class labels and/or text prompts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..conditioning.guidance import GuidanceConfig, guide
from ..data.datasets import to_model_range
from ..conditioning.super_res import LowResolution
from ..conditioning.text import TextPrompt
from ..diffusion.process import GaussianDiffusion, Model
from ..errors import ConfigError
from ..diffusion.schedule import Spacing
from ..samplers.run import SamplerName, plan, sample
from ..training.classifier import load_noisy_classifier
from ..training.run import Trained


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


def guided_model(trained: Trained, diffusion: GaussianDiffusion, sampler: SamplerName, guidance: GuidanceConfig) -> Model:
    """The model a sampler on ``diffusion`` (respaced or not) should call: ``trained.model`` wrapped as
    ``guidance`` asks, its classifier loaded and checked against the run."""
    classifier = None
    if guidance.classifier is not None:
        classifier, cfg = load_noisy_classifier(guidance.classifier, trained.device)
        mine, theirs = trained.config.diffusion, cfg.diffusion
        if (mine.schedule, mine.diffusion_steps, mine.zero_terminal_snr) != (
                theirs.schedule, theirs.diffusion_steps, theirs.zero_terminal_snr):
            snr = lambda c: " (zero terminal SNR)" if c.zero_terminal_snr else ""  # noqa: E731
            raise ConfigError(f"{guidance.classifier}: trained on a {theirs.schedule} schedule of {theirs.diffusion_steps} "
                              f"steps{snr(theirs)}, the model on {mine.schedule} with {mine.diffusion_steps}{snr(mine)}")
        num_classes = trained.config.data.num_classes
        if num_classes is not None and cfg.classifier.num_classes != num_classes:
            raise ConfigError(f"{guidance.classifier}: {cfg.classifier.num_classes} classes, the model's data has "
                              f"{num_classes}")
    variance_channels = trained.sample_shape[0] if diffusion.learns_variance else 0
    return guide(trained.model, diffusion, guidance, sampler, trained.conditions, variance_channels, classifier)


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
    spacing: Spacing = "linspace",
    timesteps: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``n`` samples as ``uint8 [n, C, H, W]``, conditioned on ``labels: [n]`` and/or ``prompts`` (n of them)
    and guided as asked, with the labels they were drawn with (None for a model that takes none).

    A conditional or guided model without ``labels`` samples classes uniformly from the seed; a text
    model without ``prompts`` takes the run's preview prompts in turn. A super-resolution stage takes
    ``low_res: [n, C, LOW, LOW]`` in [-1, 1], augmented at ``cond_aug_level`` (default: the run's).
    The steps: ``steps`` of ``spacing``, or a budget of ``nfe`` evaluations, or explicit ``timesteps``
    (either of these replaces ``steps``; see :func:`~gaussdiff.samplers.sample`).
    """
    guidance = guidance or GuidanceConfig()
    d = trained.config.data
    if nfe is not None or timesteps is not None:
        steps = None
    diffusion, _ = plan(trained.diffusion, sampler, steps, nfe, spacing, timesteps)
    model = guided_model(trained, diffusion, sampler, guidance)
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
    aug_generator = torch.Generator().manual_seed(seed)
    g = torch.Generator(trained.device).manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress or n <= batch_size, leave=False):
        b = min(batch_size, n - i)
        cond = {"y": labels[i : i + b].to(trained.device)} if labelled else {}
        if tokens is not None:
            cond[text.key] = tokens[i : i + b].to(trained.device)
        if stage is not None:
            cond.update(stage.augment(low_res[i : i + b].to(trained.device), aug_generator, level))
        x = sample(model, trained.diffusion, (b, *trained.sample_shape), sampler=sampler, steps=steps, eta=eta,
                   generator=g, clip_denoised=trained.clip_denoised, progress=progress and n <= batch_size,
                   device=trained.device, spacing=spacing, nfe=nfe, timesteps=timesteps, **cond)
        out.append(trained.images_of(x))
    return torch.cat(out), labels if labelled else None


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
    spacing: Spacing = "linspace",
    timesteps: Sequence[float] | None = None,
) -> tuple[list[Tensor], Tensor | None]:
    """A cascade (Ho et al. 2022): ``n`` samples of the base run ``runs[0]``, then each super-resolution stage
    on the samples of the stage before, with ``steps[i]`` steps (the last repeats) and the same labels and
    prompts (or ``nfe`` evaluations a stage, on ``spacing``, or the explicit ``timesteps`` in every stage). Every stage's output ``uint8 [n, C, H_i, W_i]``,
    and the labels drawn."""
    guidance = guidance or GuidanceConfig()
    step = lambda i: steps[min(i, len(steps) - 1)]  # noqa: E731
    images, labels = generate(runs[0], n, sampler, step(0), eta, seed, batch_size, labels, guidance, progress, prompts,
                              nfe=nfe, spacing=spacing, timesteps=timesteps)
    outputs = [images]
    for i, run in enumerate(runs[1:], start=1):
        images, _ = generate(run, n, sampler, step(i), eta, seed + i, batch_size,
                             labels if takes_labels(run, guidance) else None, guidance, progress, prompts,
                             low_res=to_model_range(images), cond_aug_level=cond_aug_level, nfe=nfe, spacing=spacing,
                             timesteps=timesteps)
        outputs.append(images)
    return outputs, labels
