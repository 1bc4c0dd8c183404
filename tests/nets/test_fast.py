"""The sampling wrapper computes what the plain network computes: eagerly on CPU, and from replayed CUDA graphs on
CUDA (where the CUDA tests run; they skip elsewhere)."""

import pytest
import torch

from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.nets.fast import Fast

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small_unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                          attention_resolutions=(4,), num_heads=2, **kwargs)).eval()
    with torch.no_grad():  # the output layers start at zero, which would make every comparison trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def inputs(device="cpu", batch=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 8, 8, generator=g, dtype=dtype).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    return x, t


@torch.no_grad()
def test_on_cpu_the_wrapper_is_the_network():
    net = small_unet()
    x, t = inputs()
    expected = net(x, t)
    assert torch.equal(Fast(net)(x, t), expected)  # cuda_graph has no effect on CPU
    assert torch.allclose(Fast(net, channels_last=True)(x, t), expected, atol=1e-5)


@torch.no_grad()
def test_bf16_returns_the_input_dtype_close_to_fp32():
    net = small_unet()
    x, t = inputs()
    out = Fast(net, bf16=True)(x, t)
    assert out.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: about 0.4% of each product, averaged down over the network's sums
    assert (out - net(x, t)).abs().max() < 0.1 * net(x, t).abs().max()


@torch.no_grad()
def test_conditions_pass_through():
    net = small_unet(num_classes=5)
    x, t = inputs()
    y = torch.tensor([0, 1, 4, 2])
    assert torch.equal(Fast(net)(x, t, y=y), net(x, t, y=y))


@CUDA
@pytest.mark.usefixtures("no_tf32")  # a graph replays the kernels of the plain call, but to fp32's tolerance
@torch.no_grad()
def test_replayed_graphs_equal_plain_calls_for_every_shape_and_keep_earlier_outputs():
    net = small_unet(num_classes=5).cuda()
    fast = Fast(net, cuda_graph=True)
    outs = []
    for batch in (4, 4, 3, 4):  # capture, replay, a second shape, replay the first again
        x, t = inputs("cuda", batch)
        y = torch.arange(batch, device="cuda") % 5
        outs.append((fast(x, t, y=y), net(x, t, y=y)))
    assert len(fast._graphs) == 2
    for got, expected in outs:  # an earlier output is not overwritten by later replays
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    x, t = inputs("cuda", 4)
    with torch.enable_grad():  # gradients asked for: the plain network
        assert torch.allclose(fast(x, t, y=torch.zeros(4, dtype=torch.long, device="cuda")),
                              net(x, t, y=torch.zeros(4, dtype=torch.long, device="cuda")), atol=1e-5)


@CUDA
@torch.no_grad()
def test_bf16_channels_last_graphs_on_cuda_close_to_fp32():
    net = small_unet().cuda()
    x, t = inputs("cuda", 8)
    expected = net(x, t)
    got = Fast(net, bf16=True, channels_last=True)(x, t)
    assert got.dtype == torch.float32 and (got - expected).abs().max() < 0.1 * expected.abs().max()


def test_compile_auto_on_cuda_compiles_only_large_runs_with_triton():
    from gaussdiff.nets.fast import COMPILE_PAYS, compile_on_cuda

    assert compile_on_cuda("auto", True, COMPILE_PAYS, triton=True) == "reduce-overhead"
    assert compile_on_cuda("auto", False, COMPILE_PAYS, triton=True) == "default"  # our graphs off: not inductor's
    assert compile_on_cuda("auto", True, COMPILE_PAYS - 1, triton=True) == "off"
    assert compile_on_cuda("auto", True, 10 * COMPILE_PAYS, triton=False) == "off"
    assert compile_on_cuda("default", True, 0, triton=False) == "default"  # asked for: as it is


