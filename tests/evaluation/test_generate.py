"""Sampling a run: guidance wraps the network as asked, and leaves a learned variance to the conditional branch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussdiff.conditioning import GuidanceConfig
from gaussdiff.errors import ConfigError
from gaussdiff.evaluation.generate import generate, guided_model


def test_classifier_free_guidance_guides_the_mean_and_keeps_the_conditional_variance(conditional_trained):
    d = conditional_trained.diffusion.respace(5)
    model = guided_model(conditional_trained, d, "ddim", GuidanceConfig(guidance=2.0))
    net = conditional_trained.model
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t, y = d.schedule.timesteps[torch.tensor([4, 1])], torch.tensor([3, 5])
    with torch.no_grad():
        out, cond, null = model(x, t, y=y), net(x, t, y=y), net(x, t, y=torch.full_like(y, 10))
    # One batched pass against two separate ones: float32 rounding of the network, ~1e-6 of its outputs.
    torch.testing.assert_close(out[:, 1:], cond[:, 1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, :1], 3 * cond[:, :1] - 2 * null[:, :1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cond[:, 1:], null[:, 1:])  # the branches differ, so keeping one is a choice


# -- sample i is the same in any batch, on any rank; interrupted sampling resumes ---------------------------


def test_a_sample_is_the_same_in_any_batch_size(conditional_trained):
    """Sample i's noise comes from a generator seeded by (seed, i): batches of 3 (a last one of 1) and one of 10
    give the same samples (the network's float32 rounding may differ with the batch by a uint8 level)."""
    a, la = generate(conditional_trained, 10, "ddpm", 4, batch_size=3, progress=False)
    b, lb = generate(conditional_trained, 10, "ddpm", 4, batch_size=10, progress=False)
    assert torch.equal(la, lb) and (a.int() - b.int()).abs().max() <= 1
    c, _ = generate(conditional_trained, 10, "ddpm", 4, seed=1, batch_size=10, progress=False)
    assert (a.int() - c.int()).abs().max() > 10  # and the seed matters


def test_interrupted_sampling_draws_only_the_missing_chunks(conditional_trained, tmp_path, monkeypatch):
    module = sys.modules["gaussdiff.evaluation.generate"]

    full, _ = generate(conditional_trained, 7, "ddim", 3, batch_size=2, progress=False)
    real, calls = module.sample, []

    def killed_at_the_third_chunk(*args, **kwargs):
        calls.append(args[2][0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "sample", killed_at_the_third_chunk)
    parts = tmp_path / "s.npz.parts"
    with pytest.raises(KeyboardInterrupt):
        generate(conditional_trained, 7, "ddim", 3, batch_size=2, progress=False, parts=parts)
    assert sorted(p.name for p in parts.glob("chunk-*")) == ["chunk-000000.npz", "chunk-000001.npz"]
    calls.clear()
    monkeypatch.setattr(module, "sample", lambda *a, **k: calls.append(a[2][0]) or real(*a, **k))
    resumed, _ = generate(conditional_trained, 7, "ddim", 3, batch_size=2, progress=False, parts=parts)
    assert calls == [2, 1] and torch.equal(resumed, full)  # chunks 2 and 3 only (3 holds the 7th sample)
    with pytest.raises(ConfigError, match="drawn with other settings"):
        generate(conditional_trained, 7, "ddim", 3, seed=5, batch_size=2, progress=False, parts=parts)


def test_a_chunk_of_the_wrong_shape_or_kind_is_drawn_again(conditional_trained, tmp_path, monkeypatch):
    """A chunk file that is not what this run draws (other images put there, a truncated write) is drawn again
    rather than mixed in: the result equals an uninterrupted run's."""
    module = sys.modules["gaussdiff.evaluation.generate"]
    full, _ = generate(conditional_trained, 6, "ddim", 3, batch_size=2, progress=False)
    parts = tmp_path / "s.npz.parts"
    generate(conditional_trained, 6, "ddim", 3, batch_size=2, progress=False, parts=parts)
    np.savez(parts / "chunk-000000.npz", images=np.zeros((2, 1, 16, 16), np.uint8))  # another size
    np.savez(parts / "chunk-000001.npz", images=np.zeros((2, *full.shape[1:]), np.float32))  # another kind
    (parts / "chunk-000002.npz").write_bytes(b"PK\x03\x04 cut short")
    real, calls = module.sample, []
    monkeypatch.setattr(module, "sample", lambda *a, **k: calls.append(a[2][0]) or real(*a, **k))
    again, _ = generate(conditional_trained, 6, "ddim", 3, batch_size=2, progress=False, parts=parts)
    assert calls == [2, 2, 2] and torch.equal(again, full)


def test_parts_name_the_steps_taken_not_the_word_auto(conditional_trained, tmp_path, monkeypatch):
    """UniPC's unnamed steps are trailing: parts drawn with spacing "auto" are the same samples as with "trailing"
    (reused, nothing drawn again) and not those of "linspace" (refused)."""
    module = sys.modules["gaussdiff.evaluation.generate"]
    parts = tmp_path / "s.npz.parts"
    drawn, _ = generate(conditional_trained, 3, "unipc", 4, batch_size=2, progress=False, parts=parts)
    calls = []
    monkeypatch.setattr(module, "sample", lambda *a, **k: calls.append(1))
    again, _ = generate(conditional_trained, 3, "unipc", 4, batch_size=2, progress=False, parts=parts,
                        spacing="trailing")
    assert calls == [] and torch.equal(again, drawn)
    with pytest.raises(ConfigError, match="drawn with other settings"):
        generate(conditional_trained, 3, "unipc", 4, batch_size=2, progress=False, parts=parts, spacing="linspace")


def test_a_resumed_run_computes_with_the_setup_its_parts_were_drawn_with(conditional_trained, tmp_path,
                                                                        monkeypatch):
    """The setup a CPU run measured is written beside its chunks; resumed, the run takes it instead of measuring
    again (a new measurement could choose otherwise, and its chunks would then differ in rounding). Here the record
    is rewritten to channels_last, as a run whose measurement chose it would have left it."""
    import json

    from gaussdiff.evaluation.generate import SpeedConfig
    from gaussdiff.nets.fast import Fast

    parts = tmp_path / "s.npz.parts"
    drawn, _ = generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts,
                        speed=SpeedConfig())
    meta = json.loads((parts / "meta.json").read_text())
    assert meta["setup"] == ["fp32", "contiguous", "off"]  # the tiny network's calls are too quick to measure
    meta["setup"] = ["fp32", "channels_last", "off"]
    (parts / "meta.json").write_text(json.dumps(meta))
    (parts / "chunk-000001.npz").unlink()
    measured = []
    monkeypatch.setattr(Fast, "decide", lambda *a, **k: measured.append(1))
    layouts = []
    hook = conditional_trained.model.register_forward_hook(
        lambda module, args, out: layouts.append(not module.out[-1].weight.is_contiguous()))  # [1, ch, 3, 3]
    try:
        again, _ = generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts,
                            speed=SpeedConfig())
    finally:
        hook.remove()
    assert not measured and layouts and all(layouts)  # chunk 1 drawn again, in the recorded layout
    assert conditional_trained.model.out[-1].weight.is_contiguous()  # and the network left as it came
    assert torch.equal(again[:2], drawn[:2])
    assert (again[2:].int() - drawn[2:].int()).abs().max() <= 1  # the same function, to rounding


