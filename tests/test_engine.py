"""The octave loop: determinism, progress, cancellation, colour, size caps, tiles, guides."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import replace

import numpy as np
import pytest
import torch
from photos import photo, png_bytes, tensor

from dreamcore import engine, runner
from dreamcore.engine import (
    DreamParams,
    Warp,
    blur_matrix,
    coarse_weight,
    dream,
    gradient,
    hold_scene,
    octave_gradient,
    octave_sizes,
    resample,
    resample_back,
    scaled_gradient,
    scene_similarity,
    structure_weight,
)
from dreamcore.errors import DreamCancelled, InvalidParameterError
from dreamcore.images import decode_image
from dreamcore.jobs import DreamOverrides, JobSpec, Progress
from dreamcore.models import load_model
from dreamcore.objectives import guide, layer
from dreamcore.presets import PRESETS
from dreamcore.runner import run_job

QUICK = DreamParams(octaves=2, steps=3, jitter=8)


@pytest.fixture(scope="module")
def net():  # type: ignore[no-untyped-def]
    return load_model("efficientnet_lite0")


def test_same_seed_gives_the_same_dream_and_another_seed_another(net) -> None:  # type: ignore[no-untyped-def]
    x = tensor(photo("coffee.png", 128))
    a = dream(x, net, layer("blocks.4"), DreamParams(octaves=2, steps=3, seed=7))
    b = dream(x, net, layer("blocks.4"), DreamParams(octaves=2, steps=3, seed=7))
    c = dream(x, net, layer("blocks.4"), DreamParams(octaves=2, steps=3, seed=8))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_repeatable(preset: str) -> None:
    """Same seed, same picture, on the device the runner picks (CUDA on a GPU machine).

    Most presets turn and scale their copy each step or scale coarse octaves up to 224 px, and
    the gradient comes back through that resampling. Through autograd on CUDA (an H200) `dogs`
    and `fish` gave other bytes on each run: the backward passes of `grid_sample` and
    `interpolate` add with atomics. There `resample_back` takes the gradient back instead.
    """
    data = png_bytes(photo("coffee.png", 96))
    guide_image = png_bytes(photo("chelsea.png", 96)) if preset == "guide" else None
    spec = JobSpec(preset=preset, seed=7, overrides=DreamOverrides(steps=4), guide=guide_image)
    a, b = run_job(data, spec).image, run_job(data, spec).image
    c = run_job(data, spec.model_copy(update={"seed": 8})).image
    assert a == b
    assert a != c


def test_output_keeps_the_input_size_and_valid_pixels(net) -> None:  # type: ignore[no-untyped-def]
    x = tensor(photo("rocket.jpg", 150))
    out = dream(x, net, layer("blocks.3"), QUICK)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().mean() > 0.005  # something was dreamed


def test_progress_reports_every_step_in_order_and_ends_at_one(net) -> None:  # type: ignore[no-untyped-def]
    seen: list[Progress] = []
    dream(tensor(photo("coffee.png", 160)), net, layer("blocks.2"), QUICK, progress=seen.append)
    assert len(seen) == 2 * 3
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    assert seen[-1].fraction == 1.0 and seen[-1].octave == seen[-1].octaves == 2
    assert [(p.octave, p.step) for p in seen[:4]] == [(1, 1), (1, 2), (1, 3), (2, 1)]


def test_cancellation_stops_between_two_steps(net) -> None:  # type: ignore[no-untyped-def]
    steps: list[Progress] = []
    with pytest.raises(DreamCancelled):
        dream(
            tensor(photo("coffee.png", 96)),
            net,
            layer("blocks.2"),
            DreamParams(octaves=3, steps=50),
            progress=steps.append,
            should_cancel=lambda: len(steps) >= 2,
        )
    assert len(steps) == 2


def test_octaves_grow_from_small_to_the_full_size() -> None:
    sizes = octave_sizes((400, 600), DreamParams(octaves=4, octave_scale=1.5))
    assert sizes[-1] == (400, 600)
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in itertools.pairwise(sizes))
    assert sizes[0] == (round(400 / 1.5**3), round(600 / 1.5**3))
    with pytest.raises(InvalidParameterError):
        DreamParams(octaves=0)


def test_dark_photo_keeps_its_colour_balance(net) -> None:  # type: ignore[no-untyped-def]
    """A common failure: the whole of a dark photo drifts to one hue (neon green)."""
    x = tensor(photo("hubble_deep_field.jpg", 256))
    out = dream(x, net, layer("blocks.4"), DreamParams(octaves=3, steps=8, step_size=0.015))
    shift = out.mean(dim=(1, 2)) - x.mean(dim=(1, 2))
    # Brightness may change; the hue may not: the three channels move together (within 0.01).
    assert (shift - shift.mean()).abs().max() < 0.01, shift.tolist()


def test_larger_inputs_are_dreamed_at_the_cap_and_brought_back_up() -> None:
    src = photo("rocket.jpg", 300)
    # Every shipped preset calms plain regions (0.7 and 1.25 of 255 changed for `dogs` and
    # `fish`): `dogs` with plain regions free and the layout let go dreams the sky too (5.4).
    free = DreamOverrides(max_size=96, octaves=2, steps=2, plain_step=1.0, anchor=0.0)
    spec = JobSpec(preset="dogs", overrides=free, seed=1)
    result = run_job(png_bytes(src), spec)
    out = decode_image(result.image).rgb
    assert out.size == src.size
    # Detail was added, and the original's own fine structure survives the round trip.
    a = np.asarray(out, dtype=np.float32)
    b = np.asarray(src, dtype=np.float32)
    assert np.abs(a - b).mean() > 2
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def _column_roughness(detail: torch.Tensor) -> torch.Tensor:
    """Mean |horizontal difference| of the added detail, per column boundary."""
    return (detail[:, :, 1:] - detail[:, :, :-1]).abs().mean(dim=(0, 1))


def test_tiled_gradients_leave_no_seams_at_tile_borders(net) -> None:  # type: ignore[no-untyped-def]
    x = tensor(photo("coffee.png", 512).crop((0, 0, 384, 320)))
    # No jitter: the tile grid stays put, the worst case for seams.
    params = DreamParams(octaves=1, steps=4, jitter=0, tile_size=128, step_size=0.02)
    out = dream(x, net, layer("blocks.3"), params)
    rough = _column_roughness(out - x)
    borders = [127, 255]  # the difference between column 127 and 128 crosses a tile border
    inside = torch.cat([rough[20:120], rough[140:250], rough[265:370]])
    assert rough[borders].max() < 1.6 * inside.median(), (rough[borders], inside.median())


@pytest.mark.parametrize("size", [(160, 256), (171, 250)])
def test_tiled_and_whole_gradients_agree(net, size) -> None:  # type: ignore[no-untyped-def]
    """Odd sizes too: a tile off the network's sampling lattice would disagree with its neighbour."""
    x = tensor(photo("coffee.png", 256).resize(size[::-1]))[None]
    whole = gradient(x, net, layer("blocks.2"), tile_size=4096)
    tiled = gradient(x, net, layer("blocks.2"), tile_size=96)
    cos = torch.nn.functional.cosine_similarity(whole.flatten(), tiled.flatten(), dim=0)
    assert cos > 0.95


