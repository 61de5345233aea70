"""Precision and memory layout: which arithmetic the network runs in, chosen per device.

`auto` means fp32 on every device measured so far, because bf16 was slower for whole dreams on
each: emulated on an AVX2 CPU 5x, natively on an AVX512-BF16 Xeon 1.47x, on an H200 19x (new
kernel plans at every octave size). bf16 stays an explicit choice (`--precision bf16`) for
hardware where `dreamcore bench --precision bf16 --compare` says otherwise (AMX is unmeasured).
Only the network runs in bf16; the image, the step arithmetic and the pixel gradient stay fp32
(autocast casts on the way in, the gradient w.r.t. the fp32 input comes back fp32).

Layout: channels_last measured faster on the CPU (about 2x for EfficientNet-Lite0's depthwise
convolutions, 2 cores) and is the layout of the tensor-core kernels on CUDA with bf16.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from .errors import InvalidParameterError

__all__ = [
    "PRECISIONS",
    "Layout",
    "Precision",
    "autocast",
    "default_layout",
    "resolve_layout",
    "resolve_precision",
]

Precision = Literal["auto", "fp32", "bf16"]
Layout = Literal["auto", "nchw", "channels_last"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype the network runs in for `precision` on `device` (fp32 or bf16)."""
    if precision not in PRECISIONS:
        raise InvalidParameterError(
            f"Unknown precision {precision!r}. Valid: {', '.join(PRECISIONS)}."
        )
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    # auto. On an H200 a whole 512 px dogs dream took 23 s in bf16 + channels_last against 1.2 s
    # in fp32 NCHW, and four dog-quality tests failed in bf16. On a Xeon with AVX512-BF16 (no
    # AMX), 2 threads, channels_last, one run each against the same plain path: a dogs dream
    # 2.47 s bf16 / 1.68 s fp32 at 256 px, 5.89 / 4.00 at 512 (`bench --compare`); the quality
    # tests passed in both. fp32 until bf16 is measured faster somewhere.
    return torch.float32


def default_layout(device: torch.device | str) -> Literal["nchw", "channels_last"]:
    """The layout measured fastest on this kind of device (see the module docstring)."""
    # CPU: channels_last, with the batch norms folded into the convolutions (models.py), made a
    # 512 px dogs dream 1.37x faster than NCHW with batch norms (2 threads, min of 4 interleaved
    # runs; folding alone 1.28x). The quality tests are medians over seeds and hold on it.
    # CUDA: NCHW. On an H200 the bf16 + channels_last dream ran 19x slower than fp32 NCHW (new
    # cuDNN plans at every octave size); fp32 channels_last there is unmeasured.
    return "channels_last" if torch.device(device).type == "cpu" else "nchw"


def resolve_layout(layout: str, device: torch.device | str) -> Literal["nchw", "channels_last"]:
    if layout == "auto":
        return default_layout(device)
    if layout not in ("nchw", "channels_last"):
        raise InvalidParameterError(f"Unknown layout {layout!r}. Valid: auto, nchw, channels_last.")
    return layout  # type: ignore[return-value]


def autocast(
    device: torch.device, dtype: torch.dtype, *, cache: bool = True
) -> contextlib.AbstractContextManager[object]:
    """Run the network in `dtype` (a no-op for fp32). `cache=False` inside CUDA graph capture."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)
