"""`dogs` turns photos towards dogs, as an independent judge sees them, and keeps the scene.

The dreamer is EfficientNet-Lite0; the judge is EfficientNet-Lite1 (tests/judge.py), so a
pattern that fools only the dreamer's own classifier does not count. Each photo is dreamed at
512 px with the shipped `dogs` preset at seeds 1, 2 and 3, through the whole job path (bytes in,
encoded bytes out), and every check holds for the **median** over the seeds: a threshold met at
one seed on one machine is a coin toss for users.

Thresholds, and why (medians over seeds 1-3 measured 2026-11-26 on 2 CPU threads, inputs ->
outputs; per seed in brackets):
- Lightly blurred JPEG, mean dog mass over the judge's ten views: at least 0.2 and at least
  5x the photo's own (chelsea 0.02 -> 0.445 [0.445 0.497 0.418], coffee 0.02 -> 0.276
  [0.276 0.424 0.257]). A photo with no dog reads 0.02-0.03: a fifth of the judge's belief is a
  lot of dog.
- Heavily blurred (3.2 px at 512), fur speckle gone: the mean dog mass at least doubles
  (chelsea 0.11 -> 0.310, coffee 0.04 -> 0.106), and the best of the ten views reads at least
  0.3 dog and no less than before: somewhere there is a head (chelsea 0.47 -> 0.687, coffee
  0.05 -> 0.368).
- Structural similarity, greyscale at 128 px, at least 0.3 (measured 0.37-0.48; unrelated photos
  score below 0.15): the cup, the cat, the galaxies are still where they were.

The Hubble deep field is held to the same bars and does not meet them today: seeds 1-3 read
0.115 / 0.122 / 0.275 light (median 0.122 < 0.2) and 0.030 / 0.030 / 0.047 heavy (the photo
reads 0.029). Stop 5 measured 0.28 light at seed 1; the same code (commit 978d948) gives the
identical picture as today's in today's environment, so the drop came with the installed
packages, not with a change of the engine. Its two judge checks are strict xfails: they fail
the suite the day they pass, so the bar cannot be forgotten (issue 7).
"""

from __future__ import annotations

import statistics
from functools import cache

import pytest
from judge import class_mass, heavy, light, structure
from photos import photo, png_bytes
from PIL import Image

from dreamcore.images import decode_image
from dreamcore.jobs import JobSpec
from dreamcore.runner import run_job

SEEDS = (1, 2, 3)
HUBBLE_SHORT = pytest.mark.xfail(
    strict=True, reason="dogs on the Hubble field: median light 0.122 < 0.2 (see module doc)"
)
PHOTOS = ["chelsea.png", "coffee.png", "hubble_deep_field.jpg"]
Dreamed = tuple[Image.Image, list[Image.Image]]


@pytest.fixture(scope="module", params=PHOTOS)
def dreamed(request: pytest.FixtureRequest) -> Dreamed:
    src = photo(request.param, 512)
    outs = []
    for seed in SEEDS:
        result = run_job(png_bytes(src), JobSpec(preset="dogs", seed=seed))
        out = decode_image(result.image).rgb
        print(
            f"\n{request.param} seed {seed}: light {class_mass(light(src))} -> "
            f"{class_mass(light(out))}, heavy {class_mass(heavy(src))} -> "
            f"{class_mass(heavy(out))}, ssim {structure(src, out):.3f}"
        )
        outs.append(out)
    return src, outs


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _xfail_hubble(request: pytest.FixtureRequest) -> None:
    if "hubble" in request.node.callspec.id:
        request.applymarker(HUBBLE_SHORT)


def test_dogs_show_through_a_light_blur_and_jpeg(
    dreamed: Dreamed, request: pytest.FixtureRequest
) -> None:
    _xfail_hubble(request)
    src, outs = dreamed
    before = class_mass(light(src))[0]
    after = _median([class_mass(light(out))[0] for out in outs])
    assert after >= 0.2 and after >= 5 * before, (before, after)


def test_dog_heads_survive_a_heavy_blur(dreamed: Dreamed, request: pytest.FixtureRequest) -> None:
    _xfail_hubble(request)
    src, outs = dreamed
    mean0, best0 = class_mass(heavy(src))
    readings = [class_mass(heavy(out)) for out in outs]
    mean1, best1 = _median([m for m, _ in readings]), _median([b for _, b in readings])
    assert mean1 >= 2 * mean0, (mean0, mean1)
    assert best1 >= max(0.3, best0), (best0, best1)


def test_the_scene_stays_recognisable(dreamed: Dreamed) -> None:
    src, outs = dreamed
    assert all(out.size == src.size for out in outs)
    assert _median([structure(src, out) for out in outs]) >= 0.3


def test_unrelated_photos_score_low_on_structure() -> None:
    """The structure floor means something: two different photos fall far below it."""
    a, b = photo("coffee.png", 512), photo("rocket.jpg", 512).resize(photo("coffee.png", 512).size)
    assert structure(a, b) < 0.15


@cache
def cats_dreamed() -> list[tuple[Image.Image, list[Image.Image]]]:
    """coffee.png and rocket.jpg at 256 px, `cats` at seeds 1-3 (light views)."""
    out = []
    for name in ("coffee.png", "rocket.jpg"):
        src = photo(name, 256)
        jobs = [run_job(png_bytes(src), JobSpec(preset="cats", seed=s)) for s in SEEDS]
        out.append((light(src), [light(decode_image(r.image).rgb) for r in jobs]))
    return out


def test_cats_grow_cats_the_judge_reads() -> None:
    """The judge's cat mass rises at least tenfold, median of seeds 1-3, on each photo.

    Measured 2026-11-26 (light view): coffee.png 0.003 -> 0.084 [0.084 0.237 0.083], rocket.jpg
    0.005 -> 0.194 [0.148 0.201 0.194].
    """
    for src, outs in cats_dreamed():
        before = class_mass(src, "cats")[0]
        after = _median([class_mass(out, "cats")[0] for out in outs])
        assert after >= 10 * before, (before, after)


@pytest.mark.xfail(strict=True, reason="cats vs dogs at the median: 1.06x / 1.48x < 1.5x (issue 7)")
def test_cats_grow_more_cat_than_dog() -> None:
    """blocks.4 grows dog-like heads: `cats` must read as more cat than dog (1.5x, median).

    It does not yet: median cat vs dog mass, coffee.png 0.084 vs 0.079 [seeds 1-3: 0.084/0.079,
    0.237/0.054, 0.083/0.086], rocket.jpg 0.194 vs 0.131. The old single-seed test (seed 2 on
    coffee.png: 0.237 vs 0.054) passed on the lucky seed. A strict xfail: it fails the suite the
    day `cats` meets the bar, so the bar cannot be forgotten.
    """
    for _, outs in cats_dreamed():
        cats = _median([class_mass(out, "cats")[0] for out in outs])
        dogs = _median([class_mass(out, "dogs")[0] for out in outs])
        assert cats > 1.5 * dogs, (cats, dogs)
