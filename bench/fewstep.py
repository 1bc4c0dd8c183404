"""Few-step samplers on the exact score of a Gaussian mixture: every gaussdiff sampler and spacing against every
diffusers scheduler, at the same NFE, in one run.

    python bench/fewstep.py [--n 20000] [--nfe 5 8 10 15 20 50] [--out docs/fewstep.json]
                            [--samplers unipc dpm++2m] [--spacings trailing]   (fewer gaussdiff rows; all diffusers')

The model is :class:`~gaussdiff.diffusion.oracle.OptimalDenoiser` of a 2-D mixture of three Gaussians of
different weights and widths on the cosine schedule of 1000 steps (eps prediction, float64), so every error is
the sampler's. Both libraries start from the same x_T (seed 0). Scores, against exact samples of the mixture:

- SW: the sliced Wasserstein-1 distance (256 random directions) to 20 000 exact samples; ``floor`` is the same
  distance between two independent exact sample sets: the noise below which samplers cannot be told apart.
- weight: the largest error of a mode's share (samples assigned by the largest posterior responsibility);
- width: the largest relative error of a mode's width (rms distance of its members from its mean), against
  exact samples measured the same way.

"tuned" rows use the steps ``gaussdiff tune`` would find (:mod:`gaussdiff.samplers.tuning`), tuned on 512 other
draws of x_T (seed 11), --evals trial solves each, up to 20 NFE.

diffusers' schedulers are run as its pipelines run them (scale_model_input, step), with their defaults except the
options named; Heun's N steps make 2N - 1 evaluations there, so an even budget gets N = NFE / 2 (one fewer).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser
from gaussdiff.samplers import SAMPLERS
from gaussdiff.samplers.tuning import reference_solve, tune_timesteps

from _schedulers import solve_with_scheduler

F64 = torch.float64
MIXTURE = GaussianMixture(means=[[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], stds=[0.3, 0.5, 0.25], weights=[0.5, 0.3, 0.2])
SPACINGS = ("linspace", "trailing", "karras", "logsnr")
TUNED = ("unipc", "dpm++2m", "dpm++3m")
DIFFUSERS = {  # label: (scheduler class, options)
    "DDIM": ("DDIMScheduler", {}),
    "DPM++2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++2M karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++2M lu": ("DPMSolverMultistepScheduler", {"use_lu_lambdas": True}),
    "DPM++3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "DPM++3M karras": ("DPMSolverMultistepScheduler", {"solver_order": 3, "use_karras_sigmas": True}),
    "DPM++2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++2M SDE karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DPM++2S": ("DPMSolverSinglestepScheduler", {}),
    "DPM++2S karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "UniPC karras": ("UniPCMultistepScheduler", {"use_karras_sigmas": True}),
    "UniPC trailing": ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "Heun karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
}


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over unit ``directions: [K, D]`` of the 1-D Wasserstein-1 distance of the projections (equal n)."""
    px, py = (x @ directions.T).sort(0).values, (y @ directions.T).sort(0).values
    return float((px - py).abs().mean())


def modes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, r = MIXTURE.log_prob_noised(x, torch.ones(len(x), dtype=F64))
    mode = r.argmax(1)
    weights = torch.bincount(mode, minlength=3).to(F64) / len(x)
    widths = torch.stack([(x[mode == k] - MIXTURE.means[k]).pow(2).mean().sqrt() for k in range(3)])
    return weights, widths


