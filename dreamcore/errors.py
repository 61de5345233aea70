"""Typed errors of the engine and the pool.

Every failure a caller can act on has its own class, so the bot can turn each into one polite
sentence. All of them pickle (message only), because they cross the process boundary of the pool.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = [
    "CorruptImageError",
    "DeviceMemoryError",
    "DeviceUnavailableError",
    "DreamCancelled",
    "DreamError",
    "EmptyImageError",
    "ImageError",
    "ImageMetadataError",
    "ImageTooLargeError",
    "InvalidParameterError",
    "JobCancelledError",
    "JobTimeoutError",
    "OutputFormatError",
    "OwnerLimitError",
    "PoolBusyError",
    "PoolClosedError",
    "PoolError",
    "PoolStartError",
    "UnknownLayerError",
    "UnknownModelError",
    "UnknownPresetError",
    "UnsupportedImageError",
    "WeightsError",
    "WeightsUnavailableError",
    "WorkerCrashedError",
    "unknown_name",
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


class EmptyImageError(ImageError):
    """Nothing to see: an alpha that hides every pixel over one flat colour (no picture under it)."""


class ImageMetadataError(ImageError):
    """Pixels we could read, buried under more metadata (text, colour profile) than we accept."""


class InvalidParameterError(DreamError, ValueError):
    """A dream parameter outside its valid range."""


class OutputFormatError(InvalidParameterError):
    """The result cannot be written in the format asked for (e.g. wider than WebP allows)."""


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


class DeviceUnavailableError(InvalidParameterError):
    """A device this machine lacks: CUDA where there is no GPU, or a GPU past the last one."""


class DeviceMemoryError(DreamError):
    """The device ran out of memory even with the smallest tile."""


class DreamCancelled(DreamError):
    """The caller asked the engine to stop; raised between two steps."""


class PoolError(DreamError):
    """The worker pool could not take, finish or keep a job (the dream itself was not at fault)."""


class PoolBusyError(PoolError):
    """The queue is full: refused at once, so the caller can say "try again later"."""

    def __init__(self, queue_length: int, message: str | None = None) -> None:
        super().__init__(message or f"the dream queue is full ({queue_length} jobs waiting)")
        self.queue_length = queue_length

    def __reduce__(self) -> tuple[type[PoolBusyError], tuple[int, str]]:
        return type(self), (self.queue_length, str(self))


class OwnerLimitError(PoolError):
    """This owner already has as many jobs queued or running as the pool allows."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"at most {limit} dreams per person may be queued or running")
        self.limit = limit

    def __reduce__(self) -> tuple[type[OwnerLimitError], tuple[int, str]]:
        return type(self), (self.limit, str(self))


class JobTimeoutError(PoolError):
    """The job ran past its time limit and was stopped."""


class JobCancelledError(PoolError):
    """The job was cancelled by its caller before it finished."""


class WorkerCrashedError(PoolError):
    """The worker process died while running the job (killed, out of memory, crashed)."""


class PoolClosedError(PoolError):
    """The pool is not running (not started, or shut down before the job could finish)."""


class PoolStartError(PoolError):
    """A worker could not start or load its models in time."""


def unknown_name(
    kind: str, name: str, valid: Sequence[str], *, where: str = "", cutoff: float = 0.4
) -> str:
    """The message for a name nobody knows: the closest valid one, then all of them."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown {kind} {name!r}{where}.{hint} Valid: {', '.join(valid)}."
