"""Bounded device memory: an out-of-memory error on a tile becomes a smaller tile, not a failed
dream; at the smallest tile it is a typed error. The out-of-memory error is injected where a
GPU raises it, in the network's forward pass, when the input is larger than the device allows."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from photos import photo, tensor

from dreamcore.engine import MIN_TILE, DreamParams, auto_tile_size, dream
from dreamcore.errors import DeviceMemoryError
from dreamcore.models import load_model
from dreamcore.objectives import layer


def _small_device(max_pixels: int):  # type: ignore[no-untyped-def]
    """The default model on a pretend device that runs out of memory above `max_pixels`."""
    net = copy.deepcopy(load_model("efficientnet_lite0"))
    seen: list[int] = []

    def check(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        px = args[0].shape[-2] * args[0].shape[-1]
        seen.append(px)
        if px > max_pixels:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: {px} px)")

    net.register_forward_pre_hook(check)
    return net, seen


def test_an_out_of_memory_tile_is_retried_smaller(caplog: pytest.LogCaptureFixture) -> None:
    """A 256 px photo with 256 px tiles (320 px with margins) on a device that fits 200x200 px:
    the first tile fails, the dream goes on in 128 px tiles and equals a dream asked for in
    128 px tiles from the start (same seed)."""
    x = tensor(photo("coffee.png", 256))
    params = DreamParams(octaves=1, steps=2, tile_size=256, seed=5)
    small, seen = _small_device(200 * 200)
    with caplog.at_level(logging.WARNING, logger="dreamcore.engine"):
        out = dream(x, small, layer("blocks.3"), params)
    assert max(seen) > 200 * 200  # it did hit the limit
    assert "out of memory" in caplog.text and "retrying with 128 px" in caplog.text
    plain = load_model("efficientnet_lite0")
    want = dream(
        x, plain, layer("blocks.3"), DreamParams(octaves=1, steps=2, tile_size=128, seed=5)
    )
    assert torch.allclose(out, want, atol=1e-5)


def test_out_of_memory_at_the_smallest_tile_is_a_typed_error() -> None:
    small, _ = _small_device(32 * 32)
    with pytest.raises(DeviceMemoryError, match="Out of memory"):
        dream(tensor(photo("coffee.png", 96)), small, layer("blocks.3"), DreamParams(steps=1))


def test_the_cpu_keeps_its_fixed_tile_and_cuda_picks_a_bounded_one() -> None:
    assert auto_tile_size(torch.device("cpu")) == 2048
    if torch.cuda.is_available():
        tile = auto_tile_size(torch.device("cuda"))
        assert 2 * MIN_TILE <= tile <= 1024 and tile % 32 == 0
