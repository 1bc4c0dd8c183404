"""Measuring models: likelihood (bits/dim, ODE), sample quality (FID, KID, precision/recall, accuracy, prompt
accuracy), an autoencoder's reconstructions and a super-resolution stage (PSNR, SSIM), and sampling runs."""

from .autoencoder import ReconstructionReport, evaluate_reconstructions
from .bpd import BpdReport, evaluate_bpd, evaluate_ode, rate_distortion_rows
from .features import ExtractorName, make_extractor, reference_features
from .generate import SpeedConfig, generate, generate_cascade, guided_model, takes_labels
from .metrics import fid_from_features, kernel_inception_distance, precision_recall
from .quality import PromptAccuracy, QualityReport, evaluate_quality
from .super_res import SuperResReport, evaluate_super_resolution

__all__ = [
    "BpdReport",
    "ExtractorName",
    "PromptAccuracy",
    "QualityReport",
    "ReconstructionReport",
    "SpeedConfig",
    "SuperResReport",
    "evaluate_bpd",
    "evaluate_ode",
    "evaluate_quality",
    "evaluate_reconstructions",
    "evaluate_super_resolution",
    "fid_from_features",
    "generate",
    "generate_cascade",
    "guided_model",
    "kernel_inception_distance",
    "make_extractor",
    "precision_recall",
    "rate_distortion_rows",
    "reference_features",
    "takes_labels",
]
