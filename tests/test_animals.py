"""Every animal preset grows its own kind, as an independent judge reads it (issue 7, points 1, 5).

`cats`, `birds`, `fish`, `insects` and `buildings` at their default strength through `dream_image`
(what `!dream <preset>` runs) on rocket.jpg (a landscape with a lot of sky), astronaut.png (a
portrait), retina.jpg (a low-detail photo) and camera.png (a greyscale one), 192 px, seeds 1-3:
the same dreams as the scene test (tests/dreams.py). The judge is EfficientNet-Lite1, another
network than the dreamer (tests/judge.py), read through a light blur and JPEG and through a heavy
blur (fur and feather speckle gone, a head or a body stays). Every check is on the median of the
twelve dreams. The photos read 0.003-0.015 of each animal group (0.004-0.038 buildings).

Medians measured 2026-11-26 on 2 CPU threads (light / heavy / dog mass, light), and the bars:
- cats 0.292 / 0.165 / 0.105 (two leopards on the rocket's sky, a cat face on the retina);
  bars 0.15 / 0.08. Before the coarse octaves took their gradient at 224 px (presets._animal),
  at 256 px on rocket / coffee / astronaut / camera: 0.155 / 0.078, now 0.193 / 0.161. With the
  dog classes weighed against it at -0.5 (2026-11-27), on a Xeon: 0.286 / 0.188 / 0.061 in bf16,
  0.249 / 0.168 / 0.085 in fp32; fp32 NCHW 0.279 / 0.172 / 0.076. Since it grows a tabby
  photo's features and keeps the scene (2026-11-28, a Xeon in fp32; tests/test_scene.py):
  0.264 / 0.150 / 0.051 (cats' heads with ears and eyes in place of the astronaut's and the
  cameraman's, a cat's face on the retina). With the scene floor (engine.hold_scene), which
  pulls the retina's and the cameraman's layout back to 0.716-0.718 SSIM, and the class term at
  2 (at 1.5 the floor took seeds 7-9 to 0.143 light): 0.214 / 0.148 / 0.060; seeds 4-6 0.186 /
  0.131 / 0.069, 7-9 0.207 / 0.143 / 0.065, fp32 NCHW 0.228 / 0.126 / 0.048, one thread 0.165
  / 0.137 / 0.079. With the step given back to structured regions up to x2.4 (was x2.2; 2026-11-29,
  for the rocket at 256 px in tests/test_dogs.py): 0.225 / 0.135 / 0.054; seeds 4-6 0.223 / 0.151
  / 0.074, 7-9 0.228 / 0.138 / 0.064, fp32 NCHW 0.189 / 0.118 / 0.065, one thread 0.254 / 0.198
  / 0.075.
- birds 0.109 / 0.074 / 0.082 (herons on the rocket's field); bars 0.06 / 0.04. Since it grows
  an eagle photo's features and keeps the scene (2026-11-28, a Xeon in fp32; tests/test_scene.py):
  0.102 / 0.111 / 0.069 (the rocket turned into a heron-like bird with its eye at the tip,
  beaked heads in place of the astronaut's face, feathers on the cameraman's coat); seeds 1-6
  0.113 / 0.100 / 0.071 (groups 4-6 and 7-9: 0.114 / 0.097 / 0.072, 0.107 / 0.090 / 0.069),
  fp32 NCHW 0.089 / 0.084 / 0.063, one thread 0.110 / 0.089 / 0.064.
- fish 0.156 / 0.195 / 0.079; bars 0.1 / 0.1. insects 0.221 / 0.188 / 0.058; bars 0.1 / 0.06.
  On an H200 (2026-11-27) fish read 0.105 / 0.172 / 0.106, more dog than fish: since then it
  weighs the dog classes against its own at -0.5. Then, on a Xeon: 0.136 / 0.143 / 0.059 in
  bf16, 0.130 / 0.135 / 0.073 in fp32 (docs/presets.md, for more seeds and layouts).
  Both take their gradients on a turned and scaled copy (presets._animal); before: fish 0.188 /
  0.197, insects 0.181 / 0.113; over seeds 1-5 (`--seeds 5`) now 0.230 / 0.220 and 0.221 / 0.183.
  Since `insects` grows a swallowtail photo's features and keeps the scene (2026-11-28, a Xeon
  in fp32; tests/test_scene.py; before, there: 0.220 / 0.175 / 0.056): 0.193 / 0.176 / 0.038
  (pale moths with spread wings beside the astronaut's head, a butterfly's wings over the
  rocket's sky); seeds 4-6 0.180 / 0.160 / 0.035, 7-9 0.193 / 0.144 / 0.031, fp32 NCHW 0.197 /
  0.149 / 0.035, one thread 0.170 / 0.142 / 0.038. With the step given back to structured
  regions up to x2 (was x1.7; the scene floor holds the layout): 0.220 / 0.189 / 0.036; seeds
  4-6 0.257 / 0.198 / 0.028, 7-9 0.212 / 0.177 / 0.040, fp32 NCHW 0.186 / 0.169 / 0.033, one
  thread 0.189 / 0.175 / 0.030.
  Since `fish` grows a tuna photo's features with 14 steps an octave and keeps the scene
  (2026-11-28, a Xeon in fp32; before, there: 0.130 / 0.135 / 0.073): 0.121 / 0.118 / 0.052
  (the astronaut's suit an orange fish with fins, her shuttle model a silver fish, fish eyes in
  the rocket's sky); seeds 4-6 0.107 / 0.122 / 0.055, 7-9 0.114 / **0.093** / 0.056, fp32 NCHW
  0.114 / 0.115 / 0.064, one thread 0.155 / 0.115 / 0.052: over the bars on this path at seeds
  1-6 and on both other roundings, with a thin margin; under the heavy bar at seeds 7-9. With
  12 steps it read 0.126 / 0.103 at seeds 1-3 and 0.087 light at 4-6. With the step given back
  to structured regions up to x2 (was x1.7; the scene floor holds the layout): 0.127 / 0.112 /
  0.047; seeds 4-6 0.126 / 0.147 / 0.055, 7-9 0.170 / 0.139 / 0.054, fp32 NCHW 0.110 / 0.119 /
  0.064, one thread 0.124 / 0.169 / 0.053: over both bars on every seed set and rounding.
- buildings 0.078 / 0.046 / 0.051 (towers and a glass dome over the rocket's lights, window-lit
  house fronts around the astronaut); bars 0.06 / 0.04. Its parts came from a drawn barn's
  features (presets.py); with blocks.4's own parts instead it grew domes and roofs the judge did
  not read as any of the sixteen building classes: 0.014 / 0.010 / 0.064. Since it grows two
  photos' features (the Taj Mahal, Big Ben) at blocks.5 and blocks.6 and keeps the scene
  (2026-11-28, a Xeon in fp32; tests/test_scene.py): 0.074 / 0.077 / 0.059 (arches, domes and
  towers: the astronaut's shuttle model a tower, arched facades on the retina and behind the
  cameraman); seeds 4-6 0.082 / 0.067 / 0.051, 7-9 0.075 / 0.067 / 0.058, fp32 NCHW 0.083 /
  0.071 / 0.056, one thread 0.071 / 0.069 / 0.051. At blocks.5 alone it read 0.062 light,
  0.063 dog at seeds 4-6.
Each group must also read as more its own kind than dog (blocks.4's heads look like dogs and
must not crowd the group out).

Over more seeds two of these held only at seeds 1-3 (measured 2026-11-27, seeds 1-7, light /
heavy / dog): `birds` 0.082 / 0.058 / 0.086 on this path and 0.076 / 0.047 / 0.096 on NCHW, more
dog than bird on both (since it grows an eagle's features it holds at seeds 1-6 and on both
layouts, above); `buildings` 0.073 / 0.042 and 0.067 / 0.051, 0.056 / 0.032 with one
thread. They stay as they are (issue 7, docs/speed.md, "Another rounding without a GPU").
Seeds 1-9 in groups of three on a Xeon (2026-11-27): `buildings` meets both bars in 2 of 3
groups in bf16, 1 in fp32, 3 with fp32 NCHW (docs/speed.md, "Precision"). Since `buildings`
takes both gradients at its coarse octaves (own size and 224 px, like `dogs`), all nine groups
pass on each of the three (light 0.082-0.097, heavy 0.060-0.077, dog 0.045-0.056), and seeds
1-3 on a Xeon in fp32 (CI's path since `auto` is fp32 there) read 0.097 / 0.077 / 0.050.
There `birds` read 0.079 / 0.057 / 0.070 before it took the eagle: more bird than dog, by a thin
margin.

Since every preset here takes its coarse 224 px gradient on two random crops (`cutouts`,
2026-11-29, a Xeon in fp32; docs/presets.md, "Cutouts"), seeds 1-3 / 4-6 / 7-9, fp32 NCHW, one
thread (light / heavy / dog):
- cats 0.245 / 0.192 / 0.064; 0.303 / 0.187 / 0.063; 0.317 / 0.221 / 0.063; 0.314 / 0.246 /
  0.049; 0.280 / 0.209 / 0.068.
- birds 0.190 / 0.138 / 0.060; 0.172 / 0.172 / 0.061; 0.149 / 0.137 / 0.063; 0.203 / 0.153 /
  0.059; 0.161 / 0.124 / 0.056 (the astronaut's and the cameraman's heads become birds' heads).
- fish 0.182 / 0.133 / 0.045; 0.141 / 0.181 / 0.043; 0.157 / 0.147 / 0.049; 0.136 / 0.164 /
  0.042; 0.140 / 0.126 / 0.043 (the heavy bar 0.1, at 0.112-0.169 before).
- insects 0.389 / 0.313 / 0.028; 0.433 / 0.325 / 0.025; 0.360 / 0.296 / 0.027; 0.355 / 0.273 /
  0.025; 0.386 / 0.293 / 0.027.
- buildings 0.126 / 0.100 / 0.052; 0.106 / 0.083 / 0.049; 0.105 / 0.068 / 0.054; 0.089 / 0.071
  / 0.049; 0.104 / 0.079 / 0.048.

Since each cutout is seen through a Gaussian blur of 1-5 px of its 224 px view (`cutout_blur`,
2026-11-29, later; docs/presets.md, "Blurred cutouts"), same order:
- cats 0.439 / 0.460 / 0.040; 0.341 / 0.312 / 0.043; 0.442 / 0.420 / 0.042; 0.476 / 0.461 /
  0.035; 0.447 / 0.412 / 0.039.
- birds 0.279 / 0.298 / 0.052; 0.296 / 0.272 / 0.056; 0.329 / 0.338 / 0.053; 0.352 / 0.337 /
  0.054; 0.342 / 0.357 / 0.056.
- fish 0.344 / 0.364 / 0.024; 0.304 / 0.307 / 0.028; 0.351 / 0.396 / 0.027; 0.287 / 0.364 /
  0.031; 0.299 / 0.368 / 0.030.
- insects 0.555 / 0.513 / 0.023; 0.588 / 0.523 / 0.026; 0.585 / 0.500 / 0.023; 0.519 / 0.473 /
  0.028; 0.581 / 0.561 / 0.021.
- buildings 0.132 / 0.126 / 0.040; 0.120 / 0.133 / 0.041; 0.128 / 0.131 / 0.040; 0.139 / 0.138
  / 0.040; 0.128 / 0.139 / 0.041.
The bars stay where they were.

Since `birds` grows a superb parrot's head and its eye and beak beside the eagle (2026-11-29, an
AMD EPYC in fp32, for coffee.png: `test_birds_grow_a_bird_on_the_coffee_table`), same order:
0.358 / 0.400 / 0.049; 0.325 / 0.303 / 0.046; 0.415 / 0.394 / 0.045; 0.375 / 0.370 / 0.045;
0.350 / 0.392 / 0.044 (the rocket a long-necked bird with a ringed eye at its tip, the
astronaut's face a bird's with a ringed eye and a beak).

Since the suite dreams these in two single-threaded processes on 2 cores (tests/dreams.py;
2026-11-29, an AMD EPYC in fp32), CI reads the one-thread rounding: cats 0.470 / 0.468 / 0.039,
birds 0.350 / 0.392 / 0.044, fish 0.317 / 0.407 / 0.028, insects 0.522 / 0.463 / 0.027,
buildings 0.140 / 0.143 / 0.040. Since `insects` grows a Colorado potato beetle's features beside
the swallowtail's (the same day; docs/presets.md, "`insects`: a beetle beside the swallowtail"):
insects 0.556 / 0.528 / 0.019 (seeds 4-6 0.569 / 0.525 / 0.023; two threads 0.538 / 0.497 /
0.019): striped beetle shells with legs where it grew wings.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import cache

import pytest
from dreams import SEEDS, dreamed, prefetch
from judge import class_mass, heavy, light
from photos import photo
from PIL import Image

ANIMALS = ("cats", "birds", "fish", "insects", "buildings")
PHOTOS = ("rocket.jpg", "astronaut.png", "retina.jpg", "camera.png")
SIZE = 192  # the scene test's size: the same dreams serve both
BARS = {  # median mass on the group's own classes: light blur, heavy blur
    "cats": (0.15, 0.08),
    "birds": (0.06, 0.04),
    "fish": (0.1, 0.1),
    "insects": (0.1, 0.06),
    "buildings": (0.06, 0.04),
}
View = Callable[[Image.Image], Image.Image]


def median_mass(preset: str, view: View, group: str) -> float:
    """Median over photos x seeds of the judge's mass on `group` in the `view` of each dream."""
    return statistics.median(
        class_mass(view(dreamed(preset, name, s, SIZE)), group)[0] for name in PHOTOS for s in SEEDS
    )


