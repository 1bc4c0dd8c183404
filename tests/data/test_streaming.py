"""A folder streamed through DataLoader workers trains exactly as the same folder in memory: the same images and
conditions in the same order for the seed, before and after a kill, and a rank decodes only its part."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import expect_error, override, tiny_config
from gaussdiff.cli import main
from gaussdiff.data.datasets import FolderImages, load_data
from gaussdiff.errors import DataError
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.distributed import Distributed
from gaussdiff.training.batches import DataOrder
from gaussdiff.training.batches import StepBatches
from gaussdiff.training.trainer import Trainer


@pytest.fixture
def folder(tmp_path):
    """24 labelled 10x12 RGB images (two classes), resized and center-cropped to 8x8 by the loader."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def config(folder, stream: str, **changes):
    return tiny_config(steps=6, **{"data.data": str(folder), "data.image_size": 8, "data.stream": stream,
                                   "data.workers": 1, "train.bookkeeping.checkpoint_every": 3,
                                   "train.bookkeeping.log_every": 1, "conditioning.class_conditional": True,
                                   **changes})


def killed_after_step_4(cfg, run_dir, monkeypatch) -> Trainer:
    """A run of ``cfg`` killed during step 5 (its checkpoint at step 3 kept), and the trainer to resume it."""
    real_step = Trainer.train_step

    def killed_at_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir, progress=False).run()
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-0000003"]
    return Trainer(cfg, run_dir, progress=False)


def test_streamed_images_are_the_in_memory_ones(folder):
    memory = load_data(str(folder), image_size=8, stream="memory")
    streamed = load_data(str(folder), image_size=8, stream="stream")
    assert isinstance(streamed.images, FolderImages) and not isinstance(memory.images, FolderImages)
    assert streamed.images.shape == tuple(memory.images.shape) and torch.equal(streamed.labels, memory.labels)
    idx = torch.tensor([5, 0, 23, 5])
    assert torch.equal(streamed.images[idx], memory.images[idx])


def test_a_streamed_run_takes_the_steps_of_an_in_memory_run_and_resumes_exactly(folder, tmp_path, monkeypatch):
    """Same images, labels, hflips, t and noise at every step, so the same losses; killed after step 4, the resumed
    streaming run continues with exactly the batches of the uninterrupted one (the loader starts at the step)."""
    memory = Trainer(config(folder, "memory", **{"data.hflip": True}), tmp_path / "memory", progress=False).run()
    streamed = Trainer(config(folder, "stream", **{"data.hflip": True}), tmp_path / "streamed", progress=False)
    assert streamed.data.streamed and streamed.config.data.stream == "stream"
    assert streamed.run().losses == memory.losses
    resumed = killed_after_step_4(config(folder, "stream", **{"data.hflip": True}), tmp_path / "cut", monkeypatch)
    assert resumed.run(resume=True).losses == memory.losses[3:]


def test_a_rank_decodes_only_its_half_of_each_batch(folder):
    images = load_data(str(folder), image_size=8, stream="stream").images
    order = DataOrder(len(images), 8, seed=0)
    for rank in (0, 1):
        batches = StepBatches(images, order, Distributed(rank=rank, world_size=2), steps=3)
        for step in range(3):
            idx = order.indices(step)
            assert torch.equal(batches[step], images[idx[rank * 4 : (rank + 1) * 4]])


def test_an_unreadable_image_stops_the_run_before_training_or_is_left_out_as_asked(folder, tmp_path, capsys):
    (folder / "a" / "3.png").write_bytes(b"not a png")
    (folder / "b" / "7.png").write_bytes(b"")
    expect_error(capsys, "train", "--data", folder, "--image-size", "8", "--run-dir", tmp_path / "run",
                 "--train-steps", "2", "--device", "cpu", match="2 unreadable image(s)")
    assert not (tmp_path / "run").exists()
    trainer = Trainer(config(folder, "stream", **{"data.skip_bad_images": True}), tmp_path / "skip", progress=False)
    assert len(trainer.data) == 22
    trainer.run()
    listed = (tmp_path / "skip" / "bad-images.txt").read_text().split()
    assert sorted(listed) == sorted([str(folder / "a" / "3.png"), str(folder / "b" / "7.png")])
    assert "2 unreadable image(s) left out" in capsys.readouterr().err


