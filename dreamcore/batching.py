"""Which jobs may share a batch: one forward/backward pass carrying several photos.

Two stills share a batch when they would be dreamed with the same settings at the same working
size: the same resolved preset (model, objective, octaves, steps, precision ...; the seed and
the photo's own colour handling stay per job) and the same size once capped to `max_size`.
The pool reads the size from the file's header at submit, so grouping costs no decoding; the
worker checks again after decoding (EXIF orientation may swap the sides) and dreams each size
as its own batch. Zooms, explorer sheets and guided dreams always run alone.
"""

from __future__ import annotations

from .errors import DreamError
from .images import header_size
from .jobs import JobSpec
from .presets import PRESETS, resolve

__all__ = ["BatchKey", "batch_key"]

BatchKey = tuple[str, int, int]


def batch_key(image: bytes, spec: JobSpec) -> BatchKey | None:
    """Jobs with equal keys can be dreamed together; None: this job runs alone."""
    if spec.kind != "dream" or spec.guide is not None:
        return None
    size = header_size(image)
    if size is None:
        return None  # the worker refuses it with its typed error, alone
    try:
        preset = resolve(PRESETS[spec.preset], spec.overrides)
    except DreamError:
        return None  # the worker answers with the same error, alone
    width, height = size
    if max(width, height) > preset.max_size:  # as `images.cap_side` scales it
        scale = preset.max_size / max(width, height)
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
    return preset.model_dump_json(), width, height
