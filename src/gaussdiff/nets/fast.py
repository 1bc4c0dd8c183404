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
network is called directly (compiled or not), without graphs of ours.

On CPU the fastest arithmetic and memory layout depend on the host and the network: on a 2-core Zen 5 with
AVX-512 BF16 the Fashion-MNIST main job's network at batch 256 took 0.96 s a call in fp32, 0.82 s in
channels_last and 0.41 s under bf16 autocast (but 1.4 s in bf16 and channels_last), while the digits network
gained from neither (docs/speed.md). So :class:`Fast` can be given several :class:`Setup` candidates: before its
first call it times each of them on that call's inputs (a warm-up and :data:`TIMED_CALLS` timed calls each, in
turn, outputs thrown away) and keeps the fastest by the margins of :func:`choose` for every later call, so that
the samples are those of one setup, whichever it is (all compute the same function, to fp32's or bf16's
rounding).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn


class CPUInfo(NamedTuple):
    """The CPU as Linux's /proc/cpuinfo names it: ``model`` ("AMD EPYC"), ``family`` ("family 26 model 2") and
    the feature ``flags`` ("avx512_bf16", "amx_bf16", ...)."""

    model: str
    family: str
    flags: set[str]


def cpu_info() -> CPUInfo:
    """The first CPU's entry in /proc/cpuinfo; elsewhere the platform's name and no flags."""
    import platform

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return CPUInfo(platform.processor() or platform.machine(), "", set())
    if "flags" not in fields and "Features" in fields:  # an Arm CPU: its implementer and part name the core
        return CPUInfo(fields.get("model name", platform.machine()),
                       f"implementer {fields.get('CPU implementer', '?')} part {fields.get('CPU part', '?')}",
                       set(fields["Features"].split()))
    return CPUInfo(fields.get("model name", "unknown CPU"),
                   f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}",
                   set(fields.get("flags", "").split()))


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not)."""
    return cpu_info().flags


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on native bf16 arithmetic here: CUDA that supports it, or a CPU with AMX or
    AVX-512 BF16 (elsewhere oneDNN emulates bf16, slower than fp32)."""
    if device.type == "cuda":
        # not emulated bf16 (a V100's or T4's), which runs slower than fp32
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


CompileMode = Literal["auto", "off", "default", "reduce-overhead", "max-autotune-no-cudagraphs"]
"""``torch.compile``'s modes, ``off``, and ``auto`` (resolved where it is used: for training by
``training.loop.resolve_compile``, for sampling by :func:`sampling_network` and :meth:`Fast.decide`)."""

SamplePrecision = Literal["auto", "fp32", "bf16"]
SampleLayout = Literal["auto", "contiguous", "channels_last"]


class Setup(NamedTuple):
    """How one network call runs: its arithmetic (bf16 autocast or fp32), its activations' memory layout, and
    whether it is compiled (``torch.compile``'s mode, or ``off``)."""

    precision: Literal["fp32", "bf16"] = "fp32"
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"
    compile: CompileMode = "off"

    @property
    def arithmetic(self) -> str:
        """What a measurement compares, precision and layout: ``bf16/contiguous``."""
        return f"{self.precision}/{self.memory_format}"


BF16_PAYS = 0.85
"""A measured choice takes bf16 on CPU (for sampling here, for training in ``--precision auto``) only if it takes at
most this fraction of fp32's time: bf16 rounds each product to 8 bits of mantissa, which a small gain does not
buy."""

LAYOUT_PAYS = 0.95
"""A measured choice takes channels_last only if its calls take at most this fraction of the default layout's (in
the same precision): a choice within the timing noise could as well be slower."""

TIMED_CALLS = 2
"""Timed calls per candidate, after its warm-up call, when :class:`Fast` measures (the least of them counts)."""


MEASURE_FROM = 0.05
"""Seconds of a call (of the first candidate, after a warm-up) under which :meth:`Fast.decide` keeps the first
candidate without measuring the rest: a whole 50-step batch then takes under 2.5 s, the gain is as small as the
timing noise, and a choice within the noise would make the samples of small runs differ run to run."""


