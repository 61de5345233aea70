"""`dogs` turns photos towards dogs, as an independent judge sees them, and keeps the scene.

The dreamer is EfficientNet-Lite0; the judge is EfficientNet-Lite1 (tests/judge.py), so a
pattern that fools only the dreamer's own classifier does not count. Each photo is dreamed at
512 px with the shipped `dogs` preset at seeds 1, 2 and 3, through the whole job path (bytes in,
encoded bytes out), and every check holds for the **median** over the seeds: a threshold met at
one seed on one machine is a coin toss for users.

Thresholds, and why (medians over seeds 1-3 measured 2026-11-27 with `dogs` taking both
gradients at its coarse octaves and keeping the layout (presets, engine.coarse_weight), on 2
CPU threads of a Xeon in fp32, CI's path; inputs -> outputs; per seed in brackets; before it
kept the layout, then the same Xeon in bf16 and an H100 (CUDA, fp32 NCHW), in parentheses):
- Lightly blurred JPEG, mean dog mass over the judge's ten views: at least 0.2 and at least
  5x the photo's own (chelsea 0.02 -> 0.476 [0.476 0.467 0.505] (0.546; 0.427, 0.509), coffee
  0.02 -> 0.402 [0.503 0.388 0.402] (0.445; 0.507, 0.483)). A photo with no dog reads
  0.02-0.03: a fifth of the judge's belief is a lot of dog.
- Heavily blurred (3.2 px at 512), fur speckle gone: the mean dog mass at least doubles
  (chelsea 0.11 -> 0.298 (0.394; 0.409, 0.483), coffee 0.04 -> 0.127 [0.127 0.100 0.146]
  (0.128; 0.145, 0.095)), and the best of the ten views reads at least 0.3 dog and no less
  than before: somewhere there is a head (chelsea 0.47 -> 0.652 (0.742; 0.594, 0.817), coffee
  0.05 -> 0.502 [0.502 0.281 0.610] (0.526; 0.383 [0.660 0.383 0.168], 0.300 [0.726 0.213
  0.300])). Coffee over seeds 1-8: 6 of 8 at 0.3 or more (median 0.45), 8 of 8 on fp32 NCHW
  (0.49), 7 of 8 in bf16 (0.47).
- Structural similarity, greyscale at 128 px, at least 0.3 (measured 0.74-0.78 since the
  layout is kept, 0.43-0.47 before; the Hubble field 0.34-0.35; unrelated photos score below
  0.15): the cup, the cat, the galaxies are still where they were.

The Hubble deep field is held to the same bars. Through the light blur it reads 0.282 / 0.376 /
0.231 (median 0.282; bf16 0.236, H100 0.366; the photo 0.025). Through the heavy blur its mean
reads 0.042 / 0.123 / 0.069 (median 0.069 against twice the photo's 0.029; bf16 0.051, H100
0.050) and its best view 0.136 / 0.434 / 0.283 (median 0.283 against 0.3; bf16 0.092, H100
0.100): a strict xfail, which fails the suite the day it passes, so the bar cannot be forgotten
(issue 7). In fp32 here it is 0.017 short.

Coffee's best heavy view was a coin toss with the gradient at each octave's own size: over seeds
1-8 it met 0.3 at 4 of 8 seeds on each of the Xeon in bf16, fp32 NCHW and an H100, and the H100
and an H200 failed this file at seeds 1-3 (0.099 / 0.688 / 0.187). With the 224 px gradient
beside it: 6 / 8 (median 0.41), 7 / 8 (0.58) and 7 / 8 (0.55). The Hubble field, whose detail is
fine, keeps the own-size gradient alone and its pictures (light view 0.2 met at 14 of 16 seeds
on the two CPU roundings). Seeds 1-3 on CUDA remain the unlucky ones (0.300, at the bar). The
recipes tried: docs/presets.md, "`dogs` on coffee".

On one thread of the AMD EPYC in fp32 (`--threads 1`, 2026-11-29) coffee's best heavy view
reads 0.420 / 0.279 / 0.285 at seeds 1-3: median 0.285, **short of 0.3** (its mean 0.097
passes). So this file's dreams are not among those the suite dreams in single-threaded
processes (tests/dreams.py): they stay in the test process at its default threads, the
rounding on which this bar was measured, and the shortfall is one more sign that coffee's bar
is a coin toss between roundings (issue 7, point 5).
"""

