"""One 3x3 convolution layer, forward and backward, by PyTorch's direct kernel and by F(4x4, 3x3) Winograd.

    python bench/conv_speed.py [--repeats 9] [--chunk-mb 1 4 16] [--doc docs/speed.md]

The layers are those of the two networks the project measures: the CIFAR-sized U-Net of
bench/train_speed.py (batch 32; 64/128/128 channels at 32/16/8, with the up path's concatenated
inputs) and the main job's digits U-Net (batch 64; 32/64 channels at 8/4). Inputs are channels_last,
the layout the trainer uses where Winograd runs. Each round times every contender once, the ratio is
taken within the round and the median over rounds is reported, so slow spells of the shared machine
hit both sides alike. ``auto`` says which algorithm :class:`gaussdiff.nets.winograd.Conv3x3` picks for
the layer; ``--chunk-mb`` sweeps the chunk budget (the library uses ``winograd.CHUNK_BYTES``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gaussdiff.nets.kernels import winograd
from gaussdiff.nets.kernels.winograd import Conv3x3, winograd_conv3x3

# (batch, in channels, out channels, size): the CIFAR-sized U-Net, then the digits U-Net.
LAYERS = [(32, 64, 64, 32), (32, 128, 64, 32), (32, 192, 64, 32), (32, 64, 128, 16), (32, 128, 128, 16),
          (32, 256, 128, 16), (32, 128, 128, 8), (32, 256, 128, 8),
          (64, 32, 32, 8), (64, 96, 32, 8), (64, 64, 64, 4), (64, 128, 64, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--chunk-mb", type=int, nargs="+", default=[winograd.CHUNK_BYTES >> 20])
    parser.add_argument("--layers", type=int, default=len(LAYERS), help="only the first N layers of the table")
    parser.add_argument("--doc", type=Path, help="also write the table into this page (docs/speed.md), in the "
                        "section of this host's family")
    args = parser.parse_args()
    from _doc import check_page, write_table

    check_page(args.doc)  # before minutes of measuring
    torch.manual_seed(0)
    from _host import describe_host, host_family

    lines = [f"{describe_host(torch.device('cpu'))}; fp32, channels_last, forward + backward, "
             f"median of {args.repeats} paired rounds", "",
             "| layer (batch, C -> K, size) | direct ms | "
             + " | ".join(f"Winograd, {mb} MB chunks" for mb in args.chunk_mb)
             + " | auto picks |", "|---|---|" + "---|" * len(args.chunk_mb) + "---|"]
    for B, C, K, size in LAYERS[: args.layers]:
        x = torch.randn(B, C, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
        w, b = torch.randn(K, C, 3, 3, requires_grad=True), torch.randn(K, requires_grad=True)
        grad = torch.randn(B, K, size, size).contiguous(memory_format=torch.channels_last)

        def direct() -> None:
            F.conv2d(x, w, b, padding=1).backward(grad)

        def wino(mb: int) -> None:
            winograd.CHUNK_BYTES = mb << 20
            winograd_conv3x3(x, w, b).backward(grad)

        contenders = {"direct": direct} | {mb: (lambda mb=mb: wino(mb)) for mb in args.chunk_mb}
        times = {name: [] for name in contenders}
        for fn in contenders.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        ratios = [statistics.median(d / q for d, q in zip(times["direct"], times[mb])) for mb in args.chunk_mb]
        picks = "Winograd" if Conv3x3(C, K).uses_winograd(x) else "direct"  # auto: measured here
        lines.append(f"| {B}, {C} -> {K}, {size}x{size} | {1000 * statistics.median(times['direct']):.1f} | "
                     + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {picks} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table + "\n\nratio = direct time / Winograd time in the same round")
    if args.doc:
        family = host_family(torch.device("cpu"))
        write_table(args.doc, f"conv-speed-{family}", table,
                    heading=f"Convolution kernels on {family} hosts, by bench/conv_speed.py")


if __name__ == "__main__":
    main()
