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
from gaussdiff.training.control import NullLogger


def tiny_autoencoder_config(steps: int = 4, **changes) -> AutoencoderTrainConfig:
    return override(AutoencoderTrainConfig(), **{
        "data.data": "digits", "autoencoder.factor": 2, "autoencoder.channels": 8, "autoencoder.latent_channels": 2,
        "discriminator.disc_channels": 8, "train_steps": steps, "batch_size": 8, "optim.warmup": 1,
        "bookkeeping.log_every": 1,
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
    space, _, _ = load_latent_space(str(tmp_path / "ae"))  # a path as a string too
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


def small_trainer(tmp_path, **changes) -> AutoencoderTrainer:
    """A trainer on 16 made-up 8x8 grey images (4x4x2 latents), its networks' weights as initialised."""
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8))
    config = tiny_autoencoder_config(**{"optim.precision": "fp32", **changes})
    return AutoencoderTrainer(config, tmp_path / "ae", data=ImageData(images, None), progress=False)


@pytest.mark.parametrize("reconstruction", ["l1", "l2"])
def test_the_loss_is_the_reconstruction_plus_the_weighted_kl_per_pixel(tmp_path, reconstruction):
    """Rombach et al. App. G: mean |x - x_hat| (l1) or (x - x_hat)^2 (l2) over pixels, plus kl_weight x
    KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2) (Kingma & Welling App. B) over the
    latent, divided by the image's C x H x W pixels and averaged over the batch; x_hat decodes mu + sigma noise.
    A kl_weight of 0.25 (the default's 1e-6 would hide the term under float32 rounding of the reconstruction)."""
    trainer = small_trainer(tmp_path, reconstruction=reconstruction, kl_weight=0.25)
    x = trainer.data.images[:4].float() / 127.5 - 1
    noise = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    terms = trainer.losses(x, noise)
    with torch.no_grad():
        posterior = trainer.model.encode(x)
        mu, log_var = posterior.mean.double(), posterior.log_var.double()
        x_hat = trainer.model.decode(posterior.mean + torch.exp(0.5 * posterior.log_var) * noise).double()
    diff = x_hat - x.double()
    rec = diff.abs().mean() if reconstruction == "l1" else (diff**2).mean()
    kl = (0.5 * (mu**2 + log_var.exp() - 1 - log_var)).sum((1, 2, 3)).mean() / 64
    assert kl > 1e-3  # a KL the check can see
    torch.testing.assert_close(terms["rec"].double(), rec, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["kl"].double(), kl, rtol=1e-5, atol=0)
    torch.testing.assert_close(terms["loss"].double(), rec + 0.25 * kl, rtol=1e-5, atol=0)


