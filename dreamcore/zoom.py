"""Dream zoom: a video that falls into its own hallucinations.

The first frame is a still dream of the photo. Every later frame is the previous dream zoomed in a
little (and turned, if asked), dreamed again for a few steps at full size: the previous dream
carries over, so consecutive frames differ by the zoom and a few steps, never by a fresh dream
(no flicker), and what grew keeps growing as it comes closer. One warm model, one objective, one
job; cancellation and progress pass through the engine's callbacks, between steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image

from .engine import dream, octave_sizes
from .images import cap_side, decode_image, to_image, to_tensor
from .jobs import JobResult, JobSpec, Progress, ZoomSpec
from .models import load_model
from .presets import Preset
from .runner import build_objective, dream_params, resolve_device, resolve_spec
from .video import encode_animation

__all__ = ["in_between", "run_zoom", "zoom_frames", "zoom_in"]

ProgressFn = Callable[[Progress], None]


def zoom_in(image: torch.Tensor, scale: float, degrees: float = 0.0) -> torch.Tensor:
    """The centre of `image` (3, H, W) enlarged by `scale` and turned by `degrees`, same size.

    One bilinear resampling does the crop, the resize and the turn; corners a turn uncovers are
    mirrored in from the picture.
    """
    return _warp(image, scale, degrees).clamp_(0, 1)


def in_between(before: torch.Tensor, after: torch.Tensor, zoom: ZoomSpec) -> list[torch.Tensor]:
    """`zoom.between` frames from one dreamed frame to the next, without dreaming.

    `after` is `before` moved by the camera and then dreamed a few steps. An in-between frame at
    fraction `t` is `before` moved a fraction `t` of the way, plus the dream's new detail
    (`after` less the moved `before`) moved back to `t` and faded in by `t`: from `before`
    towards `after`. The video gets `between + 1` times the frames for the price of a few
    resamplings, and the new detail grows in instead of appearing at once. The move is bicubic:
    a bilinear one left the in-between frames ~15% less sharp than the dreams, a pulse of blur.
    """
    detail = after - zoom_in(before, zoom.zoom, zoom.rotate)
    frames = []
    for k in range(1, zoom.between + 1):
        t = k / (zoom.between + 1)
        moved = _warp(before, zoom.zoom**t, zoom.rotate * t, "bicubic")
        grown = _warp(detail, zoom.zoom ** (t - 1), zoom.rotate * (t - 1))
        frames.append((moved + t * grown).clamp_(0, 1))
    return frames


def _warp(
    image: torch.Tensor, scale: float, degrees: float = 0.0, mode: str = "bilinear"
) -> torch.Tensor:
    """The camera's move on `image` (3, H, W): zoomed by `scale` about the centre, turned."""
    _, h, w = image.shape
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    half = torch.tensor([w / 2.0, h / 2.0])
    # Rotate in pixel units (so non-square frames do not shear), then back to [-1, 1] units.
    linear = torch.diag(1 / half) @ rot @ torch.diag(half) / scale
    theta = torch.cat([linear, torch.zeros(2, 1)], dim=1)[None].to(image)
    grid = F.affine_grid(theta, [1, 3, h, w], align_corners=False)
    out = F.grid_sample(
        image[None], grid, mode=mode, padding_mode="reflection", align_corners=False
    )
    return out[0]


def zoom_frames(
    rgb: Image.Image,
    preset: Preset,
    zoom: ZoomSpec,
    *,
    seed: int,
    device: str | None = None,
    guide_image: Image.Image | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> list[Image.Image]:
    """The zoom's frames at the preset's size cap: a still dream, then zoom + a few steps each.

    With `zoom.between`, that many in-between frames (`in_between`) precede each dreamed frame
    after the first.
    """
    net = load_model(preset.model, resolve_device(device))
    objective = build_objective(preset, net, guide_image)
    x = to_tensor(cap_side(rgb, preset.max_size))
    still = dream_params(preset, seed)
    first_steps = len(octave_sizes(tuple(x.shape[-2:]), still)) * still.steps  # type: ignore[arg-type]
    total = first_steps + (zoom.frames - 1) * zoom.frame_steps

    def report(frame: int, done_before: int) -> ProgressFn | None:
        if progress is None:
            return None

        def forward(p: Progress) -> None:
            steps_here = first_steps if frame == 0 else zoom.frame_steps
            done = done_before + round(p.fraction * steps_here)
            progress(replace(p, fraction=done / total, frame=frame + int(p.fraction >= 1),
                             frames=zoom.frames))  # fmt: skip

        return forward

    current = dream(x, net, objective, still, progress=report(0, 0), should_cancel=should_cancel)
    frames = [to_image(current)]
    for i in range(1, zoom.frames):
        # A new seed per frame: the jitter must not repeat, or the same roll would print a pattern.
        params = replace(still, octaves=1, steps=zoom.frame_steps, seed=(seed + i) % 2**63)
        moved = zoom_in(current, zoom.zoom, zoom.rotate)
        before = first_steps + (i - 1) * zoom.frame_steps
        previous, current = (
            current,
            dream(
                moved,
                net,
                objective,
                params,
                progress=report(i, before),
                should_cancel=should_cancel,
            ),
        )
        frames += [to_image(t) for t in in_between(previous, current, zoom)]
        frames.append(to_image(current))
    return frames


def run_zoom(
    image: bytes,
    spec: JobSpec,
    *,
    device: str | None = None,
    precision: str | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> JobResult:
    """A zoom job: decode, dream the frames, encode the video to the spec's budget."""
    assert spec.zoom is not None
    start = time.perf_counter()
    decoded = decode_image(image)
    preset, guide_image, seed = resolve_spec(spec, precision)
    frames = zoom_frames(
        decoded.rgb,
        preset,
        spec.zoom,
        seed=seed,
        device=device,
        guide_image=guide_image,
        progress=progress,
        should_cancel=should_cancel,
    )
    data, (width, height) = encode_animation(
        frames, spec.zoom.format, fps=spec.zoom.fps, budget=spec.output_budget
    )
    return JobResult(
        image=data,
        format=spec.zoom.format,
        width=width,
        height=height,
        preset=spec.preset,
        model=preset.model,
        seed=seed,
        elapsed_s=time.perf_counter() - start,
        kind="zoom",
        frames=len(frames),
        fps=float(spec.zoom.fps),
    )
