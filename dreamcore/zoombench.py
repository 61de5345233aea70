"""`dreamcore bench --zoom`: what a zoom frame costs against a still's step budget, in one run.

A still dreams `steps` at every octave; counted in full-size steps (each octave's steps weighted
by its pixels over the full size's), that is its step budget, and the still's time over it is
the price of one full-size step. A zoom frame is `frame_steps` full-size steps, so its budget is
`frame_steps` such prices; the ratio says what a frame adds on top (zooming, conversions,
setting up a dream per frame). The same run also checks what the bot charges for a zoom
(`zoom_cost`, in dreams) against the zoom's measured time in stills.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .benchmark import bench_picture
from .engine import octave_sizes
from .images import to_image
from .jobs import DreamOverrides, JobSpec, Progress, ZoomSpec, zoom_cost
from .runner import dream_params, resolve_device, resolve_spec
from .zoom import zoom_frames

__all__ = ["ZoomBenchRow", "format_table", "run_zoom_benchmark", "still_full_steps"]

CHARGED_FRAMES = 48  # the zoom whose price is checked: the CLI's and the bot's default length


@dataclass(frozen=True)
class ZoomBenchRow:
    size: int
    preset: str
    device: str
    still_s: float
    still_steps: float  # the still's step budget, in full-size steps
    frame_s: float
    frame_steps: int
    ratio: float  # a frame's time over its step budget (frame_steps full-size steps of the still)
    charged: int  # what a CHARGED_FRAMES zoom counts as against the quota, in dreams
    measured: float  # that zoom's time in stills, from the times above

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def still_full_steps(size: tuple[int, int], steps: int, sizes: Sequence[tuple[int, int]]) -> float:
    """A still's steps counted at full size: each octave's steps weighted by its pixel share."""
    full = size[0] * size[1]
    return sum(steps * h * w / full for h, w in sizes)


def _timed_zoom(
    picture: torch.Tensor, spec: JobSpec, zoom: ZoomSpec, device: str
) -> tuple[float, float]:
    """(the first frame's time, the mean time of the later frames) of one zoom."""
    preset, guide, seed = resolve_spec(spec, None)
    marks: dict[int, float] = {}

    def mark(p: Progress) -> None:
        marks.setdefault(p.frame, time.perf_counter())

    start = time.perf_counter()
    zoom_frames(
        to_image(picture), preset, zoom, seed=seed, device=device, guide_image=guide, progress=mark
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    end = time.perf_counter()
    first = marks[1] - start
    return first, (end - marks[1]) / (zoom.frames - 1)


def run_zoom_benchmark(
    sizes: Sequence[int],
    *,
    preset: str = "dogs",
    device: str | None = None,
    frames: int = 6,
    frame_steps: int = 4,
    repeats: int = 2,
) -> list[ZoomBenchRow]:
    """Per size: a few zooms of `frames` frames after a warm-up; the fastest of each time counts."""
    dev = resolve_device(device)
    zoom = ZoomSpec(frames=frames, frame_steps=frame_steps)
    rows = []
    for size in sizes:
        spec = JobSpec(preset=preset, overrides=DreamOverrides(max_size=size), seed=1)
        picture = bench_picture(size)
        _timed_zoom(picture, spec, ZoomSpec(frames=2, frame_steps=1), dev)  # warm-up
        runs = [_timed_zoom(picture, spec, zoom, dev) for _ in range(repeats)]
        still_s = min(r[0] for r in runs)
        frame_s = min(r[1] for r in runs)
        p, _, _ = resolve_spec(spec, None)
        params = dream_params(p, 1)
        budget = still_full_steps((size, size), p.steps, octave_sizes((size, size), params))
        charged_zoom = ZoomSpec(frames=CHARGED_FRAMES, frame_steps=frame_steps)
        rows.append(
            ZoomBenchRow(
                size=size,
                preset=preset,
                device=dev,
                still_s=still_s,
                still_steps=budget,
                frame_s=frame_s,
                frame_steps=frame_steps,
                ratio=frame_s / (frame_steps * still_s / budget),
                charged=zoom_cost(charged_zoom),
                measured=(still_s + (CHARGED_FRAMES - 1) * frame_s) / still_s,
            )
        )
    return rows


def format_table(rows: Sequence[ZoomBenchRow]) -> str:
    lines = [
        f"| size | preset | device | still (s) | still budget (full-size steps) | frame (s) "
        f"| frame steps | frame / budget | {CHARGED_FRAMES}-frame zoom: charged "
        f"| measured (stills) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.preset} | {r.device} | {r.still_s:.2f} | {r.still_steps:.1f} "
            f"| {r.frame_s:.3f} | {r.frame_steps} | {r.ratio:.2f} | {r.charged} "
            f"| {r.measured:.1f} |"
        )
    return "\n".join(lines)
