"""Precision and memory layout: which arithmetic the network runs in, chosen per device.

`auto` means bf16 autocast where it was measured or expected to pay (CPUs with AMX), fp32
elsewhere: on CUDA (an H200) and on a Xeon with AVX512-BF16 but no AMX, bf16 was slower for
whole dreams, and emulated bf16 on an AVX2 CPU measured 5x slower than fp32. Only the network runs in bf16; the image, the step arithmetic and the pixel gradient
stay fp32 (autocast casts on the way in, the gradient w.r.t. the fp32 input comes back fp32).

Layout: channels_last measured faster on the CPU (about 2x for EfficientNet-Lite0's depthwise
convolutions, 2 cores) and is the layout of the tensor-core kernels on CUDA with bf16.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Literal

import torch

from .errors import InvalidParameterError

__all__ = [
    "PRECISIONS",
    "Layout",
    "Precision",
    "autocast",
    "cpu_has_amx_bf16",
    "cpu_has_native_bf16",
    "default_layout",
    "precision_name",
    "resolve_layout",
    "resolve_precision",
]

Precision = Literal["auto", "fp32", "bf16"]
Layout = Literal["auto", "nchw", "channels_last"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True on CPUs that do bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX tile units for bf16 (Sapphire Rapids and later)."""
    return "amx_bf16" in _cpu_flags()


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
    dev = torch.device(device)
    if dev.type == "cuda":
        # Measured on an H200: a whole 512 px dogs dream took 23 s in bf16 + channels_last
        # against 1.2 s in fp32 NCHW, and four dog-quality tests failed in bf16. fp32 until the
        # bf16 path is both faster and as good.
        return torch.float32
    if dev.type == "cpu" and cpu_has_amx_bf16():
        # AMX's tile units are what make bf16 pay on a CPU; unmeasured here. AVX512-BF16 alone
        # does not: on such a Xeon (no AMX) a whole dogs dream ran 1.47x slower in bf16 than
        # fp32 (5.89 / 4.00 s at 512 px, 2 threads, channels_last; 1.38x with today's `dogs`),
        # and every quality test holds in fp32 there since `buildings` takes both gradients
        # (docs/speed.md, "Precision"). Emulated bf16 (AVX2) is 5x slower.
        return torch.bfloat16
    return torch.float32


def precision_name(dtype: torch.dtype) -> str:
    """The name users give a dtype the network runs in (`resolve_precision`'s inverse)."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


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