def photos_own(view: View, group: str) -> float:
    """Median over the photos, undreamed, of the judge's mass on `group`: the baseline."""
    return statistics.median(class_mass(view(photo(name, SIZE)), group)[0] for name in PHOTOS)


@cache
def readings(preset: str) -> tuple[float, float, float]:
    prefetch((preset, name, s, SIZE) for name in PHOTOS for s in SEEDS)
    out = (
        median_mass(preset, light, preset),
        median_mass(preset, heavy, preset),
        median_mass(preset, light, "dogs"),
    )
    print(f"\n{preset}: light {out[0]:.3f}, heavy {out[1]:.3f}, dogs {out[2]:.3f}")
    return out


@pytest.mark.parametrize("preset", ANIMALS)
def test_each_group_grows_its_kind(preset: str) -> None:
    got_light, got_heavy, dogs = readings(preset)
    bar_light, bar_heavy = BARS[preset]
    assert got_light >= bar_light and got_heavy >= bar_heavy, (got_light, got_heavy, BARS[preset])
    assert got_light > dogs, f"{preset} reads more dog than {preset}: {got_light} vs {dogs}"


@pytest.mark.parametrize("preset", ANIMALS)
def test_each_group_reads_well_above_the_photos(preset: str) -> None:
    """Not a tuned bar: at least twice the photos' own reading of the group, light and heavy."""
    got_light, got_heavy, _ = readings(preset)
    assert got_light >= 2 * photos_own(light, preset), got_light
    assert got_heavy >= 2 * photos_own(heavy, preset), got_heavy


