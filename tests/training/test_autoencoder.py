"""The autoencoder's training: the adversarial weight, the hinge loss, the latent scale, exact resume."""

import numpy as np
import pytest
import torch

from conftest import override
from gaussdiff.data.datasets import ImageData
from gaussdiff.training.autoencoder import AutoencoderTrainer, adaptive_weight, hinge_d_loss
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.config import AutoencoderTrainConfig
from gaussdiff.training.latent import load_latent_space


def tiny_autoencoder_config(steps: int = 4, **changes) -> AutoencoderTrainConfig:
    return override(AutoencoderTrainConfig(), **{
        "data.data": "digits", "autoencoder.factor": 2, "autoencoder.channels": 8, "autoencoder.latent_channels": 2,
        "discriminator.disc_channels": 8, "train_steps": steps, "batch_size": 8, "optim.warmup": 1, "bookkeeping.log_every": 1,
        "bookkeeping.sample_every": 100, "bookkeeping.checkpoint_every": 2, "device": "cpu", **changes})


def test_the_adaptive_weight_is_the_ratio_of_the_gradients_at_the_last_layer():
    """For losses linear in the last layer W, sum(W * A) and sum(W * B), the gradients are A and B:
    lambda = s |A| / (|B| + 1e-4) (Esser et al. 2021 Eq. 7)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    A, B = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    weight = adaptive_weight((W * A).sum(), (W * B).sum(), W, 0.5)
    expected = 0.5 * A.norm() / (B.norm() + 1e-4)
    torch.testing.assert_close(weight, expected, rtol=1e-14, atol=0)  # a few float64 operations
    assert not weight.requires_grad
    assert adaptive_weight((W * A).sum(), (W * B * 1e-12).sum(), W, 1.0).item() == 1e4  # clamped


def test_hinge_loss_is_zero_only_beyond_the_margins():
    assert hinge_d_loss(torch.tensor([2.0, 1.0]), torch.tensor([-1.0, -3.0])).item() == 0.0
    # real at 0 costs 1, fake at 0 costs 1: half of their sum.
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == 1.0


def test_the_latent_scale_gives_the_latents_unit_variance(tmp_path):
    """On made-up data the estimated scale makes the encoded images' standard deviation one (the same
    images it was estimated on: float32 rounding of a std over 2 x 16 x 16 x 300 values)."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (300, 1, 32, 32), dtype=np.uint8))
    trainer = AutoencoderTrainer(tiny_autoencoder_config(steps=0), tmp_path / "ae", data=ImageData(images, None),
                                 progress=False)
    trainer.run()
    space, _, _ = load_latent_space(tmp_path / "ae")
    z = space.encode_all(images.float() / 127.5 - 1)
    assert z.shape == (300, 2, 16, 16) and abs(z.std().item() - 1.0) < 1e-5
    assert space.scale != 1.0  # it was not unit variance before scaling


class Interrupted(Exception):
    pass


def test_the_autoencoder_resumes_exactly_with_its_discriminator(tmp_path):
    config = tiny_autoencoder_config(steps=6, gan_start=1)
    full = AutoencoderTrainer(config, tmp_path / "full", progress=False)
    full_losses = full.run().losses

    class CrashAt5(AutoencoderTrainer):
        def train_step(self):
            if self.step == 4:
                raise Interrupted
            return super().train_step()

    with pytest.raises(Interrupted):
        CrashAt5(config, tmp_path / "cut", progress=False).run()
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000002", "step-0000004"]
    resumed = AutoencoderTrainer(config, tmp_path / "cut", progress=False)
    assert resumed.run(resume=True).losses == full_losses[4:]
    for a, b in [(full.model, resumed.model), (full.disc, resumed.disc)]:
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v, w), k


def test_a_factor_that_does_not_divide_the_data_is_refused(tmp_path):
    from gaussdiff.errors import ConfigError

    with pytest.raises(ConfigError, match="--factor 8 does not divide the 28x28 images"):
        AutoencoderTrainer(tiny_autoencoder_config(**{"data.data": "fashion-mnist", "autoencoder.factor": 8}),
                           tmp_path / "x", progress=False)
