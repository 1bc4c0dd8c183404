"""Training and sampling speed of gaussdiff's U-Net against diffusers' UNet2DModel, side by side.

    python bench/train_speed.py [--device cpu|cuda] [--repeats 9] [--iters 3] [--batch 32] [--precision fp32 bf16]
                                [--conv direct auto] [--breakdown]

The CIFAR-sized network of the issue: 32x32x3 images, channels 64/128/128, two residual blocks
per level, attention at 16x16 (4 heads of 32), batch 32. Each library is built twice, once per
way of feeding the timestep embedding to a residual block (ADM's scale-shift of the norm, our
default; or DDPM's addition, diffusers' default), so that every comparison is between the same
architecture with the same parameter count. ``--conv`` picks how gaussdiff's residual blocks compute
their 3x3 convolutions (``auto``, the default, is F(4x4, 3x3) Winograd on CPU in fp32; ``direct`` is
PyTorch's kernel), one network per choice. Training = forward + MSE backward + AdamW step;
sampling = one no-grad forward at the same batch (one step of any sampler).

All networks run interleaved in one process: each round times ``--iters`` iterations of every
network, and a speed ratio is taken within each round before the median over ``--repeats``
rounds, so that the machine's slow and fast spells hit both sides of a ratio alike. Needs the
``bench`` extra. ``--breakdown`` also profiles one training step of each network and splits its
time by kind of operator, which shows how much of a step is convolution work both libraries share.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from gaussdiff.nets import UNet, UNetConfig

TIME_EMBEDDINGS = {"scale-shift": True, "additive": False}


def ours(scale_shift: bool, conv: str) -> torch.nn.Module:
    net = UNet(UNetConfig(image_size=32, in_channels=3, out_channels=3, channels=64, channel_mult=(1, 2, 2),
                          num_res_blocks=2, attention_resolutions=(16,), num_heads=4, scale_shift=scale_shift,
                          conv=conv))
    return _Wrap(net, lambda m, x, t: m(x, t))


def theirs(scale_shift: bool) -> torch.nn.Module:
    from diffusers import UNet2DModel

    net = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                      block_out_channels=(64, 128, 128),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=32,
                      resnet_time_scale_shift="scale_shift" if scale_shift else "default")
    return _Wrap(net, lambda m, x, t: m(x, t).sample)


class _Wrap(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, call) -> None:
        super().__init__()
        self.net, self.call = net, call

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.call(self.net, x, t)


@dataclass
class Contender:
    library: str
    time_embedding: str
    conv: str | None  # gaussdiff's convolution algorithm; None for diffusers
    memory_format: torch.memory_format
    precision: str  # fp32, or bf16 autocast
    net: torch.nn.Module
    x: torch.Tensor  # the batch, in this contender's memory layout
    train: list[float] = field(default_factory=list)
    sample: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-4)

    @property
    def name(self) -> str:
        conv = f", {self.conv} conv" if self.conv else ""
        layout = ", channels_last" if self.memory_format == torch.channels_last else ""
        return f"{self.library} ({self.time_embedding}{conv}{layout}, {self.precision})"


# Operator name fragments -> the kind of work, first match wins; the rest is "other".
KINDS = {"convolution": ("convolution",), "attention": ("scaled_dot_product", "attention"),
         "matmul": ("aten::mm", "aten::addmm", "aten::bmm"), "norm": ("group_norm", "layer_norm"),
         "activation": ("silu",)}


def breakdown(step, steps: int = 2) -> dict[str, float]:
    """Milliseconds per call of ``step`` by kind of operator (self time, so nothing counts twice)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    times = dict.fromkeys([*KINDS, "other"], 0.0)
    for event in prof.key_averages():
        if event.key.startswith(("autograd::", "torch::autograd")) or "::" not in event.key:
            continue  # wrappers and profiler markers, whose own time is bookkeeping
        kind = next((k for k, names in KINDS.items() if any(n in event.key for n in names)), "other")
        times[kind] += event.self_cpu_time_total / 1000 / steps
    return times


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32"],
                        help="one or both; each network is built once per precision, in the same run")
    parser.add_argument("--conv", choices=["auto", "direct", "winograd"], nargs="+", default=["auto"],
                        help="gaussdiff's 3x3 convolution algorithm(s); one network each")
    parser.add_argument("--breakdown", action="store_true", help="also split a training step by kind of operator")
    parser.add_argument("--doc", type=Path, help="also write the table into this page (docs/speed.md), in the "
                        "section of this host's family")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    # gaussdiff's trainer offers channels_last (--memory-format); diffusers runs in its default layout,
    # which is also its faster one here (channels_last slows UNet2DModel down on CPU).
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    contenders = []
    for precision in args.precision:
        for emb, scale_shift in TIME_EMBEDDINGS.items():
            for conv in args.conv:
                for fmt, batch in ((torch.contiguous_format, x), (torch.channels_last, x_cl)):
                    net = ours(scale_shift, conv).to(device, memory_format=fmt)
                    contenders.append(Contender("gaussdiff", emb, conv, fmt, precision, net, batch))
            contenders.append(Contender("diffusers", emb, None, torch.contiguous_format, precision,
                                        theirs(scale_shift).to(device), x))

    def autocast(c: Contender) -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16")

    def train_iter(c: Contender) -> None:
        with autocast(c):
            loss = F.mse_loss(c.net(c.x, t).float(), x)
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c.optimizer.step()

    @torch.no_grad()
    def sample_iter(c: Contender) -> None:
        with autocast(c):
            c.net(c.x, t)

    def timed(fn, c: Contender) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            fn(c)
        sync(device)
        return (time.perf_counter() - start) / args.iters

    for c in contenders:  # warm-up (allocator, kernels, autotuning)
        for _ in range(2):
            train_iter(c)
            sample_iter(c)
    for _ in range(args.repeats):
        for c in contenders:
            c.train.append(timed(train_iter, c))
            c.sample.append(timed(sample_iter, c))

    from _host import describe_host, host_family

    lines = [f"{describe_host(device)}; batch {args.batch}, {' and '.join(args.precision)}, "
             f"median of {args.repeats} rounds x {args.iters} iterations", "",
             "| network | params | train img/s | sample ms/step | train ratio | sample ratio |",
             "|---|---|---|---|---|---|"]
    for c in contenders:
        ref = next(d for d in contenders if d.library == "diffusers" and d.time_embedding == c.time_embedding
                   and d.precision == c.precision)
        # Paired: the ratio within each round, then the median over rounds.
        train_ratio = statistics.median(r / o for o, r in zip(c.train, ref.train))
        sample_ratio = statistics.median(r / o for o, r in zip(c.sample, ref.sample))
        params = sum(p.numel() for p in c.net.parameters())
        lines.append(f"| {c.name} | {params / 1e6:.2f}M | {args.batch / statistics.median(c.train):.1f} | "
                     f"{1000 * statistics.median(c.sample):.1f} | {train_ratio:.2f}x | {sample_ratio:.2f}x |")
    table = "\n".join(lines)
    print("\n" + table + "\n\nratio = diffusers' time / this network's time, against diffusers with the same time "
          "embedding and precision")
    if args.breakdown:
        rows = {c.name: breakdown(lambda: train_iter(c)) for c in contenders}
        kinds = [*KINDS, "other"]
        print("\nms per training step by kind of operator (torch.profiler self time, "
              "CPU side; on CUDA this is launch time, not kernel time)\n")
        print("| network | " + " | ".join(kinds) + " | total | convolution share |")
        print("|---|" + "---|" * (len(kinds) + 2))
        for name, times in rows.items():
            total = sum(times.values())
            print(f"| {name} | " + " | ".join(f"{times[k]:.0f}" for k in kinds)
                  + f" | {total:.0f} | {times['convolution'] / total:.0%} |")
    if args.doc:
        from _readme import write_table

        write_table(args.doc, f"train-speed-{host_family(device)}-{'-'.join(args.precision)}", table)


if __name__ == "__main__":
    main()