def test_guide_image_features_grow_into_the_photo(net) -> None:  # type: ignore[no-untyped-def]
    """Guided by a cat, the rocket comes to "look like" the cat to the network (mean-pooled
    `blocks.4` features: cosine under 0.4 before, over 0.7 after, at every seed), and by more
    than a plain dream at the same seed brings: median margin over seeds 0-5 > 0.1.

    Margins measured, seeds 0-5: H200 (CUDA, fp32) 0.195 / 0.211 / 0.135 / 0.138 / 0.207 /
    0.093 (median 0.166); Xeon bf16 0.204 / 0.279 / 0.099 / 0.160 / 0.132 / 0.233 (0.182); Xeon
    fp32 0.199 / 0.274 / 0.168 / 0.128 / 0.159 / 0.103 (0.164). Guided likeness 0.80-0.83 on all
    of them; what varies is the plain dream's (0.53-0.73). This used to ask 0.2 at seed 0 alone,
    a coin toss between devices (0.174-0.204 there).
    """
    x = tensor(photo("rocket.jpg", 160))
    g = tensor(photo("chelsea.png", 160))
    with torch.no_grad():
        guide_acts = net(g[None], ["blocks.4"])["blocks.4"]

    def likeness(img: torch.Tensor) -> float:
        with torch.no_grad():
            a = net(img[None], ["blocks.4"])["blocks.4"].mean(dim=(2, 3))
        return torch.cosine_similarity(a, guide_acts.mean(dim=(2, 3))).item()

    assert likeness(x) < 0.4
    margins = []
    for seed in range(6):
        p = DreamParams(octaves=2, steps=10, seed=seed)
        out = likeness(dream(x, net, guide("blocks.4", guide_acts), p))
        plain = likeness(dream(x, net, layer("blocks.4"), p))
        assert out > 0.7, (seed, out)
        margins.append(out - plain)
    assert statistics.median(margins) > 0.1, margins


