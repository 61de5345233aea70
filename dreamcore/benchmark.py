"""`dreamcore bench`: what one dream step costs against the floor, measured in the same run.

The floor is one forward and backward pass of the model truncated at the objective's deepest
layer, at the same size: no dream step can be cheaper. The ratio says what the rest of a step
(jitter, tiling, balancing terms, pyramid normalisation, the colour step) adds on top.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from .engine import DreamParams, _step, dream
from .models import load_model
from .presets import PRESETS, resolve
from .runner import build_objective, default_device

__all__ = ["BenchRow", "format_table", "run_benchmark"]


@dataclass(frozen=True)
class BenchRow:
    size: int
    model: str
    preset: str
    device: str
    step_s: float
    floor_s: float
    ratio: float
    dream_s: float
    steps: int
    peak_mem_mb: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _time(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_benchmark(
    sizes: Sequence[int],
    *,
    preset: str = "dogs",
    model: str | None = None,
    device: str | None = None,
    repeats: int = 5,
) -> list[BenchRow]:
    from .jobs import DreamOverrides

    p = resolve(PRESETS[preset], DreamOverrides(model=model))
    dev = torch.device(device or default_device())
    net = load_model(p.model, dev)
    objective = build_objective(p, net, None)
    deepest = max(objective.layers, key=net.depth_of)
    rows = []
    for size in sizes:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        img = _test_image(size, dev)
        params = DreamParams(
            octaves=p.octaves,
            octave_scale=p.octave_scale,
            steps=p.steps,
            step_size=p.step_size * p.strength,
            jitter=p.jitter,
            tile_size=p.tile_size,
        )
        gen = torch.Generator().manual_seed(0)

        def floor(img: torch.Tensor = img) -> None:
            x = img[None].detach().requires_grad_(True)
            out = net(x, [deepest])[deepest]
            torch.autograd.grad(out.pow(2).mean(), x)

        def step(
            img: torch.Tensor = img, params: DreamParams = params, gen: torch.Generator = gen
        ) -> None:
            _step(img[None], net, objective, params, gen)

        # Interleaved, so drift in machine load hits both alike; the fastest run of each is the
        # one least disturbed by other work (on a shared 2-core machine one call of the same
        # size varies by +-25%), so the ratio compares minima, as timeit does.
        floor()
        step()  # warm-up: allocator, kernels, caches
        floor_t, step_t = [], []
        for _ in range(repeats):
            floor_t.append(_time(floor, dev))
            step_t.append(_time(step, dev))
        floor_s, step_s = min(floor_t), min(step_t)
        t = time.perf_counter()
        dream(img, net, objective, params)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dream_s = time.perf_counter() - t
        rows.append(
            BenchRow(
                size=size,
                model=p.model,
                preset=preset,
                device=str(dev),
                step_s=step_s,
                floor_s=floor_s,
                ratio=step_s / floor_s,
                dream_s=dream_s,
                steps=p.steps * p.octaves,
                peak_mem_mb=_peak_mb(dev),
            )
        )
    return rows


def _test_image(size: int, device: torch.device) -> torch.Tensor:
    """A smooth, deterministic picture: the cost of a step does not depend on the content."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([x, y, 0.5 + 0.5 * torch.sin(6.28 * (x + y))]) * 0.8 + 0.1
    return img.to(device)


def format_table(rows: Sequence[BenchRow]) -> str:
    head = "| size | device | step (s) | floor (s) | ratio | dream (s) | steps | peak mem (MiB) |"
    sep = "|---:|---|---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.device} | {r.step_s:.3f} | {r.floor_s:.3f} | {r.ratio:.2f} "
            f"| {r.dream_s:.1f} | {r.steps} | {r.peak_mem_mb:.0f} |"
        )
    return "\n".join(lines)
