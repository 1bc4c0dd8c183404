"""Sample quality at a fixed CPU budget: gaussdiff's main job against a straightforward diffusers script.

    python bench/digits_quality.py [--budget 300] [--n 1000] [--train-steps N]

Both train on the digits training split: gaussdiff runs its main job (whose step count is chosen to
fit 5 minutes on 2 CPU cores; ``--train-steps`` changes it, and the table reports the time it
took), diffusers trains for ``--budget`` seconds of wall time with the script a diffusers user
would write (UNet2DModel + DDPMScheduler, MSE on eps, AdamW 2e-4, batch 64, DDIM-100 sampling).
Quality is FID in the features of gaussdiff's domain classifier (99% test accuracy on digits)
against the training set, with the classifier's mean confidence on the samples; the real test split
gives the floor. Needs the ``bench`` extra (diffusers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gaussdiff import sample
from gaussdiff.data import load_data, to_model_range, to_uint8
from gaussdiff.evaluation import fid_from_features, make_extractor, reference_features
from gaussdiff.training import RunConfig, TrainConfig, Trainer


def train_diffusers(budget: float, seed: int = 0):
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    data = load_data("digits")
    model = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=2,
                        block_out_channels=(64, 128), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        idx = torch.randint(0, len(data), (64,))
        x0 = to_model_range(data.images[idx])
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (64,))
        loss = F.mse_loss(model(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    elapsed = time.perf_counter() - start

    @torch.no_grad()
    def draw(n: int) -> torch.Tensor:
        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(100)
        x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        for t in ddim.timesteps:
            x = ddim.step(model(x, t).sample, t, x).prev_sample
        return to_uint8(x)

    return draw, steps, elapsed, sum(p.numel() for p in model.parameters())


def train_gaussdiff(train_steps: int | None):
    config = RunConfig() if train_steps is None else RunConfig(train=TrainConfig(train_steps=train_steps))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", progress=False)
        start = time.perf_counter()
        trainer.run()
        elapsed = time.perf_counter() - start
    model, diffusion = trainer.ema_model.eval(), trainer.diffusion

    def draw(n: int, steps: int = 100) -> torch.Tensor:
        x = sample(model, diffusion, (n, 1, 8, 8), sampler="ddim", steps=steps, clip_denoised=True,
                   generator=torch.Generator().manual_seed(1), progress=False)
        return to_uint8(x)

    return draw, config.train.train_steps, elapsed, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--train-steps", type=int,
                        help="gaussdiff's steps instead of the main job's (which fit the budget)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    train, test = load_data("digits"), load_data("digits", "test")
    extractor = make_extractor("classifier", "digits", train)
    ref = reference_features(extractor, "digits", train)  # cached, as `gaussdiff eval` does

    def score(images: torch.Tensor) -> tuple[float, float]:
        fake = extractor(images)
        return fid_from_features(ref, fake.features), fake.logits.softmax(1).max(1).values.mean().item()

    rows = [("real test split (floor)", "-", "-", "-", *score(test.images))]
    draw, steps, elapsed, params = train_gaussdiff(args.train_steps)
    rows.append(("gaussdiff default, DDIM-100", params, steps, elapsed, *score(draw(args.n, 100))))
    rows.append(("gaussdiff default, DDIM-50", params, steps, elapsed, *score(draw(args.n, 50))))
    draw, steps, elapsed, params = train_diffusers(args.budget)
    rows.append(("diffusers script, DDIM-100", params, steps, elapsed, *score(draw(args.n))))

    print(f"\nFID vs the digits training set in domain-classifier features ({args.n} samples)\n")
    print(f"| {'model':<28} | {'params':>8} | {'steps':>6} | {'train s':>7} | {'FID':>7} | {'confidence':>10} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 8}|{'-' * 9}|{'-' * 9}|{'-' * 12}|")
    for name, params, steps, elapsed, fid, conf in rows:
        p = f"{params / 1e6:.2f}M" if isinstance(params, int) else params
        e = f"{elapsed:.0f}" if isinstance(elapsed, float) else elapsed
        print(f"| {name:<28} | {p:>8} | {steps!s:>6} | {e:>7} | {fid:7.2f} | {conf:10.3f} |")


if __name__ == "__main__":
    main()
