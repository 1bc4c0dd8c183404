"""Sampling speed: images/s of a whole DDIM run, gaussdiff against diffusers' UNet2DModel, side by side.

    python bench/sample_speed.py [--device cuda] [--batch 16 256] [--steps 50] [--repeats 5] [--doc docs/speed.md]

The CIFAR-sized network of bench/train_speed.py (scale-shift time embedding in both libraries, the same
architecture and parameter count), random weights, a 50-step DDIM run from the same x_T. Contenders:

- gaussdiff, eager fp32: the plain network;
- gaussdiff, default: what ``gaussdiff sample`` and ``eval`` call for runs under 500k image evaluations
  (``nets.fast.sampling_network``: on CUDA bf16 autocast, channels_last, each step replayed from a captured CUDA
  graph; on CPU fp32 or bf16 (where native), contiguous or channels_last, whichever its first batch measures
  fastest, the measuring being part of the warm-up);
- gaussdiff, default for FID@10k: what they call for a run of 500k image evaluations (``--compile auto``
  compiles it: on CUDA in ``reduce-overhead`` mode, on CPU where the measured call time projects 600 s or more);
- diffusers, eager fp32: ``UNet2DModel`` driven by ``DDIMScheduler``, as its pipeline does;
- diffusers, bf16 + compile: the model cast to bf16 and ``torch.compile(mode="reduce-overhead", fullgraph=True)``,
  diffusers' documented fast inference setup (compiling is reported, not timed); on CPU ``mode="default"`` (no
  CUDA graphs there), beside bf16 uncompiled and fp32 compiled, since which is fastest depends on the CPU
  (the bf16 ones only where the CPU computes bf16 natively: emulated, it is many times slower than fp32).

Each round runs every contender once per batch size; ratios are paired within rounds (median over rounds),
against diffusers in eager fp32 and against diffusers' fastest contender. A contender that fails prints its
error and is left out.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.nets.fast import bf16_supported, describe, sampling_network
from train_speed import ours, theirs


def gaussdiff_runner(net: torch.nn.Module, steps: int):
    diffusion = GaussianDiffusion(NoiseSchedule.linear(1000))

    def run(x_T: torch.Tensor) -> torch.Tensor:
        return sample(net, diffusion, x_T.shape, sampler="ddim", steps=steps, x_T=x_T, progress=False,
                      spacing="trailing")
    run.net = net
    return run


def diffusers_runner(unet: torch.nn.Module, steps: int, dtype: torch.dtype, compile_mode: str | None):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    unet = unet.to(dtype)
    call = unet if compile_mode is None else torch.compile(unet, mode=compile_mode, fullgraph=True)

    @torch.no_grad()
    def run(x_T: torch.Tensor) -> torch.Tensor:
        x = x_T
        for t in scheduler.timesteps:
            if compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            eps = call(x.to(dtype), t.to(x.device).expand(len(x))).sample.float()
            x = scheduler.step(eps, t, x).prev_sample
        return x
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--doc", type=Path, help="also write the table into this page (docs/speed.md)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled contenders (compiling "
                        "takes 25-35 s a batch size)")
    args = parser.parse_args()
    from _doc import check_page, write_table

    check_page(args.doc)  # before minutes of measuring
    device = torch.device(args.device)
    torch.manual_seed(0)
    mine, theirs_net = ours(True, "auto").net.to(device).eval(), theirs(True).net.to(device).eval()
    contenders = {
        "gaussdiff, eager fp32": lambda: gaussdiff_runner(mine, args.steps),
        "gaussdiff, default": lambda: gaussdiff_runner(sampling_network(copy.deepcopy(mine)), args.steps),
        "diffusers, eager fp32": lambda: diffusers_runner(theirs_net, args.steps, torch.float32, None),
    }
    if not args.no_compile:  # what eval calls for FID@10k at 50 steps (500k image evaluations): compiled
        contenders["gaussdiff, default for FID@10k"] = lambda: gaussdiff_runner(
            sampling_network(copy.deepcopy(mine), compile="auto", evaluations=500_000), args.steps)
    if device.type == "cuda" and not args.no_compile:
        fast = copy.deepcopy(theirs_net)
        contenders["diffusers, bf16 + compile reduce-overhead"] = lambda: diffusers_runner(
            fast, args.steps, torch.bfloat16, "reduce-overhead")
    elif device.type == "cpu":  # diffusers' fast setups on a CPU: bf16 weights, compiled (inductor's C++ kernels)
        # Without native bf16 (AVX2 only) oneDNN emulates it: one 10-step run of batch 32 took 645 s on a Zen 3,
        # 30x its fp32 time, so it cannot be diffusers' fastest setup and is left out there.
        bf16 = bf16_supported(device)
        if bf16:
            contenders["diffusers, bf16"] = lambda: diffusers_runner(copy.deepcopy(theirs_net), args.steps,
                                                                     torch.bfloat16, None)
        else:
            print("diffusers' bf16 setups left out: this CPU has no native bf16 (AMX or AVX-512 BF16)")
        if not args.no_compile:
            contenders["diffusers, compile"] = lambda: diffusers_runner(copy.deepcopy(theirs_net), args.steps,
                                                                        torch.float32, "default")
            if bf16:
                contenders["diffusers, bf16 + compile"] = lambda: diffusers_runner(
                    copy.deepcopy(theirs_net), args.steps, torch.bfloat16, "default")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[tuple[str, int], list[float]] = {}
    runners = {}  # one per contender and batch size: gaussdiff's default measures its setup on its first batch
    for name, build in contenders.items():
        try:
            for batch in args.batch:
                runner = build()
                x_T = torch.randn(batch, 3, 32, 32, device=device, generator=torch.Generator(device).manual_seed(0))
                start = time.perf_counter()
                runner(x_T)
                runner(x_T)
                sync()
                print(f"warm-up of {name} at batch {batch}: {time.perf_counter() - start:.1f} s", flush=True)
                if name.startswith("gaussdiff, default") and device.type == "cpu":
                    print(f"  it chose {describe(runner.net.setup, runner.net.seconds)}", flush=True)
                runners[name, batch] = runner
        except Exception as e:  # a contender that cannot run here is reported, not fatal
            print(f"{name}: failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", flush=True)
    names = list(dict.fromkeys(name for name, _ in runners))
    for _ in range(args.repeats):
        for batch in args.batch:
            x_T = torch.randn(batch, 3, 32, 32, device=device, generator=torch.Generator(device).manual_seed(0))
            for name in names:
                sync()
                start = time.perf_counter()
                runners[name, batch](x_T)
                sync()
                times.setdefault((name, batch), []).append(time.perf_counter() - start)

    from _host import describe_host, host_family

    lines = [f"{describe_host(device)}; DDIM, {args.steps} steps, median of {args.repeats} rounds", "",
             "| sampling | batch | images/s | ms/step | vs diffusers eager fp32 | vs diffusers' best |",
             "|---|---|---|---|---|---|"]
    for batch in args.batch:
        theirs_names = [n for n in names if n.startswith("diffusers") and (n, batch) in times]
        best = min(theirs_names, key=lambda n: statistics.median(times[n, batch]))
        for name in [n for n in names if (n, batch) in times]:
            mine_t = times[name, batch]
            ratio = lambda ref: statistics.median(r / o for o, r in zip(mine_t, times[ref, batch]))  # noqa: E731
            eager = ratio("diffusers, eager fp32") if ("diffusers, eager fp32", batch) in times else float("nan")
            lines.append(f"| {name} | {batch} | {batch / statistics.median(mine_t):.0f} | "
                         f"{1000 * statistics.median(mine_t) / args.steps:.2f} | {eager:.2f}x | {ratio(best):.2f}x |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.doc:
        family = host_family(device)  # the marker's name and the heading's: one reading of the host
        write_table(args.doc, f"sample-speed-{family}", table,
                    heading=f"Sampling on {family} hosts, by bench/sample_speed.py")


if __name__ == "__main__":
    main()
