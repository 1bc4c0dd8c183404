"""``gaussdiff show``: the forward process, and a sampling run's x_t and x0 estimates (DDPM Fig. 6-7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

import numpy as np
import torch
import tyro

from ..data.datasets import load_configured, load_data, to_model_range, to_uint8
from ..diffusion.process import DiffusionConfig
from ..diffusion.schedule import ScheduleName
from ..errors import UsageError
from ..evaluation.generate import super_res_condition, text_condition
from ..samplers.base import SamplerStep
from ..samplers.run import plan, sample
from ..training.checkpoint import load_checkpoint_config, resolve_checkpoint, verify_checkpoint
from ..training.loop import resolve_device
from ..training.run import load_trained
from ..viz import save_strips
from .options import (SamplerOptions, at_least, check_steps, check_suffix, check_writable, describe_eta, parse_class,
                      weights_of)

DEFAULT_T = (0, 50, 100, 200, 300, 400, 500, 600, 800, 999)
"""show forward's steps by default, on the 1000-step schedule."""


@dataclass
class ShowForward:
    """A strip of images through the forward process q(x_t | x0) at chosen t (DDPM Fig. 6 style)."""

    data: str = "digits"
    """The dataset whose --index images are noised (built-in name, folder or .npz)."""
    run: Path | None = None
    """Take the schedule and data from this run instead."""
    index: tuple[int, ...] = (0, 1, 2, 3)
    """Which images of the dataset, one row each."""
    t: tuple[int, ...] = DEFAULT_T
    """The steps to show, 0..T-1 (default: these on the 1000-step schedule, scaled to a schedule of T steps)."""
    schedule: ScheduleName | None = None
    """The beta schedule: linear or cosine (default cosine; without --run, which has its own)."""
    diffusion_steps: int | None = None
    """Steps of the schedule (>= 1; default 1000; without --run, which has its own)."""
    seed: int = 0
    """Seeds the noise (--index chooses the images)."""
    out: Path = Path("forward.png")
    """The PNG to write."""

    def __call__(self) -> None:
        if not self.t or not self.index:
            raise UsageError(f"--{'t' if not self.t else 'index'} needs one or more values")
        check_suffix(self.out, (".png",))
        if self.run is not None:
            if self.schedule is not None or self.diffusion_steps is not None:
                raise UsageError("--schedule and --diffusion-steps go without --run: a run's strip uses its own")
            checkpoint = resolve_checkpoint(self.run)
            verify_checkpoint(checkpoint, only=("config.json",))  # as sample and eval read it: as written
            config = load_checkpoint_config(checkpoint)
            diffusion = config.diffusion.build()
            data = load_configured(config.data, "train")
            source, schedule = f"{config.data.data} (the run's data)", config.diffusion.schedule
        else:
            steps = 1000 if self.diffusion_steps is None else self.diffusion_steps
            schedule = self.schedule or "cosine"
            at_least("--diffusion-steps", steps, 1)
            diffusion = DiffusionConfig(diffusion_steps=steps, schedule=schedule).build()
            data = load_data(self.data)
            source = self.data
        ts = self.t
        if ts == DEFAULT_T and diffusion.num_steps != 1000:  # the same fractions of another schedule's T steps
            ts = tuple(dict.fromkeys(round(t * (diffusion.num_steps - 1) / 999) for t in ts))
        bad = [t for t in ts if not 0 <= t < diffusion.num_steps]
        if bad:
            raise UsageError(f"--t {bad[0]} is outside 0..{diffusion.num_steps - 1}")
        bad_i = [i for i in self.index if not 0 <= i < len(data)]
        if bad_i:
            raise UsageError(f"--index {bad_i[0]} is outside 0..{len(data) - 1}")
        check_writable(self.out)
        x0 = to_model_range(data.images[list(self.index)])
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(x0.shape, generator=g)
        rows = []
        for i in range(len(x0)):
            t = torch.tensor(ts)
            x_t = diffusion.q_sample(x0[i : i + 1].expand(len(t), *x0.shape[1:]), t,
                                     noise[i : i + 1].expand(len(t), *x0.shape[1:]))
            rows.append(to_uint8(x_t))
        caption = (f"x_t ~ q(x_t | x0) of {source} images {', '.join(map(str, self.index))} (a row each), "
                   f"{schedule} schedule of {diffusion.num_steps} steps, noise seed {self.seed}")
        save_strips(rows, self.out, [f"t={t}" for t in ts], caption=caption)
        print(f"wrote {self.out}")


