"""Honest colour: a grey photo stays grey, black stays black, white stays white.

`colour=keep` (the default for greyscale input) dreams brightness only, so a black border does
not turn olive; `colour=free` is the old behaviour and lets the dream colour the picture. Measured before the change (dogs, seed 1): a greyscale
photo came back with 57-64% of its pixels visibly coloured, a black border went from RGB
(2, 0, 1) to (39, 45, 28).
"""

from __future__ import annotations

import numpy as np
import pytest
from photos import photo, png_bytes
from PIL import Image, ImageOps

from dreamcore.images import decode_image
from dreamcore.jobs import DreamOverrides, JobSpec
from dreamcore.runner import is_greyscale, run_job

QUICK = DreamOverrides(octaves=3, steps=6)


def _dream(img: Image.Image, preset: str, seed: int, **overrides: object) -> np.ndarray:
    o = QUICK.model_copy(update=overrides)
    result = run_job(png_bytes(img), JobSpec(preset=preset, overrides=o, seed=seed))
    return np.asarray(decode_image(result.image).rgb, dtype=np.int16)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """Per pixel: the spread of the three channels (0 for a grey pixel), 0..255."""
    return rgb.max(axis=2) - rgb.min(axis=2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_greyscale_photo_comes_back_greyscale(seed: int) -> None:
    """Bound: no pixel's channels differ by more than 2 of 255 (JPEG-free PNG round trip)."""
    src = photo("camera.png", 160)
    assert is_greyscale(src)
    out = _dream(src, "dogs", seed)
    assert _chroma(out).max() <= 2, _chroma(out).max()
    assert np.abs(out[..., 0] - np.asarray(src.convert("L"), dtype=np.int16)).mean() > 3  # dreamed


def test_colour_free_may_colour_a_greyscale_photo() -> None:
    """The opt-out exists and does what it says (so the test above is not vacuous)."""
    out = _dream(photo("camera.png", 160), "dogs", 1, colour="free")
    assert (_chroma(out) > 12).mean() > 0.05


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb.astype(np.uint8)).convert("YCbCr"), dtype=np.int16)


def test_keep_leaves_a_colour_photo_with_its_own_colours() -> None:
    """`keep` on a colour photo dreams brightness only: Cb and Cr stay where they were.

    Bound: mean |dCb| + |dCr| at most 2 of 255 over pixels whose brightness stays inside
    0.1..0.9 in both pictures (clamping at black or white must change the colour of a pixel).
    """
    src = np.asarray(photo("coffee.png", 160), dtype=np.int16)
    out = _dream(photo("coffee.png", 160), "dogs", 1, colour="keep")
    a, b = _ycbcr(src), _ycbcr(out)
    inside = (np.minimum(a[..., 0], b[..., 0]) > 25) & (np.maximum(a[..., 0], b[..., 0]) < 230)
    change = np.abs(a[..., 1:] - b[..., 1:]).sum(axis=2)[inside]
    assert inside.mean() > 0.5 and change.mean() <= 2, (inside.mean(), change.mean())


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fill", ["black", "white"])
def test_black_and_white_borders_gain_no_tint_in_kept_colour(fill: str, seed: int) -> None:
    """A 24 px border of pure black (or white) around a colour photo, dreamed with `dogs`.

    Bound: the border's median pixel has a channel spread of at most 6 of 255, and 90% of its
    pixels at most 12 (an olive tint like (39, 45, 28) has a spread of 17). Brightness may
    change: dog heads may grow across the border; they must not be coloured there.
    """
    src = ImageOps.expand(photo("coffee.png", 144), border=24, fill=fill)
    out = _dream(src, "dogs", seed, colour="keep")
    mask = np.ones(out.shape[:2], dtype=bool)
    mask[24:-24, 24:-24] = False
    spread = _chroma(out)[mask]
    assert np.median(spread) <= 6 and np.quantile(spread, 0.9) <= 12, (
        np.median(spread),
        np.quantile(spread, 0.9),
    )
