"""The optimisation step every trainer shares: clipping, the EMA's warm-up, the schedules, its state."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from gaussdiff.training.loop import OptimConfig, Optimization, ema_with_warmup

CPU = torch.device("cpu")


def test_gradients_are_clipped_to_the_global_norm_asked_for():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optim = Optimization(model, OptimConfig(lr=1e-3, warmup=0, grad_clip=1.0, ema_decay=None), 10, CPU)
    norm, applied = optim.step(1000.0 * model(torch.randn(8, 4)).pow(2).sum())
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): the clipped norm is 1 up to that and float32 rounding.
    assert applied and norm > 1.0 and abs(after - 1.0) < 1e-5, (norm, after)
    # Without clipping the norm is still measured (to catch a non-finite gradient), and the gradient kept.
    unclipped = Optimization(model, OptimConfig(grad_clip=None, ema_decay=None), 10, CPU)
    norm, applied = unclipped.step(1000.0 * model(torch.randn(8, 4)).pow(2).sum())
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    assert applied and norm > 1.0 and math.isclose(after, norm, rel_tol=1e-5)


def test_a_non_finite_gradient_is_never_applied():
    """A NaN in the loss (or an inf in a gradient) leaves the weights, the optimizer's moments and the EMA as
    they were; the learning-rate schedule still advances, so the rate stays a function of the step."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optim = Optimization(model, OptimConfig(lr=0.1, warmup=2, ema_decay=0.9), 10, CPU)
    x = torch.randn(8, 4)
    optim.step(model(x).pow(2).sum())
    weights = copy.deepcopy(model.state_dict())
    ema = copy.deepcopy(optim.ema.state_dict())
    moments = copy.deepcopy(optim.optimizer.state_dict()["state"])
    for bad in (float("nan"), float("inf")):
        norm, applied = optim.step(model(x).pow(2).sum() * bad)
        assert not applied and not math.isfinite(norm)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, ema[k]) for k, v in optim.ema.state_dict().items())
    after = optim.optimizer.state_dict()["state"]
    assert all(torch.equal(after[i]["exp_avg"], moments[i]["exp_avg"]) for i in moments)
    assert optim.scheduler.last_epoch == 3
    norm, applied = optim.step(model(x).pow(2).sum())
    assert applied and math.isfinite(norm) and not torch.equal(model.weight, weights["weight"])