@dataclass
class ShowTrajectory:
    """Strips of x_t and of the x0 estimate along one sampling run (DDPM Fig. 6-7: progressive generation)."""

    # Named plainly: tyro would call it WHAT.CHECKPOINT, after Show's field, in the usage and its errors.
    checkpoint: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    n: int = 3
    """How many samples (>= 1; two rows each: x_t, then the x0 estimate)."""
    label: Annotated[str | None, tyro.conf.arg(name="class")] = None
    """For a class-conditional run: a class index (default: classes 0, 1, 2, ... one per sample)."""
    prompt: str | None = None
    """For a text run: the prompt of every sample (default: the run's preview prompts, one per sample)."""
    frames: int = 10
    """How many steps of the run to show (>= 2; more than the run takes show all of them)."""
    sampling: Annotated[SamplerOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=lambda: SamplerOptions(sampler="ddpm"))  # the trajectory of the DDPM paper's Figure 6
    steps: int | None = None
    """Respaced steps (None: all of the run's)."""
    seed: int = 0
    """Seeds the samples."""
    out: Path = Path("trajectory.png")
    """The PNG to write."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""

    def __call__(self) -> None:
        at_least("--n", self.n, 1)
        at_least("--frames", self.frames, 2)
        check_suffix(self.out, (".png",))
        if self.label == "all":
            raise UsageError("--class all is for gaussdiff sample; give show trajectory one class index")
        device = resolve_device(self.device)
        trained = load_trained(self.checkpoint, device=device)
        if super_res_condition(trained) is not None:  # its network needs low-resolution images at every step
            raise UsageError(f"{self.checkpoint} is a super-resolution run: show trajectory samples from noise alone, "
                             "and the stage needs low-resolution images (gaussdiff sample RUN --low-res IMAGES)")
        check_steps(self.steps, trained)
        spacing, times, label = self.sampling.steps_on([trained], self.steps)
        nfe = None if times is not None else self.sampling.nfe
        steps = None if nfe is not None or times is not None else self.steps
        total = len(plan(trained.diffusion, self.sampling.sampler, steps, nfe, spacing, times)[0].schedule)
        keep = set(np.linspace(0, total - 1, min(self.frames, total)).round().astype(int).tolist())
        frames: list[SamplerStep] = []

        def record(step: SamplerStep) -> None:
            if step.i in keep:
                frames.append(step)

        # The trajectory of the model that samples: a conditional one is given its conditions.
        cond = {c.key: c.examples(self.n, device) for c in trained.conditions}
        if self.label is not None:
            if "y" not in cond:
                raise UsageError("--class needs a class-conditional run")
            cond["y"] = parse_class(self.label, trained.config.data.num_classes, self.n)[0].to(device)
        text = text_condition(trained)
        prompts = [text.prompts[j % len(text.prompts)] for j in range(self.n)] if text is not None else []
        if self.prompt is not None:
            if text is None:
                raise UsageError("--prompt needs a text run (gaussdiff train --text)")
            prompts = [self.prompt] * self.n
        if text is not None:
            cond[text.key] = text.encode(prompts).to(device)
        self.sampling.check()
        check_writable(self.out)  # before sampling, not after
        g = torch.Generator(device).manual_seed(self.seed)
        sample(trained.model, trained.diffusion, (self.n, *trained.sample_shape), sampler=self.sampling.sampler,
               steps=steps, nfe=nfe, spacing=spacing, timesteps=times, eta=self.sampling.eta, generator=g,
               clip_denoised=trained.clip_denoised, callback=record, device=device, **cond)
        rows, labels = [], []
        for j in range(self.n):
            # A latent run's frames are decoded to pixels.
            rows.append(trained.images_of(torch.stack([f.x_t[j] for f in frames])))
            rows.append(trained.images_of(torch.stack([f.x0[j] for f in frames])))
            name = f" {cond['y'][j].item()}" if "y" in cond else ""
            name += f" {prompts[j]!r}" if prompts else ""
            labels += [f"x_t{name}", f"x0 est.{name}"]
        eta = describe_eta(self.sampling.sampler, self.sampling.eta)
        budget = f"{nfe} NFE ({total} steps)" if nfe is not None else f"{total} steps"  # as sample names --nfe
        caption = (f"{trained.checkpoint}, {weights_of(trained)}, {self.sampling.sampler}{eta}, {budget}, "
                   f"{label}, seed {self.seed}: {len(frames)} of the steps shown")
        save_strips(rows, self.out, [f"t={int(f.t[0])}" for f in frames], labels, caption=caption)
        print(f"wrote {self.out}")


@tyro.conf.configure(tyro.conf.OmitSubcommandPrefixes)
@dataclass
class Show:
    """Pictures: the forward process (forward) or a sampling run's x_t and x0 estimates (trajectory)."""

    what: Union[
        Annotated[ShowForward, tyro.conf.subcommand("forward")],
        Annotated[ShowTrajectory, tyro.conf.subcommand("trajectory")],
    ]

    def __call__(self) -> None:
        self.what()
