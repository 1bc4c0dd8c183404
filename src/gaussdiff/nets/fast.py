"""A network called the fast way for sampling, with the same call ``net(x_t, t, **cond)``.

A sampling step at small batch on a GPU is bound by kernel launches, not arithmetic: the CIFAR-sized
U-Net launches a few hundred kernels a forward pass, each a few microseconds of work. :class:`Fast`
records the whole forward pass once per input signature as a CUDA graph (``torch.cuda.CUDAGraph``,
PyTorch's own capture) and replays it with one launch; it optionally runs the network under bf16
autocast in channels_last, where tensor cores do the convolutions, and compiled by ``torch.compile``,
whose fused kernels (a group norm and its activation in one pass, say) take a third of the eager
kernels' time at batch 256 on an H200 (diffusers' compiled network against eager ones, docs/speed.md;
gaussdiff's compiled sampling is not timed yet), at a one-time cost of about 25 s a batch shape;
``reduce-overhead`` then replays inductor's own CUDA graphs instead of ours. Samplers see a plain model: the
output comes back in the input's dtype and layout, a fresh tensor each call (a multistep solver keeps
earlier outputs, which a replay would otherwise overwrite).

Captured graphs hold static input and output buffers; a call copies its inputs in, replays, and
copies the output out. With gradients enabled (classifier guidance differentiates through its own
network, not this one, but a caller might), on CPU, or for conditions that are not tensors, the
network is called eagerly.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import torch
from torch import Tensor, nn


class Fast(nn.Module):
    """``net`` for sampling: under bf16 autocast if ``bf16``, in channels_last if ``channels_last`` (4-d inputs),
    and replayed from CUDA graphs if ``cuda_graph`` and the input is on CUDA.

    ``x_t: [B, C, H, W]``, ``t: [B]`` and tensor conditions ``[B, ...]`` -> ``net``'s output ``[B, C', H, W]``
    in ``x_t``'s dtype. One graph is captured per (condition names, shapes, dtypes, devices) of the inputs; the
    autocast state inside is this wrapper's own, whatever the caller's. Converts ``net`` to channels_last in
    place when ``channels_last``.
    """

    def __init__(self, net: nn.Module, bf16: bool = False, channels_last: bool = False, cuda_graph: bool = True,
                 compile: str = "off", warmup: int = 2) -> None:
        super().__init__()
        self.net = net
        self.bf16, self.channels_last, self.warmup = bf16, channels_last, warmup
        self.compile = compile
        # inductor's cudagraphs replace ours
        self.cuda_graph = cuda_graph and compile not in ("reduce-overhead", "max-autotune")
        self._call = net if compile == "off" else torch.compile(net, mode=compile, dynamic=False)
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...], Tensor]] = {}
        self._pool = None

    def _eager(self, x_t: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        if self.channels_last and x_t.dim() == 4:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        if self.compile in ("reduce-overhead", "max-autotune") and x_t.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the last call's outputs were copied out
        # No cast cache: weights cast while warming up must not outlive a capture that reads them.
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            return self._call(x_t, t, **cond)

    def forward(self, x_t: Tensor, t: Tensor, **cond: Any) -> Tensor:
        dtype = x_t.dtype
        graphable = (self.cuda_graph and x_t.is_cuda and not torch.is_grad_enabled()
                     and all(isinstance(v, Tensor) for v in cond.values()))
        if not graphable:  # a copy: inductor's graphs reuse their output buffers
            return self._eager(x_t, t, cond).to(dtype, copy=self.compile != "off").contiguous()
        keys = sorted(cond)
        inputs = (x_t, t.expand(len(x_t)) if t.dim() == 0 else t, *(cond[k] for k in keys))
        signature = (tuple(keys), *((v.shape, v.dtype, v.device) for v in inputs))
        entry = self._graphs.get(signature)
        if entry is None:
            try:
                entry = self._capture(inputs, keys)
            except RuntimeError as e:  # a network that syncs with the host cannot be captured: call it plainly
                warnings.warn(f"CUDA graph capture failed, sampling with plain calls: {str(e).splitlines()[0]}")
                torch.cuda.synchronize(x_t.device)
                self.cuda_graph = False
                return self._eager(x_t, t, cond).to(dtype).contiguous()
            self._graphs[signature] = entry
        graph, static, out = entry
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
        graph.replay()
        return out.to(dtype, copy=True).contiguous()

    def _capture(self, inputs: tuple[Tensor, ...], keys: list[str]) -> tuple:
        """Warm up on a side stream (cuDNN and cuBLAS pick their algorithms and workspaces outside the capture,
        as PyTorch's CUDA-graph notes require), then record one forward pass into a graph."""
        static = tuple(v.detach().clone() for v in inputs)
        call = lambda: self._eager(static[0], static[1], dict(zip(keys, static[2:])))  # noqa: E731
        stream = torch.cuda.Stream(device=static[0].device)
        stream.wait_stream(torch.cuda.current_stream(static[0].device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                call()
        torch.cuda.current_stream(static[0].device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # graphs of several shapes share one memory pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = call()
        return graph, static, out


COMPILE_PAYS = 500_000
"""Image evaluations (images x network calls each) from which ``compile auto`` compiles a sampling run. An estimate
from bench/sample_speed.py on an H200: compiling took 25-32 s a batch shape, and diffusers' compiled network took
2 ms less a call than gaussdiff's graphed eager one at batch 16, 12 ms less at batch 256, so compiling would pay
from about 200k-550k image evaluations (FID@10k at 50 steps is 500k)."""


def sampling_network(net: nn.Module, precision: str = "auto", cuda_graph: bool = True, compile: str = "off",
                     evaluations: int = 0) -> Fast:
    """``net`` as sampling calls it by default: bf16 autocast for ``precision`` ``bf16``, or ``auto`` on CUDA with
    bf16 (fp32 elsewhere: on CPU bf16 pays only for large networks on some hosts); channels_last on CUDA, where
    its convolutions are faster; CUDA graphs on CUDA unless ``cuda_graph`` is False; ``torch.compile`` in mode
    ``compile``, where ``auto`` is ``reduce-overhead`` (``default`` without ``cuda_graph``, whose graphs it
    would make) on CUDA with Triton for a run of at least :data:`COMPILE_PAYS` image ``evaluations``, else
    ``off``. ``net`` is converted to channels_last in place on CUDA."""
    device = next(net.parameters()).device
    cuda = device.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and cuda and torch.cuda.is_bf16_supported())
    if compile == "auto":
        triton = importlib.util.find_spec("triton") is not None
        mode = "reduce-overhead" if cuda_graph else "default"
        compile = mode if cuda and triton and evaluations >= COMPILE_PAYS else "off"
    return Fast(net, bf16=bf16, channels_last=cuda, cuda_graph=cuda_graph, compile=compile)
