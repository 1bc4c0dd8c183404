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
    assert q.mean.shape == q.log_var.shape == (2, 3, size // factor, size // factor) == (2, 3, *[ae.config.latent_size] * 2)
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
