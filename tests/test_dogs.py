"""`dogs` turns photos towards dogs, as an independent judge sees them, and keeps the scene.

The dreamer is EfficientNet-Lite0; the judge is EfficientNet-Lite1 (tests/judge.py), so a
pattern that fools only the dreamer's own classifier does not count. Each photo is dreamed once
at 512 px with the shipped `dogs` preset and a fixed seed, through the whole job path (bytes in,
encoded bytes out).

Thresholds, and why (figures measured at seed 1 on 2 CPU threads, inputs -> outputs):
- Lightly blurred JPEG, mean dog mass over the judge's ten views: at least 0.2 and at least
  5x the photo's own (measured 0.02 -> 0.45 chelsea, 0.02 -> 0.27 coffee, 0.03 -> 0.28 Hubble).
  A photo with no dog reads 0.02-0.03: a fifth of the judge's belief is a lot of dog.
- Heavily blurred (3.2 px at 512), fur speckle gone: the mean dog mass at least doubles
  (measured 0.11 -> 0.30 chelsea, 0.04 -> 0.13 coffee, 0.03 -> 0.07 Hubble), and the best of
  the ten views reads at least 0.3 dog, six to ten times what coffee and Hubble read, and no less
  than before: somewhere there is a head (measured 0.58, 0.56, 0.33; chelsea's blurred cat
  already reads 0.47 in its best view).
- Structural similarity, greyscale at 128 px, at least 0.3 (measured 0.36-0.48; unrelated photos
  score below 0.15): the cup, the cat, the galaxies are still where they were.
"""

from __future__ import annotations

import pytest
from judge import class_mass, heavy, light, structure
from photos import photo, png_bytes
from PIL import Image

from dreamcore.images import decode_image
from dreamcore.jobs import JobSpec
from dreamcore.runner import run_job

PHOTOS = ["chelsea.png", "coffee.png", "hubble_deep_field.jpg"]


@pytest.fixture(scope="module", params=PHOTOS)
def dreamed(request: pytest.FixtureRequest) -> tuple[Image.Image, Image.Image]:
    src = photo(request.param, 512)
    result = run_job(png_bytes(src), JobSpec(preset="dogs", seed=1))
    out = decode_image(result.image).rgb
    print(
        f"\n{request.param}: light {class_mass(light(src))} -> {class_mass(light(out))}, "
        f"heavy {class_mass(heavy(src))} -> {class_mass(heavy(out))}, ssim {structure(src, out):.3f}"
    )
    return src, out


def test_dogs_show_through_a_light_blur_and_jpeg(dreamed: tuple[Image.Image, Image.Image]) -> None:
    src, out = dreamed
    before, after = class_mass(light(src))[0], class_mass(light(out))[0]
    assert after >= 0.2 and after >= 5 * before, (before, after)


def test_dog_heads_survive_a_heavy_blur(dreamed: tuple[Image.Image, Image.Image]) -> None:
    src, out = dreamed
    (mean0, best0), (mean1, best1) = class_mass(heavy(src)), class_mass(heavy(out))
    assert mean1 >= 2 * mean0, (mean0, mean1)
    assert best1 >= max(0.3, best0), (best0, best1)


def test_the_scene_stays_recognisable(dreamed: tuple[Image.Image, Image.Image]) -> None:
    src, out = dreamed
    assert out.size == src.size
    assert structure(src, out) >= 0.3


def test_unrelated_photos_score_low_on_structure() -> None:
    """The structure floor means something: two different photos fall far below it."""
    a, b = photo("coffee.png", 512), photo("rocket.jpg", 512).resize(photo("coffee.png", 512).size)
    assert structure(a, b) < 0.15


@pytest.mark.parametrize("preset", ["cats"])
def test_other_animal_presets_grow_their_own_kind_not_dogs(preset: str) -> None:
    """blocks.4 grows dog-like heads: the other animal presets must not all turn into dogs.

    Only `cats` is held to it so far: `birds` measured 0.13 at 320 px but 0.03 at 256 px, and
    `insects` and `buildings` stay weak for the judge (see the README's known gaps).
    """
    src = photo("coffee.png", 256)
    result = run_job(png_bytes(src), JobSpec(preset=preset, seed=2))
    out = light(decode_image(result.image).rgb)
    own, dogs = class_mass(out, preset)[0], class_mass(out, "dogs")[0]
    # Measured at seed 2: cats' own mass 0.003 -> 0.22, its dog mass 0.04.
    assert own >= 10 * class_mass(light(src), preset)[0], own
    assert own > 1.5 * dogs, (own, dogs)
