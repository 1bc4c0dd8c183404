"""Latent against pixel diffusion on Fashion-MNIST at the same wall-clock budget, and the autoencoders.

    python bench/latent_vs_pixel.py [--budget 300] [--ae-steps 1200] [--n 1000] [--out docs/latent.md-assets]

1. Trains the KL autoencoder for each factor (2 and 4), timing it, and measures its reconstructions of the
   10 000 test images: PSNR, and FID against the training set in the domain classifier's features.
2. Trains a class-conditional U-Net (p_uncond = 0.1) in pixel space (cosine schedule) and one in the
   factor-4 latent space (LDM's linear schedule),
   each for as many steps as ``--budget`` seconds allow (step time from a 10-step pilot), and reports
   training images/s, sampling seconds per image (DDIM-50, EMA) and, with guidance w = 0 and w = 2, FID
   of ``--n`` samples (classes balanced, seed 0) against the training set and the domain classifier's
   accuracy on the requested class.
3. Draws a picture: latent samples beside pixel samples, a row per class.
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

from gaussdiff.conditioning import ConditioningConfig, GuidanceConfig
from gaussdiff.conditioning.latent import LatentConfig
from gaussdiff.data import DataConfig, load_data
from gaussdiff.data.datasets import FASHION_CLASSES
from gaussdiff.diffusion import DiffusionConfig
from gaussdiff.evaluation import evaluate_quality, generate
from gaussdiff.evaluation.autoencoder import evaluate_reconstructions
from gaussdiff.nets import UNetConfig
from gaussdiff.nets.autoencoder import AutoencoderConfig
from gaussdiff.training import RunConfig, TrainConfig, load_trained
from gaussdiff.training.autoencoder import AutoencoderTrainer
from gaussdiff.training.config import AutoencoderTrainConfig, Bookkeeping
from gaussdiff.training.latent import load_latent_space
from gaussdiff.viz import save_strips

QUIET = Bookkeeping(log_every=100, sample_every=10**9, checkpoint_every=10**9)


def train_autoencoder(factor: int, steps: int, root: Path) -> tuple[Path, float]:
    config = AutoencoderTrainConfig(autoencoder=AutoencoderConfig(factor=factor, channels=16),
                                    train_steps=steps, bookkeeping=QUIET)
    run = root / f"ae-f{factor}"
    start = time.perf_counter()
    AutoencoderTrainer(config, run, progress=False).run()
    return run, time.perf_counter() - start


def diffusion_config(latent: Path | None, steps: int) -> RunConfig:
    if latent is None:  # the README's Fashion-MNIST network, on the default cosine schedule
        model, diffusion = UNetConfig(channels=32, channel_mult=(1, 2, 2),
                                      attention_resolutions=(7,)), DiffusionConfig()
    else:  # 7x7 latents: two levels, attention at the inner 4x4; LDM's linear schedule (docs/latent.md: why)
        model = UNetConfig(channels=64, channel_mult=(1, 2), attention_resolutions=(4,))
        diffusion = DiffusionConfig(schedule="linear")
    return RunConfig(data=DataConfig(data="fashion-mnist"), model=model, diffusion=diffusion,
                     conditioning=ConditioningConfig(class_conditional=True, p_uncond=0.1),
                     latent=LatentConfig(latent=latent),
                     train=TrainConfig(train_steps=steps, bookkeeping=QUIET))


def train_diffusion(latent: Path | None, budget: float, root: Path) -> tuple[Path, int, float, float]:
    """Steps that fit ``budget`` seconds, from a 10-step pilot; the run, its steps, seconds and images/s."""
    return train_within(lambda steps: diffusion_config(latent, steps), budget, root / ("latent" if latent else "pixel"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of diffusion training for each model")
    parser.add_argument("--ae-steps", type=int, default=1200)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--doc", type=Path, help="write the tables between the markers of this file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test = load_data("fashion-mnist", "train"), load_data("fashion-mnist", "test")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ae_rows, runs = [], {}
        for factor in (2, 4):
            run, seconds = train_autoencoder(factor, args.ae_steps, root)
            space, _, _ = load_latent_space(run)
            r = evaluate_reconstructions(space, test.images, "fashion-mnist", train)
            runs[factor] = run
            ae_rows.append(f"| f = {factor}, {space.channels}x{space.size}x{space.size} latents | {args.ae_steps} | "
                           f"{seconds:.0f} | {r.psnr:.2f} | {r.fid:.2f} | {r.fid_originals:.2f} |")
            print(ae_rows[-1], flush=True)
        rows, pictures = [], {}
        for name, latent in (("pixel", None), ("latent (f = 4)", runs[4])):
            run, steps, seconds, images_per_s = train_diffusion(latent, args.budget, root)
            trained = load_trained(run)
            labels = torch.arange(args.n) % 10
            for w in (0.0, 2.0):
                start = time.perf_counter()
                images, _ = generate(trained, args.n, "ddim", 50, labels=labels, guidance=GuidanceConfig(guidance=w),
                                     progress=False)
                per_image = (time.perf_counter() - start) / args.n
                q = evaluate_quality(images, "fashion-mnist", train, labels=labels)
                rows.append(f"| {name} | {steps} | {seconds:.0f} | {images_per_s:.0f} | w = {w:g} | "
                            f"{per_image * 1000:.1f} | {q.fid:.2f} | {q.accuracy:.3f} |")
                print(rows[-1], flush=True)
                if w == 2.0:
                    pictures[name] = images
    ae_table = "\n".join([
        "| autoencoder (Fashion-MNIST) | steps | train s | PSNR dB (test) | FID of reconstructions | "
        "FID of test images |",
        "|---|---|---|---|---|---|", *ae_rows])
    table = "\n".join([
        f"| class-conditional, {args.budget:.0f} s budget | steps | train s | train img/s | guidance | "
        f"ms / sample | FID@{args.n} | accuracy |",
        "|---|---|---|---|---|---|---|---|", *rows])
    print("\n" + ae_table + "\n\n" + table)
    strips = []
    for k in range(10):  # a row per class: 8 latent samples, then 8 pixel samples
        pick = lambda images: images[torch.arange(args.n) % 10 == k][:8]  # noqa: E731
        strips.append(torch.cat([pick(pictures["latent (f = 4)"]), pick(pictures["pixel"])]))
    picture = save_strips(strips, args.out / "latent-vs-pixel.png", ["latent"] + [""] * 7 + ["pixel"] + [""] * 7,
                          FASHION_CLASSES)
    print(f"picture: {picture}")
    (args.out / "latent-vs-pixel.json").write_text(json.dumps({"autoencoders": ae_rows, "diffusion": rows}, indent=2))
    if args.doc is not None:
        write_table(args.doc, "autoencoder-table", ae_table)
        write_table(args.doc, "latent-table", table)


if __name__ == "__main__":
    main()
