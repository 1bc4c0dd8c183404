"""How well an autoencoder reconstructs held-out images: PSNR, and FID of the reconstructions in the
features the samples are scored in (against the training set, like samples)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..conditioning.latent import LatentSpace
from ..data.datasets import ImageData, to_model_range, to_uint8
from .features import ExtractorName
from .quality import evaluate_quality


@dataclass
class ReconstructionReport:
    """How well ``n`` held-out images are reconstructed, FIDs in the ``features`` of an extractor."""

    n: int
    psnr: float
    """Mean over images of 10 log10(255^2 / MSE), on the uint8 images, dB."""
    psnr_stderr: float
    fid: float
    """FID of the reconstructions against the training set."""
    fid_originals: float
    """FID of the held-out originals themselves against the training set: the floor for ``fid``."""
    features: str


def reconstruct(space: LatentSpace, images: Tensor, batch_size: int = 256) -> Tensor:
    """``uint8 [N, C, H, W]`` -> their reconstructions D(E(x)) (the posterior mean), ``uint8``."""
    device = next(space.autoencoder.parameters()).device
    out = [to_uint8(space.decode(space.encode(to_model_range(images[i : i + batch_size]).to(device)))).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def evaluate_reconstructions(space: LatentSpace, held_out: Tensor, data_name: str, reference: ImageData,
                             features: ExtractorName = "classifier", device: str = "cpu") -> ReconstructionReport:
    """PSNR and FID of the reconstructions of ``held_out`` (``uint8 [N, C, H, W]``)."""
    recon = reconstruct(space, held_out)
    mse = ((recon.double() - held_out.double()) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp(min=1e-10))
    limit = len(held_out) if features == "inception" else None
    fid = evaluate_quality(recon, data_name, reference, features, reference_limit=limit, device=device).fid
    floor = evaluate_quality(held_out, data_name, reference, features, reference_limit=limit, device=device).fid
    n = len(held_out)
    stderr = float(psnr.std() / math.sqrt(n)) if n > 1 else float("nan")
    return ReconstructionReport(n, float(psnr.mean()), stderr, fid, floor, features)
