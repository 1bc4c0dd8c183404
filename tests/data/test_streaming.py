"""A folder streamed through DataLoader workers trains exactly as the same folder in memory: the same images and
conditions in the same order for the seed, before and after a kill, and a rank decodes only its part."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import expect_error, override, tiny_config
from gaussdiff.data.datasets import FolderImages, load_data
from gaussdiff.errors import DataError
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.distributed import Distributed
from gaussdiff.training.loop import DataOrder
from gaussdiff.training.trainer import StepBatches, Trainer


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
    real_step = Trainer.train_step

    def killed_at_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(folder, "stream", **{"data.hflip": True}), tmp_path / "cut", progress=False).run()
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000003"]
    resumed = Trainer(config(folder, "stream", **{"data.hflip": True}), tmp_path / "cut", progress=False)
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


def test_an_image_cut_short_after_its_header_names_itself_when_its_batch_comes(folder, tmp_path):
    path = folder / "a" / "0.png"
    path.write_bytes(path.read_bytes()[:60])  # the header reads; the pixels do not
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