class Scorer:
    def __init__(self, n: int) -> None:
        self.exact = MIXTURE.sample(n, torch.Generator().manual_seed(1))[0].to(F64)
        other = MIXTURE.sample(n, torch.Generator().manual_seed(2))[0].to(F64)
        d = torch.randn(256, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
        self.directions = d / d.norm(dim=1, keepdim=True)
        self.weights, self.widths = modes(self.exact)
        self.floor = sliced_wasserstein(other, self.exact, self.directions)

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        if not bool(torch.isfinite(x).all()):
            return {"sw": math.inf, "weight": math.inf, "width": math.inf}
        weights, widths = modes(x)
        return {"sw": sliced_wasserstein(x, self.exact, self.directions),
                "weight": float((weights - self.weights).abs().max()),
                "width": float((widths / self.widths - 1).abs().max())}


def run_diffusers(name: str, options: dict, nfe: int, oracle, x_T: torch.Tensor) -> torch.Tensor | None:
    import diffusers.schedulers as schedulers

    scheduler = getattr(schedulers, name)(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", **options)
    steps = (nfe + 1) // 2 if name == "HeunDiscreteScheduler" else nfe
    try:
        x = solve_with_scheduler(scheduler, oracle, x_T, steps, F64)
    except Exception as e:  # noqa: BLE001  diffusers fails on some options
        # (Karras sigmas of this schedule repeat timesteps)
        print(f"  diffusers {name} {options} at {nfe} NFE failed: {type(e).__name__}: {e}")
        return None
    return x.to(F64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 15, 20, 50])
    parser.add_argument("--out", type=Path, help="write every score as JSON")
    parser.add_argument("--evals", type=int, default=1000, help="trial solves when tuning each schedule")
    parser.add_argument("--samplers", nargs="+", choices=[s for s in SAMPLERS if s != "ddpm"],
                        default=[s for s in SAMPLERS if s != "ddpm"], help="gaussdiff's rows (tuned: those of them "
                        "that can be tuned)")
    parser.add_argument("--spacings", nargs="+", choices=SPACINGS, default=list(SPACINGS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    schedule = NoiseSchedule.cosine(1000)
    oracle = OptimalDenoiser(MIXTURE, schedule)
    diffusion = GaussianDiffusion(schedule)
    score = Scorer(args.n)
    x_T = torch.randn(args.n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    results: dict[str, dict[int, dict[str, float]]] = {}
    for sampler in args.samplers:
        for spacing in args.spacings:
            label = f"{sampler} {spacing}"
            results[label] = {}
            for nfe in args.nfe:
                x = sample(oracle, diffusion, x_T.shape, sampler=sampler, nfe=nfe, spacing=spacing, x_T=x_T,
                           generator=torch.Generator().manual_seed(0), progress=False)
                results[label][nfe] = score(x)
            print(label, {k: round(v["sw"], 4) for k, v in results[label].items()}, flush=True)
    # Steps tuned for each sampler and NFE on 512 other draws of x_T (gaussdiff tune's method), up to 20 NFE.
    probe = torch.randn(512, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
    reference = reference_solve(oracle, diffusion, probe, reference_nfe=500)  # the fine solve, once for all
    for sampler in [s for s in TUNED if s in args.samplers]:
        label = f"{sampler} tuned"
        results[label] = {}
        for nfe in [n for n in args.nfe if 3 <= n <= 20]:
            tuned = tune_timesteps(oracle, diffusion, sampler, nfe, probe, evals=args.evals, reference_nfe=500,
                                   progress=False, reference=reference)
            x = sample(oracle, diffusion, x_T.shape, sampler=sampler, timesteps=tuned.timesteps, x_T=x_T,
                       progress=False)
            results[label][nfe] = score(x)
        print(label, {k: round(v["sw"], 4) for k, v in results[label].items()}, flush=True)
    theirs = DIFFUSERS if importlib.util.find_spec("diffusers") else {}
    if not theirs:
        print("diffusers is not installed (pip install -e '.[bench]'): gaussdiff only")
    for label, (name, options) in theirs.items():
        results[f"diffusers {label}"] = {}
        for nfe in args.nfe:
            x = run_diffusers(name, options, nfe, oracle, x_T)
            if x is not None:
                results[f"diffusers {label}"][nfe] = score(x)
        print(f"diffusers {label}", {k: round(v["sw"], 4) for k, v in results[f"diffusers {label}"].items()},
              flush=True)

    def best(prefix_diffusers: bool, nfe: int) -> tuple[str, float]:
        pool = {k: v[nfe]["sw"] for k, v in results.items() if k.startswith("diffusers") == prefix_diffusers
                and nfe in v}
        k = min(pool, key=pool.get)
        return k, pool[k]

    header = "| sampler | " + " | ".join(f"SW@{nfe}" for nfe in args.nfe) + " |"
    lines = [f"Sliced W1 to exact samples (floor {score.floor:.4f}), n = {args.n}, cosine schedule, eps oracle, "
             "float64, seed 0", "", header, "|---|" + "---|" * len(args.nfe)]
    for label, row in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[n]['sw']:.4f}" if n in row else "-" for n in args.nfe)
                     + " |")
    lines += ["", "| NFE | gaussdiff best | SW | weight err | width err | diffusers best | SW | weight err | "
                  "width err | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for nfe in args.nfe:
        ours, theirs_ = best(False, nfe), (best(True, nfe) if theirs else ("-", math.nan))
        o, t = results[ours[0]][nfe], results[theirs_[0]][nfe] if theirs else {"weight": math.nan, "width": math.nan}
        lines.append(f"| {nfe} | {ours[0]} | {ours[1]:.4f} | {o['weight']:.3f} | {o['width']:.3f} | {theirs_[0]} | "
                     f"{theirs_[1]:.4f} | {t['weight']:.3f} | {t['width']:.3f} | {ours[1] / theirs_[1]:.2f} |")
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text(json.dumps({"floor": score.floor, "n": args.n, "results": results}, indent=1))


if __name__ == "__main__":
    main()
