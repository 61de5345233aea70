"""Dream zoom: frames that fall inward without flicker, encoded to a budget, as one pool job."""

from __future__ import annotations

import io
import itertools
import statistics

import av
import pytest
import torch
from photos import photo, png_bytes
from PIL import Image
from pydantic import ValidationError

from dreamcore.errors import DreamCancelled, InvalidParameterError
from dreamcore.images import to_tensor
from dreamcore.jobs import DreamOverrides, JobSpec, Progress, ZoomSpec
from dreamcore.presets import resolve
from dreamcore.runner import run_job
from dreamcore.video import encode_animation
from dreamcore.zoom import in_between, zoom_frames, zoom_in

SIDE = 128
FRAMES = 5
ZOOM = 1.05
SEEDS = (1, 2, 3)


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().mean().item()


@pytest.fixture(scope="module")
def runs() -> dict[int, list[Image.Image]]:
    preset = resolve("default", DreamOverrides(max_size=SIDE, octaves=3, steps=5))
    zoom = ZoomSpec(frames=FRAMES, zoom=ZOOM, frame_steps=3)
    return {s: zoom_frames(photo("coffee.png"), preset, zoom, seed=s) for s in SEEDS}


def test_zoom_moves_inward(runs: dict[int, list[Image.Image]]) -> None:
    """Each frame matches the previous one zoomed in far better than zoomed out or unmoved.

    Measured (coffee.png, 128 px, seeds 1-3): mean |difference| to the previous frame zoomed in
    0.02, unmoved 0.09, zoomed out 0.12. Asserted on the median over seeds and frames: zoomed in
    below half of either other.
    """
    inward, still, outward = [], [], []
    for frames in runs.values():
        t = [to_tensor(f) for f in frames]
        for a, b in itertools.pairwise(t):
            inward.append(mae(b, zoom_in(a, ZOOM)))
            still.append(mae(b, a))
            outward.append(mae(b, zoom_in(a, 1 / ZOOM)))
    assert statistics.median(inward) < 0.5 * statistics.median(still), (inward, still)
    assert statistics.median(inward) < 0.5 * statistics.median(outward), (inward, outward)


def test_consecutive_frames_do_not_flicker(runs: dict[int, list[Image.Image]]) -> None:
    """What a frame adds beyond the camera's move is small, and well under what a still adds.

    Flicker = mean |frame - previous frame zoomed in| (0 to 1 per channel). Measured (3 steps
    per frame, seeds 1-3): 0.0176-0.0180 per frame, against 0.031-0.032 between the photo and its
    first frame, a still of 3 octaves x 5 steps. Bounds: every frame's flicker below 0.025
    (6 of 255 levels), and the median below 0.6 of the still's change.
    """
    source = photo("coffee.png")
    flicker, dreamt = [], []
    for frames in runs.values():
        t = [to_tensor(f) for f in frames]
        dreamt.append(mae(t[0], to_tensor(source.resize(frames[0].size, Image.LANCZOS))))
        flicker += [mae(b, zoom_in(a, ZOOM)) for a, b in itertools.pairwise(t)]
    assert max(flicker) < 0.025, flicker
    assert statistics.median(flicker) < 0.6 * statistics.median(dreamt), (flicker, dreamt)


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp"])
def test_animation_decodes_with_every_frame_under_the_budget(
    runs: dict[int, list[Image.Image]], fmt: str
) -> None:
    frames = runs[SEEDS[0]]
    budget = 256 * 1024
    data, size = encode_animation(frames, fmt, fps=12, budget=budget)  # type: ignore[arg-type]
    assert len(data) <= budget
    assert decoded_frames(data, fmt) == (FRAMES, size)


def test_animation_over_the_budget_shrinks_but_keeps_every_frame() -> None:
    frames = [photo("rocket.jpg", 320).rotate(3 * i) for i in range(6)]
    # H.264 at its lowest quality packs these six frames into 4.5 KB at full size.
    for fmt, budget in (("mp4", 2500), ("gif", 24 * 1024), ("webp", 8 * 1024)):
        data, size = encode_animation(frames, fmt, fps=10, budget=budget)  # type: ignore[arg-type]
        assert len(data) <= budget, fmt
        assert size[0] < 320, fmt
        assert decoded_frames(data, fmt) == (6, size), fmt
    with pytest.raises(InvalidParameterError, match="fewer frames"):
        encode_animation(frames, "gif", fps=10, budget=2000)


def decoded_frames(data: bytes, fmt: str) -> tuple[int, tuple[int, int]]:
    """Frame count and size, as a player reads them: PyAV for MP4, Pillow for GIF and WebP."""
    if fmt == "mp4":
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            images = [f.to_image() for f in container.decode(stream)]
        return len(images), images[0].size
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == fmt.upper()
        return img.n_frames, img.size


