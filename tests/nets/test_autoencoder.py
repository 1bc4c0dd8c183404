"""The KL autoencoder and the patch discriminator: shapes, the KL term, refused sizes."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gaussdiff.nets.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    DiagonalGaussian,
    DiscriminatorConfig,
    PatchDiscriminator,
)


@pytest.mark.parametrize("size, channels, factor", [(28, 1, 2), (28, 1, 4), (32, 3, 8), (8, 1, 2)])
def test_encode_and_decode_shapes_and_dtypes(size, channels, factor):
    ae = Autoencoder(AutoencoderConfig(image_size=size, in_channels=channels, factor=factor, latent_channels=3,
                                       channels=8))
    x = torch.rand(2, channels, size, size) * 2 - 1
    q = ae.encode(x)
    assert (q.mean.shape == q.log_var.shape == (2, 3, size // factor, size // factor)
            == (2, 3, *[ae.config.latent_size] * 2))
    z = q.sample(torch.Generator().manual_seed(0))
    assert z.dtype == torch.float32 and ae.decode(z).shape == x.shape
    assert ae.double().decode(z.double()).dtype == torch.float64


def test_a_factor_that_does_not_divide_the_image_is_refused():
    ae = Autoencoder(AutoencoderConfig(image_size=28, in_channels=1, factor=8, channels=8))
    with pytest.raises(ValueError, match="do not divide by the autoencoder's factor 8"):
        ae.encode(torch.zeros(1, 1, 28, 28))


def test_kl_is_torch_distributions_kl_to_the_standard_normal_summed():
    g = torch.Generator().manual_seed(1)
    mean, log_var = torch.randn(2, 4, 2, 3, 3, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    # The same closed form, summed over 36 elements: float64 rounding, ~36 eps of the terms.
    torch.testing.assert_close(DiagonalGaussian(mean, log_var).kl(), expected, rtol=1e-12, atol=1e-12)


def test_samples_of_the_posterior_have_its_mean_and_variance():
    n = 100_000
    q = DiagonalGaussian(torch.full((n, 1), 0.5), torch.full((n, 1), -2.0))
    z = q.sample(torch.Generator().manual_seed(2))
    var = torch.tensor(-2.0).exp().item()
    # 5 standard errors of a sample mean (sqrt(var / n)) and of a sample variance (var sqrt(2 / n)).
    assert abs(z.mean().item() - 0.5) < 5 * (var / n) ** 0.5 and abs(z.var().item() - var) < 5 * var * (2 / n) ** 0.5


def test_the_patch_discriminator_gives_a_logit_per_patch():
    d = PatchDiscriminator(DiscriminatorConfig(in_channels=3, disc_channels=8, disc_layers=2))
    assert d(torch.randn(2, 3, 28, 28)).shape == (2, 1, 7, 7)


def test_widths_double_per_level_up_to_four_times_the_first():
    """channels 8 at f = 8 (three halvings): 8, 16, 32, then 32 again (capped at 4x, as latent diffusion's
    ch_mult (1, 2, 4, 4)); the middle blocks and the decoder's first convolution run at the last width."""
    config = AutoencoderConfig(image_size=16, in_channels=1, factor=8, latent_channels=2, channels=8)
    assert config.widths == [8, 16, 32, 32] and AutoencoderConfig(channels=8, factor=2).widths == [8, 16]
    assert Autoencoder(config).decoder[0].out_channels == 32


def test_the_decoder_has_one_residual_block_more_per_level_than_the_encoder():
    """Latent diffusion's Decoder takes num_res_blocks + 1 blocks a level (the Encoder num_res_blocks), both
    with two in the middle: at f = 4 (3 levels) and 2 blocks, 3 * 2 + 2 = 8 and 3 * 3 + 2 = 11."""
    from gaussdiff.nets.unet import ResBlock

    ae = Autoencoder(AutoencoderConfig(image_size=8, in_channels=1, factor=4, channels=8, num_res_blocks=2))
    count = lambda m: sum(isinstance(b, ResBlock) for b in m.modules())  # noqa: E731
    assert (count(ae.encoder), count(ae.decoder)) == (8, 11)


def test_forward_decodes_a_reparameterized_sample_of_the_posterior():
    """z = mean + exp(log_var / 2) * noise (Kingma & Welling's reparameterization), so the reconstruction is
    decode(z) for the noise given; zero noise decodes the mean."""
    torch.manual_seed(3)
    ae = Autoencoder(AutoencoderConfig(image_size=8, in_channels=1, factor=2, latent_channels=2, channels=8)).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    noise = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    recon, q = ae(x, noise=noise)
    torch.testing.assert_close(recon, ae.decode(q.mean + (q.log_var / 2).exp() * noise), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ae(x, noise=torch.zeros_like(noise))[0], ae.decode(q.mean), rtol=1e-12, atol=1e-12)
    assert (recon - ae.decode(q.mean)).abs().max() > 1e-3


def test_the_posterior_log_variance_is_clamped_so_its_exp_stays_finite():
    """As latent diffusion's DiagonalGaussianDistribution: log_var in [-30, 20], whatever the encoder outputs
    (here its last convolution set to give +-1000), so the KL and samples stay finite in float32."""
    ae = Autoencoder(AutoencoderConfig(image_size=8, in_channels=1, factor=2, latent_channels=2, channels=8))
    last = ae.encoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.0, 1000.0, -1000.0]))  # mean channels, then log_var channels
    q = ae.encode(torch.zeros(1, 1, 8, 8))
    assert q.log_var[0, 0].unique().tolist() == [20.0] and q.log_var[0, 1].unique().tolist() == [-30.0]
    assert torch.isfinite(q.kl()).all() and torch.isfinite(q.sample(torch.Generator().manual_seed(0))).all()


def test_the_patch_discriminator_uses_leaky_relus_of_slope_0_2():
    """pix2pix's PatchGAN: every nonlinearity a LeakyReLU(0.2), none after the last convolution (logits)."""
    d = PatchDiscriminator(DiscriminatorConfig(in_channels=1, disc_channels=8, disc_layers=3))
    acts = [m for m in d.net if not isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm))]
    assert len(acts) == 4 and all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in acts)
    assert isinstance(d.net[-1], torch.nn.Conv2d)
