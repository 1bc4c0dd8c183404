"""What a benchmark ran on, written beside every figure: the CPU model and vector extensions (or the GPU), the
torch version and the thread count; and the host family whose table in docs/speed.md a run updates."""

from __future__ import annotations

import torch

from gaussdiff.nets.fast import cpu_info


def extensions(flags: set[str]) -> list[str]:
    named = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")]
    return [name for flag, name in named if flag in flags]


def describe_host(device: torch.device) -> str:
    """One line: the device, its model and extensions, torch and threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    name, family, flags = cpu_info()
    ext = extensions(flags)
    missing = "" if "AMX" in ext else ", no AMX"
    return (f"{name} ({family}; {', '.join(ext) or 'no AVX2'}{missing}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def host_family(device: torch.device) -> str:
    """A short name of the kind of host whose table a run replaces: cpu-amx, cpu-avx512-bf16, cpu-avx512,
    cpu-avx2 (or cpu), or cuda-<GPU>."""
    if device.type == "cuda":
        return "cuda-" + torch.cuda.get_device_name(device).lower().replace(" ", "-")
    ext = extensions(cpu_info()[2])
    for name, family in (("AMX", "cpu-amx"), ("AVX-512 BF16", "cpu-avx512-bf16"), ("AVX-512", "cpu-avx512"),
                         ("AVX2", "cpu-avx2")):
        if name in ext:
            return family
    return "cpu"
