"""The errors a user can cause. The CLI turns each into one line, ``gaussdiff: error: ...``, and exit 2.

Every room may import this module; it imports nothing of the package.
"""

import math


class GaussdiffError(ValueError):
    """A failure the user can fix: the message is one line meant for them."""


class ConfigError(GaussdiffError):
    """A config (an option, or a saved config.json) that does not fit this version of gaussdiff."""


class DataError(GaussdiffError):
    """A dataset that could not be read; the message names the file."""


class CheckpointError(GaussdiffError):
    """A missing, incomplete or mismatched checkpoint or run directory."""


class UsageError(GaussdiffError):
    """A bad combination of command-line options."""


def check_finite_at_least_zero(option: str, value: float) -> None:
    """Refuse ``value`` of ``option`` unless it is a finite number >= 0, as a :class:`ConfigError` (NaN would pass a
    plain ``< 0`` and reach the computation)."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{option} must be a finite number >= 0, got {value}")


class WriteError(GaussdiffError):
    """A file that could not be written (a full disk, an unwritable directory); what was there before stays."""


class NonFiniteError(GaussdiffError):
    """A NaN or inf loss or gradient in training, more often than the run allows (the message names the step), or
    samples that are not finite (it names the samples)."""
