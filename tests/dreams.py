"""Dreams shared between test modules: each (preset, photo, seed, size) is dreamed once a session.

The scene test and the animal judge test read the same dreams (what `!dream <preset>` makes of a
photo), so the judge costs no extra dreaming.
"""

from __future__ import annotations

from functools import cache

from photos import photo
from PIL import Image

from dreamcore.presets import PRESETS
from dreamcore.runner import dream_image


@cache
def dreamed(preset: str, name: str, seed: int, side: int) -> Image.Image:
    """`preset` at its default strength on photo `name` scaled to `side` (treat as read-only)."""
    return dream_image(photo(name, side), PRESETS[preset], seed=seed)
