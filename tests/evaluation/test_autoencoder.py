"""evaluate_reconstructions: PSNR per image on the uint8 scale, and which FID is which, with a stand-in FID."""

import math
from types import SimpleNamespace

import pytest
import torch

import gaussdiff.evaluation.autoencoder as ae_eval
from gaussdiff.conditioning.latent import LatentSpace
from gaussdiff.data import ImageData
from gaussdiff.data.datasets import to_model_range, to_uint8
from gaussdiff.nets.autoencoder import Autoencoder, AutoencoderConfig


def test_reconstructions_are_the_decoded_posterior_mean_whatever_the_latent_scale():
    """D(E(x)): the latent scale multiplies on encoding and divides on decoding, so it cancels; and batching
    does not change an image's reconstruction."""
    torch.manual_seed(0)
    autoencoder = Autoencoder(AutoencoderConfig(image_size=8, in_channels=1, factor=2, latent_channels=2,
                                                channels=8)).eval()
    images = torch.randint(0, 256, (5, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        expected = to_uint8(autoencoder.decode(autoencoder.encode(to_model_range(images)).mean))
    for scale, batch_size in ((0.25, 256), (1.0, 2), (3.0, 5)):
        got = ae_eval.reconstruct(LatentSpace(autoencoder, scale), images, batch_size=batch_size)
        assert got.dtype == torch.uint8
        # A latent scaled by 3 and back (or another batch size's kernels) may move a decoded value by an ulp, and so
        # its rounding by one level: at most that, and rarely.
        assert (got.int() - expected.int()).abs().max().item() <= 1 and (got != expected).float().mean() < 0.02


@pytest.mark.parametrize("features", ["classifier", "inception"])
def test_psnr_is_averaged_over_images_and_each_fid_is_its_own(monkeypatch, features):
    """Image k's reconstruction is off by k levels at every pixel: MSE k^2, PSNR 10 log10(255^2 / k^2) =
    20 log10(255 / k) dB; the report is their mean and its standard error (sample std / sqrt(n)). The FID of the
    reconstructions is ``fid`` and that of the originals ``fid_originals``; inception's reference is cut to
    as many images as are held out, the classifier's is whole."""
    held_out = torch.full((4, 1, 8, 8), 100, dtype=torch.uint8)
    offsets = torch.tensor([1, 2, 3, 4], dtype=torch.uint8)[:, None, None, None]
    recon = held_out + offsets
    monkeypatch.setattr(ae_eval, "reconstruct", lambda space, images: recon)
    calls = []

    def fake_quality(images, data_name, reference, features, reference_limit=None, device="cpu"):
        calls.append(reference_limit)
        return SimpleNamespace(fid=7.0 if torch.equal(images, recon) else 3.0)

    monkeypatch.setattr(ae_eval, "evaluate_quality", fake_quality)
    report = ae_eval.evaluate_reconstructions(None, held_out, "digits", ImageData(held_out, None), features)
    per_image = torch.tensor([20 * math.log10(255 / k) for k in (1, 2, 3, 4)], dtype=torch.float64)
    assert report.n == 4 and report.features == features
    assert report.psnr == pytest.approx(per_image.mean().item(), rel=1e-12)
    assert report.psnr_stderr == pytest.approx(per_image.std().item() / 2, rel=1e-12)
    assert (report.fid, report.fid_originals) == (7.0, 3.0)
    assert calls == ([4, 4] if features == "inception" else [None, None])
