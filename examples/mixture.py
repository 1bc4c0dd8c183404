"""Sample a 2-D Gaussian mixture with its exact optimal denoiser, with every sampler, and plot it.

    python examples/mixture.py --out demo-out

Writes ``mixture.png``: the true samples beside every sampler of :func:`gaussdiff.sample`: DDPM
(1000 steps, and 100 strided), DDIM (50 steps, eta 0 and 1), Euler, Euler ancestral and Heun (50
evaluations), and the few-step solvers (DPM-Solver++ 2M, 3M, 2S, 2M SDE, UniPC, UniPC-bh1) at 10
evaluations. No training: the denoiser is the closed form of :mod:`gaussdiff.oracle`, so any
difference from the truth is the sampler's.
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
        "Euler, 50 NFE": dict(sampler="euler", nfe=50),
        "Euler ancestral, 50 NFE": dict(sampler="euler-a", nfe=50),
        "Heun, 50 NFE": dict(sampler="heun", nfe=50),
        "DPM-Solver++ 2M, 10 NFE": dict(sampler="dpm++2m", nfe=10),
        "DPM-Solver++ 3M, 10 NFE": dict(sampler="dpm++3m", nfe=10),
        "DPM-Solver++ 2S, 10 NFE": dict(sampler="dpm++2s", nfe=10),
        "DPM-Solver++ 2M SDE, 10 NFE": dict(sampler="dpm++2m-sde", nfe=10),
        "UniPC, 10 NFE": dict(sampler="unipc", nfe=10),
        "UniPC-bh1, 10 NFE": dict(sampler="unipc-bh1", nfe=10),
    }.items():
        g = torch.Generator().manual_seed(1)
        runs[title] = sample(model, diffusion, (args.n, 2), generator=g, dtype=torch.float64, progress=False, **kwargs)
        print(f"sampled: {title}")

    columns = 7
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), sharex=True, sharey=True)
    for ax, (title, x) in zip(axes.flat, runs.items()):
        ax.scatter(truth[:, 0], truth[:, 1], s=2, c="0.8")
        if title != "data":  # the data panel shows the data alone, in grey as under every other panel
            ax.scatter(x[:, 0], x[:, 1], s=2, c="C0")
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle(f"Exact optimal denoiser of a Gaussian mixture: {args.n} samples (blue) over {args.n} of the "
                 f"data (grey); cosine schedule of 1000 steps, float64, seed 1")
    fig.tight_layout()
    path = args.out / "mixture.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
