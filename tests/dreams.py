"""Dreams shared between test modules: each (preset, photo, seed, size) is dreamed once a session.

The scene test and the animal judge test read the same dreams (what `!dream <preset>` makes of a
photo), so the judge costs no extra dreaming.

`SEEDS` are the seeds every quality test takes its medians over: 1-3, or 1-N with `--seeds N`
(conftest), to see whether a bar met at three seeds holds over more.
"""

from __future__ import annotations

from functools import cache

from photos import photo
from PIL import Image

from dreamcore.presets import PRESETS
from dreamcore.runner import dream_image

SEEDS: tuple[int, ...] = (1, 2, 3)  # conftest replaces it for `--seeds N` before tests import it


@cache
def dreamed(preset: str, name: str, seed: int, side: int) -> Image.Image:
    """`preset` at its default strength on photo `name` scaled to `side` (treat as read-only)."""
    return dream_image(photo(name, side), PRESETS[preset], seed=seed)
