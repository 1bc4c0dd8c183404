"""The trainer end to end: few-step training, exact resume, atomic checkpoints."""

import errno
import json
import os

import pytest
import torch

from conftest import override, tiny_config
from gaussdiff.cli.logger import RunLogger
from gaussdiff.errors import CheckpointError, ConfigError, WriteError
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.run import load_trained
from gaussdiff.training.trainer import Trainer


def test_a_few_steps_on_digits_write_the_whole_run(tmp_path):
    cfg = tiny_config(steps=4)
    result = Trainer(cfg, tmp_path / "run", progress=False, logger=RunLogger()).run()
    run = tmp_path / "run"
    assert result.step == 4 and len(result.losses) == 4
    assert all(torch.isfinite(torch.tensor(result.losses)))
    for name in ("config.json", "metrics.jsonl", "loss.png", "samples.png", "samples/step-0000004.png"):
        assert (run / name).exists(), name
    ckpt = list_checkpoints(run)[-1]
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "ema.safetensors", "training.pt", "config.json",
                                                 "manifest.json"}
    trained = load_trained(run)
    assert trained.config.data.image_size == 8 and trained.config.data.num_classes == 10


def test_training_on_an_image_folder_with_learned_variance(tmp_path, image_folder):
    cfg = tiny_config(str(image_folder), steps=3, **{
        "data.image_size": 8, "data.image_channels": 3, "diffusion.variance": "learned_range",
        "diffusion.loss": "hybrid", "diffusion.timestep_sampler": "loss_second_moment",
        "conditioning.class_conditional": True})
    result = Trainer(cfg, tmp_path / "run", progress=False).run()
    assert result.step == 3
    trained = load_trained(tmp_path / "run")
    assert trained.model.config.out_channels == 6 and trained.model.config.num_classes == 2
    assert cfg.data.image_size == 8 and cfg.model.num_classes is None  # the given config is left as it was


def test_auto_layout_trains_32x32_in_channels_last_and_saves_plain_weights(tmp_path, image_folder):
    # auto picks channels_last from 32x32 up on CPU; the checkpoint must still load into a fresh
    # (contiguous) network with the weights the trainer ended with.
    cfg = tiny_config(str(image_folder), steps=2, **{"data.image_size": 32, "data.image_channels": 3,
                                                      "model.attention_resolutions": (16,)})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.channels_last
    assert trainer.model.down.stem.weight.is_contiguous(memory_format=torch.channels_last)
    trainer.run()
    trained = load_trained(tmp_path / "run", ema=False)
    for (k, v), w in zip(trainer.model.state_dict().items(), trained.model.state_dict().values()):
        assert torch.equal(v, w), k
    cfg = override(cfg, **{"data.image_size": 8, "model.attention_resolutions": (4,)})
    assert not Trainer(cfg, tmp_path / "small", progress=False).channels_last


def test_bf16_on_cpu_runs_the_network_under_autocast_and_fp16_is_refused(tmp_path, image_folder):
    # --precision bf16 must reach the convolutions on CPU too (it used to be dropped silently off
    # CUDA): a hook sees the stem's output in bf16 while the weights and the loss stay fp32.
    cfg = tiny_config(str(image_folder), steps=2, **{"data.image_size": 32, "data.image_channels": 3,
                                                      "model.attention_resolutions": (16,),
                                                      "train.optim.precision": "bf16"})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert not trainer.channels_last  # oneDNN's bf16 convolutions are faster in the default layout
    seen = []
    trainer.model.down.stem.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    result = trainer.run()
    assert seen and set(seen) == {torch.bfloat16}
    assert trainer.model.down.stem.weight.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(result.losses)))
    cfg = override(cfg, **{"train.optim.precision": "fp16"})
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        Trainer(cfg, tmp_path / "fp16", progress=False)


class Interrupted(Exception):
    pass


