"""Measuring models: likelihood (bits/dim, ODE), sample quality (FID, KID, precision/recall), and sampling runs."""

from .bpd import BpdReport, evaluate_bpd, evaluate_ode, rate_distortion_rows
from .features import ExtractorName, make_extractor, reference_features
from .generate import generate, guided_model, takes_labels
from .metrics import fid_from_features, kernel_inception_distance, precision_recall
from .quality import QualityReport, evaluate_quality

__all__ = [
    "BpdReport",
    "ExtractorName",
    "QualityReport",
    "evaluate_bpd",
    "evaluate_ode",
    "evaluate_quality",
    "fid_from_features",
    "generate",
    "guided_model",
    "kernel_inception_distance",
    "make_extractor",
    "precision_recall",
    "rate_distortion_rows",
    "reference_features",
    "takes_labels",
]
