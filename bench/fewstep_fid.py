"""FID against NFE on a trained network: gaussdiff's few-step samplers and diffusers' schedulers driving the same
network, from the same noise.

    python bench/fewstep_fid.py [--run RUN] [--data digits] [--n 1000] [--nfe 5 8 10 15 20 50] [--out docs]

Without --run it trains the main job (``gaussdiff train``'s defaults on --data) first. Every sample set is n
images from x_T of seed 0 (the same for every sampler), EMA weights, scored by FID@n against the training split
in the domain classifier's features. gaussdiff's samplers clip their x0 estimates to [-1, 1] as ``gaussdiff
sample`` does; diffusers' DPM-Solver and UniPC schedulers run with their defaults, and "clipped" with
``thresholding=True, sample_max_value=1.0`` (which clips their x0 estimates to [-1, 1] the same way). "tuned"
rows use the steps ``gaussdiff tune`` finds for each NFE (64 draws, --tune-evals trials, reference UniPC-200), tuned
before sampling; their tuning time is reported. Writes fewstep-fid.png (FID against NFE) and fewstep-fid.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import tempfile
import time
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gaussdiff.data import DataConfig, load_data  # noqa: E402
from gaussdiff.evaluation import evaluate_quality  # noqa: E402
from gaussdiff.samplers import sample  # noqa: E402
from gaussdiff.samplers.tuning import tune_timesteps  # noqa: E402
from gaussdiff.training import RunConfig, TrainConfig, Trainer, load_trained  # noqa: E402

OURS = {  # label: (sampler, spacing or "tuned")
    "gaussdiff DDIM": ("ddim", "linspace"),
    "gaussdiff DPM++2M": ("dpm++2m", "trailing"),
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
    "diffusers UniPC clipped": ("UniPCMultistepScheduler", CLIP),
    "diffusers Euler": ("EulerDiscreteScheduler", {}),
}


def run_diffusers(name: str, options: dict, nfe: int, model, x_T: torch.Tensor, schedule: str) -> torch.Tensor:
    import diffusers.schedulers as schedulers

    betas = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[schedule]
    scheduler = getattr(schedulers, name)(num_train_timesteps=1000, beta_schedule=betas, **options)
    scheduler.set_timesteps(nfe)
    ve = scheduler.init_noise_sigma != 1
    x = x_T * (scheduler.sigmas.max() ** 2 + 1).sqrt() if ve else x_T
    g = torch.Generator(x_T.device).manual_seed(0)
    noise = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), torch.as_tensor(t, device=x.device).float().expand(len(x)))
            x = scheduler.step(eps, t, x, **noise).prev_sample
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained run (default: train the main job on --data)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 15, 20, 50])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tune-evals", type=int, default=300, help="trial solves when tuning each schedule")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "main-job"
            start = time.perf_counter()
            Trainer(RunConfig(data=DataConfig(data=args.data), train=TrainConfig(device=args.device)), run,
                    progress=False).run()
            print(f"trained the main job on {args.data} in {time.perf_counter() - start:.0f} s", flush=True)
        trained = load_trained(run, device=args.device)
        if trained.diffusion.prediction != "eps" or trained.diffusion.learns_variance:
            raise SystemExit("this bench drives diffusers' schedulers with eps: train with --prediction eps, fixed variance")
        reference = load_data(trained.config.data.data)
        x_T = torch.randn((args.n, *trained.sample_shape), generator=torch.Generator().manual_seed(0)).to(args.device)
        probe = torch.randn((64, *trained.sample_shape), generator=torch.Generator().manual_seed(1)).to(args.device)
        score = lambda x: evaluate_quality(trained.images_of(x), trained.config.data.data, reference,  # noqa: E731
                                           device=args.device).fid
        results: dict[str, dict[int, float]] = {}
        tuning_s: dict[int, float] = {}
        for label, (sampler, spacing) in OURS.items():
            results[label] = {}
            for nfe in args.nfe:
                steps = dict(nfe=nfe, spacing=spacing)
                if spacing == "tuned":
                    if nfe < 3:
                        continue
                    start = time.perf_counter()
                    tuned = tune_timesteps(trained.model, trained.diffusion, sampler, nfe, probe, evals=args.tune_evals,
                                           reference_nfe=200, clip_denoised=trained.clip_denoised, progress=False)
                    tuning_s[nfe] = time.perf_counter() - start
                    steps = dict(timesteps=tuned.timesteps)
                x = sample(trained.model, trained.diffusion, x_T.shape, sampler=sampler, x_T=x_T, progress=False,
                           clip_denoised=trained.clip_denoised, **steps)
                results[label][nfe] = score(x)
            print(label, {k: round(v, 2) for k, v in results[label].items()}, flush=True)
        theirs = THEIRS if importlib.util.find_spec("diffusers") else {}
        if not theirs:
            print("diffusers is not installed (pip install -e '.[bench]'): gaussdiff only")
        for label, (name, options) in theirs.items():
            results[label] = {}
            for nfe in args.nfe:
                try:
                    x = run_diffusers(name, options, nfe, trained.model, x_T, trained.config.diffusion.schedule)
                except Exception as e:  # noqa: BLE001  Karras sigmas of the cosine schedule repeat timesteps
                    print(f"  {label} at {nfe} NFE failed: {type(e).__name__}: {e}")
                    continue
                results[label][nfe] = score(x)
            print(label, {k: round(v, 2) for k, v in results[label].items()}, flush=True)
    lines = ["| sampler | " + " | ".join(f"NFE {n}" for n in args.nfe) + " |", "|---|" + "---|" * len(args.nfe)]
    for label, row in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{row[n]:.2f}" if n in row else "-" for n in args.nfe) + " |")
    print(f"\nFID@{args.n} against {trained.config.data.data}'s training split (domain classifier features), "
          "x_T seed 0, EMA")
    print("\n".join(lines))
    print(f"tuning seconds per NFE (64 draws, {args.tune_evals} trials):", {k: round(v) for k, v in tuning_s.items()})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, row in results.items():
        ax.plot(list(row), list(row.values()), marker="o", linestyle="-" if label.startswith("gaussdiff") else "--",
                label=label)
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", ylabel=f"FID@{args.n}",
           title=f"{trained.config.data.data}, main job: FID against NFE")
    ax.set_xticks(args.nfe, [str(n) for n in args.nfe])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / f"fewstep-fid-{trained.config.data.data}.png", dpi=110)
    (args.out / f"fewstep-fid-{trained.config.data.data}.json").write_text(
        json.dumps({"n": args.n, "results": results, "tuning_s": tuning_s}, indent=1))


if __name__ == "__main__":
    main()