def test_an_image_cut_short_is_found_before_training_in_memory_and_at_its_batch_when_streamed(folder, tmp_path):
    """A folder read into memory is scanned through (PIL's verify): a PNG cut after its header is named before the
    run starts. A streamed one is scanned by headers only (its bytes are not all read twice) and the image names
    itself at the step whose batch holds it."""
    path = folder / "a" / "0.png"
    path.write_bytes(path.read_bytes()[:60])  # the header reads; the rest is gone
    with pytest.raises(DataError, match=r"1 unreadable image\(s\): .*0.png \(OSError\)"):
        Trainer(config(folder, "memory", **{"train.train_steps": 40}), tmp_path / "run", progress=False)
    trainer = Trainer(config(folder, "stream", **{"train.train_steps": 40}), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match=r"step \d+: .*0.png: cannot read image"):
        trainer.run()


def test_an_image_whose_pixels_do_not_decode_names_itself_when_its_batch_comes(folder, tmp_path):
    """What the scan cannot see (compressed pixels that fail to inflate, under chunk checksums that hold) stops a
    streamed run at the step whose batch holds the image, naming it."""
    import struct
    import zlib

    path = folder / "a" / "0.png"
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 : at + 4 + length] = bytes(length)  # zeros: not a zlib stream
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 4 + length])))
    path.write_bytes(bytes(data))
    trainer = Trainer(config(folder, "stream", **{"train.train_steps": 40}), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match=r"step \d+: .*0.png: cannot read image"):
        trainer.run()


def test_previews_shrink_with_the_image_size_on_cpu(folder, tmp_path):
    trainer = Trainer(config(folder, "memory"), tmp_path / "run", progress=False)
    assert trainer.preview_count() == 64
    trainer.config = override(trainer.config, **{"model.image_size": 64})
    assert trainer.preview_count() == 16
    trainer.config = override(trainer.config, **{"model.image_size": 256, "train.preview_images": 9})
    assert trainer.preview_count() == 9


def test_hflip_flips_about_half_of_the_images_the_network_sees(folder, tmp_path, monkeypatch):
    from gaussdiff.data.datasets import to_model_range
    from gaussdiff.diffusion.process import GaussianDiffusion

    trainer = Trainer(config(folder, "stream", **{"data.hflip": True, "train.batch_size": 24}), tmp_path / "run",
                      progress=False)
    seen = []
    real = GaussianDiffusion.training_losses
    monkeypatch.setattr(GaussianDiffusion, "training_losses", lambda self, m, x0, *a, **k: seen.append(x0) or
                        real(self, m, x0, *a, **k))
    trainer.train_step()
    images = to_model_range(trainer.data.images[trainer.batch_indices(0)])
    flipped = [bool(torch.equal(x, y.flip(-1))) and not torch.equal(x, y) for x, y in zip(seen[0], images)]
    kept = [bool(torch.equal(x, y)) for x, y in zip(seen[0], images)]
    assert all(f or k for f, k in zip(flipped, kept)) and 4 <= sum(flipped) <= 20