def choose(seconds: dict[Setup, float]) -> Setup:
    """The candidate to keep, from each one's seconds a call: in each precision channels_last if it takes at most
    :data:`LAYOUT_PAYS` of the contiguous layout's time (or is the only layout measured), then bf16's best if it
    takes at most :data:`BF16_PAYS` of fp32's best (or fp32 was not measured)."""
    best = {}
    for precision in ("fp32", "bf16"):
        contiguous, last = seconds.get(Setup(precision, "contiguous")), seconds.get(Setup(precision, "channels_last"))
        if last is not None and (contiguous is None or last <= LAYOUT_PAYS * contiguous):
            best[precision] = Setup(precision, "channels_last")
        elif contiguous is not None:
            best[precision] = Setup(precision, "contiguous")
    if "bf16" in best and ("fp32" not in best or seconds[best["bf16"]] <= BF16_PAYS * seconds[best["fp32"]]):
        return best["bf16"]
    return best["fp32"]


def describe(setup: Setup, seconds: dict[Setup, float]) -> str:
    """``setup`` in words, with what was measured to choose it, if anything, and the margins the choice asks:
    ``bf16, contiguous (measured, s a call: fp32/contiguous 2.21, ...; bf16 at <= 0.85x fp32's)``."""
    words = f"{setup.precision}, {setup.memory_format}"
    if setup.compile != "off":
        words += f", compiled ({setup.compile})"
    if seconds:
        # The margins :func:`choose` asks, so that a setup kept beside a faster-looking one reads as intended.
        rules = []
        if any(s.memory_format == "channels_last" for s in seconds):
            rules.append(f"channels_last taken at <= {LAYOUT_PAYS:g}x contiguous's time")
        if any(s.precision == "bf16" for s in seconds) and any(s.precision == "fp32" for s in seconds):
            rules.append(f"bf16 at <= {BF16_PAYS:g}x fp32's")
        margins = f"; {', '.join(rules)}" if rules else ""
        words += f" (measured, s a call: {', '.join(f'{s.arithmetic} {v:.3g}' for s, v in seconds.items())}{margins})"
    return words