def test_from_gan_start_the_generator_minimises_minus_d_and_d_learns_the_hinge_on_real_and_fake(tmp_path):
    """Esser et al. 2021: the adversarial phase begins at step gan_start itself (not the step after); the generator's
    term is -mean D(x_hat), added with the adaptive weight, and the discriminator's loss is the hinge with the real
    batch on the real side: 1/2 (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))."""
    trainer = small_trainer(tmp_path, gan_start=3)
    trainer.step = 2
    assert not trainer.adversarial
    trainer.step = 3
    assert trainer.adversarial
    seen = []
    real_losses = trainer.losses
    trainer.losses = lambda x, noise=None: seen.append((x, real_losses(x, noise))) or seen[-1][1]
    trainer.disc_optim.step = lambda loss: (0.0, True)  # D stays as it was, to be asked again below
    logged = trainer.train_step()
    x, terms = seen[0]
    with torch.no_grad():
        d_real, d_fake = trainer.disc(x), trainer.disc(terms["x_hat"])
    assert not torch.allclose(d_real.mean(), d_fake.mean(), rtol=0, atol=1e-3)  # the two sides differ
    torch.testing.assert_close(terms["gan"], -d_fake.mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(terms["loss"], terms["rec"] + trainer.config.kl_weight * terms["kl"]
                               + terms["gan_weight"] * terms["gan"], rtol=1e-6, atol=1e-7)
    hinge = 0.5 * (torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean())
    assert logged["d_loss"] == pytest.approx(hinge.item(), rel=1e-6)


def test_the_discriminators_learning_rate_schedule_spans_its_steps_from_gan_start(tmp_path):
    """The discriminator steps from --gan-start on, so its warm-up begins there and its cosine ends with the run: after
    the last step both optimizers' rates are 0 (the discriminator's stood at 0.35 of its peak, its cosine laid over
    all 6 steps while it took 4)."""
    config = tiny_autoencoder_config(6, gan_start=2, **{"optim.lr_schedule": "cosine"})
    trainer = AutoencoderTrainer(config, tmp_path / "run", progress=False)
    trainer.run()
    rates = [o.optimizer.param_groups[0]["lr"] for o in (trainer.optim, trainer.disc_optim)]
    assert rates == [0.0, 0.0]
    assert trainer.disc_optim.lr_factor(0) == 1.0  # warm-up 1: its first step at the peak, as the autoencoder's


def test_the_preview_puts_originals_above_their_reconstructions_from_the_mean(tmp_path):
    """A row of held-out originals, then their reconstructions: the posterior's mean decoded, saturated to uint8."""
    trainer = small_trainer(tmp_path)
    preview = trainer.preview()
    held_out = trainer.data.images[:8]
    with torch.no_grad():
        x_hat = trainer.model.decode(trainer.model.encode(held_out.float() / 127.5 - 1).mean)
    expected = ((x_hat + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert preview.per_row == 8 and torch.equal(preview.images[:8], held_out)
    assert (preview.images[8:].int() - expected.int()).abs().max() <= 1  # a rounding boundary, at most


def test_a_logged_row_is_the_mean_of_the_steps_since_the_last(tmp_path):
    """With log_every 2 each row's loss is the mean of its two steps' losses, at the step it was logged."""
    rows = []

    class Rows(NullLogger):
        def log(self, row):
            rows.append(row)

    trainer = small_trainer(tmp_path, **{"bookkeeping.log_every": 2, "bookkeeping.checkpoint_every": 4})
    trainer.logger = Rows()
    losses = trainer.run().losses
    assert [r["step"] for r in rows] == [2, 4]
    for row, pair in zip(rows, (losses[:2], losses[2:])):
        assert row["loss"] == pytest.approx(sum(pair) / 2, rel=1e-12)


def test_a_row_spanning_gan_start_averages_the_gan_terms_over_the_steps_that_have_them(tmp_path):
    """From gan_start = 3 only the fourth of four steps is adversarial: the row of steps 3-4 gives that step's gan,
    gan_weight and d_loss (averaged over both steps, they were halved), and the loss over both steps."""
    def rows_of(log_every: int) -> list[dict]:
        rows = []

        class Rows(NullLogger):
            def log(self, row):
                rows.append(row)

        trainer = small_trainer(tmp_path / str(log_every), gan_start=3,
                                **{"bookkeeping.log_every": log_every, "bookkeeping.checkpoint_every": 4})
        trainer.logger = Rows()
        trainer.run()
        return rows

    each, pairs = rows_of(1), rows_of(2)
    assert "gan" not in each[2] and "gan" in each[3] and each[3]["gan"] != 0
    for key in ("gan", "gan_weight", "d_loss"):
        assert pairs[1][key] == pytest.approx(each[3][key], rel=1e-6), key
    assert pairs[1]["loss"] == pytest.approx((each[2]["loss"] + each[3]["loss"]) / 2, rel=1e-6)


def test_the_largest_seed_the_cli_takes_trains(tmp_path):
    """--seed 2**64 - 1 passes the CLI's check; the posterior noise's seed + 1 must still seed a generator."""
    trainer = AutoencoderTrainer(tiny_autoencoder_config(steps=1, seed=2**64 - 1), tmp_path / "ae", progress=False)
    assert trainer.run().step == 1