class CrashAt(Trainer):
    """A trainer killed just before taking step ``crash_at`` (after the checkpoints before it)."""

    crash_at = 5

    def train_step(self):
        if self.step == self.crash_at - 1:
            raise Interrupted
        return super().train_step()


def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    # Dropout and the second-moment sampler exercise the global RNG and the sampler's history.
    def config():
        return tiny_config(steps=8, **{
            "train.bookkeeping.checkpoint_every": 3, "train.bookkeeping.sample_every": 100, "model.dropout": 0.1,
            "diffusion.variance": "learned_range", "diffusion.loss": "hybrid",
            "diffusion.timestep_sampler": "loss_second_moment"})

    full = Trainer(config(), tmp_path / "full", progress=False).run().losses
    with pytest.raises(Interrupted):
        CrashAt(config(), tmp_path / "cut", progress=False, logger=RunLogger()).run()
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000003"]
    resumed = Trainer(config(), tmp_path / "cut", progress=False, logger=RunLogger()).run(resume=True)
    assert resumed.losses == full[3:]
    a, b = load_trained(tmp_path / "full"), load_trained(tmp_path / "cut")
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v, w), k
    steps = [r["step"] for r in map(json.loads, (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines())]
    assert steps == sorted(set(steps)), "metrics logged after the checkpoint are not repeated"


def test_a_full_disk_while_writing_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(steps=4, **{"train.bookkeeping.checkpoint_every": 2, "train.bookkeeping.sample_every": 100})
    Trainer(cfg, tmp_path / "run", progress=False).run()
    before = (list_checkpoints(tmp_path / "run")[-1] / "model.safetensors").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cfg = override(cfg, **{"train.train_steps": 6})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    monkeypatch.setattr("gaussdiff.training.checkpoint.torch.save", disk_full)
    with pytest.raises(WriteError, match="step-0000006: No space left on device"):
        trainer.run(resume=True)
    monkeypatch.undo()
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*")), "the failed write cleans up after itself"
    found = list_checkpoints(tmp_path / "run")
    assert [p.name for p in found] == ["step-0000002", "step-0000004"]
    assert (found[-1] / "model.safetensors").read_bytes() == before
    # The half-written directory is ignored, and the run resumes from the last good checkpoint.
    result = Trainer(cfg, tmp_path / "run", progress=False).run(resume=True)
    assert result.step == 6 and [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-0000004", "step-0000006"]


def test_resume_without_checkpoint_and_mismatched_weights(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(tiny_config(), tmp_path / "new", progress=False).run(resume=True)
    Trainer(tiny_config(steps=2), tmp_path / "run", progress=False).run()
    wider = tiny_config(steps=4, **{"model.channels": 32})
    with pytest.raises(CheckpointError, match="shape"):
        Trainer(wider, tmp_path / "run", progress=False).run(resume=True)


def test_resume_restores_the_timestep_samplers_history(tmp_path):
    def config():
        return tiny_config(steps=6, **{"train.bookkeeping.checkpoint_every": 3, "train.bookkeeping.sample_every": 100,
                                       "diffusion.variance": "learned_range", "diffusion.loss": "hybrid",
                                       "diffusion.timestep_sampler": "loss_second_moment"})

    full = Trainer(config(), tmp_path / "full", progress=False)
    full.run()

    class StopAt4(Trainer):
        def train_step(self):
            if self.step == 3:
                raise Interrupted  # killed after the checkpoint at step 3
            return super().train_step()

    with pytest.raises(Interrupted):
        StopAt4(config(), tmp_path / "cut", progress=False).run()
    resumed = Trainer(config(), tmp_path / "cut", progress=False)
    resumed.run(resume=True)
    assert torch.equal(resumed.timestep_sampler.counts, full.timestep_sampler.counts)
    assert torch.equal(resumed.timestep_sampler.losses, full.timestep_sampler.losses)


def test_the_preview_gives_each_class_a_column(tmp_path):
    cfg = tiny_config(steps=1, **{"conditioning.class_conditional": True, "conditioning.p_uncond": 0.2})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    seen = []
    trainer.ema_model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["y"]), with_kwargs=True)
    images, per_row, names = trainer.preview(20)
    assert per_row == 10 and names == [] and images.shape == (20, 1, 8, 8) and images.dtype == torch.uint8
    assert seen and all(y.tolist() == [k % 10 for k in range(20)] for y in seen)


def test_data_order_is_a_stream_of_epoch_permutations(tmp_path):
    """Batch k holds positions k*B..(k+1)*B of the concatenated per-epoch permutations, so each epoch
    visits every image once, and the order depends on the step alone (what exact resume relies on)."""
    cfg = tiny_config(**{"train.batch_size": 7})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    n = len(trainer.data)
    steps = (3 * n) // 7 + 2
    stream = torch.cat([trainer.batch_indices(k) for k in range(steps)])
    for epoch in range(3):
        assert sorted(stream[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    assert torch.equal(trainer.batch_indices(steps - 1), stream[-7:])  # asked again, out of order
    assert not torch.equal(stream[:n], stream[n : 2 * n])


def test_the_measured_convolution_kernels_travel_with_the_checkpoint(tmp_path):
    """--conv auto's verdicts are part of the training state: a resumed run computes with the kernels it trained
    with (and so keeps its losses bit-equal), instead of measuring again and perhaps choosing otherwise."""
    from gaussdiff.nets.kernels.winograd import Conv3x3

    trainer = Trainer(tiny_config(steps=2), tmp_path / "run", progress=False)
    layers = [m for m in trainer.model.modules() if isinstance(m, Conv3x3)]
    for i, m in enumerate(layers):
        m.choices[((8, 16, 8, 8), torch.float32, False)] = i % 2 == 0
    trainer.run()
    resumed = Trainer(tiny_config(steps=2), tmp_path / "run", progress=False)
    resumed.load(list_checkpoints(tmp_path / "run")[-1])
    assert [m.choices for m in resumed.model.modules() if isinstance(m, Conv3x3)] == [m.choices for m in layers]


def test_a_kill_while_an_old_checkpoint_is_deleted_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    """Old checkpoints are renamed before they are deleted, and leftover temporaries go at the next save: a kill in
    the middle of deleting (here after the first file) never leaves a step-N that a resume would take."""
    import shutil

    from gaussdiff.training.checkpoint import verify_checkpoint

    cfg = tiny_config(steps=3, **{"train.bookkeeping.checkpoint_every": 1, "train.bookkeeping.keep_checkpoints": 2})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)

    def killed_while_deleting(path, ignore_errors=False):
        next(p for p in path.iterdir() if p.is_file()).unlink()
        raise KeyboardInterrupt

    real = shutil.rmtree
    monkeypatch.setattr("gaussdiff.training.checkpoint.shutil.rmtree", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    monkeypatch.setattr("gaussdiff.training.checkpoint.shutil.rmtree", real)
    for checkpoint in list_checkpoints(tmp_path / "run"):
        verify_checkpoint(checkpoint)  # every step-N is whole
    assert list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))  # the half-deleted one, under a temporary name
    Trainer(override(cfg, **{"train.train_steps": 4}), tmp_path / "run", progress=False).run(resume=True)
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))  # removed by the next save