def test_settings_or_a_setup_other_than_the_parts_are_refused_before_anything_is_measured(conditional_trained,
                                                                                         tmp_path, monkeypatch):
    """Parts drawn with other settings, or in a setup the caller now excludes (bf16 when fp32 is asked for), are
    refused at once: measuring (seconds, or a compile) would be wasted."""
    import json

    from gaussdiff.evaluation.generate import SpeedConfig
    from gaussdiff.nets.fast import Fast

    parts = tmp_path / "s.npz.parts"
    generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts,
             speed=SpeedConfig(precision="bf16"))
    meta = json.loads((parts / "meta.json").read_text())
    assert meta["setup"] == ["bf16", "contiguous", "off"]  # the setup the chunks were drawn in, recorded
    monkeypatch.setattr(Fast, "decide", lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(ConfigError, match=r"drawn in \['bf16', 'contiguous', 'off'\], not as asked"):
        generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts,
                 speed=SpeedConfig(precision="fp32"))
    meta.pop("setup")  # as parts of an earlier gaussdiff, whose other settings were the same
    (parts / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="drawn with other settings"):
        generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts, speed=SpeedConfig())
    meta["bf16"] = False  # as parts of the version before recorded their precision
    (parts / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="drawn with other settings"):
        generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, parts=parts, speed=SpeedConfig())


