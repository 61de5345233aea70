"""The layer explorer: one labelled cell per layer, low layers finer than high ones."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from photos import photo, png_bytes
from PIL import Image
from spectra import band_shares

from dreamcore.errors import UnknownLayerError
from dreamcore.explore import Cell, explore_cells, explorer_layers, sheet
from dreamcore.images import decode_image
from dreamcore.jobs import DreamOverrides, ExploreSpec, JobSpec, Progress
from dreamcore.models import get_model
from dreamcore.presets import resolve
from dreamcore.runner import run_job

SIDE = 256
SEEDS = (1, 2)
DEPTHS = ("blocks.1", "blocks.3", "blocks.6")


def test_the_default_model_offers_seven_depths() -> None:
    assert explorer_layers(get_model("efficientnet_lite0")) == [f"blocks.{i}" for i in range(7)]


@pytest.fixture(scope="module")
def shares() -> dict[str, list[tuple[float, float]]]:
    src = photo("rocket.jpg", SIDE)
    grey = np.asarray(src.convert("L"), dtype=np.float64)
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in DEPTHS}
    base = resolve("default", DreamOverrides(steps=8))
    for seed in SEEDS:
        cells = explore_cells(
            src, base, ExploreSpec(layers=DEPTHS, presets=()), seed=seed, side=SIDE
        )
        for cell in cells[1:]:
            detail = np.asarray(cell.image.convert("L"), dtype=np.float64) - grey
            out[cell.layer or ""].append(band_shares(detail))
    return out


def test_low_layers_add_finer_detail_than_high_ones(
    shares: dict[str, list[tuple[float, float]]],
) -> None:
    """The depth presets' spectra test, on the explorer's cells (rocket.jpg, 256 px, 8 steps).

    Fine share = the added detail's power at wavelengths under 8 px. Measured, median over
    seeds 1-2: blocks.1 0.63, blocks.3 0.40, blocks.6 0.50 (the high layer's last octave adds
    fine texture too, so the middle and high cells are not ordered). Asserted: the low layer's
    fine share is over 1.15x each higher layer's.
    """
    fine = {n: statistics.median(s[1] for s in v) for n, v in shares.items()}
    assert fine["blocks.1"] > 1.15 * max(fine["blocks.3"], fine["blocks.6"]), fine


def test_sheet_has_one_labelled_cell_per_layer() -> None:
    spec = JobSpec(
        overrides=DreamOverrides(max_size=64, steps=1, octaves=1),
        seed=3,
        explore=ExploreSpec(
            layers=("blocks.1", "blocks.4"), presets=("cats",), top_channels="blocks.4", channels=2
        ),
        output_budget=256 * 1024,
    )
    seen: list[Progress] = []
    result = run_job(png_bytes(photo("chelsea.png", 64)), spec, progress=seen.append)
    # photo + 2 layers + 1 preset + 2 top channels, in a 3 x 2 grid
    assert (result.kind, result.frames) == ("explore", 5)
    assert seen[-1].frame == seen[-1].frames == 5
    picture = decode_image(result.image).rgb
    assert picture.size == (result.width, result.height)
    cells = label_strips(picture, columns=3, rows=2, cell=(64, 43))
    assert len(cells) == 6 and all(has_text for has_text in cells)


def test_labels_say_layer_and_what_grows_there() -> None:
    src = photo("chelsea.png", 48)
    cells = explore_cells(
        src,
        resolve("default", DreamOverrides(steps=1)),
        ExploreSpec(
            layers=("blocks.1", "blocks.3", "blocks.4", "blocks.6"),
            presets=("dogs",),
            top_channels="blocks.4",
            channels=2,
        ),
        seed=1,
        side=48,
        octaves=1,
    )
    labels = [c.label for c in cells]
    assert labels[:6] == [
        "photo",
        "blocks.1 · strokes",
        "blocks.3 · textures",
        "blocks.4 · faces",
        "blocks.6 · parts",
        "dogs · preset",
    ]
    assert [label.split(" · ")[1] for label in labels[6:]] == ["top 1", "top 2"]
    assert all(label.startswith("blocks.4:") for label in labels[6:])


def test_an_unknown_layer_is_refused_before_any_dreaming() -> None:
    with pytest.raises(UnknownLayerError, match=r"Did you mean 'blocks\.4'"):
        explore_cells(
            photo("chelsea.png", 48), resolve("default"), ExploreSpec(layers=("blocks.44",)), seed=1
        )


def test_empty_grid_slots_carry_no_label() -> None:
    img = photo("chelsea.png", 64)
    picture = sheet([Cell("photo", img), Cell("blocks.1 · strokes", img), Cell("x", img)])
    assert label_strips(picture, columns=2, rows=2, cell=img.size) == [True, True, True, False]


def label_strips(
    picture: Image.Image, *, columns: int, rows: int, cell: tuple[int, int]
) -> list[bool]:
    """For each grid slot, left to right and top to bottom: is there text under the picture?"""
    w, h = cell
    gap = 4
    strip_h = (picture.height - gap) // rows - h - gap
    grey = np.asarray(picture.convert("L"))
    found = []
    for i in range(columns * rows):
        x = gap + (i % columns) * (w + gap)
        y = gap + (i // columns) * (h + strip_h + gap) + h
        found.append(bool((grey[y + 1 : y + strip_h, x : x + w] > 128).any()))
    return found
