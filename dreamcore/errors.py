"""Typed errors of the engine and the pool.

Every failure a caller can act on has its own class, so the bot can turn each into one polite
sentence. All of them pickle (message only), because they cross the process boundary of the pool.
"""

from __future__ import annotations

__all__ = [
    "CorruptImageError",
    "DreamCancelled",
    "DreamError",
    "ImageError",
    "ImageTooLargeError",
    "InvalidParameterError",
    "UnknownLayerError",
    "UnknownModelError",
    "UnknownPresetError",
    "UnsupportedImageError",
    "WeightsError",
    "WeightsUnavailableError",
]


class DreamError(Exception):
    """Base class of every error dreamcore raises on purpose."""


class ImageError(DreamError):
    """The input bytes are not an image we can dream."""


class UnsupportedImageError(ImageError):
    """Not an image, or an image format we do not accept."""


class CorruptImageError(ImageError):
    """An image format we accept, but truncated or damaged."""


class ImageTooLargeError(ImageError):
    """Too many pixels (or a decompression bomb); refused before the pixels are decoded."""


class InvalidParameterError(DreamError, ValueError):
    """A dream parameter outside its valid range."""


class UnknownPresetError(InvalidParameterError):
    """No preset by that name."""


class UnknownModelError(InvalidParameterError):
    """No model by that name in the zoo."""


class UnknownLayerError(InvalidParameterError):
    """The model has no dreamable layer by that name."""


class WeightsError(DreamError):
    """Weights exist but do not fit the architecture (never silently ignored)."""


class WeightsUnavailableError(WeightsError):
    """Weights are not on this machine and cannot be downloaded."""


class DreamCancelled(DreamError):
    """The caller asked the engine to stop; raised between two steps."""