def test_zoom_job_reports_frames_and_stops_between_them() -> None:
    """One job: progress counts frames; a cancel after two frames stops before the third."""
    spec = JobSpec(
        preset="edges",
        overrides=DreamOverrides(max_size=96, octaves=1, steps=2),
        seed=4,
        zoom=ZoomSpec(frames=4, frame_steps=2, format="gif"),
        output_budget=128 * 1024,
    )
    seen: list[Progress] = []
    result = run_job(png_bytes(photo("chelsea.png", 96)), spec, progress=seen.append)
    assert (result.kind, result.format, result.frames) == ("zoom", "gif", 4)
    assert result.filename.endswith(".gif") and len(result.image) <= spec.output_budget
    assert [p.frame for p in seen][-1] == 4 and all(p.frames == 4 for p in seen)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    frames_done: list[int] = []
    with pytest.raises(DreamCancelled):
        run_job(
            png_bytes(photo("chelsea.png", 96)),
            spec,
            progress=lambda p: frames_done.append(p.frame),
            should_cancel=lambda: bool(frames_done) and frames_done[-1] >= 2,
        )
    assert max(frames_done) == 2


def test_a_zoom_costs_several_dreams() -> None:
    assert JobSpec().cost == 1
    assert JobSpec(zoom=ZoomSpec(frames=48, frame_steps=4)).cost == 11
    assert JobSpec(zoom=ZoomSpec(frames=2, frame_steps=1)).cost == 2


def test_the_zoom_benchmark_prices_a_frame_against_the_still_it_follows() -> None:
    """`dreamcore bench --zoom`: a frame's time over its step budget, and what a zoom is charged."""
    from dreamcore.zoombench import run_zoom_benchmark, still_full_steps

    (row,) = run_zoom_benchmark([72], preset="edges", frames=3, frame_steps=2, repeats=1)
    # edges: 2 octaves of 10 steps, the coarse one at 1/1.4 the side: 10 + 10 * (51/72)**2
    assert row.still_steps == pytest.approx(still_full_steps((72, 72), 10, [(51, 51), (72, 72)]))
    assert row.still_steps == pytest.approx(15.0, abs=0.1)
    assert row.still_s > 0 and row.frame_s > 0
    assert row.ratio == pytest.approx(row.frame_s / (2 * row.still_s / row.still_steps))
    assert row.charged == JobSpec(preset="edges", zoom=ZoomSpec(frames=48, frame_steps=2)).cost
    assert row.measured == pytest.approx(1 + 47 * row.frame_s / row.still_s)


def sharpness(x: torch.Tensor) -> float:
    """Mean absolute difference of neighbouring pixels, across and down."""
    return (
        (x[:, 1:, :] - x[:, :-1, :]).abs().mean() + (x[:, :, 1:] - x[:, :, :-1]).abs().mean()
    ).item()


def test_in_between_frames_move_the_camera_and_fade_the_new_detail_in(
    runs: dict[int, list[Image.Image]],
) -> None:
    """Three in-between frames lead from one dream to the next, as sharp as the dreams.

    Fade: mean |frame - the first dream moved by the camera to that frame's time|, over the same
    for the next dream; it grows frame by frame towards 1. Sharpness: measured (coffee.png,
    128 px, seeds 1-3) dreams 0.117 -> 0.103, in-between frames 0.107-0.110; with a bilinear
    move they were 0.087-0.092, a pulse of blur every fourth frame. Asserted on medians: the
    fade rises, and each in-between frame is at least 0.95 as sharp as the blurrier dream.
    """
    between = ZoomSpec(zoom=ZOOM, between=3)
    fades: list[list[float]] = [[], [], []]
    sharp_ratio = []
    for frames in runs.values():
        t = [to_tensor(f) for f in frames]
        for a, b in itertools.pairwise(t):
            middle = in_between(a, b, between)
            assert len(middle) == 3
            full = mae(b, zoom_in(a, ZOOM))
            for k, m in enumerate(middle):
                fades[k].append(mae(m, zoom_in(a, ZOOM ** ((k + 1) / 4))) / full)
                sharp_ratio.append(sharpness(m) / min(sharpness(a), sharpness(b)))
    medians = [statistics.median(f) for f in fades]
    assert medians == sorted(medians) and medians[-1] < 1.0, medians
    assert statistics.median(sharp_ratio) >= 0.95, sharp_ratio


def test_a_zoom_with_in_between_frames_keeps_its_dreamed_frames() -> None:
    """The dreamed frames are those of the same zoom without in-between ones, bit for bit."""
    preset = resolve("edges", DreamOverrides(max_size=64, octaves=1, steps=2))
    plain = zoom_frames(photo("coffee.png", 64), preset, ZoomSpec(frames=3, frame_steps=2), seed=9)
    smooth = zoom_frames(
        photo("coffee.png", 64), preset, ZoomSpec(frames=3, frame_steps=2, between=2), seed=9
    )
    assert len(smooth) == ZoomSpec(frames=3, between=2).video_frames == 7
    for i, frame in enumerate(plain):
        assert smooth[3 * i].tobytes() == frame.tobytes(), i
    with pytest.raises(ValidationError, match="at most 1200"):
        ZoomSpec(frames=600, between=2)