def test_on_cpu_compile_auto_compiles_when_the_measured_calls_project_a_long_run(monkeypatch):
    """compile auto on CPU compiles the chosen setup iff evaluations / batch x its seconds a call (a fake clock:
    1 s) reach COMPILE_PAYS_SECONDS; torch.compile is replaced by a recorder here (compiling takes 30 s)."""
    from types import SimpleNamespace

    from gaussdiff.nets import fast

    clock, compiled = [0.0], []
    monkeypatch.setattr(fast, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(fast, "MEASURE_FROM", 0.05)  # conftest keeps every other test from measuring
    monkeypatch.setattr(torch, "compile", lambda net, mode, dynamic: compiled.append(mode) or net)
    monkeypatch.setattr(fast, "cpu_flags", lambda: set())
    x, t = inputs(batch=4)
    for evaluations, expected in ((4 * fast.COMPILE_PAYS_SECONDS, "default"), (4 * 599, "off")):
        net = small_unet()
        net.register_forward_hook(lambda *_: clock.__setitem__(0, clock[0] + 1.0))
        wrapped = fast.sampling_network(net, compile="auto", evaluations=int(evaluations))
        with torch.no_grad():
            assert torch.equal(wrapped(x, t), net(x, t))
        assert wrapped.setup.compile == expected and compiled == (["default"] if expected == "default" else [])
        compiled.clear()


def test_on_cpu_a_compile_that_fails_samples_uncompiled(monkeypatch):
    """Inductor needs a C++ compiler on CPU: where compiling fails, the call warns and computes uncompiled."""
    from torch._dynamo.exc import BackendCompilerFailed

    from gaussdiff.nets import fast

    def broken(*args, **kwargs):
        raise BackendCompilerFailed(broken, RuntimeError("InvalidCxxCompiler: No working C++ compiler found"), None)

    monkeypatch.setattr(torch, "compile", lambda net, mode, dynamic: broken)
    net = small_unet()
    wrapped = fast.Fast(net, candidates=[fast.Setup()], compile="default")
    x, t = inputs()
    with torch.no_grad(), pytest.warns(UserWarning, match="sampling uncompiled: .*InvalidCxxCompiler"):
        assert torch.equal(wrapped(x, t), net(x, t))
    assert wrapped.setup == fast.Setup("fp32", "contiguous", "off")


def test_on_cpu_auto_measures_bf16_only_where_it_is_native(monkeypatch):
    from gaussdiff.nets import fast

    net = small_unet()
    monkeypatch.setattr(fast, "cpu_flags", lambda: {"avx2"})  # bf16 would be emulated: only the layouts
    assert fast.sampling_network(net).candidates == (fast.Setup("fp32", "contiguous"),
                                                     fast.Setup("fp32", "channels_last"))
    monkeypatch.setattr(fast, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert len(fast.sampling_network(net).candidates) == 4
    assert fast.sampling_network(net, memory_format="contiguous").candidates == (
        fast.Setup("fp32", "contiguous"), fast.Setup("bf16", "contiguous"))
    plain = fast.sampling_network(net, precision="fp32", memory_format="contiguous")
    assert plain.setup == fast.Setup("fp32", "contiguous")  # nothing to measure
    told = fast.sampling_network(net, precision="bf16", memory_format="channels_last")
    assert told.setup == fast.Setup("bf16", "channels_last")


def test_emulated_bf16_on_a_gpu_is_not_taken_as_native(monkeypatch):
    """torch.cuda.is_bf16_supported() says yes by default for GPUs that only emulate bf16 (V100, T4), where bf16
    autocast runs slower than fp32: ``auto`` must pick fp32 there."""
    from gaussdiff.nets import fast

    emulated_only = lambda including_emulation=True: including_emulation  # noqa: E731  (a T4, say)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated_only)
    assert not fast.bf16_supported(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100, H200
    assert fast.bf16_supported(torch.device("cuda"))


def test_choose_takes_a_change_only_where_it_pays():
    """channels_last must save 5% over the default layout in its precision, and bf16 15% over fp32's best."""
    from gaussdiff.nets.fast import Setup, choose

    f, fl, b, bl = Setup("fp32"), Setup("fp32", "channels_last"), Setup("bf16"), Setup("bf16", "channels_last")
    assert choose({f: 1.0, fl: 0.96}) == f
    assert choose({f: 1.0, fl: 0.94}) == fl
    assert choose({f: 1.0, fl: 0.8, b: 0.7, bl: 0.75}) == fl  # bf16 0.7 > 0.85 * 0.8
    assert choose({f: 1.0, fl: 0.8, b: 0.6, bl: 0.58}) == b  # channels_last within 5% of bf16's default layout
    assert choose({b: 1.0, bl: 0.5}) == bl  # only bf16 measured (--precision bf16)


def test_decide_times_every_candidate_and_then_the_verdict_serves_every_call(monkeypatch):
    """Before its first call the wrapper times each candidate on that call's inputs (a warm-up and the timed calls,
    in turn, outputs thrown away); from then on one setup serves, whatever the input. A fake clock charges each
    call by its setup, so the verdict is known: bf16 in channels_last. Every output is the network's, to bf16's
    rounding."""
    from types import SimpleNamespace

    from gaussdiff.nets import fast

    net = small_unet()
    clock, served = [0.0], []
    cost = {fast.Setup("fp32", "contiguous"): 3.0, fast.Setup("fp32", "channels_last"): 2.0,
            fast.Setup("bf16", "contiguous"): 2.0, fast.Setup("bf16", "channels_last"): 1.0}

    def charge(module, args, out):
        layout = "channels_last" if args[0].is_contiguous(memory_format=torch.channels_last) else "contiguous"
        weights = "channels_last" if module.down.stem.weight.is_contiguous(memory_format=torch.channels_last) \
            else "contiguous"
        assert weights == layout  # the weights follow the layout, or the convolutions would not
        setup = fast.Setup("bf16" if torch.is_autocast_enabled("cpu") else "fp32", layout)
        served.append(setup)
        clock[0] += cost[setup]

    monkeypatch.setattr(fast, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(fast, "MEASURE_FROM", 0.05)  # conftest keeps every other test from measuring
    wrapped = fast.Fast(net, candidates=list(cost))
    assert wrapped.setup is None
    hook = net.register_forward_hook(charge)
    with torch.no_grad():
        outs = [wrapped(*inputs(batch=b)) for b in (4, 4, 3)]
    hook.remove()
    # the first candidate's warm-up and a probe (3 s: above MEASURE_FROM), the others' warm-ups, the timed rounds
    verdict = fast.Setup("bf16", "channels_last")
    assert served == list(cost)[:1] * 2 + list(cost)[1:] + list(cost) * fast.TIMED_CALLS + [verdict] * 3
    assert wrapped.setup == fast.Setup("bf16", "channels_last") and wrapped.seconds == cost
    net.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for out, b in zip(outs, (4, 4, 3)):
            expected = net(*inputs(batch=b))
            assert out.dtype == torch.float32 and out.is_contiguous()
            assert (out - expected).abs().max() < 0.1 * expected.abs().max()
    clock[0], served[:] = 0.0, []
    quick = fast.Fast(net, candidates=list(cost))
    cost[fast.Setup("fp32", "contiguous")] = fast.MEASURE_FROM / 2
    hook = net.register_forward_hook(charge)
    with torch.no_grad():
        quick(*inputs())
    hook.remove()
    assert served == [fast.Setup("fp32", "contiguous")] * 3  # quick calls: nothing else is measured
    given = fast.Fast(net, candidates=list(cost))
    given.use(fast.Setup("fp32", "contiguous"))  # a verdict given: nothing measured, the plain network
    with torch.no_grad():
        assert torch.equal(given(*inputs()), net(*inputs()))


def test_the_wrapper_reads_the_layout_it_is_given_and_restores_it():
    """A network left in channels_last (by an earlier run, say) is served contiguous when that is the setup, and
    goes back to channels_last when the wrapper restores it."""
    from gaussdiff.nets.fast import Fast, Setup

    net = small_unet().to(memory_format=torch.channels_last)
    plain = Fast(net, candidates=[Setup("fp32", "contiguous")])
    x, t = inputs()
    with torch.no_grad():
        plain(x, t)
    conv = net.out[-1].weight  # [3, 16, 3, 3]: the two layouts differ
    assert conv.is_contiguous()
    plain.restore()
    conv = net.out[-1].weight
    assert not conv.is_contiguous() and conv.is_contiguous(memory_format=torch.channels_last)


def test_a_resumed_setup_is_accepted_only_if_the_wrapper_could_have_chosen_it():
    from gaussdiff.nets.fast import Fast, Setup

    measured = Fast(small_unet(), candidates=[Setup("fp32"), Setup("fp32", "channels_last")], compile="auto")
    assert measured.accepts(["fp32", "channels_last", "default"])  # compile auto: compiled or not
    assert not measured.accepts(["bf16", "contiguous", "off"])  # bf16 not among its candidates
    assert not measured.accepts(["fp32", "contiguous"])  # a record of the wrong shape
    plain = Fast(small_unet(), candidates=[Setup("fp32")])
    assert plain.accepts(["fp32", "contiguous", "off"]) and not plain.accepts(["fp32", "contiguous", "default"])
    fixed = Fast(small_unet(), bf16=True, channels_last=True)  # CUDA's kind: its own setup only
    assert fixed.accepts(["bf16", "channels_last", "off"]) and not fixed.accepts(["fp32", "channels_last", "off"])


@CUDA
@pytest.mark.usefixtures("no_tf32")  # inductor may run the convolutions channels_last: other cuDNN kernels
@torch.no_grad()
def test_compiled_reduce_overhead_equals_plain_calls_and_keeps_earlier_outputs():
    net = small_unet().cuda()
    fast = Fast(net, compile="reduce-overhead")
    assert not fast.cuda_graph  # inductor's graphs, not ours
    outs = []
    for batch in (4, 4, 4):
        x, t = inputs("cuda", batch)
        x = x + len(outs)  # a different input each call
        outs.append((fast(x, t), net(x, t)))
    for got, expected in outs:
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
