"""The layer explorer: one labelled cell per layer, low layers finer than high ones."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from onednn import without_onednn
from photos import photo, png_bytes
from PIL import Image
from spectra import band_shares

from dreamcore import explore
from dreamcore.errors import DreamCancelled, UnknownLayerError
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


def test_batched_cells_come_out_as_each_cell_dreamed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cells that share their dream settings are dreamed together, each as it would be alone.

    coffee.png at 96 px, one step per octave, seed 1, oneDNN off (tests/onednn.py), batches of
    at most 3: the low layers (2), the high layers with blocks.4's top 2 channels (3 + 1), and
    cats, fish and insects one by one: cats' scene keeping differs, and since `insects` grows two
    photos' features (2026-11-29) its term layout (four picture terms) is not fish's (two), so
    the two no longer share a batch as they did (each image its own photo's features and
    classes). Batches of per-image objectives of several terms, turned class dreams included,
    are test_batch's.
    One step per octave: a batch rounds a little otherwise than one image even with oneDNN off
    (on an AVX-512 Xeon, MKL's matrix products for blocks.5's 1x1 convolutions and the
    classifier, 1e-9 of a pixel level after one step), and a dream grows that: with 3 steps per
    octave it reached a mean 0.0068 for the insects cell, one cell in nine, with every line of
    batching logic right. With one step it stays under an 8-bit level.
    Measured 2026-11-27 (1 and 2 threads): mean |batched - alone| 0 for every cell (8-bit
    cells); threshold 1e-3 (as test_batch). 2026-11-28, fish and insects in one batch: 0 on 1 and
    2 threads. Wrong version measured by hand, every image of a
    batch scored by its first objective: 0.0065-0.0137 for each cell after the first of its
    batch (blocks.1, blocks.6, insects, top 1). Before (3 steps, batches of 8, when the cells were
    dogs, cats and birds): that wrong version 0.023-0.037, terms balanced across the batch
    0.014-0.018 (the presets), the first image's weights for all 0.027.
    """
    src = photo("coffee.png", 96)
    base = resolve("default", DreamOverrides(steps=1))
    spec = ExploreSpec(
        layers=("blocks.0", "blocks.1", "blocks.4", "blocks.6"),
        presets=("cats", "fish", "insects"),
        top_channels="blocks.4",
        channels=2,
    )
    sizes: list[int] = []
    seen: list[Progress] = []
    real = explore.dream_batch

    def counted(images, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(images))
        return real(images, *args, **kwargs)

    with without_onednn():
        alone = explore_cells(src, base, spec, seed=1, side=96, batch=1)
        monkeypatch.setattr(explore, "dream_batch", counted)
        batched = explore_cells(src, base, spec, seed=1, side=96, batch=3, progress=seen.append)
    assert sizes == [2, 3, 1, 1, 1, 1]
    assert [c.label for c in batched] == [c.label for c in alone]
    for got, want in zip(batched[1:], alone[1:], strict=True):
        diff = np.abs(np.asarray(got.image, float) - np.asarray(want.image, float)) / 255
        assert diff.mean() < 1e-3, (got.label, diff.mean())
    # One sheet-wide progress: the fraction only grows, a frame is a cell done.
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # Frames: each batch's cells done. At 96 px every batch has one octave of one step here, so it
    # reports only its end (frames mid-batch: test_cancelling_the_sheet_stops_its_batch).
    assert sorted({p.frame for p in seen}) == [2, 5, 6, 7, 8, 9]
    assert {p.frames for p in seen} == {9}


def test_cancelling_the_sheet_stops_its_batch() -> None:
    """Two cells in one batch, 1 octave x 5 steps at 64 px: the cancel ends both after step 3.

    Its progress is the sheet's, mid-batch: no cell done yet (frame 0 of its 2 cells).
    """
    seen: list[Progress] = []
    with pytest.raises(DreamCancelled):
        explore_cells(
            photo("chelsea.png", 64),
            resolve("default", DreamOverrides(steps=5)),
            ExploreSpec(layers=("blocks.4", "blocks.5"), presets=()),
            seed=1,
            side=64,
            should_cancel=lambda: len(seen) >= 3,
            progress=seen.append,
        )
    assert len(seen) == 3
    assert [(p.frame, p.frames) for p in seen] == [(0, 2)] * 3
    assert [p.fraction for p in seen] == [0.2, 0.4, 0.6]


def test_the_explore_benchmark_times_the_sheet_alone_and_batched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dreamcore bench --explore`: one run, both ways; 48 px and 1 step to stay small."""
    from dreamcore.cli import main

    assert main(["bench", "--explore", "--sizes", "48", "--steps", "1", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["size"], row["cells"], row["batch"]) == (48, 13, 8)  # 7 layers + 6 presets
    assert row["alone_s"] > 0 and row["batched_s"] > 0
    assert row["speedup"] == row["alone_s"] / row["batched_s"]


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