def test_a_second_run_on_the_machine_takes_the_kept_conv_verdicts_without_measuring(tmp_path, monkeypatch, capsys):
    """--conv auto measures each layer configuration once per machine: the first run keeps its verdicts in the
    conv cache and says what measuring cost; a second run (another network of the same layers) measures nothing
    and computes with the same kernels."""
    from gaussdiff.nets.kernels.winograd import Conv3x3

    measured = []  # verdicts that differ by configuration (every other one Winograd), so that "the same" can fail
    monkeypatch.setattr(Conv3x3, "measure",
                        lambda self, x: measured.append(self.config_key(x)) or len(measured) % 2 == 0)
    wide = {"model.channels": 64, "model.channel_mult": (1,), "model.attention_resolutions": ()}  # 8x8, 64 channels
    cache = tmp_path / "conv"
    first = Trainer(tiny_config(steps=1, **wide), tmp_path / "a", progress=False, conv_cache=cache)
    first.run()
    assert measured and len(measured) == len(set(measured))  # one measurement a configuration
    note = capsys.readouterr().err
    assert f"--conv auto measured {len(measured)} layer configuration(s) in" in note and str(cache) in note
    kept = list(measured)
    measured.clear()
    second = Trainer(tiny_config(steps=1, **wide, **{"train.seed": 1}), tmp_path / "b", progress=False,
                     conv_cache=cache)
    second.run()
    assert measured == [] and "--conv auto measured" not in capsys.readouterr().err
    layers = lambda t: [m.choices for m in t.model.modules() if isinstance(m, Conv3x3)]  # noqa: E731
    assert layers(second) == layers(first) and len(second.conv_known) == len(kept)


