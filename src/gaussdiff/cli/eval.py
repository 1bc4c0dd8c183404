"""``gaussdiff eval``: bits/dim (bound and ODE) on held-out data, and sample quality, of a run or a .npz."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated

import torch
import tyro

from ..conditioning.guidance import GuidanceConfig
from ..data.datasets import BUILT_IN, DataConfig, ImageData, load_configured, load_data
from ..data.shapes import attributes_of_caption
from ..errors import DataError, UsageError
from ..evaluation.bpd import evaluate_bpd, evaluate_ode, rate_distortion_rows
from ..evaluation.features import ExtractorName, classifier_targets
from ..evaluation.generate import (SpeedConfig, generate, generate_cascade, super_res_condition, takes_labels,
                                   text_condition)
from ..evaluation.super_res import evaluate_super_resolution
from ..evaluation.quality import MIN_SAMPLES, QualityReport, attribute_ceiling, evaluate_quality
from ..nets.fast import Setup, describe
from ..samplers.run import default_spacing
from ..training.distributed import Distributed, joined, launched_by_torchrun
from ..training.loop import resolve_device
from ..training.run import Trained, load_trained
from ..viz import plot_bpd
from .options import (SamplerOptions, at_least, budget_of, check_fits, check_guidance, check_steps, check_writable_dir,
                      describe_eta, describe_guidance, keeping_parts, report_setup, sampling_steps,
                      warn_untrained_null, weights_of)
from .sample import check_cascade
from .train_autoencoder import describe_reconstructions, measure_autoencoder


@dataclass
class Eval:
    """Measure a run: --bpd (the bound on held-out data), --ode (probability-flow likelihood), --fid
    (FID, KID, precision/recall of samples); or score a .npz of samples with --samples and --data. Given an
    autoencoder run, measure its reconstructions of the held-out split (PSNR, FID)."""

    checkpoint: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="[CHECKPOINT]")] = None
    """A run or checkpoint directory (not needed with --samples)."""
    guide: Annotated[GuidanceConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=GuidanceConfig)
    bpd: bool = False
    """The variational bound in bits/dim on the held-out split, with its terms and the rate-distortion curve."""
    ode: bool = False
    """The probability-flow ODE's likelihood in bits/dim (dequantized) on the held-out split."""
    fid: bool = False
    """FID, KID, precision and recall of fresh samples against the training split."""
    data: str | None = None
    """The real data (default: the run's); --bpd and --ode use its held-out split."""
    samples: Path | None = None
    """A .npz of uint8 [N, H, W, C] samples (arr_0; labels in arr_1) to score instead of sampling."""
    n: Annotated[int | None, tyro.conf.arg(aliases=("--num-samples",))] = None
    """(--num-samples under torchrun, which takes --n for its own --nnodes.) Images for --bpd/--ode (>= 1; None:
    1000, at most the split), samples for --fid (>= 4; None: 10000, 1000 for Inception on CPU), held-out images
    for --super-res-test (>= 4; None: 1000, at most the split) or of --samples (None: all)."""
    steps: int | None = None
    """--bpd on a respaced schedule; for --fid and --super-res-test the sampler's steps (default 50, or every step of
    a run with fewer)."""
    sampling: Annotated[SamplerOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=SamplerOptions)
    features: ExtractorName = "classifier"
    """FID features: the domain classifier (labelled built-in data) or Inception-v3."""
    seed: int = 0
    """Seeds the samples (sample i from its own seed) and the bound's noise."""
    batch_size: int = 256
    """Images per network call (>= 1)."""
    json: bool = False
    """Print one JSON object with the figures instead of tables."""
    out_dir: Path | None = None
    """Where plots go (default: RUN/eval)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""
    speed: Annotated[SpeedConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SpeedConfig)
    cascade: tuple[Path, ...] = ()
    """With --fid: a base run and super-resolution runs; measures the cascade's final samples."""
    super_res_test: bool = False
    """A super-resolution run on the held-out split: PSNR and SSIM against the ground truth (beside bilinear
    upsampling) and FID of the super-resolved images."""
    cond_aug_level: float | None = None
    """The conditioning-augmentation level s of super-resolution stages (default: each run's)."""

    def __call__(self) -> None:
        # --fid and --super-res-test measure sample quality, which takes MIN_SAMPLES: refused before sampling
        at_least("--n", self.n, MIN_SAMPLES if self.fid or self.super_res_test else 1, " (or None: the default)")
        at_least("--batch-size", self.batch_size, 1)
        check_guidance(self.guide)
        self.sampling.check()
        if launched_by_torchrun() and (not self.fid or self.bpd or self.ode or self.samples is not None):
            raise UsageError("under torchrun, eval shares the sampling of --fid among the processes; measure "
                             "--bpd, --ode and --samples in one process")
        with joined(resolve_device(self.device)) as dist:
            self.measure(dist)

    def measure(self, dist: Distributed) -> None:
        if self.cascade:
            if self.checkpoint is not None or not self.fid:
                raise UsageError("--cascade BASE SR ... goes with --fid and no other run")
            self.measure_cascade(dist.device_for(resolve_device(self.device)), dist)
            return
        if self.super_res_test:
            if self.checkpoint is None:
                raise UsageError("--super-res-test needs a super-resolution run")
            ignored = [flag for flag, on in (("--bpd", self.bpd), ("--ode", self.ode), ("--fid", self.fid),
                                             ("--samples", self.samples is not None),
                                             ("--nfe", self.sampling.nfe is not None),
                                             ("--timesteps", self.sampling.timesteps != "auto"),
                                             ("--eta", bool(self.sampling.eta)),
                                             ("--guidance", bool(self.guide.guidance)),
                                             ("--classifier", self.guide.classifier is not None)) if on]
            if ignored:  # the test samples with --sampler and --steps alone, and measures its own figures
                raise UsageError(f"--super-res-test samples with --sampler and --steps on the run's default "
                                 f"spacing and measures PSNR, SSIM and FID; it takes no {', '.join(ignored)}")
            self.measure_super_resolution(resolve_device(self.device))
            return
        if self.cond_aug_level is not None:  # it would change nothing: no other figure samples a stage
            raise UsageError("--cond-aug-level is the level of super-resolution stages: it goes with --cascade or "
                             "--super-res-test")
        if self.checkpoint is not None and (self.checkpoint / "latent.json").exists():
            asked = [flag for flag, on in (("--bpd", self.bpd), ("--ode", self.ode), ("--samples", self.samples))
                     if on]
            if asked:  # would be ignored: an autoencoder has no bound, no ODE and no samples
                raise UsageError(f"{self.checkpoint} is an autoencoder run: eval measures its reconstructions "
                                 f"(PSNR, FID), not {' or '.join(asked)}, which measure a diffusion run")
            report = measure_autoencoder(self.checkpoint, str(resolve_device(self.device)))  # an autoencoder run
            lines = [json.dumps({"reconstruction": asdict(report)})] if self.json else describe_reconstructions(report)
            print("\n".join(lines))
            return
        if not (self.bpd or self.ode or self.fid or self.samples):
            raise UsageError("say what to measure: --bpd, --ode, --fid, --super-res-test, "
                             "or --samples FILE.npz --data DATA")
        if self.samples is not None and not self.samples.exists():  # named as --samples, not read as a --data name
            raise UsageError(f"--samples {self.samples}: no such file")
        if self.checkpoint is None and (self.bpd or self.ode or (self.fid and self.samples is None)):
            raise UsageError("--bpd, --ode and --fid need a run (or --samples with --data)")
        device = dist.device_for(resolve_device(self.device))
        trained = load_trained(self.checkpoint, device=device) if self.checkpoint is not None else None
        if self.ode and trained.diffusion.schedule.zero_terminal_snr:
            raise UsageError("--ode needs alpha_bar_T > 0: this zero-terminal-SNR run's ODE ends at sigma = infinity, "
                             "where its prior has no density (--bpd, the variational bound, is defined)")
        data_name = self.data or (trained.config.data.data if trained else None)
        if trained is not None and trained.source == "diffusers" and not self.data:
            raise UsageError(f"{self.checkpoint} is a diffusers model, which does not name its data: pass --data "
                             "(the real images to measure against)")
        if data_name is None:
            raise UsageError("--samples needs --data (the real images to compare with)")
        # The run's size and channels, for the data asked for (the run's own by default).
        data_config = replace(trained.config.data, data=data_name) if trained else DataConfig(data=data_name)
        figures: dict[str, object] = {"data": data_name}
        if trained is not None:
            figures["checkpoint"] = str(trained.checkpoint)
        lines: list[str] = []
        if self.bpd or self.ode:
            lines += self.likelihood(trained, data_config, figures)
        if self.fid or self.samples is not None:
            lines += self.quality(trained, data_config, device, figures, dist)
        if dist.is_main:
            print(json.dumps(figures) if self.json else "\n".join(lines))

    def likelihood(self, trained: Trained, data_config: DataConfig, figures: dict[str, object]) -> list[str]:
        """--bpd and --ode on the held-out split; a conditional model given each image's own conditions."""
        held_out = load_configured(data_config, "test")
        n = min(self.n or 1000, len(held_out))
        images = held_out.images[:n]
        which = held_out_images(data_config.data)
        of = f" of {data_config.data}" if has_held_out(data_config.data) else ""  # else named by ``which``
        figures["split"] = "test" if has_held_out(data_config.data) else "all (no held-out split)"
        try:
            cond = {c.key: c.of_data(held_out)[:n] for c in trained.conditions}
        except DataError as e:
            raise UsageError(f"{data_config.data}'s held-out split: {e}") from None
        given = f" given their {', '.join(c.noun for c in trained.conditions)}" if cond else ""
        if trained.latent is not None:
            given += " (their latents: bits per latent dimension, not image bits/dim)"
            figures["latent"] = str(trained.config.latent.latent)
        figures["conditioned_on"] = sorted(cond)
        weights = weights_of(trained)
        lines = []
        if self.bpd:
            check_steps(self.steps, trained)
            out_dir = self.out_dir or self.checkpoint / "eval"
            check_writable_dir(out_dir, "--out-dir")  # before the bound is computed, not after
            report = evaluate_bpd(trained, images, cond, steps=self.steps, batch_size=self.batch_size, seed=self.seed,
                                  progress=not self.json)
            source = (f"{trained.checkpoint}: variational bound on {n} {which}{of}{given}, "
                      f"{report.steps} steps, {weights}, seed {self.seed}")
            plot = plot_bpd(report, out_dir / "bpd.png", source)
            rows = rate_distortion_rows(report)
            figures["bpd"] = report.summary()
            figures["rate_distortion"] = [{"t": t, "rate": r, "distortion": d} for t, r, d in rows]
            lines += [
                f"variational bound on {n} {which}{given}, {report.steps} steps, {weights}, seed {self.seed} "
                "(bits/dim)",
                f"  total          {report.bpd:.4f} ± {report.bpd_stderr:.4f}",
                f"  L_0 (decoder)  {report.l0:.4f}",
                f"  sum L_t-1      {report.sum_l_t:.4f}",
                f"  L_T (prior)    {report.prior:.6f}",
                "  progressive compression:    t   rate (bits/dim)   distortion (RMSE /255)",
                *[f"                          {t:5d}   {r:15.4f}   {d:10.3f}" for t, r, d in rows],
                f"  plot: {plot}",
            ]
        if self.ode:
            result = evaluate_ode(trained, images, cond, batch_size=self.batch_size, seed=self.seed)
            figures["ode"] = result
            lines.append(f"probability-flow ODE on {n} {which}{given}, {weights}, seed {self.seed}: "
                         f"{result['ode_bpd']:.4f} ± "
                         f"{result['ode_bpd_stderr']:.4f} bits/dim (dequantized, {result['ode_nfe']} evaluations)")
        return lines

    def quality(self, trained: Trained | None, data_config: DataConfig, device: torch.device,
                figures: dict[str, object], dist: Distributed) -> list[str]:
        """--fid on fresh samples (shared among the ranks under torchrun, measured by rank 0), or --samples
        FILE.npz, against the training split."""
        reference = load_configured(data_config, "train")
        check_features(self.features, reference)
        labels, attributes = None, None
        chosen: list[tuple[Setup, dict[Setup, float]]] = []  # the network's setup, and what measured it

        def note(setup: Setup, seconds: dict[Setup, float]) -> None:
            chosen.append((setup, seconds))
            if not self.json and dist.is_main:
                report_setup(setup, seconds)

        if self.samples is not None:
            given = load_data(str(self.samples), image_size=reference.shape[-1], channels=reference.shape[0])
            images, labels = given.images, given.labels
            classes = reference.num_classes
            if labels is not None and classes is not None and len(labels) and int(labels.max()) >= classes:
                # The feature classifier has no such class: every such sample would count as wrong, unsaid.
                at = int(labels.argmax())
                raise UsageError(f"{self.samples}: arr_1 holds class {int(labels[at])} at index {at}; "
                                 f"{data_config.data} has {classes} classes (0..{classes - 1})")
            if given.captions is not None and reference.attributes is not None:
                attributes = scene_attributes(given.captions, self.samples)
            if self.n is not None:
                images, labels = images[: self.n], None if labels is None else labels[: self.n]
                attributes = None if attributes is None else attributes[: self.n]
        else:
            if super_res_condition(trained) is not None:
                raise UsageError("a super-resolution run samples from low-resolution images: measure it with "
                                 "--super-res-test, or a cascade with --cascade BASE SR --fid")
            n = self.n
            if n is None:
                n = 1000 if self.features == "inception" and device.type == "cpu" else 10000
                if n == 1000 and dist.is_main:
                    print("gaussdiff: Inception on CPU is slow: 1000 samples by default (pass --n)", file=sys.stderr)
            check_fits("--n", n, tuple(reference.shape))
            spacing, times, label = self.sampling.steps_on([trained], self.steps)
            steps = sampling_steps(self.steps, trained)
            prompts = None
            if text_condition(trained) is not None:
                # The held-out split's captions in turn (with their labels and attributes, to score against).
                held_out = load_configured(data_config, "test")
                if held_out.captions is None:
                    raise UsageError(f"{data_config.data}'s held-out split has no captions to prompt with")
                idx = torch.arange(n) % len(held_out)
                prompts = [held_out.captions[i] for i in idx.tolist()]
                labels = None if held_out.labels is None else held_out.labels[idx]
                attributes = None if held_out.attributes is None else held_out.attributes[idx]
            elif takes_labels(trained, self.guide):
                # Balanced classes, so that the classifier's accuracy speaks for every class.
                labels = torch.arange(n) % trained.config.data.num_classes
            scored = labels
            if dist.is_main:
                warn_untrained_null([trained], self.guide.guidance)
            parts = self.parts_dir(self.checkpoint)
            with keeping_parts(parts, dist.is_main):
                images, labels = generate(trained, n, self.sampling.sampler, steps, self.sampling.eta, self.seed,
                                          self.batch_size, labels if takes_labels(trained, self.guide) else None,
                                          self.guide,
                                          progress=not self.json, prompts=prompts,
                                          nfe=None if times is not None else self.sampling.nfe, spacing=spacing,
                                          timesteps=times, dist=dist, parts=parts, speed=self.speed, on_setup=note)
            labels = scored if labels is None else labels
            if not dist.is_main:
                return []
            shutil.rmtree(parts, ignore_errors=True)
        limit = len(images) if self.features == "inception" else None
        q = evaluate_quality(images, data_config.data, reference, self.features, labels, reference_limit=limit,
                             device=str(device), attributes=attributes)
        figures["quality"] = asdict(q)
        if self.samples:
            source = str(self.samples)
        else:
            source = f"{self.describe_steps(label, [steps], times)}, {weights_of(trained)}, seed {self.seed}"
        if chosen:  # what the network computed in (the last word: a failed compile falls back): bf16 rounds
            setup, seconds = chosen[-1]
            source += f", network in {describe(setup, {})}"
            measured = {k.arithmetic: v for k, v in seconds.items()}
            figures["network"] = {**setup._asdict(), "measured_seconds_a_call": measured}
        source += describe_guidance(self.guide)
        figures["samples"] = ({"file": str(self.samples)} if self.samples else
                              self.sampling_figures(trained, label, times, [steps], source))
        lines = self.quality_lines(q, f"sample quality of {q.n} samples ({source}) against the training split of "
                                      f"{data_config.data}, {q.features} features")
        if attributes is not None and q.prompts is None:
            print("gaussdiff: note: prompt accuracy is read by the attribute classifier: pass --features classifier",
                  file=sys.stderr)
        if q.prompts is not None:
            ceiling = attribute_ceiling(data_config.data, reference, load_configured(data_config, "test"))
            figures["prompt_ceiling"] = asdict(ceiling)
            p = q.prompts
            lines += [
                "  prompt accuracy (every attribute right; ceiling: the attribute classifier on real held-out scenes)",
                f"    all                           {p.accuracy:.3f}   (ceiling {ceiling.accuracy:.3f})",
                f"    seen pairs      ({p.n_seen:5d})      {p.seen:.3f}   (ceiling {ceiling.seen:.3f})",
                f"    held-out pairs  ({p.n_held_out:5d})      {p.held_out:.3f}   (ceiling {ceiling.held_out:.3f})",
            ]
        return lines

    def quality_lines(self, q: QualityReport, title: str) -> list[str]:
        """A quality report as the lines ``eval`` prints under ``title``."""
        return [title, f"  FID        {q.fid:.3f}", f"  KID        {q.kid:.5f} ± {q.kid_std:.5f}",
                f"  precision  {q.precision:.3f}", f"  recall     {q.recall:.3f}"] + (
            [f"  classifier accuracy on the labels  {q.accuracy:.3f}"] if q.accuracy is not None else [])

    def sampling_figures(self, trained: Trained, label: str, times: list[float] | None, steps: list[int],
                         source: str) -> dict[str, object]:
        """How the samples of a quality figure were drawn, for --json: what the text report says in its title
        (``source``, also given whole), field by field, so that a kept JSON says what its figures are."""
        return {"sampler": self.sampling.sampler, "steps": None if self.sampling.nfe is not None or times else steps,
                "nfe": self.sampling.nfe, "timesteps": times if times is not None else label, "eta": self.sampling.eta,
                "seed": self.seed, "weights": weights_of(trained), "guidance": self.guide.guidance,
                "classifier": None if self.guide.classifier is None else str(self.guide.classifier),
                "classifier_scale": None if self.guide.classifier is None else self.guide.classifier_scale,
                "classifier_mode": None if self.guide.classifier is None else self.guide.classifier_mode,
                "batch_size": self.batch_size, "described": source}

    def describe_steps(self, label: str, steps: list[int], times: list[float] | None = None) -> str:
        """What sampled: the sampler, its budget (``steps``: the steps taken, different ones a cascade's stage by
        stage; explicit or tuned ``times`` are counted) and its steps (``label``); every figure says what it is."""
        eta = describe_eta(self.sampling.sampler, self.sampling.eta)
        return f"{self.sampling.sampler}{eta}, {budget_of(self.sampling.nfe, steps, times)}, {label}"

    def parts_dir(self, run: Path) -> Path:
        """Where the samples of --fid are kept chunk by chunk until measured, so that an interrupted eval resumes."""
        out_dir = self.out_dir or run / "eval"
        check_writable_dir(out_dir, "--out-dir")
        return out_dir / "fid-samples.parts"

    def measure_cascade(self, device: torch.device, dist: Distributed) -> None:
        """--cascade BASE SR ... --fid: the final samples against the last stage's training data."""
        runs = [load_trained(p, device=device) for p in self.cascade]
        check_cascade(runs, self.cascade)
        spacing, times, label = self.sampling.steps_on(runs, self.steps)
        steps = tuple(sampling_steps(self.steps, run) for run in runs)
        if times is not None:
            raise UsageError("an explicit or tuned --timesteps list is for one run; a cascade takes a spacing "
                             "(--timesteps linspace)")
        last = runs[-1].config.data
        data_config = replace(last, data=self.data or last.data)
        reference = load_configured(data_config, "train")
        check_features(self.features, reference)
        n = self.n or (1000 if self.features == "inception" and device.type == "cpu" else 10000)
        check_fits("--n", n, runs[-1].image_shape)
        labels = None
        if takes_labels(runs[0], self.guide):
            labels = torch.arange(n) % runs[0].config.data.num_classes  # balanced classes
        if dist.is_main:
            warn_untrained_null(runs, self.guide.guidance)
        parts = self.parts_dir(self.cascade[0])
        with keeping_parts(parts, dist.is_main):
            outputs, labels = generate_cascade(runs, n, self.sampling.sampler, steps, self.sampling.eta, self.seed,
                                               self.batch_size, labels, self.guide, progress=not self.json,
                                               cond_aug_level=self.cond_aug_level, nfe=self.sampling.nfe,
                                               spacing=spacing,
                                               dist=dist, parts=parts, speed=self.speed,
                                               on_setup=None if self.json or not dist.is_main else report_setup)
        if not dist.is_main:
            return
        shutil.rmtree(parts, ignore_errors=True)
        limit = n if self.features == "inception" else None
        q = evaluate_quality(outputs[-1], data_config.data, reference, self.features, labels, reference_limit=limit,
                             device=str(device))
        sizes = " -> ".join(f"{o.shape[-1]}x{o.shape[-1]}" for o in outputs)
        source = (f"{self.describe_steps(label, list(dict.fromkeys(steps)))} a stage, "
                  f"s = {self.cond_aug_level if self.cond_aug_level is not None else 'each run'}, "
                  f"{weights_of(runs[0])}, seed {self.seed}{describe_guidance(self.guide)}")
        samples = {**self.sampling_figures(runs[0], label, None, list(steps), source),
                   "cond_aug_level": self.cond_aug_level}
        figures = {"cascade": [str(p) for p in self.cascade], "samples": samples, "quality": asdict(q)}
        lines = self.quality_lines(q, f"cascade {sizes}: {q.n} samples ({source}) against the training split of "
                                      f"{data_config.data}, {q.features} features")
        print(json.dumps(figures) if self.json else "\n".join(lines))

    def measure_super_resolution(self, device: torch.device) -> None:
        """--super-res-test: the held-out split super-resolved from its downsampled images."""
        trained = load_trained(self.checkpoint, device=device)
        if super_res_condition(trained) is None:
            raise UsageError(f"{self.checkpoint}: not a super-resolution run (train it with --super-res)")
        steps = sampling_steps(self.steps, trained)
        data_config = replace(trained.config.data, data=self.data or trained.config.data.data)
        held_out = load_configured(data_config, "test")
        reference = load_configured(data_config, "train")
        check_features(self.features, reference)
        n = min(self.n or 1000, len(held_out))
        report, images = evaluate_super_resolution(
            trained, held_out.images[:n], None if held_out.labels is None else held_out.labels[:n],
            None if held_out.captions is None else held_out.captions[:n], self.sampling.sampler, steps, self.seed,
            self.batch_size, self.cond_aug_level, progress=not self.json)
        labels = held_out.labels[:n] if held_out.labels is not None else None
        q = evaluate_quality(images, data_config.data, reference, self.features, labels,
                             reference_limit=n if self.features == "inception" else None, device=str(device))
        r = report
        source = f"s = {r.level:g}, {self.sampling.sampler}, {steps} steps, {weights_of(trained)}, seed {self.seed}"
        lines = [
            f"super-resolution {r.low}x{r.low} -> {r.high}x{r.high} of {r.n} {held_out_images(data_config.data)} "
            f"({source}; quality "
            f"against the training split of {data_config.data}, {q.features} features)",
            f"  PSNR   {r.psnr:.2f} dB   (bilinear upsampling {r.psnr_bilinear:.2f} dB)",
            f"  SSIM   {r.ssim:.4f}    (bilinear upsampling {r.ssim_bilinear:.4f})",
            *self.quality_lines(q, "")[1:],  # under the title of the lines above
        ]
        samples = {**self.sampling_figures(trained, f"{default_spacing(self.sampling.sampler)} spacing", None,
                                           [steps], source), "cond_aug_level": r.level}
        print(json.dumps({"super_res": asdict(r), "samples": samples, "quality": asdict(q)}) if self.json
              else "\n".join(lines))


def has_held_out(data: str) -> bool:
    """Whether ``data`` has a held-out split: the built-in datasets do; a folder, a .npz or prepared shards give the
    same images for every split."""
    return data in BUILT_IN


def held_out_images(data: str) -> str:
    """What a figure on the ``test`` split of ``data`` measured, in words: held-out images, or the data's own."""
    return "held-out images" if has_held_out(data) else f"images of {data} (no held-out split: the data itself)"


def check_features(features: ExtractorName, reference: ImageData) -> None:
    """The domain classifier learns the reference data's labels (or a scene's attributes): data without them is
    refused before any sampling, not after the samples are drawn."""
    if features == "classifier":
        classifier_targets(reference)


def scene_attributes(prompts: list[str], path: Path) -> torch.Tensor:
    """The attributes ``[N, 7]`` that ``shapes`` prompts ask for, read back from their words."""
    try:
        return torch.stack([torch.from_numpy(attributes_of_caption(p)) for p in prompts])
    except ValueError as e:
        raise UsageError(f"{path}: {e}; prompt accuracy needs the dataset's own caption templates") from None
