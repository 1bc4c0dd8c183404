"""``gaussdiff sample``: a PNG grid and/or a .npz of samples from a trained run, guided if asked, for classes
or text prompts; from a cascade of a base run and super-resolution stages, or a super-resolution run given
low-resolution images."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from ..conditioning.guidance import GuidanceConfig
from ..errors import UsageError
from ..data.datasets import load_data, to_model_range
from ..evaluation.generate import (SpeedConfig, generate, generate_cascade, super_res_condition, takes_labels,
                                   text_condition)
from ..nets.fast import Setup, describe
from ..training.distributed import Distributed, joined
from ..training.files import atomic_write
from ..training.loop import resolve_device
from ..training.run import Trained, load_trained
from ..viz import save_grid, save_strips
from .options import (SamplerOptions, at_least, budget_of, check_fits, check_guidance, check_suffix, check_writable,
                      describe_eta, describe_guidance, keeping_parts, parse_class, read_prompts, report_setup,
                      sampling_steps, warn_untrained_null, weights_of)


def check_cascade(runs: list[Trained], paths: tuple[Path, ...]) -> None:
    """Each stage after the first super-resolves the one before: its LOW is the previous output's size, its
    channels are the same, and it takes the same kinds of condition (labels, prompts) as the base."""
    if len(runs) < 2:
        raise UsageError("--cascade needs a base run and at least one super-resolution run")
    if super_res_condition(runs[0]) is not None:
        raise UsageError(f"--cascade {paths[0]}: the first run must be a base model, not a super-resolution stage")
    kinds = lambda r: sorted(c.noun for c in r.conditions if c.key != "low_res")  # noqa: E731
    for before, after, path in zip(runs, runs[1:], paths[1:]):
        stage = super_res_condition(after)
        size, channels = before.config.data.image_size, before.config.data.image_channels
        if stage is None:
            raise UsageError(f"--cascade {path}: not a super-resolution run (train it with --super-res)")
        if stage.low != size or after.config.data.image_channels != channels:
            raise UsageError(f"--cascade {path}: upsamples {stage.low}x{stage.low} images of "
                             f"{after.config.data.image_channels} channels, but the stage before makes {size}x{size} "
                             f"of {channels}")
        if kinds(after) != kinds(before):
            raise UsageError(f"--cascade {path}: conditioned on {', '.join(kinds(after)) or 'nothing'}, the base on "
                             f"{', '.join(kinds(runs[0])) or 'nothing'}; every stage must take the same")
        if after.config.data.num_classes != before.config.data.num_classes and "labels" in kinds(after):
            raise UsageError(f"--cascade {path}: {after.config.data.num_classes} classes, the stage before "
                             f"{before.config.data.num_classes}")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to a temporary's name
        np.savez(f, **arrays)


@dataclass
class Sample:
    """Draw samples from a trained run: a PNG grid and/or a .npz (uint8 [N, H, W, C] in arr_0, labels in arr_1,
    the prompt of each sample in ``prompts``, how they were drawn in ``info``, as the PNG's caption says); or
    from a cascade (--cascade BASE SR ...), or super-resolve
    given images with a super-resolution run (--low-res)."""

    checkpoint: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="[CHECKPOINT]")] = None
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    guide: Annotated[GuidanceConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceConfig)
    n: Annotated[int, tyro.conf.arg(aliases=("--num-samples",))] = 64
    """How many samples (>= 1). Under torchrun write --num-samples: torchrun takes --n for its own --nnodes."""
    label: Annotated[str | None, tyro.conf.arg(name="class")] = None
    """A class index, or 'all' for one row per class (conditional or guided sampling; --n rounds up to full rows:
    64 of 10 classes draws 7 a class, 70)."""
    prompt: tuple[str, ...] = ()
    """Text prompts (a text run): one grid row each, --n samples shared among them (default: the run's
    preview prompts)."""
    prompt_file: Path | None = None
    """A file of prompts, one per line."""
    cascade: tuple[Path, ...] = ()
    """A base run, then super-resolution runs: each stage super-resolves the samples of the one before."""
    low_res: Path | None = None
    """Images to super-resolve (a .npz, labels in arr_1, or a folder), with a super-resolution run."""
    cond_aug_level: float | None = None
    """The conditioning-augmentation level s of super-resolution stages (default: each run's)."""
    stages: bool = False
    """With --cascade: also write FILE-stages.png, every stage's output side by side."""
    sampling: Annotated[SamplerOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=SamplerOptions)
    steps: tuple[int, ...] | None = None
    """Respaced steps, one per cascade stage (the last repeats; default 50 each, every step of a run with fewer, or
    --nfe's)."""
    seed: int = 0
    """Seeds the samples: sample i's noise comes from (seed, i), the same in any batch or process."""
    out: tuple[Path, ...] = (Path("samples.png"),)
    """One or more of FILE.png, FILE.npz."""
    ema: bool = True
    """Use the EMA weights (--no-ema: the raw weights)."""
    batch_size: int = 256
    """Samples per network call (>= 1)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""
    speed: Annotated[SpeedConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SpeedConfig)

    def stage_steps(self, runs: list[Trained]) -> list[int]:
        """Each stage's respaced steps: its --steps value (the last repeats), checked, or the default."""
        given = self.steps or (None,)
        return [sampling_steps(given[min(i, len(given) - 1)], run) for i, run in enumerate(runs)]

    def __call__(self) -> None:
        # Under torchrun the ranks share the chunks of --batch-size and rank 0 writes the result, equal to one
        # process's (README, "Running on many GPUs").
        with joined(resolve_device(self.device)) as dist:
            self.draw(dist)

    def draw(self, dist: Distributed) -> None:
        if not self.out:
            raise UsageError("--out needs one or more of FILE.png, FILE.npz")
        if self.steps == ():
            raise UsageError("--steps needs one or more values (one per cascade stage; the last repeats)")
        for path in self.out:
            check_suffix(path, (".png", ".npz"))
        at_least("--n", self.n, 1)
        at_least("--batch-size", self.batch_size, 1)
        check_guidance(self.guide)
        self.sampling.check()
        if (self.checkpoint is None) == (not self.cascade):
            raise UsageError("give one run to sample, or --cascade BASE_RUN SR_RUN [SR_RUN ...]")
        device = dist.device_for(resolve_device(self.device))
        paths = self.cascade or (self.checkpoint,)
        runs = [load_trained(p, ema=self.ema, device=device) for p in paths]
        if self.cascade:
            check_cascade(runs, self.cascade)
        if self.steps is not None and len(self.steps) > len(runs):
            raise UsageError(f"--steps gives {len(self.steps)} values for {len(runs)} stage(s)")
        spacing, times, label = self.sampling.steps_on(runs, self.steps, self.ema)
        stage_steps = self.stage_steps(runs)  # unused with --nfe, which chooses the steps itself
        if times is not None and len(runs) > 1:
            raise UsageError("explicit or tuned steps are for one run; give a cascade a spacing (--timesteps linspace)")
        steps = dict(nfe=None if times is not None else self.sampling.nfe, spacing=spacing)
        trained = runs[0]
        stage = super_res_condition(trained)
        if (stage is not None) != (self.low_res is not None):
            raise UsageError("--low-res IMAGES goes with a super-resolution run (train --super-res), and it needs them")
        if dist.is_main:
            warn_untrained_null(runs, self.guide.guidance)
        if self.label is not None and not takes_labels(trained, self.guide):
            raise UsageError("--class needs a class-conditional run or --classifier")
        if self.label == "all" and self.low_res is not None:  # its labels were class 0's alone, the grid unlabelled
            raise UsageError("--class all draws a row per class from noise; --low-res super-resolves the images given: "
                             "give one class (or none: the labels in the .npz's arr_1)")
        labels, row = parse_class(self.label, trained.config.data.num_classes, self.n)
        n = self.n if labels is None else len(labels)
        row_labels: list[str] = []  # the prompts, a row each
        low_res = None
        if self.low_res is not None:
            given = load_data(str(self.low_res), image_size=stage.low, channels=trained.config.data.image_channels)
            low_res, n = to_model_range(given.images), len(given)
            if labels is None and given.labels is not None and takes_labels(trained, self.guide):
                labels = given.labels
            elif labels is not None:
                labels = labels[:1].repeat(n)
        text = text_condition(trained)
        prompts = read_prompts(self.prompt, self.prompt_file)
        if prompts and text is None:
            given = "--prompt" if self.prompt else "--prompt-file"
            raise UsageError(f"{given} needs a text run (gaussdiff train --text)")
        if text is not None and self.guide.classifier is not None and labels is None:
            # Random labels would steer the samples away from their prompts.
            raise UsageError("classifier guidance of a text run needs --class: the class the prompts ask for")
        if text is not None:
            prompts = prompts or list(text.prompts)
            text.encode(prompts)  # an unknown word fails before any sampling
            if low_res is not None and len(prompts) not in (1, n):
                raise UsageError(f"--low-res gives {n} images: give one prompt, or one per image")
            row = math.ceil(n / len(prompts)) if low_res is None else None
            if low_res is None:
                n, row_labels = row * len(prompts), prompts
            if labels is not None:
                if self.label == "all":
                    raise UsageError("--class all and prompts do not combine: give one class with the prompts")
                labels = labels[:1].repeat(n)
        per_sample = [p for p in row_labels for _ in range(row)] if row_labels else None
        if low_res is not None and text is not None:
            per_sample = prompts * n if len(prompts) == 1 else prompts
        check_fits("--n", n, runs[-1].image_shape)
        for path in self.out:  # before sampling: an unwritable --out must not cost the samples
            check_writable(path)
        setups: list[Setup] = []  # what the network computed in, the last word kept (a failed compile falls back)

        def report(setup: Setup, seconds: dict[Setup, float]) -> None:
            setups.append(setup)
            if dist.is_main:  # one line, from the main process
                report_setup(setup, seconds)

        # More than one batch: each finished chunk is kept beside the output until it is written, so that an
        # interrupted run (a kill, a preempted job) draws only the chunks still missing when run again.
        parts = self.out[0].with_name(self.out[0].name + ".parts") if n > self.batch_size or dist.active else None
        with keeping_parts(parts, dist.is_main):
            if low_res is not None:
                images, labels = generate(trained, n, self.sampling.sampler, stage_steps[0], self.sampling.eta,
                                          self.seed, self.batch_size, labels, self.guide, prompts=per_sample,
                                          low_res=low_res,
                                          cond_aug_level=self.cond_aug_level, timesteps=times, dist=dist,
                                          parts=parts, speed=self.speed, on_setup=report, **steps)
                outputs = [images]
            else:
                outputs, labels = generate_cascade(runs, n, self.sampling.sampler, stage_steps,
                                                   self.sampling.eta, self.seed, self.batch_size, labels, self.guide,
                                                   prompts=per_sample, cond_aug_level=self.cond_aug_level,
                                                   timesteps=times, dist=dist, parts=parts, speed=self.speed,
                                                   on_setup=report, **steps)
                images = outputs[-1]
        if not dist.is_main:
            return
        caption = self.caption(runs, stage_steps, label, setups[-1] if setups else Setup(), times)
        if self.label == "all" and self.low_res is None:  # one row per class
            row_labels = [f"class {k}" for k in range(trained.config.data.num_classes)]
        for path in self.out:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".png":
                save_grid(images, path, nrow=row, row_labels=row_labels, caption=caption)
                if self.stages and len(outputs) > 1:
                    self.save_stages(outputs, path.with_name(f"{path.stem}-stages.png"), caption)
            else:
                arrays = {"arr_0": images.permute(0, 2, 3, 1).numpy()}
                if labels is not None:
                    arrays["arr_1"] = labels.numpy()
                if per_sample is not None:
                    arrays["prompts"] = np.array(per_sample)
                arrays["info"] = np.array(caption)  # how they were drawn, as the PNG's caption says
                atomic_write(path, lambda tmp: save_npz(tmp, arrays))
            print(f"wrote {path}")
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)

    def caption(self, runs: list[Trained], steps: list[int], label: str, setup: Setup,
                times: list[float] | None = None) -> str:
        """How the samples were drawn, for the picture: the checkpoint(s), weights, sampler and steps, seed, the class
        asked for, guidance and (if not plain fp32) the network's setup: ``runs/demo/checkpoints/step-0002000, EMA
        weights, ddim, 50 steps, linspace spacing, seed 0``."""
        where = " -> ".join(str(r.checkpoint) for r in runs)
        budget = budget_of(self.sampling.nfe, steps, times)
        # One class is said here; --class all names each row beside the grid instead.
        asked = f", class {int(self.label)}" if self.label not in (None, "all") else ""
        eta = describe_eta(self.sampling.sampler, self.sampling.eta)
        words = (f"{where}, {weights_of(runs[0], self.ema)}, {self.sampling.sampler}{eta}, {budget}, {label}, "
                 f"seed {self.seed}{asked}{describe_guidance(self.guide)}")
        if setup != Setup():
            words += f", network in {describe(setup, {})}"
        return words

    @staticmethod
    def save_stages(outputs: list[torch.Tensor], path: Path, caption: str) -> None:
        """The first 8 samples, a row each: every stage's output side by side, a column a stage (enlarged by
        repeating pixels to the last size), with ``caption`` (how they were drawn) under them."""
        size = outputs[-1].shape[-1]
        big = [F.interpolate(o[:8].float(), size=(size, size), mode="nearest").to(torch.uint8) for o in outputs]
        rows = [torch.stack([b[j] for b in big]) for j in range(len(big[0]))]
        save_strips(rows, path, [f"{o.shape[-1]}x{o.shape[-1]}" for o in outputs], caption=caption)
        print(f"wrote {path}")
