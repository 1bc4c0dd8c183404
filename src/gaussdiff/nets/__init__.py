"""Networks only: no diffusion math lives here."""

from .unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig"]
