"""The ``gaussdiff`` command: train, sample, eval, show. Built from the typed configs with tyro.

Every expected failure (bad data, a missing or mismatched checkpoint, a bad option) prints one
line, ``gaussdiff: error: ...``, and exits 2; an interrupted run keeps its last checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Union

import numpy as np
import torch
import tyro

from ..training.run import GuidanceOptions, Trained, build_diffusion, load_trained, needs_labels, resolve_device
from ..training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint_config, resolve_checkpoint
from ..training.config import ConfigError, DataConfig, DiffusionConfig, RunConfig, SamplerChoice, ScheduleName
from ..data.datasets import DataError, load_configured, load_data, to_model_range, to_uint8
from ..evaluation.evaluate import evaluate_bpd, evaluate_ode, evaluate_quality, generate, rate_distortion_rows
from ..evaluation.features import ExtractorName
from ..samplers.ddpm import SamplerStep, sample
from ..training.trainer import Trainer, describe
from ..training.classifier import ClassifierTrainConfig, train_noisy_classifier
from ..viz import plot_bpd, save_grid, save_strips


class UsageError(ValueError):
    """A bad combination of options; one line for the user."""


@dataclass
class Train:
    """Train a diffusion model (with no options: the main job, digits in about 5 minutes on 2 CPU cores)."""

    config: Annotated[RunConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RunConfig)
    run_dir: Path | None = None
    """Where the run lives (default: runs/<data>-<date>-<time>)."""
    resume: bool = False
    """Continue the run in --run-dir from its newest checkpoint, with its saved config."""
    dry_run: bool = False
    """Print the resolved config and exit."""

    def __call__(self) -> None:
        if self.resume:
            if self.run_dir is None:
                raise UsageError("--resume needs --run-dir")
            found = list_checkpoints(self.run_dir)
            if not found:
                raise CheckpointError(f"{self.run_dir}: nothing to resume (no checkpoint)")
            config = load_checkpoint_config(found[-1])
        else:
            config = self.config
            if self.run_dir is not None and list_checkpoints(self.run_dir):
                raise UsageError(f"{self.run_dir} already holds a run: pass --resume to continue it, or another --run-dir")
        if self.dry_run:
            print(describe(config))
            return
        run_dir = self.run_dir or Path("runs") / f"{Path(config.data.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        trainer = Trainer(config, run_dir)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        print(f"run {run_dir}: {len(trainer.data)} images {trainer.data.shape}, {n_params / 1e6:.2f}M parameters, "
              f"{trainer.device}", file=sys.stderr)
        try:
            result = trainer.run(resume=self.resume)
        except KeyboardInterrupt:
            found = list_checkpoints(run_dir)
            last = f"; resume from {found[-1]} with --resume --run-dir {run_dir}" if found else ""
            print(f"gaussdiff: interrupted at step {trainer.step}{last}", file=sys.stderr)
            sys.exit(130)
        print(f"done: {result.step} steps; samples in {run_dir / 'samples.png'}, loss curve in {run_dir / 'loss.png'}")


def check_steps(steps: int | None, trained: Trained) -> None:
    """``--steps`` must be a respacing of the run's schedule."""
    if steps is not None and not 1 <= steps <= trained.diffusion.num_steps:
        raise UsageError(f"--steps must lie in 1..{trained.diffusion.num_steps}")