from __future__ import annotations

import statistics
from functools import cache

import pytest
from dreams import SEEDS
from judge import class_mass, heavy, light, structure
from photos import photo, png_bytes
from PIL import Image

from dreamcore.images import decode_image
from dreamcore.jobs import JobSpec
from dreamcore.runner import run_job

HUBBLE_SHORT = pytest.mark.xfail(
    strict=True, reason="dogs on the Hubble field: best heavy view 0.283 (fp32), not 0.3 (doc)"
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


def test_dogs_show_through_a_light_blur_and_jpeg(dreamed: Dreamed) -> None:
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

    Measured 2026-11-26 (light view), 2 CPU threads, with the coarse octaves' gradient at 224 px
    and blocks.5 (presets._animal): coffee.png 0.003 -> 0.260 [0.208 0.262 0.260], rocket.jpg
    0.005 -> 0.258 [0.119 0.316 0.258]. Before (blocks.4, 100 px octaves): 0.104 and 0.148.
    """
    for src, outs in cats_dreamed():
        before = class_mass(src, "cats")[0]
        after = _median([class_mass(out, "cats")[0] for out in outs])
        assert after >= 10 * before, (before, after)


def test_cats_grow_more_cat_than_dog() -> None:
    """Layer terms grow dog-like heads: `cats` must read as clearly more cat than dog (3x, median).

    Measured 2026-11-26, median cat vs dog mass: coffee.png 0.260 vs 0.040 [seeds 1-3:
    0.208/0.032, 0.262/0.040, 0.260/0.053], rocket.jpg 0.258 vs 0.054 [0.119/0.054, 0.316/0.051,
    0.258/0.055]: 6.5x and 4.8x. The bar was 1.5x until the gradient at 224 px: then it measured
    1.8x and 1.8x, and on the NCHW path with batch norms 1.06x / 1.48x (a strict xfail): one
    dream in three read more dog than cat. On a Xeon in fp32 (2026-11-27) rocket.jpg read 2.9x
    (0.196 / 0.068); since `cats` weighs the dog classes against its own at -0.5, coffee /
    rocket: Xeon fp32 8.3x / 7.5x, Xeon bf16 6.7x / 12.0x, fp32 NCHW 5.9x / 7.2x. Since `cats`
    grows a tabby photo's features and keeps the scene (2026-11-28, Xeon fp32): coffee 0.201 /
    0.055, rocket 0.163 / 0.041: 3.7x / 3.9x; fp32 NCHW 4.3x / 3.9x, one thread 4.2x / 3.9x. Thin
    on the rocket, whose calmed sky grows cats at some seeds and not others: seeds 4-6 4.8x /
    3.2x, seeds 7-9 3.8x / 2.4x (docs/presets.md, "`cats` keeps the scene"). With the scene
    floor and the class term at 2: 4.0x / 3.5x; fp32 NCHW 4.0x / 3.5x, one thread 4.2x / 4.5x;
    seeds 7-9 4.5x / 2.3x (the floor leaves the rocket alone: its scene is above it). With the
    step given back to structured regions up to x2.4 (was x2.2; 2026-11-29): 3.6x / 4.1x; seeds
    7-9 4.3x / 4.4x, fp32 NCHW 4.4x / 3.6x, one thread 3.8x / 3.3x. With its coarse gradient on
    two random crops (`cutouts`, 2026-11-29): 6.5x / 8.6x (coffee 0.441 / 0.068, rocket 0.359 /
    0.042). With each crop seen through a blur of 1-5 px (`cutout_blur`): 15.2x / 14.0x
    (coffee 0.584 / 0.039, rocket 0.506 / 0.036).
    """
    for _, outs in cats_dreamed():
        cats = _median([class_mass(out, "cats")[0] for out in outs])
        dogs = _median([class_mass(out, "dogs")[0] for out in outs])
        assert cats > 3 * dogs, (cats, dogs)