@pytest.fixture(scope="module")
def half_plain(net):  # type: ignore[no-untyped-def]
    """coffee.png beside flat grey (96 x 192) and its dreams with plain_step 1 and 0.1, shared by
    the plain-region tests: (picture, calm params, free change, calm change, plain mask, busy mask)."""
    half = tensor(photo("coffee.png").resize((96, 96)))
    x = torch.cat([torch.full_like(half, 0.5), half], dim=2)
    p = DreamParams(octaves=2, steps=4, step_size=0.02, seed=3)
    free = (dream(x, net, layer("blocks.4"), p) - x).abs().mean(dim=0)
    calm_p = replace(p, plain_step=0.1)
    calm = (dream(x, net, layer("blocks.4"), calm_p) - x).abs().mean(dim=0)
    weight = structure_weight(x[None], 0.1, calm_p.plain_contrast)[0, 0]
    return x, calm_p, free, calm, weight < 0.11, weight > 0.99


def test_plain_regions_take_a_fraction_of_the_step_structured_ones_all_of_it(half_plain) -> None:  # type: ignore[no-untyped-def]
    """`plain_step`: where the photo is plain the change shrinks; where it has structure, far less.

    coffee.png beside flat grey, 96 x 192, 2 octaves x 4 steps, plain_step 0.1. Measured, mean
    |change| against plain_step 1 where the photo's weight is at its floor: x0.15 (bound: below
    0.3); where it is 1: x0.51 (bound: at least twice the plain regions' share). Structured
    regions lose some too: heads grown there had reached in from the plain neighbours.
    """
    _, _, free, calm, plain, busy = half_plain
    assert plain.float().mean() > 0.3 and busy.float().mean() > 0.1  # both kinds are there
    flat = (calm[plain].mean() / free[plain].mean()).item()
    kept = (calm[busy].mean() / free[busy].mean()).item()
    print(f"plain regions x{flat:.2f}, structured x{kept:.2f}")
    assert flat < 0.3 and kept > 2 * flat, (flat, kept)


def test_structure_gain_spends_the_plain_regions_step_where_the_photo_has_structure(  # type: ignore[no-untyped-def]
    net, half_plain
) -> None:
    """`structure_gain`: the step plain regions give up goes to the structured ones, up to x gain.

    The half-plain picture of the test above, plain_step 0.1, gain 1 against 2. Measured, mean
    |change| with gain 2 against gain 1: structured regions x2.45 (bound: above 1.3; steps
    compound), the whole picture x2.17. The plain regions' share grows with the rest (x0.15 ->
    x0.27 of an uncalmed dream's change; bound: under 0.4): they stay calm next to the others.
    """
    x, calm_p, free, calm, plain, busy = half_plain
    spent = (dream(x, net, layer("blocks.4"), replace(calm_p, structure_gain=2.0)) - x).abs()
    spent = spent.mean(dim=0)
    gain = (spent[busy].mean() / calm[busy].mean()).item()
    whole = (spent.mean() / calm.mean()).item()
    flat = (spent[plain].mean() / free[plain].mean()).item()
    print(f"structured x{gain:.2f}, whole x{whole:.2f}, plain regions x{flat:.2f} of free")
    assert gain > 1.3 and flat < 0.4, (gain, whole, flat)


def test_structure_gain_must_lie_in_1_to_4() -> None:
    for bad in (0.5, 4.5):
        with pytest.raises(InvalidParameterError, match="structure_gain"):
            DreamParams(structure_gain=bad)


def test_the_scene_anchor_keeps_the_coarse_layout_of_the_change_near_zero(net) -> None:  # type: ignore[no-untyped-def]
    """With `anchor=1` the change has (almost) no band below `anchor_side` px; without, it has."""
    x = tensor(photo("coffee.png", 128))
    p = DreamParams(octaves=2, steps=4, step_size=0.02, seed=3)
    free = dream(x, net, layer("blocks.4"), p)
    kept = dream(x, net, layer("blocks.4"), DreamParams(**{**p.__dict__, "anchor": 1.0}))

    def coarse(img: torch.Tensor) -> float:
        return torch.nn.functional.adaptive_avg_pool2d(img - x, 8).abs().mean().item()

    assert coarse(kept) < 0.5 * coarse(free), (coarse(kept), coarse(free))
    assert (kept - x).abs().mean() > 0.5 * (free - x).abs().mean()  # the detail stays


