"""Training and sampling speed of gaussdiff's U-Net against diffusers' UNet2DModel, side by side.

    python bench/train_speed.py [--device cpu|cuda] [--repeats 9] [--iters 3] [--batch 32] [--precision fp32 bf16]
                                [--conv direct auto] [--breakdown]
    python bench/train_speed.py --device cuda --batch 128 --setups fp32 bf16 bf16+default bf16+reduce-overhead \
                                --layouts channels_last --embeddings scale-shift --no-sample

The CIFAR-sized network of the issue: 32x32x3 images, channels 64/128/128, two residual blocks
per level, attention at 16x16 (4 heads of 32), batch 32. Each library is built twice, once per
way of feeding the timestep embedding to a residual block (ADM's scale-shift of the norm, our
default; or DDPM's addition, diffusers' default), so that every comparison is between the same
architecture with the same parameter count. ``--conv`` picks how gaussdiff's residual blocks compute
their 3x3 convolutions (``auto``, the default, times PyTorch's kernel against F(4x4, 3x3) Winograd on
each layer configuration's first training pass on CPU and keeps Winograd only at 0.9 of the direct
kernel's time or less; ``direct`` is PyTorch's kernel), one network per choice. Training = forward +
MSE backward + AdamW step; sampling = one no-grad forward at the same batch (one step of any sampler).

All networks run interleaved in one process: each round times ``--iters`` iterations of every
network, and a speed ratio is taken within each round before the median over ``--repeats``
rounds, so that the machine's slow and fast spells hit both sides of a ratio alike. ``--setups`` lists
precision+compile-mode pairs (``bf16+reduce-overhead``: bf16 autocast, ``torch.compile(mode="reduce-overhead")``),
each built for both libraries; ratios are then against diffusers in eager fp32 and against diffusers' fastest
setup in the same run, and the row marked "default" is what ``gaussdiff train`` picks on this device. Needs the
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
    compile: str  # torch.compile's mode, or "off"
    net: torch.nn.Module
    x: torch.Tensor  # the batch, in this contender's memory layout
    train: list[float] = field(default_factory=list)
    sample: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-4)
        self.call = self.net if self.compile == "off" else torch.compile(self.net, mode=self.compile)

    @property
    def name(self) -> str:
        conv = f", {self.conv} conv" if self.conv else ""
        layout = ", channels_last" if self.memory_format == torch.channels_last else ""
        compiled = "" if self.compile == "off" else f", compile {self.compile}"
        return f"{self.library} ({self.time_embedding}{conv}{layout}, {self.precision}{compiled})"


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
    parser.add_argument("--setups", nargs="+", help="precision[+compile mode] pairs, e.g. fp32 bf16+default "
                        "bf16+reduce-overhead (replaces --precision)")
    parser.add_argument("--conv", choices=["auto", "direct", "winograd"], nargs="+", default=["auto"],
                        help="gaussdiff's 3x3 convolution algorithm(s); one network each")
    parser.add_argument("--layouts", choices=["contiguous", "channels_last"], nargs="+",
                        default=["contiguous", "channels_last"], help="gaussdiff's memory layouts; one network each")
    parser.add_argument("--diffusers-layouts", choices=["contiguous", "channels_last"], nargs="+",
                        default=["contiguous"], help="diffusers' layouts (contiguous is its faster on CPU)")
    parser.add_argument("--embeddings", choices=list(TIME_EMBEDDINGS), nargs="+", default=list(TIME_EMBEDDINGS))
    parser.add_argument("--no-sample", action="store_true", help="time training only (a compiled network "
                        "otherwise compiles again for no-grad calls)")
    parser.add_argument("--breakdown", action="store_true", help="also split a training step by kind of operator")
    parser.add_argument("--doc", type=Path, help="also write the table into this page (docs/speed.md), in the "
                        "section of this host's family")
    args = parser.parse_args()
    from _doc import check_page, write_table

    check_page(args.doc)  # before minutes of measuring
    device = torch.device(args.device)
    torch.manual_seed(0)
    # gaussdiff's trainer offers channels_last (--memory-format); diffusers runs in its default layout,
    # which is also its faster one here (channels_last slows UNet2DModel down on CPU).
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    t = torch.randint(0, 1000, (args.batch,), device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    layouts = {"contiguous": (torch.contiguous_format, x), "channels_last": (torch.channels_last, x_cl)}
    setups = [tuple((s + "+off").split("+")[:2]) for s in (args.setups or args.precision)]
    contenders = []
    for precision, mode in setups:
        for emb in args.embeddings:
            scale_shift = TIME_EMBEDDINGS[emb]
            for conv in args.conv:
                for layout in args.layouts:
                    fmt, batch = layouts[layout]
                    net = ours(scale_shift, conv).to(device, memory_format=fmt)
                    contenders.append(Contender("gaussdiff", emb, conv, fmt, precision, mode, net, batch))
            for layout in args.diffusers_layouts:
                fmt, batch = layouts[layout]
                contenders.append(Contender("diffusers", emb, None, fmt, precision, mode,
                                            theirs(scale_shift).to(device, memory_format=fmt), batch))

    def autocast(c: Contender) -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.precision == "bf16")

    def train_iter(c: Contender) -> None:
        with autocast(c):
            loss = F.mse_loss(c.call(c.x, t).float(), x)
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c.optimizer.step()

    @torch.no_grad()
    def sample_iter(c: Contender) -> None:
        with autocast(c):
            c.call(c.x, t)

    def timed(fn, c: Contender) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            if c.compile == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            fn(c)
        sync(device)
        return (time.perf_counter() - start) / args.iters

    warm = {}
    for c in contenders:  # warm-up (allocator, kernels, autotuning, compiling: reported)
        start = time.perf_counter()
        for _ in range(3):
            train_iter(c)
            if not args.no_sample:
                sample_iter(c)
        sync(device)
        warm[c.name] = time.perf_counter() - start
        print(f"warm-up of {c.name}: {warm[c.name]:.1f} s", flush=True)
    for _ in range(args.repeats):
        for c in contenders:
            c.train.append(timed(train_iter, c))
            if not args.no_sample:
                c.sample.append(timed(sample_iter, c))

    from _host import describe_host, host_family

    from gaussdiff.training.loop import resolve_compile, resolve_precision

    def trainers_layout(precision: str) -> torch.memory_format:
        # The trainer's layout for these 32x32 images: channels_last on CUDA, and on CPU in fp32.
        return torch.channels_last if device.type == "cuda" or precision == "fp32" else torch.contiguous_format

    def time_pass_of(emb: str):
        """On CPU the trainer measures bf16 against fp32 on its own network (resolve_precision); here the same
        rule reads this run's paired rounds of gaussdiff's default network (auto conv, the trainer's layout),
        the first pair serving as its warm-up."""
        rounds = {c.precision: iter(c.train) for c in contenders
                  if c.library == "gaussdiff" and c.conv == "auto" and c.time_embedding == emb
                  and c.compile == "off" and c.memory_format == trainers_layout(c.precision)}
        return (lambda p: next(rounds[p])) if {"fp32", "bf16"} <= rounds.keys() and args.repeats > 1 else None

    default = {emb: (resolve_precision("auto", device, time_pass_of(emb), repeats=args.repeats - 1),
                     resolve_compile("auto", device)) for emb in args.embeddings}
    lines = [f"{describe_host(device)}; batch {args.batch}, median of {args.repeats} rounds x {args.iters} iterations",
             "", "| network | params | train img/s | sample ms/step | train ratio | sample ratio | train vs best |",
             "|---|---|---|---|---|---|---|"]
    for c in contenders:
        same = [d for d in contenders if d.library == "diffusers" and d.time_embedding == c.time_embedding]
        ref = next((d for d in same if (d.precision, d.compile) == ("fp32", "off")), None) or next(
            d for d in same if d.precision == c.precision)
        best = min(same, key=lambda d: statistics.median(d.train))
        # Paired: the ratio within each round, then the median over rounds.
        ratio = lambda a, b: f"{statistics.median(r / o for o, r in zip(a, b)):.2f}x" if a and b else "-"  # noqa: E731
        params = sum(p.numel() for p in c.net.parameters())
        sample = f"{1000 * statistics.median(c.sample):.1f}" if c.sample else "-"
        is_default = c.library == "gaussdiff" and c.conv == "auto" and c.memory_format == trainers_layout(
            c.precision) and (c.precision, c.compile) == default[c.time_embedding]
        mark = " **default**" if is_default else ""
        lines.append(f"| {c.name}{mark} | {params / 1e6:.2f}M | {args.batch / statistics.median(c.train):.1f} | "
                     f"{sample} | {ratio(c.train, ref.train)} | {ratio(c.sample, ref.sample)} | "
                     f"{ratio(c.train, best.train)} |")
    table = "\n".join(lines)
    print("\n" + table + "\n\nratio = diffusers' time / this network's time, against diffusers with the same time "
          "embedding in eager fp32 (else in the same precision); vs best: against diffusers' fastest setup in this run")
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
        setups = "-".join(args.setups or args.precision).replace("+", "-")
        family = host_family(device)  # the marker's name and the heading's: one reading of the host
        write_table(args.doc, f"train-speed-{family}-{setups}", table,
                    heading=f"Training on {family} hosts ({setups}), by bench/train_speed.py")


if __name__ == "__main__":
    main()