class Fast(nn.Module):
    """``net`` for sampling: under bf16 autocast if ``bf16``, in channels_last if ``channels_last`` (4-d inputs),
    and replayed from CUDA graphs if ``cuda_graph`` and the input is on CUDA.

    ``x_t: [B, C, H, W]``, ``t: [B]`` and tensor conditions ``[B, ...]`` -> ``net``'s output ``[B, C', H, W]``
    in ``x_t``'s dtype. One graph is captured per (condition names, shapes, dtypes, devices) of the inputs; the
    autocast state inside is this wrapper's own, whatever the caller's. Converts ``net`` in place to the layout
    it serves in (channels_last when ``channels_last``; on CPU the chosen setup's, switching while it measures);
    :meth:`restore` puts back the layout ``net`` came in.

    On CPU, given ``candidates``, calls are served by the one :meth:`decide` measures fastest on the first call's
    inputs (or the one given to :meth:`use`); ``bf16`` and ``channels_last`` then serve CUDA calls only. ``compile``
    ``auto`` there compiles the chosen setup if the run's projected sampling time, ``evaluations`` (the images the
    network will see, summed over its calls) / the batch x the measured seconds a call, is at least
    :data:`COMPILE_PAYS_SECONDS`.
    """

    def __init__(self, net: nn.Module, bf16: bool = False, channels_last: bool = False, cuda_graph: bool = True,
                 compile: CompileMode = "off", warmup: int = 2, candidates: Sequence[Setup] = (),
                 evaluations: int = 0) -> None:
        super().__init__()
        self.net = net
        self.bf16, self.channels_last, self.warmup = bf16, channels_last, warmup
        self.compile = compile
        # inductor's cudagraphs replace ours
        self.cuda_graph = cuda_graph and compile not in ("reduce-overhead", "max-autotune")
        # (mode, compiled net or None): a tuple, so that nn.Module does not register the compiled net as a child
        self._compiled: tuple[str, Any] = ("off", None)
        if compile not in ("off", "auto"):
            self._compile(compile)
        self.candidates, self.evaluations = tuple(candidates), evaluations
        self.verdict: Setup | None = None
        """The setup that serves CPU calls, once measured (:meth:`decide`) or given (:meth:`use`)."""
        if len(self.candidates) == 1 and compile != "auto":  # nothing to measure
            self.verdict = self.candidates[0]._replace(compile=compile)
        self.seconds: dict[Setup, float] = {}
        """What :meth:`decide` measured: the least seconds of a call of each candidate (empty if it measured none)."""
        # Converted at the first call, not here, so that a caller failing before it leaves ``net`` untouched.
        self._layout = self._original = layout_of(net)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Tensor, ...], Tensor]] = {}
        self._pool = None

    @property
    def setup(self) -> Setup | None:
        """How a call runs: the fixed setup (CUDA), the verdict (CPU), or None before the measuring."""
        if not self.candidates:
            return Setup("bf16" if self.bf16 else "fp32", "channels_last" if self.channels_last else "contiguous",
                         self.compile)
        return self.verdict

    def accepts(self, setup: Sequence[str]) -> bool:
        """Whether ``setup`` (a resumed run's record) is one this wrapper could have chosen: its fixed setup (CUDA),
        or one of its candidates' precision and layout, compiled as its ``compile`` allows (``off`` or ``default``
        under ``auto``)."""
        if len(setup) != 3:
            return False
        if not self.candidates:
            return tuple(setup) == self.setup
        compiles = ("off", "default") if self.compile == "auto" else (self.compile,)  # what decide could pick
        return tuple(setup[:2]) in [c[:2] for c in self.candidates] and setup[2] in compiles

    def use(self, setup: Sequence[str]) -> None:
        """Serve CPU calls with ``setup`` without measuring (a resumed run's, or another process's verdict); a
        wrapper without candidates (CUDA's) keeps its own."""
        if self.candidates:
            self.verdict = Setup(*setup)
            self._compile(self.verdict.compile)

    def restore(self) -> None:
        """Put ``net`` back in the memory layout it came in."""
        self._to_layout(self._original)

    def _compile(self, mode: str) -> None:
        if mode != self._compiled[0]:
            self._compiled = (mode, None if mode == "off" else torch.compile(self.net, mode=mode, dynamic=False))

    @torch.no_grad()
    def decide(self, x_t: Tensor, t: Tensor, **cond: Any) -> Setup:
        """Time every candidate on these inputs, interleaved (one warm-up call each, then :data:`TIMED_CALLS`
        rounds; the least time of each counts), and keep :func:`choose`'s pick; a first candidate faster than
        :data:`MEASURE_FROM` a call (its warm-up and one probe) is kept unmeasured. Without candidates, the fixed
        setup. Nothing is compiled here: the next call compiles the setup chosen."""
        if not self.candidates:
            return self.setup
        first = self.candidates[0]
        self._to_layout(first.memory_format)
        self._eager(x_t, t, cond, first, compiled=False)
        start = time.perf_counter()
        self._eager(x_t, t, cond, first, compiled=False)
        verdict, call = first, time.perf_counter() - start
        if len(self.candidates) > 1 and call >= MEASURE_FROM:
            seconds: dict[Setup, float] = {}
            for timed in [False] + [True] * TIMED_CALLS:
                for setup in self.candidates if timed else self.candidates[1:]:  # the probe warmed the first
                    self._to_layout(setup.memory_format)
                    start = time.perf_counter()
                    self._eager(x_t, t, cond, setup, compiled=False)
                    if timed:
                        seconds[setup] = min(seconds.get(setup, float("inf")), time.perf_counter() - start)
            verdict, self.seconds = choose(seconds), seconds
            call = seconds[verdict]
        mode = self.compile
        if mode == "auto":  # a one-time cost per batch shape, repaid only by a long run
            projected = self.evaluations / max(len(x_t), 1) * call
            mode = "default" if projected >= COMPILE_PAYS_SECONDS else "off"
        self.use(verdict._replace(compile=mode))
        return self.verdict

    def _to_layout(self, memory_format: str) -> None:
        # The weights too: a convolution runs channels_last if its input or its weight is.
        if memory_format != self._layout:
            self.net.to(memory_format=torch.channels_last if memory_format == "channels_last" else
                        torch.contiguous_format)
            self._layout = memory_format

    def _serve(self, x_t: Tensor, t: Tensor, cond: dict[str, Any]) -> Tensor:
        """A CPU call in the chosen setup; a compile that fails (no C++ compiler, say) warns and computes the
        same function uncompiled from then on."""
        self._to_layout(self.verdict.memory_format)
        try:
            return self._eager(x_t, t, cond, self.verdict).to(x_t.dtype).contiguous()
        except torch._dynamo.exc.BackendCompilerFailed as e:
            cause = str(getattr(e, "inner_exception", e)).strip()  # the compiler's own words, not dynamo's wrapper
            warnings.warn(f"torch.compile failed, sampling uncompiled: {cause.splitlines()[0] if cause else e}")
            self.use(self.verdict._replace(compile="off"))
            return self._eager(x_t, t, cond, self.verdict).to(x_t.dtype).contiguous()

    def _eager(self, x_t: Tensor, t: Tensor, cond: dict[str, Any], setup: Setup | None = None,
               compiled: bool = True) -> Tensor:
        bf16 = self.bf16 if setup is None else setup.precision == "bf16"
        channels_last = self.channels_last if setup is None else setup.memory_format == "channels_last"
        if channels_last and x_t.dim() == 4:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        if self.compile in ("reduce-overhead", "max-autotune") and x_t.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the last call's outputs were copied out
        # No cast cache: weights cast while warming up must not outlive a capture that reads them.
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            call = self._compiled[1] if compiled and self._compiled[1] is not None else self.net
            return call(x_t, t, **cond)

    def forward(self, x_t: Tensor, t: Tensor, **cond: Any) -> Tensor:
        dtype = x_t.dtype
        if self.candidates and not x_t.is_cuda:
            if self.verdict is None:
                self.decide(x_t, t, **cond)
            return self._serve(x_t, t, cond)  # the first serve compiles, if chosen: a failure falls back here
        self._to_layout("channels_last" if self.channels_last else "contiguous")
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


