"""Latent diffusion keeps model(z_t, t, **cond): both samplers and both guidance kinds run on latents."""

import pytest
import torch

from gaussdiff import GaussianDiffusion, NoiseSchedule, sample
from gaussdiff.conditioning import ClassifierFreeGuidance, ClassifierGuidance, ClassLabel
from gaussdiff.conditioning.latent import LatentSpace
from gaussdiff.nets import NoisyClassifier, NoisyClassifierConfig, UNet, UNetConfig
from gaussdiff.nets.autoencoder import Autoencoder, AutoencoderConfig


def tiny_space() -> LatentSpace:
    torch.manual_seed(0)
    return LatentSpace(Autoencoder(AutoencoderConfig(image_size=8, in_channels=1, factor=2, latent_channels=3,
                                                     channels=8)).eval(), scale=0.7)


def test_encode_scales_the_posterior_mean_and_decode_undoes_the_scale():
    space = tiny_space()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    z = space.encode(x)
    assert z.shape == (2, 3, 4, 4) and (space.channels, space.size) == (3, 4)
    torch.testing.assert_close(z, 0.7 * space.autoencoder.encode(x).mean)
    torch.testing.assert_close(space.decode(z), space.autoencoder.decode(z / 0.7))
    torch.testing.assert_close(space.encode_all(x, batch_size=1), z)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("guidance", ["classifier-free", "classifier"])
def test_samplers_and_guidance_run_on_latents_and_decode_to_images(sampler, guidance):
    space = tiny_space()
    net = UNet(UNetConfig(image_size=4, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(2,), num_classes=10)).eval()
    d = GaussianDiffusion(NoiseSchedule.cosine(50)).respace(4)
    if guidance == "classifier-free":
        model = ClassifierFreeGuidance(net, 2.0, [ClassLabel(10)])
    else:
        encoder = UNetConfig(image_size=4, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                             num_res_blocks=1, attention_resolutions=(2,))
        classifier = NoisyClassifier(NoisyClassifierConfig(encoder, num_classes=10)).eval()
        model = ClassifierGuidance(net, classifier, d, 3.0, mode="mean" if sampler == "ddpm" else "eps",
                                   pass_labels=True)
    y = torch.tensor([1, 2])
    z = sample(model, d, (2, space.channels, space.size, space.size), sampler,
               generator=torch.Generator().manual_seed(0),
               progress=False, y=y)
    assert z.shape == (2, 3, 4, 4) and torch.isfinite(z).all()
    assert space.decode(z).shape == (2, 1, 8, 8)
