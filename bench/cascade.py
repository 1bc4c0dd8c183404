"""A cascade on Fashion-MNIST (a 14x14 base model, then 14 -> 28 super-resolution) against a direct 28x28 model
given the same total training time; conditioning augmentation's ablation and the sampling level's sweep.

    python bench/cascade.py [--budget 200] [--n 500] [--out docs]

All models are class-conditional (p_uncond = 0.1) and sampled without guidance, DDIM with the EMA
weights, seed 0, classes balanced.

1. Trains the base model at 14x14 (Fashion-MNIST area-downsampled) for ``--budget`` seconds, three
   super-resolution stages 14 -> 28 for ``--budget`` seconds each (Gaussian conditioning augmentation with
   S = 0.5, blur with S = 1 pixel, none; v prediction), and a direct 28x28 model for twice ``--budget`` (the base's
   and one stage's time together). Steps are fitted to the budget from a 10-step pilot.
2. Sweeps the sampling level s of the Gaussian stage on the base model's samples (FID@n of the cascade).
3. Reports, for each stage: PSNR of the 10 000 test images super-resolved from their downsampled versions
   (first --n), FID@n of those, and FID@n and classifier accuracy of the cascade's samples; and the direct
   model's FID@n and accuracy. FID against the 60 000 training images in the domain classifier's features.
4. Draws the stages side by side (base, then each stage's output) for 10 classes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _budget import train_within
from _doc import write_table

from gaussdiff.conditioning import ConditioningConfig
from gaussdiff.conditioning.super_res import SuperResConfig, downsample
from gaussdiff.data import DataConfig, load_data, to_model_range
from gaussdiff.diffusion import DiffusionConfig
from gaussdiff.evaluation import evaluate_quality, generate
from gaussdiff.evaluation.super_res import psnr
from gaussdiff.nets import UNetConfig
from gaussdiff.training import RunConfig, TrainConfig, load_trained
from gaussdiff.training.config import Bookkeeping
from gaussdiff.viz import save_strips

QUIET = Bookkeeping(log_every=100, sample_every=10**9, checkpoint_every=10**9)
STAGES = {"gaussian": SuperResConfig(super_res=14, cond_aug="gaussian", cond_aug_max=0.5, cond_aug_level=0.1),
          "blur": SuperResConfig(super_res=14, cond_aug="blur", cond_aug_max=1.0, cond_aug_level=0.0),
          "none": SuperResConfig(super_res=14, cond_aug="none", cond_aug_level=0.0)}
LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3)


def config(kind: str, steps: int) -> RunConfig:
    unet = UNetConfig(channels=32, channel_mult=(1, 2, 2), attention_resolutions=(7,), conv="direct")
    data = DataConfig(data="fashion-mnist")
    super_res, diffusion = SuperResConfig(), DiffusionConfig()
    if kind == "base":  # 14x14: two levels, attention at 7x7
        unet, data = UNetConfig(channels=32, channel_mult=(1, 2), attention_resolutions=(7,), conv="direct"), \
            DataConfig(data="fashion-mnist", image_size=14)
    elif kind in STAGES:  # v prediction: eps stages barely follow their condition after a few hundred steps
        super_res, diffusion = STAGES[kind], DiffusionConfig(prediction="v")
    return RunConfig(data=data, model=unet, super_res=super_res, diffusion=diffusion,
                     conditioning=ConditioningConfig(class_conditional=True, p_uncond=0.1),
                     train=TrainConfig(train_steps=steps, bookkeeping=QUIET))


def train(kind: str, budget: float, root: Path) -> tuple[Path, int, float]:
    run, steps, seconds, _ = train_within(lambda steps: config(kind, steps), budget, root / kind)
    return run, steps, seconds


def direct_row(args: argparse.Namespace, root: Path, train_data, labels: torch.Tensor) -> str:
    """The direct 28x28 model, trained for twice ``--budget`` (the base's and one stage's time): its table row."""
    run, steps, seconds = train("direct", 2 * args.budget, root)
    images, _ = generate(load_trained(run), args.n, "ddim", args.base_steps, labels=labels, progress=False)
    q = evaluate_quality(images, "fashion-mnist", train_data, labels=labels)
    print(f"direct 28x28: {steps} steps, {seconds:.0f} s", flush=True)
    return f"| direct 28x28 model | {seconds:.0f} | - | - | {q.fid:.2f} | {q.accuracy:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for the base and for each stage")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--base-steps", type=int, default=50)
    parser.add_argument("--sr-steps", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--doc", type=Path, help="write the tables between the markers of this file")
    parser.add_argument("--direct-only", action="store_true",
                        help="train and measure only the direct 28x28 model (2 x --budget)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    train_data, test = load_data("fashion-mnist"), load_data("fashion-mnist", "test")
    labels = torch.arange(args.n) % 10
    rows, sweep, stage_images = [], [], {}
    if args.direct_only:
        with tempfile.TemporaryDirectory() as tmp:
            print(direct_row(args, Path(tmp), train_data, labels))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_run, base_steps, base_s = train("base", args.budget, root)
        base = load_trained(base_run)
        start = time.perf_counter()
        base_images, _ = generate(base, args.n, "ddim", args.base_steps, labels=labels, progress=False)
        base_ms = (time.perf_counter() - start) / args.n * 1000
        print(f"base 14x14: {base_steps} steps, {base_s:.0f} s; {base_ms:.1f} ms / sample", flush=True)
        real_low = to_model_range(test.images[: args.n])
        for kind in STAGES:
            run, steps, seconds = train(kind, args.budget, root)
            stage = load_trained(run)
            levels = LEVELS if kind == "gaussian" else (stage.config.super_res.cond_aug_level,)
            best = None
            for s in levels:
                images, _ = generate(stage, args.n, "ddim", args.sr_steps, labels=labels, progress=False,
                                     low_res=to_model_range(base_images), cond_aug_level=s)
                q = evaluate_quality(images, "fashion-mnist", train_data, labels=labels)
                if kind == "gaussian":
                    sweep.append(f"| s = {s:g} | {q.fid:.2f} | {q.accuracy:.3f} |")
                    print(sweep[-1], flush=True)
                if best is None or q.fid < best[1].fid:
                    best = (s, q, images)
            s, q, images = best
            stage_images[kind] = images
            real, _ = generate(stage, args.n, "ddim", args.sr_steps, labels=test.labels[: args.n], progress=False,
                               low_res=downsample(real_low, 14), cond_aug_level=s)
            q_real = evaluate_quality(real, "fashion-mnist", train_data, labels=test.labels[: args.n])
            rows.append(f"| cascade, stage with {kind} augmentation (s = {s:g}) | {base_s:.0f} + {seconds:.0f} | "
                        f"{psnr(real, test.images[: args.n]):.2f} | {q_real.fid:.2f} | {q.fid:.2f} | "
                        f"{q.accuracy:.3f} |")
            print(rows[-1], flush=True)
        rows.append(direct_row(args, root, train_data, labels))
        print(rows[-1], flush=True)
    table = "\n".join([
        f"| Fashion-MNIST, class-conditional, w = 0 | train s | PSNR dB, real 14x14 inputs | FID@{args.n}, real "
        f"inputs | FID@{args.n}, cascade | accuracy, cascade |",
        "|---|---|---|---|---|---|", *rows])
    sweep_table = "\n".join([f"| Gaussian stage on base samples | FID@{args.n} | accuracy |", "|---|---|---|", *sweep])
    print("\n" + table + "\n\n" + sweep_table)
    strips = []
    for k in range(10):
        pick = lambda x: x[labels == k][:1]  # noqa: E731
        big = torch.nn.functional.interpolate(pick(base_images).float(), size=(28, 28), mode="nearest").to(torch.uint8)
        strips.append(torch.cat([big, *[pick(stage_images[kind]) for kind in STAGES]]))
    save_strips(strips, args.out / "cascade-stages.png", ["base 14x14", *[f"+ {k}" for k in STAGES]],
                load_data("fashion-mnist").class_names)
    (args.out / "cascade.json").write_text(json.dumps({"rows": rows, "sweep": sweep}, indent=2))
    if args.doc is not None:
        write_table(args.doc, "cascade-table", table)
        write_table(args.doc, "cascade-sweep", sweep_table)


if __name__ == "__main__":
    main()