def test_random_crops_are_windows_of_the_resized_image_drawn_per_step_the_same_on_every_rank(folder):
    """The folder's 10x12 images resize to 8x10 (short side 8): a random crop is one of the three 8x8 windows, drawn
    per example and step from the seed alone, so rank r's half equals the half of one process's batch and the
    same step gives the same crops (a resumed run's), while the center crop stays as it was."""
    from gaussdiff.data.datasets import crop_places

    images = load_data(str(folder), image_size=8, stream="stream", crop="random").images
    order = DataOrder(len(images), 8, seed=0)
    whole = StepBatches(images, order, Distributed(), steps=40, crop_seed=0)
    halves = [StepBatches(images, order, Distributed(rank=r, world_size=2), steps=40, crop_seed=0) for r in (0, 1)]
    lefts = set()
    for step in range(40):
        idx = order.indices(step)
        batch = whole[step]
        assert torch.equal(torch.cat([h[step] for h in halves]), batch)
        assert torch.equal(whole[step], batch)  # a function of the step: what a resumed run reads
        at = crop_places(0, step, len(idx))
        for j, i in enumerate(idx.tolist()):
            path = images.files[i]
            with Image.open(path) as img:
                wide = np.asarray(img.convert("RGB").resize((10, 8), Image.Resampling.BICUBIC))
            left = min(2, int(at[j, 0] * 3))
            lefts.add(left)
            assert torch.equal(batch[j], torch.from_numpy(wide[:, left:left + 8].copy()).permute(2, 0, 1))
    assert lefts == {0, 1, 2}  # every window occurs
    assert not torch.equal(crop_places(0, 0, 8), crop_places(0, 1, 8))
    assert not torch.equal(crop_places(0, 0, 8), crop_places(1, 0, 8))


def test_random_crops_stream_and_are_refused_where_they_cannot_apply(folder, tmp_path, capsys):
    assert load_data(str(folder), image_size=8, stream="auto", crop="random").streamed  # small, yet streamed
    with pytest.raises(DataError, match="needs --stream stream"):
        load_data(str(folder), image_size=8, stream="memory", crop="random")
    with pytest.raises(DataError, match="square already"):
        load_data("digits", crop="random")
    expect_error(capsys, "train", "--data", folder, "--crop", "random", "--stream", "memory",
                 "--run-dir", tmp_path / "r", match="needs --stream stream")
    expect_error(capsys, "train-classifier", "--data", folder, "--crop", "random", "--run-dir", tmp_path / "c",
                 match="reads center crops")


def test_a_random_crop_run_resumes_with_the_crops_of_an_uninterrupted_run(folder, tmp_path, monkeypatch):
    crops = {"data.crop": "random"}
    whole = Trainer(config(folder, "stream", **crops), tmp_path / "whole", progress=False).run()
    center = Trainer(config(folder, "stream"), tmp_path / "center", progress=False).run()
    assert whole.losses != center.losses  # the crops change what the network sees
    resumed = killed_after_step_4(config(folder, "stream", **crops), tmp_path / "cut", monkeypatch)
    assert resumed.run(resume=True).losses == whole.losses[3:]


def test_a_streamed_super_resolution_run_takes_the_steps_of_an_in_memory_one(folder, tmp_path):
    """A stage's low-resolution condition is computed from each step's decoded batch when streaming: the same
    values as reading it for every example up front, so the same losses."""
    sr = {"super_res.super_res": 4, "conditioning.class_conditional": False}
    memory = Trainer(config(folder, "memory", **sr), tmp_path / "memory", progress=False).run()
    streamed = Trainer(config(folder, "stream", **sr), tmp_path / "streamed", progress=False)
    assert streamed.data.streamed and "low_res" not in streamed.offered
    assert streamed.run().losses == memory.losses


def test_the_low_resolution_condition_is_the_flipped_image_downsampled(folder, tmp_path):
    """With --hflip the stage must see the low-resolution version of the flipped image it denoises."""
    from gaussdiff.conditioning.super_res import downsample

    trainer = Trainer(config(folder, "stream", **{"super_res.super_res": 4, "data.hflip": True}), tmp_path / "r",
                      progress=False)
    idx = torch.arange(8)
    flip = torch.tensor([True, False] * 4)
    x0, pixels = trainer.x0_of(trainer.data.images[idx], idx, flip)
    low = trainer.conditions_of(idx, pixels)["low_res"]
    assert torch.equal(low, downsample(x0, 4))
    assert not torch.equal(low[0], downsample(trainer.x0_of(trainer.data.images[idx], idx)[0], 4)[0])


