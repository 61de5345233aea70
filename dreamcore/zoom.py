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
from .runner import build_objective, default_device, dream_params, resolve_spec
from .video import encode_animation

__all__ = ["run_zoom", "zoom_frames", "zoom_in"]

ProgressFn = Callable[[Progress], None]


def zoom_in(image: torch.Tensor, scale: float, degrees: float = 0.0) -> torch.Tensor:
    """The centre of `image` (3, H, W) enlarged by `scale` and turned by `degrees`, same size.

    One bilinear resampling does the crop, the resize and the turn; corners a turn uncovers are
    mirrored in from the picture.
    """
    _, h, w = image.shape
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    half = torch.tensor([w / 2.0, h / 2.0])
    # Rotate in pixel units (so non-square frames do not shear), then back to [-1, 1] units.
    linear = torch.diag(1 / half) @ rot @ torch.diag(half) / scale
    theta = torch.cat([linear, torch.zeros(2, 1)], dim=1)[None].to(image)
    grid = F.affine_grid(theta, [1, 3, h, w], align_corners=False)
    out = F.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out[0].clamp_(0, 1)


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
    """The zoom's frames at the preset's size cap: a still dream, then zoom + a few steps each."""
    net = load_model(preset.model, device or default_device())
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
        current = dream(
            moved, net, objective, params, progress=report(i, before), should_cancel=should_cancel
        )
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