def test_resume_keeps_the_count_of_skipped_steps(tmp_path):
    """--skip-nonfinite N is a budget for the whole run: the steps skipped before a checkpoint (training.pt's
    "skipped") still count after a resume, and so does the metrics' running "skipped" column. Two skips before the
    checkpoint are two after loading it, not a fresh budget."""
    config = tiny_config(steps=2, **{"train.skip_nonfinite": 3, "train.bookkeeping.sample_every": 100})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.skipped = 2  # as after two steps with a NaN loss, not applied
    trainer.save()
    resumed = Trainer(config, tmp_path / "run", progress=False)
    assert resumed.skipped == 0
    resumed.load(list_checkpoints(tmp_path / "run")[-1])
    assert resumed.skipped == 2


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63)], ids=["largest", "smallest"])
def test_every_seed_the_cli_takes_trains_and_seeds_in_range_keep_their_draws(tmp_path, seed):
    """--seed takes any 64-bit value (cli.main.check_seeds), and the seeds derived from it (seed + 1 for the noise,
    seed * 1_000_003 + epoch for the data order) must seed torch's generators too: they overflowed with a traceback.
    A derived seed in range is unchanged, so that an existing run resumes on the batches it had."""
    from gaussdiff.training.batches import DataOrder

    result = Trainer(tiny_config(steps=1, **{"train.seed": seed}), tmp_path / "run", progress=False).run()
    assert result.step == 1 and all(torch.isfinite(torch.tensor(result.losses)))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(5 * 1_000_003 + 1))
    assert torch.equal(DataOrder(50, 8, seed=5).indices(7), perm[6:14])  # step 7: positions 56..63, epoch 1


def test_a_resume_on_another_kind_of_device_continues_with_a_new_noise_seed(tmp_path, capsys):
    """--device may change on --resume, but a CUDA generator's state (Philox seed and offset, 16 bytes) does not fit
    a CPU generator (5056 bytes), nor the reverse: the noise generator of a run moved between them starts from a
    seed of its own (with a warning) instead of every checkpoint being refused as not matching the run. Simulated
    here by putting a CUDA-sized state into a CPU run's checkpoint."""
    Trainer(tiny_config(steps=2), tmp_path, progress=False).run()
    checkpoint = list_checkpoints(tmp_path)[-1]
    state = torch.load(checkpoint / "training.pt", weights_only=True)
    state["noise_generator"] = torch.zeros(16, dtype=torch.uint8)  # as torch.Generator("cuda").get_state() is
    torch.save(state, checkpoint / "training.pt")
    (checkpoint / "manifest.json").unlink()  # a checkpoint without a manifest is read as it is
    capsys.readouterr()
    resumed = Trainer(tiny_config(steps=4), tmp_path, progress=False).run(resume=True)
    assert resumed.step == 4 and len(resumed.losses) == 2
    assert "saved on another kind of device" in capsys.readouterr().err