def test_a_first_update_not_applied_does_not_warn():
    """The schedule advancing over a skipped update is the intent (above); torch's warning that the scheduler
    stepped before the optimizer, which a skipped first update (fp16's first overflow, a NaN) would raise, is not
    shown to the user. Other warnings still are."""
    model = nn.Linear(4, 3)
    optim = Optimization(model, OptimConfig(lr=0.1, warmup=2), 10, CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, applied = optim.step(model(torch.randn(8, 4)).sum() * float("nan"))
        warnings.warn("still shown", UserWarning)
    assert not applied and [str(w.message) for w in caught] == ["still shown"]


def test_the_ema_follows_the_weights_with_its_warm_up():
    """AveragedModel takes the weights of the first step as they are; after step n + 1 the EMA moves
    (1 - d) of the way to the new weights, d = min(decay, (1 + n) / (10 + n)): 9/11 at the second step."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optim = Optimization(model, OptimConfig(lr=0.1, warmup=0, lr_schedule="constant", ema_decay=0.999), 5, CPU)
    x = torch.randn(4, 2)
    optim.step(model(x).pow(2).sum())
    first = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(e, p) for e, p in zip(optim.ema.module.parameters(), first))
    optim.step(model(x).pow(2).sum())
    for f, p, e in zip(first, model.parameters(), optim.ema.module.parameters()):
        assert not torch.equal(p, f)  # the weights moved...
        # ...and the EMA 9/11 of the way with them (one float32 lerp: a rounding of the values' size).
        torch.testing.assert_close(e, f + 9 / 11 * (p.detach() - f), rtol=0, atol=1e-7)


def test_ema_warmup_then_decay():
    update = ema_with_warmup(0.9)
    ema, p = [torch.zeros(1)], [torch.ones(1)]
    update(ema, p, torch.tensor(0))  # n = 0: decay min(0.9, 1/10) = 0.1 -> moves 90% of the way
    torch.testing.assert_close(ema[0], torch.tensor([0.9]))
    update(ema, p, torch.tensor(1000))  # warm: decay 0.9
    torch.testing.assert_close(ema[0], torch.tensor([0.91]))


def test_learning_rate_schedules():
    model = nn.Linear(1, 1)
    cosine = Optimization(model, OptimConfig(lr=1.0, warmup=4, lr_schedule="cosine", ema_decay=None), 12, CPU)
    assert [cosine.lr_factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine.lr_factor(8) == 0.5 * (1 + math.cos(math.pi * 0.5)) and cosine.lr_factor(12) == 0.0
    constant = Optimization(model, OptimConfig(lr=1.0, warmup=2, lr_schedule="constant", ema_decay=None), 12, CPU)
    assert constant.lr_factor(1) == 1.0 and constant.lr_factor(11) == 1.0
    # Every schedule builds for a run of 0 steps (train-autoencoder --train-steps 0 measures the latent scale
    # only): torch's OneCycleLR refuses a cycle of 0 steps, which ended such a run in a traceback.
    for schedule in ("constant", "cosine", "one_cycle"):
        Optimization(model, OptimConfig(lr=1.0, lr_schedule=schedule, ema_decay=None), 0, CPU)


def test_state_round_trip_continues_identically():
    """Two optimisations, one restored from the other's state dict mid-way, take identical steps."""
    def make():
        torch.manual_seed(1)
        model = nn.Linear(3, 2)
        return model, Optimization(model, OptimConfig(lr=0.05, warmup=2), 6, CPU)

    x = torch.randn(5, 3)
    a_model, a = make()
    for _ in range(3):
        a.step(a_model(x).pow(2).sum())
    b_model, b = make()
    b_model.load_state_dict(a_model.state_dict())
    b.ema.module.load_state_dict(a.ema.module.state_dict())
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as from a file: no tensor shared with a
    for _ in range(3):
        a.step(a_model(x).pow(2).sum())
        b.step(b_model(x).pow(2).sum())
    for p, q in zip(list(a_model.parameters()) + list(a.ema.module.parameters()),
                    list(b_model.parameters()) + list(b.ema.module.parameters())):
        assert torch.equal(p, q)


def test_a_resume_with_more_steps_takes_the_stretched_cosine_rate_from_its_first_step():
    """A finished 10-step run resumed to 20 steps: its next step (step 10) must take lr * lr_factor(10) of the
    20-step cosine, not the rate the 10-step schedule left in the optimizer's state (0 at its end), which would
    waste the step (and log a rate of 0)."""
    config = OptimConfig(lr=1.0, warmup=2, lr_schedule="cosine", ema_decay=None, grad_clip=None)
    model = nn.Linear(2, 1)
    short = Optimization(model, config, 10, CPU)
    for _ in range(10):
        short.step(model(torch.ones(1, 2)).sum())
    assert short.lr == 0.0
    longer = Optimization(model, config, 20, CPU)
    longer.load_state_dict(copy.deepcopy(short.state_dict()))
    assert longer.lr == longer.lr_factor(10) > 0.5
    before = model.weight.detach().clone()
    longer.step(model(torch.ones(1, 2)).sum())
    assert not torch.equal(model.weight, before) and longer.lr == longer.lr_factor(11)

def test_precision_auto_takes_bf16_only_where_it_is_native_and_pays(monkeypatch):
    from gaussdiff.nets import fast
    from gaussdiff.training import loop

    timed = []

    def time_pass(seconds):
        return lambda p: timed.append(p) or seconds[p]

    monkeypatch.setattr(fast, "cpu_flags", lambda: set())  # no AMX, no AVX-512 BF16: emulated bf16
    assert loop.resolve_precision("auto", CPU, time_pass({"fp32": 1.0, "bf16": 0.1})) == "fp32" and not timed
    monkeypatch.setattr(fast, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert loop.resolve_precision("auto", CPU, time_pass({"fp32": 1.0, "bf16": 0.8})) == "bf16"
    assert timed == ["fp32", "bf16"] * 4  # a warm-up and 3 paired passes
    assert loop.resolve_precision("auto", CPU, time_pass({"fp32": 1.0, "bf16": 0.9})) == "fp32"  # gains < 15%
    # one pair of three without the gain (a loaded machine's noise, either way) keeps fp32
    noisy = iter([1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 0.9])  # warm-up, then pairs at 0.5, 0.5, 0.9
    assert loop.resolve_precision("auto", CPU, lambda p: next(noisy)) == "fp32"
    steady = iter([1.0, 0.5, 1.0, 0.5, 1.0, 0.8, 1.0, 0.6])  # every pair gains 15% or more
    assert loop.resolve_precision("auto", CPU, lambda p: next(steady)) == "bf16"
    assert loop.resolve_precision("auto", CPU) == "fp32"  # nothing measured: the safe choice
    assert loop.resolve_precision("bf16", CPU) == "bf16" and loop.resolve_precision("fp32", CPU) == "fp32"


def test_a_run_records_the_precision_auto_chose_and_measuring_changes_nothing(monkeypatch, tmp_path):
    """The measurement's passes leave the weights, their gradients and the RNG alone: a run that measured and
    chose fp32 takes exactly the steps of a run told fp32."""
    from conftest import override, tiny_config
    from gaussdiff.nets import fast
    from gaussdiff.training import loop, trainer
    from gaussdiff.training.config import load_config

    monkeypatch.setattr(fast, "cpu_flags", lambda: {"avx512_bf16"})
    chosen = {}
    real = loop.resolve_precision

    def slower_bf16(precision, device, time_pass=None, repeats=3):
        chosen["measured"] = [time_pass("fp32"), time_pass("bf16")]
        return real(precision, device, lambda p: {"fp32": 1.0, "bf16": 2.0}[p], repeats)

    monkeypatch.setattr(trainer, "resolve_precision", slower_bf16)
    told = trainer.Trainer(tiny_config(steps=3), tmp_path / "told", progress=False).run()
    auto = trainer.Trainer(override(tiny_config(steps=3), **{"train.optim.precision": "auto"}), tmp_path / "auto",
                           progress=False).run()
    assert len(chosen["measured"]) == 2 and all(s > 0 for s in chosen["measured"])
    assert auto.losses == told.losses
    assert load_config(tmp_path / "auto" / "config.json").train.optim.precision == "fp32"


def test_compile_auto_compiles_only_on_cuda_with_triton(monkeypatch):
    """``--compile auto`` is off on CPU (compiling costs minutes there for oneDNN's same convolutions) and on CUDA
    without Triton (inductor could not generate GPU code); on CUDA with Triton it is the measured mode. An explicit
    mode is kept anywhere."""
    import importlib.util

    from gaussdiff.training import loop

    cuda = torch.device("cuda")
    assert loop.resolve_compile("auto", CPU) == "off"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "triton" else None)
    assert loop.resolve_compile("auto", cuda) == loop.COMPILE_ON_CUDA != "off"
    assert loop.resolve_compile("auto", cuda, distributed=True) == "default"  # no CUDA graphs around DDP's hooks
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert loop.resolve_compile("auto", cuda) == "off"
    assert loop.resolve_compile("reduce-overhead", CPU) == "reduce-overhead"


def test_the_compile_mode_is_chosen_at_every_start_and_auto_is_kept(tmp_path):
    """Unlike the precision, the compile mode does not change the results, so the run keeps ``auto`` and a resume
    chooses again for where it runs (a GPU run resumed under torchrun or on CPU)."""
    from conftest import tiny_config
    from gaussdiff.training import trainer
    from gaussdiff.training.config import load_config

    run = trainer.Trainer(tiny_config(steps=1), tmp_path / "run", progress=False)
    run.run()
    assert run.compile_mode == "off"  # auto, on CPU
    assert load_config(tmp_path / "run" / "config.json").train.compile == "auto"


def test_gradient_checkpointing_trains_the_same_steps(tmp_path):
    """--gradient-checkpointing recomputes the blocks in the backward pass: the same losses, the same weights."""
    from conftest import override, tiny_config
    from gaussdiff.nets.unet import ResBlock
    from gaussdiff.training import trainer

    plain = trainer.Trainer(tiny_config(steps=3), tmp_path / "plain", progress=False)
    on = trainer.Trainer(override(tiny_config(steps=3), **{"train.gradient_checkpointing": True}), tmp_path / "on",
                         progress=False)
    assert all(m.gradient_checkpointing for m in on.model.modules() if isinstance(m, ResBlock))
    a, b = plain.run(), on.run()
    assert a.losses == pytest.approx(b.losses, rel=1e-5)
    for p, q in zip(plain.model.parameters(), on.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)


def test_a_state_saved_without_a_gradient_scaler_loads_into_one():
    """--precision may change on --resume: a run saved in fp32 or bf16 (a disabled scaler, whose state is empty)
    and resumed in fp16 starts its scaler afresh, instead of torch's refusal of the empty state, which the trainer
    reported as a checkpoint that does not match the run. (fp16 needs CUDA; a scaler enabled on the CPU takes the
    same path.)"""
    model = nn.Linear(4, 3)
    saved = Optimization(model, OptimConfig(warmup=0, ema_decay=None, precision="fp32"), 10, CPU).state_dict()
    assert saved["scaler"] == {}
    optim = Optimization(model, OptimConfig(warmup=0, ema_decay=None, precision="fp32"), 10, CPU)
    optim.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    optim.load_state_dict(saved)
    assert optim.scaler.is_enabled() and optim.scaler.get_scale() == 2.0**16
