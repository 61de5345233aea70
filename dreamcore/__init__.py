"""dreamcore: the DeepDream engine behind the bot, usable from Python and from `dreamcore`.

    from dreamcore import JobSpec, run_job
    result = run_job(open("photo.jpg", "rb").read(), JobSpec(preset="dogs", seed=1))
    open(result.filename, "wb").write(result.image)

Lower down: `load_model` (the zoo), objectives that add and scale (`layer`, `channels`,
`classes`, `guide`), `dream` (the octave loop on tensors; `dream_batch` for several images of
one size), presets as data, and `DreamPool` (worker processes for an asyncio caller). A `JobSpec` with `zoom=ZoomSpec(...)` makes a
dream-zoom video, with `explore=ExploreSpec(...)` a layer explorer sheet.
"""

from __future__ import annotations

from .engine import DreamParams, dream, dream_batch
from .errors import (
    CorruptImageError,
    DeviceMemoryError,
    DreamCancelled,
    DreamError,
    EmptyImageError,
    ImageError,
    ImageMetadataError,
    ImageTooLargeError,
    InvalidParameterError,
    JobCancelledError,
    JobTimeoutError,
    OutputFormatError,
    OwnerLimitError,
    PoolBusyError,
    PoolClosedError,
    PoolError,
    UnknownLayerError,
    UnknownModelError,
    UnknownPresetError,
    UnsupportedImageError,
    WeightsError,
    WeightsUnavailableError,
    WorkerCrashedError,
)
from .images import decode_image, encode_image
from .jobs import DreamOverrides, ExploreSpec, JobResult, JobSpec, Progress, ZoomSpec
from .models import get_model, list_models, load_model, register_model, set_weights_file
from .objectives import channels, classes, guide, layer
from .pool import DreamPool, Job, PoolConfig, PoolStats
from .presets import PRESETS, Preset, resolve
from .runner import dream_image, run_job, warm_up

__all__ = [
    "PRESETS",
    "CorruptImageError",
    "DeviceMemoryError",
    "DreamCancelled",
    "DreamError",
    "DreamOverrides",
    "DreamParams",
    "DreamPool",
    "EmptyImageError",
    "ExploreSpec",
    "ImageError",
    "ImageMetadataError",
    "ImageTooLargeError",
    "InvalidParameterError",
    "Job",
    "JobCancelledError",
    "JobResult",
    "JobSpec",
    "JobTimeoutError",
    "OutputFormatError",
    "OwnerLimitError",
    "PoolBusyError",
    "PoolClosedError",
    "PoolConfig",
    "PoolError",
    "PoolStats",
    "Preset",
    "Progress",
    "UnknownLayerError",
    "UnknownModelError",
    "UnknownPresetError",
    "UnsupportedImageError",
    "WeightsError",
    "WeightsUnavailableError",
    "WorkerCrashedError",
    "ZoomSpec",
    "channels",
    "classes",
    "decode_image",
    "dream",
    "dream_batch",
    "dream_image",
    "encode_image",
    "get_model",
    "guide",
    "layer",
    "list_models",
    "load_model",
    "register_model",
    "resolve",
    "run_job",
    "set_weights_file",
    "warm_up",
]
