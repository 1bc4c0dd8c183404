"""FID against NFE on a trained network: gaussdiff's few-step samplers and diffusers' schedulers driving the same
network, from the same noise.

    python bench/fewstep_fid.py [--run RUN] [--data digits] [--n 1000] [--nfe 5 8 10 15 20 50] [--out docs]
                                [--rows LABEL ...]

Without --run it trains the main job (``gaussdiff train``'s defaults on --data) first. Every sample set is n
images from x_T of seed 0 (the same for every sampler), EMA weights, scored by FID@n against the training split
in the domain classifier's features. gaussdiff's samplers clip their x0 estimates to [-1, 1] as ``gaussdiff
sample`` does; diffusers' DPM-Solver and UniPC schedulers run with their defaults, and "clipped" with
``thresholding=True, sample_max_value=1.0`` (which clips their x0 estimates to [-1, 1] the same way). "tuned"
rows use the steps ``gaussdiff tune`` finds for each NFE up to --tune-max-nfe (64 draws, --tune-evals trials, one
reference solve UniPC-200 for all budgets), tuned before sampling; their tuning time is reported. --rows keeps only
the named rows (the labels below). Writes fewstep-fid-<data>.png (FID against NFE) and fewstep-fid-<data>.json,
rewritten after every row, with the host.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _host import describe_host  # noqa: E402
from _schedulers import solve_with_scheduler  # noqa: E402

from gaussdiff.data import DataConfig, load_data  # noqa: E402
from gaussdiff.evaluation import evaluate_quality  # noqa: E402
from gaussdiff.samplers import sample  # noqa: E402
from gaussdiff.samplers.tuning import reference_solve, tune_timesteps  # noqa: E402
from gaussdiff.training import RunConfig, TrainConfig, Trainer, load_trained  # noqa: E402

OURS = {  # label: (sampler, spacing or "tuned")
    "gaussdiff DDIM": ("ddim", "linspace"),
    "gaussdiff DPM++2M": ("dpm++2m", "trailing"),
    "gaussdiff DPM++3M": ("dpm++3m", "trailing"),
    "gaussdiff UniPC": ("unipc", "trailing"),
    "gaussdiff UniPC tuned": ("unipc", "tuned"),
    "gaussdiff DPM++2M tuned": ("dpm++2m", "tuned"),
}
# thresholding with sample_max_value 1 clips diffusers' x0 estimates to [-1, 1], as gaussdiff's are; without it
# an eps model's x0 at the cosine schedule's last step (alpha = 5e-5) is far out of range and ruins the first step.
CLIP = {"thresholding": True, "sample_max_value": 1.0}
THEIRS = {
    "diffusers DPM++2M": ("DPMSolverMultistepScheduler", {}),
    "diffusers DPM++2M clipped": ("DPMSolverMultistepScheduler", CLIP),
    "diffusers DPM++2M clipped, lambda_min -5.1": ("DPMSolverMultistepScheduler",
                                                   {**CLIP, "lambda_min_clipped": -5.1}),
    "diffusers DPM++2M karras clipped": ("DPMSolverMultistepScheduler", {**CLIP, "use_karras_sigmas": True}),
    "diffusers DPM++3M clipped": ("DPMSolverMultistepScheduler", {**CLIP, "solver_order": 3}),
    "diffusers UniPC clipped": ("UniPCMultistepScheduler", CLIP),
    "diffusers Euler": ("EulerDiscreteScheduler", {}),
}


def run_diffusers(name: str, options: dict, nfe: int, model, x_T: torch.Tensor, schedule: str,
                  num_steps: int) -> torch.Tensor:
    import diffusers.schedulers as schedulers

    betas = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[schedule]
    scheduler = getattr(schedulers, name)(num_train_timesteps=num_steps, beta_schedule=betas, **options)
    return solve_with_scheduler(scheduler, model, x_T, nfe, torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run (default: train the main job on --data)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 15, 20, 50])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tune-evals", type=int, default=300, help="trial solves when tuning each schedule")
    parser.add_argument("--tune-max-nfe", type=int, default=20, help="tuned rows only up to this budget")
    parser.add_argument("--rows", nargs="+", help="only these rows (labels as in the table)")
    args = parser.parse_args()
    rows = set(args.rows or [*OURS, *THEIRS])
    if rows - {*OURS, *THEIRS}:
        parser.error(f"unknown rows {sorted(rows - {*OURS, *THEIRS})}; rows: {[*OURS, *THEIRS]}")
    torch.set_num_threads(2)
    host = describe_host(torch.device(args.device))
    trained_s = None
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "main-job"
            start = time.perf_counter()
            Trainer(RunConfig(data=DataConfig(data=args.data), train=TrainConfig(device=args.device)), run,
                    progress=False).run()
            trained_s = time.perf_counter() - start
            print(f"trained the main job on {args.data} in {trained_s:.0f} s", flush=True)
        trained = load_trained(run, device=args.device)
        if trained.diffusion.prediction != "eps" or trained.diffusion.learns_variance:
            raise SystemExit("this bench drives diffusers' schedulers with eps: "
                             "train with --prediction eps, fixed variance")
        real = load_data(trained.config.data.data)
        x_T = torch.randn((args.n, *trained.sample_shape), generator=torch.Generator().manual_seed(0)).to(args.device)
        probe = torch.randn((64, *trained.sample_shape), generator=torch.Generator().manual_seed(1)).to(args.device)
        score = lambda x: evaluate_quality(trained.images_of(x), trained.config.data.data, real,  # noqa: E731
                                           device=args.device).fid
        results: dict[str, dict[int, float]] = {}
        tuning_s: dict[str, dict[int, float]] = {}
        data = trained.config.data.data

        def write() -> None:  # after every row, so an interrupted run keeps what it measured
            report(results, tuning_s, args, data, {"host": host, "run": str(args.run or "main job, trained here"),
                                                   "trained_s": trained_s, "tune_evals": args.tune_evals})

        reference, reference_nfe = None, min(200, trained.diffusion.num_steps)
        for label, (sampler, spacing) in OURS.items():
            if label not in rows:
                continue
            results[label] = {}
            for nfe in args.nfe:
                steps = dict(nfe=nfe, spacing=spacing)
                if spacing == "tuned":
                    if not 3 <= nfe <= args.tune_max_nfe:
                        continue
                    start = time.perf_counter()
                    if reference is None:  # one fine solve serves every sampler and budget
                        reference = reference_solve(trained.model, trained.diffusion, probe,
                                                    reference_nfe=reference_nfe, clip_denoised=trained.clip_denoised)
                    tuned = tune_timesteps(trained.model, trained.diffusion, sampler, nfe, probe, evals=args.tune_evals,
                                           reference_nfe=reference_nfe, clip_denoised=trained.clip_denoised,
                                           progress=False, reference=reference)
                    tuning_s.setdefault(label, {})[nfe] = time.perf_counter() - start
                    steps = dict(timesteps=tuned.timesteps)
                x = sample(trained.model, trained.diffusion, x_T.shape, sampler=sampler, x_T=x_T, progress=False,
                           clip_denoised=trained.clip_denoised, **steps)
                results[label][nfe] = score(x)
            print(label, {k: round(v, 2) for k, v in results[label].items()}, flush=True)
            write()
        theirs = THEIRS if importlib.util.find_spec("diffusers") else {}
        if not theirs:
            print("diffusers is not installed (pip install -e '.[bench]'): gaussdiff only")
        for label, (name, options) in theirs.items():
            if label not in rows:
                continue
            results[label] = {}
            for nfe in args.nfe:
                try:
                    x = run_diffusers(name, options, nfe, trained.model, x_T, trained.config.diffusion.schedule,
                                      trained.diffusion.num_steps)
                except Exception as e:  # noqa: BLE001  Karras sigmas of the cosine schedule repeat timesteps
                    print(f"  {label} at {nfe} NFE failed: {type(e).__name__}: {e}")
                    continue
                results[label][nfe] = score(x)
            print(label, {k: round(v, 2) for k, v in results[label].items()}, flush=True)
            write()
    lines = ["| sampler | " + " | ".join(f"NFE {n}" for n in args.nfe) + " |", "|---|" + "---|" * len(args.nfe)]
    for label, row in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[n]:.2f}" if n in row else "-" for n in args.nfe) + " |")
    print(f"\nFID@{args.n} against {data}'s training split (domain classifier features), x_T seed 0, EMA; {host}")
    print("\n".join(lines))
    print(f"tuning seconds (64 draws, {args.tune_evals} trials, reference solved once):",
          {k: {n: round(v) for n, v in row.items()} for k, row in tuning_s.items()})


def report(results: dict, tuning_s: dict, args: argparse.Namespace, data: str, about: dict) -> None:
    """The plot (FID against NFE, log-log) and the json of every score."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, row in results.items():
        ax.plot(list(row), list(row.values()), marker="o", linestyle="-" if label.startswith("gaussdiff") else "--",
                label=label)
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", ylabel=f"FID@{args.n}",
           title=f"{data}, main job: FID against NFE")
    ax.set_xticks(args.nfe, [str(n) for n in args.nfe])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / f"fewstep-fid-{data}.png", dpi=110)
    plt.close(fig)
    (args.out / f"fewstep-fid-{data}.json").write_text(
        json.dumps({"n": args.n, **about, "results": results, "tuning_s": tuning_s}, indent=1))


if __name__ == "__main__":
    main()