def parse_class(value: str | None, num_classes: int | None, n: int) -> tuple[torch.Tensor | None, int | None]:
    """``--class K`` or ``--class all`` -> labels [n] (and the grid's row length for ``all``)."""
    if value is None:
        return None, None
    if num_classes is None:
        raise UsageError("--class needs a run trained on labelled data")
    if value == "all":
        per_class = -(-n // num_classes)
        return torch.arange(num_classes).repeat_interleave(per_class), per_class
    if not value.isdigit() or not 0 <= int(value) < num_classes:
        raise UsageError(f"--class must be 'all' or a class in 0..{num_classes - 1}, not {value!r}")
    return torch.full((n,), int(value)), None


@dataclass
class Sample:
    """Draw samples from a trained run: a PNG grid and/or a .npz (uint8 [N, H, W, C] in arr_0, labels in arr_1)."""

    checkpoint: tyro.conf.Positional[Path]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    guide: Annotated[GuidanceOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceOptions)
    n: int = 64
    label: Annotated[str | None, tyro.conf.arg(name="class")] = None
    """A class index, or 'all' for one row per class (conditional or guided sampling)."""
    sampler: SamplerChoice = "ddim"
    steps: int | None = 50
    """Respaced steps (None: all of the run's steps)."""
    eta: float = 0.0
    seed: int = 0
    out: tuple[Path, ...] = (Path("samples.png"),)
    """One or more of FILE.png, FILE.npz."""
    ema: bool = True
    """Use the EMA weights (--no-ema: the raw weights)."""
    batch_size: int = 256
    device: str = "auto"

    def __call__(self) -> None:
        for path in self.out:
            if path.suffix not in (".png", ".npz"):
                raise UsageError(f"--out {path}: expected a .png or .npz file")
        if self.n < 1:
            raise UsageError("--n must be at least 1")
        trained = load_trained(self.checkpoint, ema=self.ema, device=resolve_device(self.device))
        check_steps(self.steps, trained)
        if self.label is not None and not needs_labels(trained, self.guide):
            raise UsageError("--class needs a class-conditional run or --classifier")
        labels, row = parse_class(self.label, trained.config.data.num_classes, self.n)
        n = self.n if labels is None else len(labels)
        images, labels = generate(trained, n, self.sampler, self.steps, self.eta, self.seed, self.batch_size, labels, self.guide)
        for path in self.out:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".png":
                save_grid(images, path, nrow=row)
            elif labels is not None:
                np.savez(path, images.permute(0, 2, 3, 1).numpy(), labels.numpy())
            else:
                np.savez(path, images.permute(0, 2, 3, 1).numpy())
            print(f"wrote {path}")


@dataclass
class TrainClassifier:
    """Train the noise-aware classifier p(y | x_t, t) used by classifier guidance (--classifier RUN)."""

    config: Annotated[ClassifierTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ClassifierTrainConfig)
    run_dir: Path = Path("runs/classifier")

    def __call__(self) -> None:
        if (self.run_dir / "classifier.safetensors").exists():
            raise UsageError(f"{self.run_dir} already holds a classifier: pass another --run-dir")
        accuracy = train_noisy_classifier(self.config, self.run_dir)
        print(f"classifier in {self.run_dir}; held-out accuracy: " + ", ".join(f"{k.split('_at_')[1]}: {v:.3f}" for k, v in accuracy.items()))


@dataclass
class ShowForward:
    """A strip of images through the forward process q(x_t | x0) at chosen t (DDPM Fig. 6 style)."""

    data: str = "digits"
    run: Path | None = None
    """Take the schedule and data from this run instead."""
    index: tuple[int, ...] = (0, 1, 2, 3)
    """Which images of the dataset, one row each."""
    t: tuple[int, ...] = (0, 50, 100, 200, 300, 400, 500, 600, 800, 999)
    schedule: ScheduleName = "cosine"
    diffusion_steps: int = 1000
    seed: int = 0
    out: Path = Path("forward.png")

    def __call__(self) -> None:
        if self.run is not None:
            config = load_checkpoint_config(resolve_checkpoint(self.run))
            diffusion = build_diffusion(config.diffusion)
            data = load_configured(config.data, "train")
        else:
            diffusion = build_diffusion(DiffusionConfig(diffusion_steps=self.diffusion_steps, schedule=self.schedule))
            data = load_data(self.data)
        bad = [t for t in self.t if not 0 <= t < diffusion.num_steps]
        if bad:
            raise UsageError(f"--t {bad[0]} is outside 0..{diffusion.num_steps - 1}")
        bad_i = [i for i in self.index if not 0 <= i < len(data)]
        if bad_i:
            raise UsageError(f"--index {bad_i[0]} is outside 0..{len(data) - 1}")
        x0 = to_model_range(data.images[list(self.index)])
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(x0.shape, generator=g)
        rows = []
        for i in range(len(x0)):
            t = torch.tensor(self.t)
            x_t = diffusion.q_sample(x0[i : i + 1].expand(len(t), *x0.shape[1:]), t, noise[i : i + 1].expand(len(t), *x0.shape[1:]))
            rows.append(to_uint8(x_t))
        save_strips(rows, self.out, [f"t={t}" for t in self.t])
        print(f"wrote {self.out}")


@dataclass
class ShowTrajectory:
    """Strips of x_t and of the x0 estimate along one sampling run (DDPM Fig. 6-7: progressive generation)."""

    checkpoint: tyro.conf.Positional[Path]
    n: int = 3
    """How many samples (two rows each: x_t, then the x0 estimate)."""
    frames: int = 10
    sampler: SamplerChoice = "ddpm"
    steps: int | None = None
    eta: float = 0.0
    seed: int = 0
    out: Path = Path("trajectory.png")
    device: str = "auto"

    def __call__(self) -> None:
        if self.frames < 2:
            raise UsageError("--frames must be at least 2")
        device = resolve_device(self.device)
        trained = load_trained(self.checkpoint, device=device)
        check_steps(self.steps, trained)
        total = self.steps or trained.diffusion.num_steps
        keep = set(np.linspace(0, total - 1, min(self.frames, total)).round().astype(int).tolist())
        frames: list[SamplerStep] = []

        def record(step: SamplerStep) -> None:
            if step.i in keep:
                frames.append(step)

        d = trained.config.data
        g = torch.Generator(device).manual_seed(self.seed)
        sample(trained.model, trained.diffusion, (self.n, d.image_channels, d.image_size, d.image_size),
               sampler=self.sampler, steps=self.steps, eta=self.eta, generator=g, clip_denoised=True,
               callback=record, device=device)
        rows, labels = [], []
        for j in range(self.n):
            rows.append(to_uint8(torch.stack([f.x_t[j] for f in frames])).cpu())
            rows.append(to_uint8(torch.stack([f.x0[j] for f in frames])).cpu())
            labels += ["x_t", "x0 est."]
        save_strips(rows, self.out, [f"t={int(f.t[0])}" for f in frames], labels)
        print(f"wrote {self.out}")


@dataclass
class Eval:
    """Measure a run: --bpd (the bound on held-out data), --ode (probability-flow likelihood), --fid
    (FID, KID, precision/recall of samples); or score a .npz of samples with --samples and --data."""

    checkpoint: tyro.conf.Positional[Path | None] = None
    """A run or checkpoint directory (not needed with --samples)."""
    guide: Annotated[GuidanceOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceOptions)
    bpd: bool = False
    ode: bool = False
    fid: bool = False
    data: str | None = None
    """The real data (default: the run's); --bpd and --ode use its held-out split."""
    samples: Path | None = None
    """A .npz of uint8 [N, H, W, C] samples (arr_0; labels in arr_1) to score instead of sampling."""
    n: int | None = None
    """Images for --bpd/--ode (default 1000, at most the split) or samples for --fid (default 10000;
    1000 for Inception on CPU)."""
    steps: int | None = None
    """--bpd on a respaced schedule; for --fid the sampler's steps (default 50)."""
    sampler: SamplerChoice = "ddim"
    eta: float = 0.0
    features: ExtractorName = "classifier"
    """FID features: the domain classifier (labelled built-in data) or Inception-v3."""
    seed: int = 0
    batch_size: int = 256
    json: bool = False
    """Print one JSON object with the figures instead of tables."""
    out_dir: Path | None = None
    """Where plots go (default: RUN/eval)."""
    device: str = "auto"

    def __call__(self) -> None:
        if not (self.bpd or self.ode or self.fid or self.samples):
            raise UsageError("say what to measure: --bpd, --ode, --fid, or --samples FILE.npz --data DATA")
        if self.checkpoint is None and (self.bpd or self.ode or (self.fid and self.samples is None)):
            raise UsageError("--bpd, --ode and --fid need a run (or --samples with --data)")
        device = resolve_device(self.device)
        trained = load_trained(self.checkpoint, device=device) if self.checkpoint is not None else None
        data_name = self.data or (trained.config.data.data if trained else None)
        if data_name is None:
            raise UsageError("--samples needs --data (the real images to compare with)")
        # The run's size and channels, for the data asked for (the run's own by default).
        data_config = replace(trained.config.data, data=data_name) if trained else DataConfig(data=data_name)
        figures: dict[str, object] = {"data": data_name}
        if trained is not None:
            figures["checkpoint"] = str(trained.checkpoint)
        out_dir = self.out_dir or (self.checkpoint / "eval" if self.checkpoint is not None else Path("eval"))
        lines: list[str] = []

        if self.bpd or self.ode:
            held_out = load_configured(data_config, "test")
            n = min(self.n or 1000, len(held_out))
            images = held_out.images[:n]
            if self.bpd:
                check_steps(self.steps, trained)
                report = evaluate_bpd(trained, images, steps=self.steps, batch_size=self.batch_size, seed=self.seed,
                                      progress=not self.json)
                plot = plot_bpd(report, out_dir / "bpd.png")
                figures["bpd"] = report.summary()
                figures["rate_distortion"] = [{"t": t, "rate": r, "distortion": d} for t, r, d in rate_distortion_rows(report)]
                lines += [
                    f"variational bound on {n} held-out images, {report.steps} steps (bits/dim)",
                    f"  total          {report.bpd:.4f} ± {report.bpd_stderr:.4f}",
                    f"  L_0 (decoder)  {report.l0:.4f}",
                    f"  sum L_t-1      {report.sum_l_t:.4f}",
                    f"  L_T (prior)    {report.prior:.6f}",
                    "  progressive compression:    t   rate (bits/dim)   distortion (RMSE /255)",
                    *[f"                          {t:5d}   {r:15.4f}   {d:10.3f}" for t, r, d in rate_distortion_rows(report)],
                    f"  plot: {plot}",
                ]
            if self.ode:
                result = evaluate_ode(trained, images, batch_size=self.batch_size, seed=self.seed)
                figures["ode"] = result
                lines.append(f"probability-flow ODE on {n} held-out images: {result['ode_bpd']:.4f} ± "
                             f"{result['ode_bpd_stderr']:.4f} bits/dim (dequantized, {result['ode_nfe']} evaluations)")

        if self.fid or self.samples is not None:
            reference = load_configured(data_config, "train")
            labels = None
            if self.samples is not None:
                given = load_data(str(self.samples), image_size=reference.shape[-1], channels=reference.shape[0])
                images, labels = given.images, given.labels
                if self.n is not None:
                    images, labels = images[: self.n], None if labels is None else labels[: self.n]
            else:
                n = self.n
                if n is None:
                    n = 1000 if self.features == "inception" and device.type == "cpu" else 10000
                    if n == 1000:
                        print("gaussdiff: Inception on CPU is slow: 1000 samples by default (pass --n)", file=sys.stderr)
                steps = self.steps if self.steps is not None else 50
                if needs_labels(trained, self.guide):
                    # Balanced classes, so that the classifier's accuracy speaks for every class.
                    labels = torch.arange(n) % trained.config.data.num_classes
                images, labels = generate(trained, n, self.sampler, steps, self.eta, self.seed, self.batch_size, labels,
                                          self.guide, progress=not self.json)
            limit = len(images) if self.features == "inception" else None
            q = evaluate_quality(images, data_name, reference, self.features, labels, reference_limit=limit,
                                 device=str(device))
            figures["quality"] = asdict(q)
            source = str(self.samples) if self.samples else f"{self.sampler}, {self.steps or 50} steps"
            lines += [
                f"sample quality of {q.n} samples ({source}) against {data_name}, {q.features} features",
                f"  FID        {q.fid:.3f}",
                f"  KID        {q.kid:.5f} ± {q.kid_std:.5f}",
                f"  precision  {q.precision:.3f}",
                f"  recall     {q.recall:.3f}",
            ]
            if q.accuracy is not None:
                lines.append(f"  classifier accuracy on the labels  {q.accuracy:.3f}")

        if self.json:
            print(json.dumps(figures))
        else:
            print("\n".join(lines))


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


COMMANDS = {
    "train": Train,
    "train-classifier": TrainClassifier,
    "sample": Sample,
    "eval": Eval,
    "show": Show,
}

EXPECTED = (DataError, CheckpointError, ConfigError, UsageError)


def main(argv: list[str] | None = None) -> None:
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="gaussdiff")
    try:
        command()
    except EXPECTED as e:
        print(f"gaussdiff: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
