"""How fast a streamed folder feeds the trainer, and how little memory it takes.

    python bench/data_speed.py [--images 100000] [--size 64] [--steps 60]
    python bench/data_speed.py --images 3000 --size 256 --source-size 512 --shards --train-rows shards \
                               --train-batch 8 --train-steps 8   # against shards, and the trainer at 256x256

Generates a folder of ``--images`` random PNGs (``--size`` pixels square, two class sub-folders and a
metadata.jsonl of captions), then measures, in this order and with nothing else running:

1. images/s the loader delivers (decoded, resized, center-cropped batches of 64 in the run's order)
   with 0, 1 and 2 DataLoader workers, from the folder and (``--shards``) from the same images prepared
   into shards (``gaussdiff prepare``, 1000 a shard);
2. images/s the trainer consumes at the default network on images of that size (batch ``--train-batch``), and
   the training process's peak resident memory (its own: the loader's workers are processes of their own),
   for each of ``--train-rows``: streaming the folder (``stream``), with the folder decoded into memory
   (``memory``: the difference is what holding the data costs), streaming with ``--gradient-checkpointing``
   (``checkpointed``: what the network's activations cost), and streaming the shards (``shards``).

Each figure is printed with the host.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gaussdiff.data.datasets import load_data
from gaussdiff.training.distributed import Distributed
from gaussdiff.training.batches import DataOrder
from gaussdiff.training.batches import stream_batches


def make_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = ("a", "b")[i % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        # Smooth random images (noise at a quarter of the size, upscaled): PNGs of a realistic size, not noise's.
        small = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR).save(root / label / f"{i}.png")
        rows.append({"file_name": f"{label}/{i}.png", "text": f"a picture of class {label}"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def loader_rate(root: Path, size: int | None, workers: int, steps: int, batch: int = 64) -> float:
    data = load_data(str(root), image_size=size, stream="stream")
    order = DataOrder(len(data), batch, seed=0)
    batches = stream_batches(data.images, order, Distributed(), 0, steps + 2, workers)
    next(batches), next(batches)  # the workers start and warm up
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--size", type=int, default=64, help="the resolution the run reads")
    p.add_argument("--source-size", type=int, help="the files' own resolution (default --size): larger files are "
                   "resized at every read from the folder, once by prepare")
    p.add_argument("--steps", type=int, default=60, help="batches of 64 timed per loader")
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--train-rows", nargs="+", choices=["stream", "memory", "checkpointed", "shards"],
                   default=["stream", "memory", "checkpointed"])
    p.add_argument("--shards", action="store_true", help="also prepare shards and time the loader on them")
    p.add_argument("--no-train", action="store_true", help="only the loader")
    a = p.parse_args()
    from _host import describe_host

    print(describe_host(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        start = time.perf_counter()
        source = a.source_size or a.size
        make_folder(root, a.images, source)
        disk = sum(f.stat().st_size for f in root.rglob("*.png"))
        print(f"made {a.images} PNGs of {source}x{source}, read at {a.size}x{a.size} ({disk / 2**20:.0f} MB on disk, "
              f"{a.images * 3 * a.size * a.size / 2**20:.0f} MB decoded) in {time.perf_counter() - start:.0f} s")
        sources = {"folder": (root, a.size)}
        if a.shards:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gaussdiff", "prepare", str(root), "--image-size", str(a.size),
                            "--out", str(Path(tmp) / "shards")], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            print(f"prepared the shards in {time.perf_counter() - start:.0f} s")
            sources["shards"] = (Path(tmp) / "shards", None)
        print("\n| loader workers | " + " | ".join(f"images/s from the {k}" for k in sources) + " |")
        print("|---|" + "---|" * len(sources))
        for workers in (0, 1, 2):
            rates = [loader_rate(path, size, workers, a.steps) for path, size in sources.values()]
            print(f"| {workers} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
        if a.no_train:
            return
        rows = {"stream": (root, ["--stream", "stream"]), "memory": (root, ["--stream", "memory"]),
                "checkpointed": (root, ["--stream", "stream", "--gradient-checkpointing"]),
                "shards": (Path(tmp) / "shards", ["--stream", "stream"])}
        print(f"\n| trainer (default network, batch {a.train_batch}, default workers) | images/s consumed | "
              "peak resident memory |")
        print("|---|---|---|")
        for row in a.train_rows:
            data, options = rows[row]
            rate, peak = train_once(data, Path(tmp) / row, a.size, options + ["--batch-size", str(a.train_batch)],
                                    a.train_steps)
            print(f"| {row}: {' '.join(options)} | {rate:.1f} | {peak:.2f} GiB |", flush=True)


def train_once(root: Path, run: Path, size: int, options: list[str], steps: int) -> tuple[float, float]:
    """images/s (median over steps 4..) and the peak resident memory (GiB) of one training process."""
    cmd = [sys.executable, "-c", "import resource, sys; from gaussdiff.cli import main; sys.argv[0] = 'gaussdiff'\n"
           "try:\n    main(sys.argv[1:])\nfinally:\n"
           "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
           "train", "--data", str(root), "--image-size", str(size), *options, "--train-steps", str(steps),
           "--log-every", "1", "--sample-every", "100000", "--preview-images", "4", "--preview-steps", "5",
           "--run-dir", str(run), "--device", "cpu"]
    done = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kib = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("MAXRSS")))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float(np.median([r["images_per_s"] for r in rows[3:]])), peak_kib / 2**20

if __name__ == "__main__":
    main()