def test_skipping_decodes_every_image_first_so_that_nothing_fails_later(folder, tmp_path, capsys):
    """--skip-bad-images must find what only decoding finds: a PNG cut short in a streamed folder (a header scan
    passes it) and a JPEG cut short (PIL's verify passes it), in memory or streamed; prepare without it stops at the
    shard that holds one and leaves no half-written folder, and with it writes the rest."""
    png = folder / "a" / "0.png"
    png.write_bytes(png.read_bytes()[:60])
    jpeg = folder / "b" / "5.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # headers whole, half the scan gone
    (folder / "b" / "5.png").unlink()
    with Image.open(jpeg) as img:
        img.verify()  # passes: only decoding finds it
    for stream in ("stream", "memory"):
        run_dir = tmp_path / f"skip-{stream}"
        trainer = Trainer(config(folder, stream, **{"data.skip_bad_images": True, "train.train_steps": 6}), run_dir,
                          progress=False)
        assert len(trainer.data) == 22
        trainer.run()  # every image of every batch decodes
        assert sorted((run_dir / "bad-images.txt").read_text().split()) == sorted([str(png), str(jpeg)])

    def prepare_fails(out) -> str:  # below its progress bar, one line
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(["prepare", str(folder), "--out", str(out), "--image-size", "8", "--shard-size", "5"])
        assert exit_info.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert prepare_fails(tmp_path / "shards") == (f"gaussdiff: error: {png}: cannot read image (OSError: image file "
                                                  "is truncated); nothing written (--skip-bad-images leaves unreadable "
                                                  "images out)")
    assert not (tmp_path / "shards").exists()
    (tmp_path / "empty").mkdir()  # a folder the user made stays, emptied of what prepare began
    assert "nothing written" in prepare_fails(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []
    main(["prepare", str(folder), "--out", str(tmp_path / "shards"), "--image-size", "8", "--skip-bad-images"])
    assert len(load_data(str(tmp_path / "shards"))) == 22


def test_streaming_leaves_the_global_rng_to_dropout_so_losses_match_in_memory_and_after_resume(folder, tmp_path,
                                                                                              monkeypatch):
    """Dropout draws from the global RNG, which a checkpoint restores; starting the DataLoader must not draw from it
    (its iterator seeds workers from it by default), or the streamed run's dropout masks, and so its losses, differ
    from the in-memory run's, and a resumed run's from the uninterrupted one's."""
    dropout = {"model.dropout": 0.3}
    memory = Trainer(config(folder, "memory", **dropout), tmp_path / "memory", progress=False).run()
    streamed = Trainer(config(folder, "stream", **dropout), tmp_path / "streamed", progress=False).run()
    assert streamed.losses == memory.losses
    resumed = killed_after_step_4(config(folder, "stream", **dropout), tmp_path / "cut", monkeypatch)
    assert resumed.run(resume=True).losses == memory.losses[3:]


def test_ctrl_c_reaching_the_workers_leaves_them_decoding_for_the_trainer(folder):
    """Ctrl-C sends SIGINT to the terminal's whole process group, the DataLoader workers too; the trainer stops at
    the end of its step with a checkpoint, so the workers must ignore it and keep handing it batches, not die and
    end it with an error. SIGTERM still ends them: the DataLoader's shutdown of workers that outlive it sends it,
    and a worker that ignored it kept the test process from exiting."""
    import os
    import signal

    from gaussdiff.training.batches import stream_batches

    images = load_data(str(folder), image_size=8, stream="stream").images
    order = DataOrder(len(images), 8, seed=0)
    batches = stream_batches(images, order, Distributed(), start=0, steps=40, workers=1)
    assert torch.equal(next(batches), images[order.indices(0)])
    worker = batches._workers[0]
    os.kill(worker.pid, signal.SIGINT)
    for step in range(1, 20):
        assert torch.equal(next(batches), images[order.indices(step)])
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(timeout=10)
    assert not worker.is_alive()
    batches._shutdown_workers()
