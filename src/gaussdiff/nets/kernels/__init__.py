"""Hand-written kernels the networks call: Winograd F(4x4, 3x3) convolutions."""

from .winograd import Conv3x3, ConvAlgorithm, winograd_conv3x3

__all__ = ["Conv3x3", "ConvAlgorithm", "winograd_conv3x3"]
