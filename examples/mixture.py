"""Sample a 2-D Gaussian mixture with its exact optimal denoiser, with every sampler, and plot it.

    python examples/mixture.py --out demo-out

Writes ``mixture.png``: the true samples beside DDPM (1000 steps), strided DDPM (100 steps),
DDIM (50 steps, eta 0) and DDIM (50 steps, eta 1). No training: the denoiser is the closed form
of :mod:`gaussdiff.oracle`, so any difference from the truth is the sampler's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample  # noqa: E402
from gaussdiff.diffusion.oracle import GaussianMixture, OptimalDenoiser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    mixture = GaussianMixture([[-1.5, -0.5], [1.5, 1.0], [0.5, -1.8]], [0.3, 0.5, 0.25], [0.5, 0.3, 0.2])
    schedule = NoiseSchedule.cosine(1000)
    diffusion = GaussianDiffusion(schedule)
    model = OptimalDenoiser(mixture, schedule)
    truth, _ = mixture.sample(args.n, torch.Generator().manual_seed(0))
    runs = {"data": truth}
    for title, kwargs in {
        "DDPM, 1000 steps": dict(sampler="ddpm"),
        "DDPM, 100 strided steps": dict(sampler="ddpm", steps=100),
        "DDIM, 50 steps, eta 0": dict(sampler="ddim", steps=50),
        "DDIM, 50 steps, eta 1": dict(sampler="ddim", steps=50, eta=1.0),
    }.items():
        g = torch.Generator().manual_seed(1)
        runs[title] = sample(model, diffusion, (args.n, 2), generator=g, dtype=torch.float64, **kwargs)

    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 3.4), sharex=True, sharey=True)
    for ax, (title, x) in zip(axes, runs.items()):
        ax.scatter(truth[:, 0], truth[:, 1], s=2, c="0.8", label="data")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="C0" if title != "data" else "C2")
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
    fig.suptitle("Exact optimal denoiser of a Gaussian mixture: samples (colour) over the data (grey)")
    fig.tight_layout()
    path = args.out / "mixture.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
