"""Training and sampling speed of gaussdiff's U-Net against diffusers' UNet2DModel, side by side.

    python bench/train_speed.py [--device cpu|cuda] [--repeats 5] [--iters 5] [--batch 32]

The CIFAR-sized network of the issue: 32x32x3 images, channels 64/128/128, two residual blocks
per level, attention at 16x16, batch 32. Training = forward + MSE backward + AdamW step;
sampling = one no-grad forward at the same batch (one step of any sampler). Each figure is the
median of ``--repeats`` timings of ``--iters`` iterations after a warm-up, both libraries
interleaved in the same process so that machine noise hits both. Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gaussdiff.nets import UNet, UNetConfig


def ours() -> torch.nn.Module:
    net = UNet(UNetConfig(image_size=32, in_channels=3, out_channels=3, channels=64, channel_mult=(1, 2, 2),
                          num_res_blocks=2, attention_resolutions=(16,), num_heads=4))
    return _Wrap(net, lambda m, x, t: m(x, t))


def theirs() -> torch.nn.Module:
    from diffusers import UNet2DModel

    net = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                      block_out_channels=(64, 128, 128),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=32)
    return _Wrap(net, lambda m, x, t: m(x, t).sample)


class _Wrap(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, call) -> None:
        super().__init__()
        self.net, self.call = net, call

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.call(self.net, x, t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    # gaussdiff's trainer offers channels_last (--memory-format); diffusers' default layout is contiguous.
    nets = {
        "gaussdiff UNet": ours().to(device),
        "gaussdiff, channels_last": ours().to(device, memory_format=torch.channels_last),
        "diffusers UNet2DModel": theirs().to(device),
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in nets.items()}
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    inputs = {k: x_cl if "channels_last" in k else x for k in nets}
    t = torch.randint(0, 1000, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def train_iter(name: str) -> None:
        with autocast:
            loss = F.mse_loss(nets[name](inputs[name], t).float(), x)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()

    @torch.no_grad()
    def sample_iter(name: str) -> None:
        with autocast:
            nets[name](inputs[name], t)

    def timed(fn, name: str) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            fn(name)
        sync(device)
        return (time.perf_counter() - start) / args.iters

    train_times = {k: [] for k in nets}
    sample_times = {k: [] for k in nets}
    for name in nets:  # warm-up (allocator, kernels, autotuning)
        for _ in range(2):
            train_iter(name)
            sample_iter(name)
    for _ in range(args.repeats):
        for name in nets:
            train_times[name].append(timed(train_iter, name))
            sample_times[name].append(timed(sample_iter, name))

    print(f"\n{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
          f" batch {args.batch}, {args.precision}, median of {args.repeats} x {args.iters} iterations\n")
    print(f"| {'network':<26} | {'params':>7} | {'train img/s':>11} | {'sample ms/step':>14} |")
    print(f"|{'-' * 28}|{'-' * 9}|{'-' * 13}|{'-' * 16}|")
    speeds = {}
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters())
        tr = statistics.median(train_times[name])
        sa = statistics.median(sample_times[name])
        speeds[name] = (params, args.batch / tr, sa)
        print(f"| {name:<26} | {params / 1e6:6.2f}M | {args.batch / tr:11.1f} | {1000 * sa:14.1f} |")
    p2, s2, m2 = speeds["diffusers UNet2DModel"]
    print()
    for name in ("gaussdiff UNet", "gaussdiff, channels_last"):
        p1, s1, m1 = speeds[name]
        print(f"{name} / diffusers: training {s1 / s2:.2f}x images/s, sampling {m2 / m1:.2f}x faster per step, "
              f"parameters {p1 / p2:.2f}x")


if __name__ == "__main__":
    main()