def test_a_measurement_interrupted_leaves_the_network_as_it_came(conditional_trained, monkeypatch):
    """Ctrl-C while the candidates are timed (here just after switching to channels_last): the run's network goes
    back to its own layout, as after a finished run."""
    from gaussdiff.evaluation.generate import SpeedConfig
    from gaussdiff.nets.fast import Fast

    def interrupted(self, *args, **kwargs):
        self._to_layout("channels_last")
        raise KeyboardInterrupt

    monkeypatch.setattr(Fast, "decide", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, speed=SpeedConfig())
    assert conditional_trained.model.out[-1].weight.is_contiguous()  # [1, ch, 3, 3]: the layouts differ


def test_the_compile_projection_counts_what_the_network_sees(conditional_trained, monkeypatch):
    """The images through the network: samples x network calls, Heun's two a step but the last, x2 under
    classifier-free guidance (both branches in one batch), and a rank's share under torchrun."""
    from dataclasses import dataclass

    from gaussdiff.training.distributed import Distributed

    module = sys.modules["gaussdiff.evaluation.generate"]
    seen = []
    real = module.sampling_network
    monkeypatch.setattr(module, "sampling_network", lambda *a, evaluations, **k: seen.append(evaluations) or
                        real(*a, evaluations=evaluations, **k))

    @dataclass(frozen=True)
    class OneOfTwo(Distributed):
        def broadcast(self, obj):
            return obj

        def gather_objects(self, obj):
            return [obj, {k + 1: v for k, v in obj.items()}]  # the other rank's chunk: a copy stands in

    generate(conditional_trained, 4, "ddim", 5, batch_size=2, progress=False)
    generate(conditional_trained, 4, "heun", 5, batch_size=2, progress=False)
    generate(conditional_trained, 4, "ddim", 5, batch_size=2, progress=False, guidance=GuidanceConfig(guidance=1.0))
    generate(conditional_trained, 4, "ddim", 5, batch_size=2, progress=False, dist=OneOfTwo(rank=0, world_size=2))
    assert seen == [4 * 5, 4 * 9, 4 * 5 * 2, 4 * 5 // 2]


def test_plain_calls_measure_nothing_and_ranks_take_the_main_process_choice(conditional_trained, monkeypatch):
    """PLAIN (the library's default) calls the network exactly chunks x steps times; under torchrun a rank other
    than the main one never measures and samples in the setup rank 0 broadcast (a stand-in for the collective)."""
    from dataclasses import dataclass

    from gaussdiff.evaluation.generate import SpeedConfig
    from gaussdiff.nets.fast import Fast, Setup
    from gaussdiff.training.distributed import Distributed

    calls = []
    hook = conditional_trained.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        generate(conditional_trained, 3, "ddim", 4, batch_size=2, progress=False)
        assert len(calls) == 2 * 4  # 2 chunks x 4 steps, and no call to measure

        @dataclass(frozen=True)
        class SecondRank(Distributed):
            def broadcast(self, obj):
                assert obj is None  # this rank has not measured
                return Setup("fp32", "channels_last", "off")

            def gather_objects(self, obj):  # rank 0's chunk 0 stands in as zeros
                return [{0: torch.zeros_like(obj[1])}, obj]

        monkeypatch.setattr(Fast, "decide", lambda *a, **k: pytest.fail("a second rank measured"))
        seen = []
        generate(conditional_trained, 4, "ddim", 2, batch_size=2, progress=False, speed=SpeedConfig(),
                 dist=SecondRank(rank=1, world_size=2), on_setup=lambda setup, seconds: seen.append(setup))
        assert seen == [Setup("fp32", "channels_last", "off")]
    finally:
        hook.remove()


def test_torchrun_shards_sampling_and_equals_one_process_bit_for_bit(tmp_path):
    run = Path(__file__).resolve().parents[1] / "fixtures" / "run-v0.1"
    # Fixed, so that the single process computes in the setup the torchrun ranks take from rank 0.
    flags = [str(run), "--num-samples", "7", "--batch-size", "2", "--steps", "4", "--sampler", "ddpm",
             "--device", "cpu", "--precision", "fp32", "--memory-format", "contiguous"]
    subprocess.run([sys.executable, "-m", "gaussdiff", "sample", *flags, "--out", str(tmp_path / "one.npz")],
                   check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "gaussdiff", "sample", *flags, "--out", str(tmp_path / "two.npz")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert np.array_equal(one["arr_0"], two["arr_0"]) and np.array_equal(one["arr_1"], two["arr_1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"]  # the parts are gone


def test_the_speed_settings_reach_the_network(conditional_trained):
    """``speed`` decides how the network computes: under bf16 autocast with ``precision="bf16"``, in plain fp32 by
    default (a hook on the network records the autocast state of every call)."""
    from gaussdiff.evaluation.generate import PLAIN, SpeedConfig

    seen = []
    hook = conditional_trained.model.register_forward_hook(
        lambda module, args, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    try:
        generate(conditional_trained, 4, "ddim", 3, progress=False)
        generate(conditional_trained, 4, "ddim", 3, progress=False, speed=PLAIN)
        plain, seen[:] = list(seen), []
        generate(conditional_trained, 4, "ddim", 3, progress=False, speed=SpeedConfig(precision="bf16"))
    finally:
        hook.remove()
    assert plain and set(plain) == {(False, torch.float32)}
    assert seen and set(seen) == {(True, torch.bfloat16)}


def test_non_finite_samples_are_refused_not_written_as_black_images(conditional_trained):
    """uint8 conversion would turn NaN into 0 (black) without a word: a network whose output is not finite (here
    one NaN weight, as a diverged run's EMA would hold) stops the sampling with one line."""
    import copy
    from dataclasses import replace

    from gaussdiff.errors import NonFiniteError

    broken = replace(conditional_trained, model=copy.deepcopy(conditional_trained.model))
    next(broken.model.parameters()).data.view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match="samples 0..1 hold NaN or inf"):
        generate(broken, 2, "ddim", 3, batch_size=2, progress=False)


def test_a_compile_that_fails_on_a_later_batch_shape_is_told_and_the_rest_drawn_uncompiled(conditional_trained,
                                                                                         monkeypatch):
    """Inductor compiles once per batch shape: where the last, smaller chunk's compile fails, that chunk is drawn
    uncompiled (the same function), and ``on_setup`` hears the setup change, so no figure claims a compile."""
    from torch._dynamo.exc import BackendCompilerFailed

    from gaussdiff.evaluation.generate import SpeedConfig
    from gaussdiff.nets.fast import Setup

    def compile_failing_below_batch_2(net, mode, dynamic):
        def call(x_t, t, **cond):
            if len(x_t) < 2:
                raise BackendCompilerFailed(call, RuntimeError("InvalidCxxCompiler: no compiler"), None)
            return net(x_t, t, **cond)
        return call

    monkeypatch.setattr(torch, "compile", compile_failing_below_batch_2)
    seen = []
    speed = SpeedConfig(precision="fp32", compile="default", memory_format="contiguous")
    with pytest.warns(UserWarning, match="sampling uncompiled"):
        images, _ = generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False, speed=speed,
                             on_setup=lambda setup, seconds: seen.append(setup))
    assert seen == [Setup("fp32", "contiguous", "default"), Setup("fp32", "contiguous", "off")]
    plain, _ = generate(conditional_trained, 3, "ddim", 3, batch_size=2, progress=False)
    assert torch.equal(images, plain)  # compiled or not, the same network computed every chunk


@pytest.mark.parametrize("request_, match", [
    ({"n": 0}, "n and batch_size must be at least 1, got n = 0"),
    ({"batch_size": 0}, "batch_size = 0"),  # a ZeroDivisionError
    ({"labels": torch.tensor([0, 1])}, r"labels must be an integer tensor \[n\] = \[4\], got torch.int64 \(2,\)"),
    ({"labels": [0, 1, 2, 3]}, r"labels must be an integer tensor \[n\] = \[4\], got list"),
    ({"labels": torch.tensor([0, 1, 2, -1])}, r"labels must lie in 0\.\.9 \(the data's classes\), got -1\.\.2"),
    ({"labels": torch.tensor([0, 1, 2, 10])}, r"labels must lie in 0\.\.9 \(the data's classes\), got 0\.\.10"),
])
def test_a_request_generate_cannot_draw_is_refused_before_sampling(conditional_trained, request_, match):
    """Before: torch.cat of no chunks, a ZeroDivisionError, a broadcast of mismatched sizes in the U-Net, an
    AttributeError, an embedding index out of range, or (label 10 of 10 classes, the null one) unconditional
    samples returned as if of a class."""
    with pytest.raises(ValueError, match=match):
        generate(conditional_trained, **{"n": 4, "steps": 2, "progress": False, **request_})


def test_one_string_for_the_prompts_is_refused_as_the_tokenizer_refuses_it(conditional_trained):
    """A string of n letters passed the count of n prompts and would be read letter by letter."""
    with pytest.raises(TypeError, match=r"prompts must be a list of strings, not one string: \['abcd'\]"):
        generate(conditional_trained, 4, steps=2, progress=False, prompts="abcd")


def test_low_resolution_images_of_another_shape_or_kind_are_refused():
    """low_res of another size was upsampled silently to the stage's (uint8 ones read as far out of [-1, 1]), and
    another count failed in the U-Net's concatenation."""
    from types import SimpleNamespace

    from gaussdiff.conditioning.super_res import LowResolution

    stage = SimpleNamespace(conditions=(LowResolution(4),), config=SimpleNamespace(data=SimpleNamespace(
        num_classes=None)), image_shape=(1, 8, 8))
    for low_res in (torch.zeros(4, 1, 2, 2), torch.zeros(3, 1, 4, 4), torch.zeros(4, 1, 4, 4, dtype=torch.uint8)):
        with pytest.raises(ValueError, match=r"low_res must be float \[4, 1, 4, 4\] in \[-1, 1\]"):
            generate(stage, 4, low_res=low_res, progress=False)


def test_a_cascade_hands_the_prompts_only_to_the_stages_that_read_them(monkeypatch):
    """A text base run with a stage that reads no text (the stage follows the base's images): the prompts go to the
    base alone. They went to every stage, and the stage's generate refused them ("prompts need a text run")."""
    import importlib
    from types import SimpleNamespace

    from gaussdiff.conditioning.text import TextPrompt, Tokenizer

    module = importlib.import_module("gaussdiff.evaluation.generate")  # the package's name is the function's

    prompts = ["a red circle", "a blue square"]
    base = SimpleNamespace(conditions=[TextPrompt(Tokenizer.build(prompts), tuple(prompts), p_drop=0.0)])
    stage = SimpleNamespace(conditions=[])
    seen = []

    def fake_generate(run, n, *args, **kwargs):
        seen.append((run, args[8]))  # (sampler, steps, eta, seed, batch_size, labels, guidance, progress, prompts)
        return torch.zeros(n, 1, 4, 4, dtype=torch.uint8), None

    monkeypatch.setattr(module, "generate", fake_generate)
    module.generate_cascade([base, stage], 2, "ddim", (2,), prompts=prompts)
    assert seen == [(base, prompts), (stage, None)]


def test_a_super_resolution_sample_is_augmented_the_same_in_any_batch_size(tmp_path, monkeypatch):
    """A stage's low-resolution image i is augmented (at --cond-aug-level > 0) with noise of its own seed (seed, i),
    as its sample's noise is: the stage is given the same conditions in batches of 2 as in one of 5. The noise came
    from one generator a chunk, seeded by the chunk's index, so that every image past the first batch was
    conditioned on other noise when --batch-size changed, although --seed promises the same samples in any batch."""
    from gaussdiff.training import Trainer, load_trained
    from conftest import tiny_config

    module = sys.modules["gaussdiff.evaluation.generate"]
    run = tmp_path / "sr"
    Trainer(tiny_config(steps=1, **{"super_res.super_res": 4, "super_res.cond_aug_max": 0.5}), run,
            progress=False).run()
    stage = load_trained(run)
    seen = []
    real = module.sample
    monkeypatch.setattr(module, "sample", lambda *a, **k: (seen.append(k["low_res"]), real(*a, **k))[1])
    low = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    given = {}
    for batch_size in (5, 2):
        seen.clear()
        generate(stage, 5, "ddim", 2, seed=3, batch_size=batch_size, low_res=low, cond_aug_level=0.3, progress=False)
        given[batch_size] = torch.cat(seen)
    assert not torch.allclose(given[5], low, atol=0.05)  # augmented
    torch.testing.assert_close(given[2], given[5], rtol=0, atol=0)
