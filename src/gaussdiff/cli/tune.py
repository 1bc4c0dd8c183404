"""``gaussdiff tune``: optimize a deterministic sampler's steps for a run's model and an NFE budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import torch
import tyro

from ..errors import UsageError
from ..evaluation.generate import super_res_condition
from ..samplers.run import SamplerName, default_spacing
from ..samplers.tuning import MIN_EVALS, reference_solve, tune_timesteps, tuning_steps
from ..training.checkpoint import save_tuned_steps, tuned_key
from ..training.loop import resolve_device
from ..training.run import load_trained
from .options import at_least, parse_timesteps


@dataclass
class Tune:
    """Optimize the steps of a deterministic sampler for this run's model at each --nfe budget (the global error
    against a fine solve from the same noise, minimized by Nelder-Mead; see gaussdiff.samplers.tuning). The
    schedules are saved in the checkpoint's folder (timesteps.json), and sample, eval and show use them by default
    (--timesteps auto) for the same sampler and --nfe."""

    checkpoint: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """A run directory (its newest checkpoint) or a checkpoint directory."""
    sampler: SamplerName = "unipc"
    """A deterministic sampler: ddim, euler, heun (an odd --nfe), dpm++2m, dpm++3m, dpm++2s, unipc, unipc-bh1; the
    stochastic ddpm, euler-a and dpm++2m-sde are refused (fresh noise at every step: no one error to minimize)."""
    nfe: tuple[int, ...] = (10,)
    """The budgets to tune, network evaluations each (>= 1)."""
    n: int = 64
    """How many draws of x_T (and the run's example conditions) the error is measured on."""
    evals: int = 400
    """Trial solves per budget (each costs --nfe network evaluations on --n samples; >= 8: the 4 standard
    spacings it starts from and 3 judgements on held-out draws are trials too)."""
    reference_nfe: int = 200
    """Steps of the reference solve (UniPC, uniform steps)."""
    seed: int = 0
    """Seeds the draws the steps are fitted on and judged by."""
    ema: bool = True
    """Tune for the EMA weights (--no-ema: the raw weights), as sample uses them."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``..."""

    def __call__(self) -> None:
        if not self.nfe:
            raise UsageError("--nfe needs one or more budgets (network evaluations)")
        at_least("--n", self.n, 1)
        at_least("--reference-nfe", self.reference_nfe, 2)
        if self.evals < MIN_EVALS:
            raise UsageError(f"--evals must be at least {MIN_EVALS} (the standard spacings it starts from and the "
                             f"held-out judgements are trials too), not {self.evals}")
        device = resolve_device(self.device)
        trained = load_trained(self.checkpoint, ema=self.ema, device=device)
        parse_timesteps("linspace", None, trained, self.sampler)  # refuses what a zero-terminal-SNR run cannot take
        if super_res_condition(trained) is not None:
            raise UsageError("tuning a super-resolution stage needs low-resolution images: not supported")
        total = trained.diffusion.num_steps
        for nfe in self.nfe:
            try:
                steps = tuning_steps(self.sampler, nfe) if nfe >= 1 else 0
            except ValueError as e:
                raise UsageError(f"--sampler {self.sampler} --nfe {nfe}: {e}") from None
            if not 2 <= steps <= total:
                raise UsageError(f"--nfe {nfe}: {self.sampler} would take {steps} steps; tuning needs 2..{total}")
        if self.reference_nfe > total:
            raise UsageError(f"--reference-nfe must be at most the run's {total} steps")
        if self.reference_nfe <= max(self.nfe):
            raise UsageError(f"--reference-nfe {self.reference_nfe} must exceed every --nfe (up to {max(self.nfe)}): "
                             "the reference is the fine solve the tuned steps are measured against")
        g = torch.Generator(device).manual_seed(self.seed)
        x_T = torch.randn((self.n, *trained.sample_shape), generator=g, device=device)
        cond = {c.key: c.examples(self.n, device) for c in trained.conditions}
        cond = {k: v for k, v in cond.items() if v is not None}
        # one fine solve serves every budget: it is the same ODE from the same draws
        reference = reference_solve(trained.model, trained.diffusion, x_T, cond, self.reference_nfe,
                                    trained.clip_denoised)
        for nfe in self.nfe:
            tuned = tune_timesteps(trained.model, trained.diffusion, self.sampler, nfe, x_T, cond, self.evals,
                                   self.reference_nfe, trained.clip_denoised, reference=reference)
            entry = {**asdict(tuned), "weights": "ema" if self.ema else "raw", "seed": self.seed}
            path = save_tuned_steps(trained.checkpoint, tuned_key(self.sampler, nfe, self.ema), entry)
            times = ", ".join(f"{t:.1f}" for t in tuned.timesteps)
            gain = "" if tuned.error < tuned.error_uniform else " (no gain over uniform steps: they are what is saved)"
            print(f"{self.sampler} @ {nfe} NFE: error against the reference "
                  f"on held-out draws {tuned.error_uniform:.3g} "
                  f"(uniform steps from t = {total - 1}) -> {tuned.error:.3g} (tuned, {tuned.evals} trials){gain}; "
                  f"steps {times}")
        print(f"wrote {path}; sample, eval and show use it with --sampler {self.sampler} --nfe N "
              f"(--timesteps auto, the default). A lower error is not always a better FID (docs/fewstep.md): "
              f"compare eval --fid with and without --timesteps {default_spacing(self.sampler)}")