def _dreamed_retina(net, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The retina photo (192 px) and a dream of it with the scene left free, each (1, 3, H, W)."""
    x = tensor(photo("retina.jpg", 192))
    p = DreamParams(octaves=3, steps=4, step_size=0.03, seed=seed)
    return x[None], dream(x, net, layer("blocks.5"), p)[None]


def test_scene_similarity_reads_the_layout_as_the_judge_does(net) -> None:  # type: ignore[no-untyped-def]
    """The engine's own SSIM (bicubic thumbnails, float) and the judge's (scikit-image on 8-bit
    Lanczos thumbnails) agree: 1 for the photo itself, low for another photo, and within 0.03
    on dreams. Measured 2026-11-28: the engine's reads 0.01-0.02 above the judge's on dreams."""
    from judge import structure
    from PIL import Image

    def pil(t: torch.Tensor) -> Image.Image:
        return Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))

    x, out = _dreamed_retina(net)
    other = tensor(photo("astronaut.png", 192))[None]
    assert scene_similarity(x, x).item() == pytest.approx(1.0)
    assert scene_similarity(other, x).item() < 0.3
    ours, theirs = scene_similarity(out, x).item(), structure(pil(x), pil(out), 96)
    print(f"engine {ours:.3f}, judge {theirs:.3f}")
    assert ours < 0.9 and abs(ours - theirs) < 0.03


def test_hold_scene_lifts_each_dream_to_its_floor_and_no_further(net) -> None:  # type: ignore[no-untyped-def]
    """A dream under its floor comes back to it (not to the photo): its change below 96 px
    shrinks, its detail above stays (correlation 0.995 measured); one at or above its floor is
    left untouched; each image of a batch has its own floor."""
    x, out = _dreamed_retina(net)
    before = scene_similarity(out, x).item()
    floor = before + 0.1
    both = hold_scene(torch.cat([out, out]), torch.cat([x, x]), [floor, before - 0.05])
    lifted, left = both[:1], both[1:]
    got = scene_similarity(lifted, x).item()
    print(f"{before:.3f} -> {got:.3f} (floor {floor:.3f})")
    assert floor <= got < floor + 0.01
    assert torch.equal(left, out)

    def bands(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # below / above 96 px
        d = img - x
        small = torch.nn.functional.interpolate(d, size=(96, 96), mode="bilinear", antialias=True)
        coarse = torch.nn.functional.interpolate(small, size=d.shape[-2:], mode="bilinear")
        return coarse, d - coarse

    (c_out, f_out), (c_lifted, f_lifted) = bands(out), bands(lifted)
    assert c_lifted.abs().mean() < 0.8 * c_out.abs().mean()
    assert torch.corrcoef(torch.stack([f_out.flatten(), f_lifted.flatten()]))[0, 1] > 0.98
    assert torch.equal(hold_scene(out.clone(), x, [0.0]), out)


def test_a_strip_too_thin_for_the_measure_dreams_without_the_floor(net) -> None:  # type: ignore[no-untyped-def]
    """A 2000 x 40 strip is 96 x 2 at the measure's scale: no layout to read, no error."""
    x = torch.rand(1, 3, 40, 2000)
    assert torch.equal(hold_scene(x.clone(), torch.zeros_like(x), [0.9]), x)
    with pytest.raises(InvalidParameterError, match="7 pixels"):
        scene_similarity(x, x)
    p = replace(runner.dream_params(PRESETS["cats"], seed=1), octaves=1, steps=1)
    out = dream(x[0], net, runner.build_objective(PRESETS["cats"], net, None), p)
    assert out.shape == x[0].shape


def test_scene_floor_must_lie_below_one() -> None:
    with pytest.raises(InvalidParameterError, match="scene_floor"):
        DreamParams(scene_floor=1.0)


def _square(h: int, w: int) -> torch.Tensor:
    x = torch.zeros(1, 3, h, w)
    x[:, :, 10:22, 14:26] = 1.0  # off centre, in the top-left part
    return x


def test_a_turned_and_scaled_gradient_lands_back_where_its_pattern_is() -> None:
    """The warp is undone on the way back: the gradient of a pattern sits on the pattern.

    With d objective / d pixels = the pixels (objective: half their square), the gradient
    carried back through a 30-degree turn and a 1.1x scale is the square again, softened by the
    resampling, not the square turned about the centre.
    """
    x = _square(64, 96)
    seen: list[torch.Tensor] = []

    def half_square(t: torch.Tensor) -> torch.Tensor:  # its gradient: the pixels it is given
        seen.append(t)
        return t.clone()

    g = scaled_gradient(x, 0, half_square, warps=[(math.radians(30), 1.1)])
    on = g[:, :, 10:22, 14:26].sum()
    assert on > 0.8 * g.sum() and on > 0.5 * x.sum(), (on.item(), g.sum().item())
    # what the network saw was turned and scaled: the square has left its place there
    moved = seen[0][:, :, 10:22, 14:26].sum()
    assert moved < 0.5 * seen[0].sum(), (moved.item(), seen[0].sum().item())


@pytest.mark.parametrize(
    ("size", "warps"),
    [
        ((160, 224), None),
        ((224, 300), [(math.radians(4), 1.08), (math.radians(-5), 0.92)]),
        ((70, 90), [(math.radians(30), 1.1), (0.0, 1.0)]),  # far past the borders: reflections
        ((112, 160), [Warp(0.05, 2.2, 0.4, -0.5), Warp(-0.08, 1.5, -0.3, 0.3)]),  # cutouts
    ],
)
def test_resample_back_is_the_transpose_autograd_finds(size, warps, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The deterministic way back (used on CUDA) is the same linear map as autograd's, up to the
    order of additions: measured within 4e-6 of the largest value. Also when its rounds of
    sample points are small enough to split rows and images."""
    x = tensor(photo("coffee.png", 90)).expand(2, -1, -1, -1)
    g_out = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    xs = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(resample(xs, size, warps), xs, g_out)
    got = resample_back(g_out, tuple(x.shape[-2:]), warps)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
    monkeypatch.setattr(engine, "_SPLAT_ROUND", 997)
    assert torch.allclose(resample_back(g_out, tuple(x.shape[-2:]), warps), got, atol=1e-6)


def test_no_warp_and_an_identity_warp_give_the_same_gradient() -> None:
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    g = scaled_gradient(x, 0, lambda t: t * t, warps=[(0.0, 1.0), (0.0, 1.0)])
    assert torch.allclose(g, x * x, atol=1e-4)


def test_each_image_of_a_batch_is_warped_by_its_own_draw() -> None:
    """Batched dreams must come out as each dreamed alone: warps are per image."""
    x = torch.cat([_square(48, 48), _square(48, 48)])
    warps = [(math.radians(20), 1.0), (math.radians(-15), 0.9)]
    both = scaled_gradient(x, 64, lambda t: t.clone(), warps=warps)
    for i, w in enumerate(warps):
        alone = scaled_gradient(x[i : i + 1], 64, lambda t: t.clone(), warps=[w])
        assert torch.allclose(both[i : i + 1], alone, atol=1e-6)
    assert not torch.allclose(both[0], both[1], atol=1e-3)


@pytest.mark.parametrize("side", [64, 512])
def test_a_star_field_reads_as_fine_detail_and_photos_of_big_shapes_as_coarse(side: int) -> None:
    """`coarse_weight` at any working size: the Hubble field's detail is its stars (0), the
    cup, the cat and the rocket's tower are big shapes (1)."""
    names = ["hubble_deep_field.jpg", "coffee.png", "chelsea.png", "rocket.jpg"]
    weights = [float(coarse_weight(tensor(photo(n, side))[None])[0]) for n in names]
    assert weights == [0.0, 1.0, 1.0, 1.0]


def test_the_octave_gradient_mixes_its_two_gradients_per_image() -> None:
    """With `own`, an octave under `side` takes both gradients, each normalised per image; an
    image whose `coarse` is 0 gets only its own-size gradient, even beside one that takes both,
    and a batch where none wants the scaled one gets the own-size gradient untouched."""
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    x[1] *= 4  # another scale, so a normalisation across the batch would show

    def grad(t: torch.Tensor) -> torch.Tensor:
        return t * t

    own = scaled_gradient(x, 0, grad)
    scaled = scaled_gradient(x, 96, grad)
    assert not torch.allclose(own / own.abs().mean(), scaled / scaled.abs().mean(), atol=1e-2)
    mixed = octave_gradient(x, 96, 1.0, grad, coarse=[0.0, 1.0])
    unit = [g / g.abs().mean() for g in (own[0], own[1], scaled[1])]
    assert torch.allclose(mixed[0], unit[0], atol=1e-5)
    assert torch.allclose(mixed[1], unit[1] + unit[2], atol=1e-5)
    assert torch.equal(octave_gradient(x, 96, 1.0, grad, coarse=[0.0, 0.0]), own)
    assert torch.equal(octave_gradient(x, 96, 0.0, grad), scaled)  # the other animals' recipe
    assert torch.equal(octave_gradient(x, 32, 1.0, grad), own)  # octave above the side


def test_dogs_dreams_a_star_field_with_its_own_size_gradient_only(net) -> None:  # type: ignore[no-untyped-def]
    """`dogs` takes the 224 px gradient beside its own on coffee, not on the Hubble field."""
    p = replace(runner.dream_params(PRESETS["dogs"], seed=2), octaves=2, steps=2)
    plain = replace(p, grad_side=0, grad_own=0.0)
    objective = runner.build_objective(PRESETS["dogs"], net, None)
    for name, same in (("hubble_deep_field.jpg", True), ("coffee.png", False)):
        x = tensor(photo(name, 96))
        a, b = dream(x, net, objective, p), dream(x, net, objective, plain)
        assert torch.equal(a, b) is same, name


def test_dogs_keeps_the_layout_of_coffee_not_of_a_star_field(net) -> None:  # type: ignore[no-untyped-def]
    """`dogs` calms plain regions and anchors the layout as far as the photo's detail is coarse:
    the Hubble field dreams exactly as without it, coffee's layout (the change at 8 x 8) moves
    less. Measured at 96 px, 2 octaves x 4 steps: coffee's layout change x0.25 (bound: 0.7)."""
    p = replace(runner.dream_params(PRESETS["dogs"], seed=2), octaves=2, steps=4)
    free = replace(p, layout_by_detail=False, plain_step=1.0, anchor=0.0)
    objective = runner.build_objective(PRESETS["dogs"], net, None)
    star = tensor(photo("hubble_deep_field.jpg", 96))
    assert torch.equal(dream(star, net, objective, p), dream(star, net, objective, free))
    x = tensor(photo("coffee.png", 96))

    def layout(img: torch.Tensor) -> float:
        return torch.nn.functional.adaptive_avg_pool2d(img - x, 8).abs().mean().item()

    kept, loose = layout(dream(x, net, objective, p)), layout(dream(x, net, objective, free))
    print(f"coffee's layout change x{kept / loose:.2f}")
    assert kept < 0.7 * loose, (kept, loose)


def test_a_cutout_takes_its_gradient_from_its_own_part_of_the_image() -> None:
    """A cutout (a warp scaling by 1 / share about a point) shows the network one part of the
    image, scaled up: the gradient lands inside that part, whatever the rest holds, and the
    crops `_cutouts` draws stay inside the image and come only at octaves that are scaled up."""
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    seen: list[torch.Tensor] = []

    def grad(t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return torch.ones_like(t)

    g = scaled_gradient(x, 112, grad, warps=[Warp(0.0, 2.0, -0.5, -0.5)])  # the top-left quarter
    assert seen[0].shape[-2:] == (112, 168)
    inside = g[..., :33, :49].abs().sum()
    assert inside > 0.999 * g.abs().sum(), (inside.item(), g.abs().sum().item())
    assert g[..., 2:30, 2:46].min() > 0  # and covers it
    params = DreamParams(grad_side=224, cutouts=3, cutout=(0.4, 0.7), turn=5.0, zoom=0.1)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    assert engine._cutouts(gens, params, 224) is None  # not scaled up: the whole image
    assert engine._cutouts(gens, replace(params, cutouts=0), 100) is None
    views = engine._cutouts(gens, params, 100)
    assert views is not None and [len(v) for v in views] == [2, 2, 2]
    for w in itertools.chain.from_iterable(views):
        share = 1 / w.scale  # up to the zoom of 1 +- 0.1
        assert 0.4 / 1.1 <= share <= 0.7 / 0.9 and abs(w.angle) <= math.radians(5)
        assert abs(w.dx) + share <= 1.0 + 0.1 and abs(w.dy) + share <= 1.0 + 0.1
    assert views[0][0] != views[0][1] and views[0][0] != views[1][0]


def test_a_blurred_cutout_passes_shapes_and_stops_speckle() -> None:
    """A cutout seen through a blur (`Warp.blur`) takes back only what survives the blur: a
    gradient that asks for 1-pixel speckle (a checkerboard) all but vanishes, one that asks for
    a head-sized blob passes nearly whole. And `_cutouts` draws each crop's blur in its range."""
    x = torch.rand(1, 3, 112, 168, generator=torch.Generator().manual_seed(4))
    yy, xx = torch.meshgrid(torch.arange(112), torch.arange(168), indexing="ij")
    speckle = ((yy + xx) % 2 * 2 - 1).float().expand(1, 3, -1, -1)
    blob = torch.exp(-((yy - 56) ** 2 + (xx - 84) ** 2) / (2 * 20.0**2)).expand(1, 3, -1, -1)
    for wanted, kept in ((speckle, (0.0, 0.01)), (blob, (0.9, 1.01))):
        sharp = scaled_gradient(x, 0, lambda t: wanted, warps=[Warp(0.0, 1.0)])  # noqa: B023
        soft = scaled_gradient(x, 0, lambda t: wanted, warps=[Warp(0.0, 1.0, blur=2.0)])  # noqa: B023
        share = (soft.abs().sum() / sharp.abs().sum()).item()
        assert kept[0] <= share <= kept[1], share
    params = DreamParams(grad_side=224, cutouts=3, turn=5.0, zoom=0.1, cutout_blur=(1.0, 5.0))
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    blurs = [w.blur for w in itertools.chain.from_iterable(engine._cutouts(gens, params, 100))]
    assert all(1.0 <= b <= 5.0 for b in blurs) and len(set(blurs)) == 6
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    sharp = engine._cutouts(gens, replace(params, cutout_blur=(0.0, 0.0)), 100)
    assert {w.blur for w in itertools.chain.from_iterable(sharp)} == {0.0}


def test_the_blur_is_a_mirrored_gaussian_and_goes_back_as_autograd_finds() -> None:
    """`blur_matrix` is torch's reflect-padded Gaussian filter; the blurred gradient's way back
    (two matrix products, in a fixed order on every device) is the transpose autograd finds."""
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    sigma, r = 1.7, math.ceil(3 * 1.7)
    taps = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k /= k.sum()
    rows = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x.reshape(6, 1, 40, 56), (r, r, 0, 0), mode="reflect"),
        k.view(1, 1, 1, -1),
    ).reshape(2, 3, 40, 56)
    assert torch.allclose(rows, x @ blur_matrix(56, sigma, x).T, atol=1e-5)
    assert torch.equal(blur_matrix(9, 0.0, x), torch.eye(9))
    g_out = torch.randn(2, 3, 70, 98, generator=torch.Generator().manual_seed(5))
    warps = [Warp(0.05, 1.6, 0.2, -0.3, 2.5), Warp(-0.04, 1.3, 0.0, 0.1, 0.0)]
    xs = x.clone().requires_grad_(True)
    blurs = engine._blurs(warps, (70, 98), x)
    seen = blurs[0] @ resample(xs, (70, 98), warps) @ blurs[1].transpose(-1, -2)
    (want,) = torch.autograd.grad(seen, xs, g_out)
    got = scaled_gradient(x, 70, lambda t: g_out, warps=warps)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()


def test_cutouts_are_bounded() -> None:
    with pytest.raises(InvalidParameterError, match="cutouts"):
        DreamParams(cutouts=17)
    with pytest.raises(InvalidParameterError, match="cutout"):
        DreamParams(cutout=(0.7, 0.4))
    with pytest.raises(InvalidParameterError, match="cutout"):
        DreamParams(cutout=(0.05, 0.4))
    with pytest.raises(InvalidParameterError, match="cutout_blur"):
        DreamParams(cutout_blur=(3.0, 1.0))
    with pytest.raises(InvalidParameterError, match="cutout_blur"):
        DreamParams(cutout_blur=(0.0, 9.0))


def test_turn_and_zoom_are_bounded() -> None:
    with pytest.raises(InvalidParameterError, match="turn"):
        DreamParams(turn=60.0)
    with pytest.raises(InvalidParameterError, match="zoom"):
        DreamParams(zoom=0.7)
