"""Text-to-image on ``shapes``: prompt accuracy and FID, in pixel and latent space at one wall-clock budget.

    python bench/text_shapes.py [--budget 900] [--ae-steps 1500] [--n 500] [--out docs]

1. Trains the attribute classifier that scores samples (cached; trained on every attribute combination)
   and reports its ceiling: its prompt accuracy on the 2000 real test scenes, seen and held-out pairs.
2. Trains a KL autoencoder (f = 4: 4x8x8 latents) on the training scenes, timing it, and measures
   its reconstructions of the test scenes (PSNR).
3. Trains a text-conditional U-Net (caption encoder + cross-attention, p_uncond = 0.1) in pixel space
   (cosine schedule) and one in the latent space (LDM's linear schedule), each for as many steps as
   ``--budget`` seconds allow (step time from a 10-step pilot).
4. For guidance w = 0, 1, 3: samples (DDIM-50, EMA, seed 0) for the first ``--n`` captions of the test
   split and reports prompt accuracy (every attribute right, read by the attribute classifier), over
   seen and held-out (shape, colour) pairs, FID@n against the training split in the attribute
   classifier's features, and which attributes fail (per-attribute accuracy at w = 3).
5. Draws a picture per space: 8 prompts (4 seen, 4 with held-out pairs; rows, written beside them) by
   8 seeds (columns), at w = 3.
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
from gaussdiff.data import DataConfig, load_data, to_model_range
from gaussdiff.data.shapes import ATTRIBUTES, HEAD_SIZES, is_held_out
from gaussdiff.diffusion import DiffusionConfig
from gaussdiff.evaluation import evaluate_quality, generate
from gaussdiff.evaluation.features import ClassifierExtractor, make_extractor, predict_heads
from gaussdiff.evaluation.quality import attribute_ceiling
from gaussdiff.nets import UNetConfig
from gaussdiff.nets.autoencoder import AutoencoderConfig
from gaussdiff.training import RunConfig, TrainConfig, load_trained
from gaussdiff.training.autoencoder import AutoencoderTrainer
from gaussdiff.training.config import AutoencoderTrainConfig, Bookkeeping
from gaussdiff.training.latent import load_latent_space
from gaussdiff.viz import save_grid

QUIET = Bookkeeping(log_every=100, sample_every=10**9, checkpoint_every=10**9)
GUIDANCE = (0.0, 1.0, 3.0)


def train_autoencoder(steps: int, root: Path) -> tuple[Path, float]:
    config = AutoencoderTrainConfig(data=DataConfig(data="shapes"), autoencoder=AutoencoderConfig(factor=4),
                                    train_steps=steps, bookkeeping=QUIET)
    run = root / "ae"
    start = time.perf_counter()
    AutoencoderTrainer(config, run, progress=False).run()
    return run, time.perf_counter() - start


def diffusion_config(latent: Path | None, steps: int) -> RunConfig:
    # One residual block a level and PyTorch's own convolutions: on this 2-core host 3x the images/s of two
    # blocks with attention also at 16x16, and 1.15x those of --conv auto (issue 17's finding).
    if latent is None:  # 32x32 pixels: three levels, attention (self and cross) at 8x8 and in the middle; cosine
        model = UNetConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(8,),
                           conv="direct")
        diffusion = DiffusionConfig()
    else:  # 8x8 latents: two levels, attention at 8x8 and 4x4; LDM's linear schedule (docs/latent.md: why)
        model = UNetConfig(channels=64, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8, 4),
                           conv="direct")
        diffusion = DiffusionConfig(schedule="linear")
    return RunConfig(data=DataConfig(data="shapes"), model=model, diffusion=diffusion,
                     conditioning=ConditioningConfig(text=True, p_uncond=0.1), latent=LatentConfig(latent=latent),
                     train=TrainConfig(train_steps=steps, bookkeeping=QUIET))


def train_diffusion(latent: Path | None, budget: float, root: Path) -> tuple[Path, int, float, float]:
    """Steps that fit ``budget`` seconds, from a 10-step pilot; the run, its steps, seconds and images/s."""
    return train_within(lambda steps: diffusion_config(latent, steps), budget, root / ("latent" if latent else "pixel"))


def per_attribute(extractor: ClassifierExtractor, images: torch.Tensor, attributes: torch.Tensor) -> dict[str, float]:
    """The share of samples whose attribute matches the prompt's, for each attribute the prompt has."""
    predicted = predict_heads(extractor(images).logits, HEAD_SIZES)
    out = {}
    for i, name in enumerate(ATTRIBUTES):
        asked = attributes[:, i] >= 0
        out[name] = float((predicted[asked, i] == attributes[asked, i]).double().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of diffusion training for each model")
    parser.add_argument("--ae-steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--doc", type=Path, help="write the tables between the markers of this file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test = load_data("shapes", "train"), load_data("shapes", "test")
    start = time.perf_counter()
    ceiling = attribute_ceiling("shapes", train, test)
    print(f"attribute classifier ceiling on {len(test)} real test scenes: all {ceiling.accuracy:.3f}, seen "
          f"{ceiling.seen:.3f} ({ceiling.n_seen}), held-out {ceiling.held_out:.3f} ({ceiling.n_held_out}); "
          f"{time.perf_counter() - start:.0f} s (cached after the first run)", flush=True)
    extractor = make_extractor("classifier", "shapes", train)
    prompts, attributes = test.captions[: args.n], test.attributes[: args.n]
    held = is_held_out(test.attributes)
    picked = [int(i) for i in (~held).nonzero()[:4, 0]] + [int(i) for i in held.nonzero()[:4, 0]]
    picture_prompts = [test.captions[i] for i in picked]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ae_run, ae_seconds = train_autoencoder(args.ae_steps, root)
        space, _, _ = load_latent_space(ae_run)
        with torch.no_grad():
            x = to_model_range(test.images)
            mse = float(((space.decode(space.encode(x)).clamp(-1, 1) - x) / 2).pow(2).mean())
        psnr = -10 * torch.log10(torch.tensor(mse)).item()
        ae_line = (f"autoencoder f = 4 ({space.channels}x{space.size}x{space.size} latents): {args.ae_steps} steps, "
                   f"{ae_seconds:.0f} s, PSNR {psnr:.2f} dB on the test scenes")
        print(ae_line, flush=True)
        rows, failures = [], {}
        for name, latent in (("pixel", None), ("latent (f = 4)", ae_run)):
            run, steps, seconds, images_per_s = train_diffusion(latent, args.budget, root)
            trained = load_trained(run)
            for w in GUIDANCE:
                start = time.perf_counter()
                images, _ = generate(trained, args.n, "ddim", 50, guidance=GuidanceConfig(guidance=w), progress=False,
                                     prompts=prompts)
                per_image = (time.perf_counter() - start) / args.n
                q = evaluate_quality(images, "shapes", train, attributes=attributes)
                p = q.prompts
                rows.append(f"| {name} | {steps} | {seconds:.0f} | {images_per_s:.0f} | w = {w:g} | "
                            f"{per_image * 1000:.1f} | {p.accuracy:.3f} | {p.seen:.3f} | {p.held_out:.3f} | "
                            f"{q.fid:.2f} |")
                print(rows[-1], flush=True)
                if w == GUIDANCE[-1]:
                    failures[name] = per_attribute(extractor, images, attributes)
                    print(f"  per attribute at w = {w:g}: {failures[name]}", flush=True)
            per_prompt = 8
            images, _ = generate(trained, 8 * per_prompt, "ddim", 50, guidance=GuidanceConfig(guidance=GUIDANCE[-1]),
                                 progress=False, prompts=[p for p in picture_prompts for _ in range(per_prompt)])
            slug = "pixel" if latent is None else "latent"
            save_grid(images, args.out / f"text-shapes-{slug}.png", nrow=per_prompt,
                      row_labels=[("(held out) " if i >= 4 else "") + p for i, p in enumerate(picture_prompts)])
    n_seen, n_held = int((~is_held_out(attributes)).sum()), int(is_held_out(attributes).sum())
    table = "\n".join([
        f"| shapes, text, {args.budget:.0f} s budget | steps | train s | train img/s | guidance | ms / sample | "
        f"prompt acc. | seen ({n_seen}) | held-out ({n_held}) | FID@{args.n} |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows,
        f"| attribute classifier on real test scenes (ceiling) | - | - | - | - | - | {ceiling.accuracy:.3f} | "
        f"{ceiling.seen:.3f} | {ceiling.held_out:.3f} | - |"])
    failure_table = "\n".join([
        f"| per-attribute accuracy at w = {GUIDANCE[-1]:g} | " + " | ".join(ATTRIBUTES) + " |",
        "|---" * (len(ATTRIBUTES) + 1) + "|",
        *[f"| {name} | " + " | ".join(f"{v:.3f}" for v in f.values()) + " |" for name, f in failures.items()]])
    print("\n" + ae_line + "\n\n" + table + "\n\n" + failure_table)
    (args.out / "text-shapes.json").write_text(json.dumps(
        {"autoencoder": ae_line, "rows": rows, "per_attribute": failures, "ceiling": ceiling.__dict__}, indent=2))
    if args.doc is not None:
        write_table(args.doc, "text-table", table)
        write_table(args.doc, "text-failures", failure_table)


if __name__ == "__main__":
    main()
