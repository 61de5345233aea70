"""Every preset keeps the photo's layout: the scene is still the scene (issue 7, point 3).

rocket.jpg (a landscape with a lot of sky), astronaut.png (a portrait), retina.jpg (a low-detail
photo) and camera.png (a greyscale one), 192 px, seeds 1-3, each preset at its default strength
through `dream_image` (what `!dream <preset>` runs). The measure is the greyscale structural
similarity of dream and photo at 96 px (`judge.structure`); the issue's goal is 0.70 for every
preset on every photo. Checked on the median over the three seeds, per photo.

Plain regions of the photo take a share of the step in the presets that meet the goal
(`plain_step`, engine.structure_weight: 0.1 in default, eyes and edges, 0.2 in patterns, 0.03
in shapes); before, sky, backdrops and most of the retina came back as a lawn of heads. Medians
measured 2026-11-26, 2 CPU threads, rocket / astronaut / retina / camera, before -> now (before:
no plain_step, seed 1 only):
- default 0.43 / 0.73 / 0.38 / 0.54 -> 0.893 / 0.826 / 0.775 / 0.842
- eyes 0.42 median -> 0.866 / 0.805 / 0.725 / 0.782
- edges 0.48 median -> 0.841 / 0.866 / 0.811 / 0.869; patterns 0.47 median -> 0.811 / 0.851 / 0.762 / 0.781
- shapes 0.36 median -> 0.867 / 0.724 / 0.747 / 0.798 (at plain_step 0.1: 0.784 / 0.713 / 0.662 / 0.733,
  short on the retina; `anchor` 0.5 got it there too, but took its coarse shapes, and the depth
  test's ordering with them)
- dogs (2026-11-27, a Xeon in fp32): 0.293 / 0.632 / 0.277 / 0.387 -> 0.900 / 0.824 / 0.787 /
  0.793 (seeds 1-6: 0.899 / 0.826 / 0.781 / 0.798), since it calms plain regions (0.05, local
  contrast counted from 0.2) and pulls the layout of the change (12 px) half back each step, both
  as far as the photo's detail is coarse (`layout_by_detail`, engine.coarse_weight): 0 on the
  Hubble field, whose black sky is where its dogs grow (calming it took them: light reading
  0.22 -> 0.05), so it dreams there as before.
- birds (2026-11-28, a Xeon in fp32): 0.340 / 0.637 / 0.284 / 0.380 -> 0.836 / 0.754 / 0.763 /
  0.763 (seeds 1-6: 0.840 / 0.757 / 0.761 / 0.763; fp32 NCHW 0.838 / 0.758 / 0.764 / 0.769; one
  thread 0.839 / 0.751 / 0.761 / 0.771), with dogs' scene keeping (plain regions at 0.03, the
  layout below 20 px half pulled back), the step they give up spent on the photo's structure
  (`structure_gain` 1.7) and an eagle photo's features at blocks.5 as its parts: bird heads and
  bodies grow from the photo's edges instead of herons over the field and the sky.
- buildings (2026-11-28, a Xeon in fp32): 0.397 / 0.622 / 0.285 / 0.376 (a drawn barn's
  features, scene free) -> 0.825 / 0.742 / 0.714 / 0.729 (seeds 4-6: 0.833 / 0.746 / 0.712 /
  0.738; 7-9: 0.839 / 0.743 / 0.703 / 0.736; fp32 NCHW 0.826 / 0.747 / 0.708 / 0.736; one
  thread 0.827 / 0.740 / 0.715 / 0.738), with birds' scene keeping and two photos' features
  (the Taj Mahal, Big Ben) at blocks.5 and blocks.6: arches, domes and towers grow from the
  photo's edges.
- cats (2026-11-28, a Xeon in fp32): 0.324 / 0.632 / 0.286 / 0.383 -> 0.753 / 0.720 / 0.677 /
  0.709, with a tabby photo's features (two crops) at blocks.5 and blocks.6 and the `birds`
  scene keeping with the layout below 24 px held and the step given back to structured regions
  up to 2.2x; short of the goal on the retina, where the cat's face it grows takes the rest
  (at 20 px and 1.7x: 0.707-0.712 on seeds 1-9, but the rocket at 256 px read 2.1-3.8x cat
  over dog where tests/test_dogs.py asks 3x; docs/presets.md, "`cats` keeps the scene").
  With the scene floor (engine.hold_scene, 0.73 of the engine's own SSIM, in every animal
  preset) and the class term at 2: 0.751 / 0.728 / 0.718 / 0.716; the floor acts on the retina
  and the cameraman only, and on the other presets on buildings' retina (0.714 -> 0.718).
  With the step given back to structured regions up to x2.4 (was x2.2; 2026-11-29): 0.734 /
  0.727 / 0.716 / 0.714 (lowest 0.714 at seeds 4-6, 7-9, on fp32 NCHW and on one thread).
- insects (2026-11-28, a Xeon in fp32): 0.324 / 0.626 / 0.261 / 0.406 -> 0.814 / 0.751 /
  0.723 / 0.768 (seeds 4-6: 0.808 / 0.753 / 0.724 / 0.765; 7-9: 0.820 / 0.751 / 0.722 / 0.764;
  fp32 NCHW 0.814 / 0.751 / 0.727 / 0.774; one thread 0.808 / 0.750 / 0.723 / 0.769), with
  `birds`' scene keeping and a swallowtail photo's features at blocks.5 and blocks.6, 0.5
  each: moth and butterfly wings grow from the photo's edges and over the rocket's sky.
- fish (2026-11-28, a Xeon in fp32): 0.326 / 0.622 / 0.277 / 0.375 -> 0.804 / 0.733 / 0.724 /
  0.740 (seeds 4-6: 0.809 / 0.726 / 0.714 / 0.739; 7-9: 0.816 / 0.726 / 0.725 / 0.749; fp32
  NCHW 0.817 / 0.729 / 0.713 / 0.743; one thread 0.817 / 0.727 / 0.723 / 0.743), as `insects`
  with a tuna photo's features and 14 steps an octave: fish bodies and eyes grow from the
  photo's edges (the astronaut's suit an orange fish). With the step given back to structured
  regions up to x2 (was x1.7), `fish` and `insects` lean on the scene floor (engine.hold_scene):
  fish 0.772 / 0.719 / 0.714 / 0.715 (seeds 4-6 lowest 0.713, 7-9 0.714, fp32 NCHW 0.715, one
  thread 0.715); insects 0.777 / 0.724 / 0.716 / 0.730 (lowest 0.715-0.716 on the same four).
With the coarse gradient on two random crops (`cutouts`, 2026-11-29; every animal preset but
`dogs`), seeds 1-3: cats 0.707 / 0.735 / 0.715 / 0.715 (the rocket 0.707-0.708 at seeds 4-6,
7-9, on fp32 NCHW and on one thread: the thinnest), birds 0.823 / 0.752 / 0.763 / 0.767, fish
0.756 / 0.721 / 0.713 / 0.716, insects 0.771 / 0.719 / 0.715 / 0.719, buildings 0.817 / 0.743 /
0.717 / 0.736; the lowest over seeds 1-9 and both roundings 0.707-0.757.
With each cutout seen through a blur of 1-5 px (`cutout_blur`, 2026-11-29, later), seeds 1-3:
cats 0.705 / 0.716 / 0.712 / 0.713, birds 0.773 / 0.720 / 0.717 / 0.719, fish 0.709 / 0.717 /
0.711 / 0.712, insects 0.729 / 0.718 / 0.712 / 0.716, buildings 0.801 / 0.718 / 0.714 / 0.718;
the lowest over seeds 1-9, fp32 NCHW and one thread 0.704-0.717 (`cats`' rocket 0.704-0.705,
`fish`'s rocket 0.704 under NCHW: the thinnest, held by the scene floor).
With a parrot's head beside the eagle in `birds` (2026-11-29, later, an AMD EPYC in fp32):
0.770 / 0.719 / 0.713 / 0.718; its lowest dream over seeds 1-9, fp32 NCHW and one thread
0.713-0.714.
Since the suite dreams these in two single-threaded processes on 2 cores (tests/dreams.py;
2026-11-29, an AMD EPYC in fp32), CI reads the one-thread rounding: the lowest reading 0.704
(`fish`' rocket; `cats`' rocket 0.705); `default`, `eyes`, `edges`, `patterns`, `shapes` and
`dogs` within 0.011 of their readings above. With the beetle in `insects`: 0.736 / 0.718 / 0.712 /
0.715 (seeds 4-6 lowest 0.713, two threads 0.712).
The goal is asserted for every still preset (until 2026-11-28 `cats` was a strict xfail).
"""

from __future__ import annotations

import statistics
from functools import cache

import pytest
from dreams import SEEDS, dreamed, prefetch
from judge import structure
from photos import photo

from dreamcore.presets import PRESETS

PHOTOS = ("rocket.jpg", "astronaut.png", "retina.jpg", "camera.png")
SIZE = 192
GOAL = 0.70
STILLS = [name for name, p in PRESETS.items() if all(t.kind != "guide" for t in p.terms)]


@cache
def scene(preset: str, name: str) -> float:
    """Median SSIM over the seeds of `preset` dreamed on photo `name`."""
    src = photo(name, SIZE)
    return statistics.median(structure(src, dreamed(preset, name, s, SIZE), 96) for s in SEEDS)


def readings(preset: str) -> dict[str, float]:
    prefetch((preset, name, s, SIZE) for name in PHOTOS for s in SEEDS)
    out = {name: round(scene(preset, name), 3) for name in PHOTOS}
    print(f"\n{preset}: {out}")
    return out


@pytest.mark.parametrize("preset", STILLS)
def test_the_scene_survives_on_every_photo(preset: str) -> None:
    got = readings(preset)
    assert all(v >= GOAL for v in got.values()), got