COMPILE_PAYS_SECONDS = 600.0
"""Projected seconds of sampling from which ``compile auto`` compiles on CPU. Measured on a 2-core Zen 5 with AVX-512
BF16 (bench/sample_speed.py, docs/speed.md): compiled, the CIFAR-sized U-Net's calls in its measured setup took
0.87-0.89 of the uncompiled ones, and compiling took 32-35 s a batch shape on a cold cache; a run has two shapes
(its full chunks and the last), so compiling breaks even at about 550 s of sampling and pays beyond."""


def layout_of(net: nn.Module) -> Literal["contiguous", "channels_last"]:
    """The memory layout of ``net``'s first 4-d weight whose layouts differ (contiguous if it has none): a weight of
    one input channel, or a 1x1 kernel, is contiguous in both."""
    for p in net.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return "contiguous" if p.is_contiguous() else "channels_last"
    return "contiguous"


def compile_on_cuda(compile: CompileMode, cuda_graph: bool, evaluations: int, triton: bool) -> CompileMode:
    """``compile`` for sampling on CUDA: ``auto`` is ``reduce-overhead`` (``default`` without ``cuda_graph``, whose
    graphs it would make) with Triton for a run of at least :data:`COMPILE_PAYS` image ``evaluations``, else
    ``off``; any other mode as it is."""
    if compile != "auto":
        return compile
    return ("reduce-overhead" if cuda_graph else "default") if triton and evaluations >= COMPILE_PAYS else "off"


def sampling_network(net: nn.Module, precision: SamplePrecision = "auto", cuda_graph: bool = True,
                     compile: CompileMode = "off", evaluations: int = 0,
                     memory_format: SampleLayout = "auto") -> Fast:
    """``net`` as sampling calls it by default. On CUDA: bf16 autocast for ``precision`` ``bf16``, or ``auto`` where
    CUDA has bf16; channels_last unless ``memory_format`` is ``contiguous``; CUDA graphs unless ``cuda_graph`` is
    False; ``torch.compile`` as :func:`compile_on_cuda` resolves ``compile``. ``evaluations``: the images the
    network will see, summed over its calls (twice the samples' under classifier-free guidance). On CPU each
    ``auto`` of ``precision`` and ``memory_format`` is measured on the run's first call (:class:`Fast`'s
    candidates; bf16 only where the CPU computes it natively, :func:`bf16_supported`), since which is faster
    depends on the host, the network and the batch, and ``compile`` ``auto`` compiles the chosen setup when the
    measured call time projects a run of at least :data:`COMPILE_PAYS_SECONDS`. ``net`` is converted in place to
    the layout chosen (:meth:`Fast.restore` undoes it)."""
    device = next(net.parameters()).device
    cuda = device.type == "cuda"
    if cuda:
        bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
        triton = importlib.util.find_spec("triton") is not None
        return Fast(net, bf16=bf16, channels_last=memory_format != "contiguous", cuda_graph=cuda_graph,
                    compile=compile_on_cuda(compile, cuda_graph, evaluations, triton))
    if precision == "auto":
        precisions = ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
    else:
        precisions = [precision]
    layouts = ["contiguous", "channels_last"] if memory_format == "auto" else [memory_format]
    candidates = [Setup(p, m) for p in precisions for m in layouts]
    first = candidates[0]
    return Fast(net, bf16=first.precision == "bf16", channels_last=first.memory_format == "channels_last",
                cuda_graph=cuda_graph, compile=compile, candidates=candidates, evaluations=evaluations)