def test_birds_grow_a_bird_on_the_coffee_table() -> None:
    """coffee.png at 256 px, `birds` at its default strength, seeds 1-3: a cup on a saucer has no
    tall edge to make a bird's body of, so this is the photo where `birds` grew feather scales and
    no bird (bird / heavy / dog 0.013 / 0.011 / 0.032 with the eagle alone; the photo itself
    0.010 / 0.011 / 0.033). With a parrot's head beside the eagle (presets.py) a bird's face
    with two ringed eyes grows from the cup's foot and the spoon. The judge must read at least
    10x the photo's own bird mass in the light view, 4x through the heavy blur, and 1.5x more
    bird than dog (the face's eyes read as dog too).

    Measured 2026-11-29 on an AMD EPYC in fp32 (light / heavy / dog): seeds 1-3 0.210 / 0.088 /
    0.093, 4-6 0.186 / 0.113 / 0.097, 7-9 0.179 / 0.072 / 0.098, fp32 NCHW 0.181 / 0.073 /
    0.076, one thread 0.209 / 0.121 / 0.072: 1.8x-2.9x more bird than dog. By eye (256 and
    512 px): two ringed, owl-like eyes over the saucer and a face in the cup, as much a monkey's
    as a bird's.
    """
    src = photo("coffee.png", 256)
    prefetch(("birds", "coffee.png", s, 256) for s in SEEDS)
    outs = [dreamed("birds", "coffee.png", s, 256) for s in SEEDS]
    lights = [light(out) for out in outs]  # each JPEG made once, read for birds and for dogs
    birds = statistics.median(class_mass(v, "birds")[0] for v in lights)
    blurred = statistics.median(class_mass(heavy(out), "birds")[0] for out in outs)
    dogs = statistics.median(class_mass(v, "dogs")[0] for v in lights)
    assert birds >= 10 * class_mass(light(src), "birds")[0], birds
    assert blurred >= 4 * class_mass(heavy(src), "birds")[0], blurred
    assert birds >= 1.5 * dogs, (birds, dogs)
