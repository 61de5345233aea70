"""`dreamcore bench`: what one dream step costs against the floor, measured in the same run.

The floor is one forward and backward pass of the model truncated at the objective's deepest
layer, at the same size, precision and layout: no dream step can be cheaper. The ratio says what
the rest of a step (jitter, tiling, balancing terms, pyramid normalisation, the colour step)
adds on top. With `compare`, the same steps and dreams also run on the plain path (fp32, NCHW,
batch norms as trained, not folded), interleaved with the fast path's, so the speed-up column
compares runs made under the same load.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch

from .engine import DreamParams, Execution, _step, dream, tone_room
from .models import DreamNet, load_model
from .objectives import Objective
from .precision import autocast, precision_name, resolve_layout, resolve_precision
from .presets import PRESETS, resolve
from .runner import build_objective, dream_params, resolve_device

__all__ = ["BenchRow", "bench_picture", "format_table", "run_benchmark"]


@dataclass(frozen=True)
class BenchRow:
    size: int
    model: str
    preset: str
    device: str
    precision: str  # what the network ran in: fp32 or bf16
    layout: str  # nchw or channels_last
    tile: int
    step_s: float
    floor_s: float
    ratio: float
    dream_s: float
    steps: int
    peak_mem_mb: float
    # With compare: the plain path (fp32, NCHW) in the same run, and fast-path speed-ups.
    plain_step_s: float | None = None
    plain_dream_s: float | None = None
    plain_peak_mem_mb: float | None = None
    step_speedup: float | None = None
    dream_speedup: float | None = None

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


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class _Path:
    """One way of running the dream: a network in a layout and a precision."""

    net: DreamNet
    params: DreamParams
    dtype: torch.dtype
    objective: Objective
    step_t: list[float]
    floor_t: list[float]
    dream_t: list[float]
    peak: float = 0.0

    def step(self, img: torch.Tensor, run: Execution, gen: torch.Generator) -> None:
        # A dream computes the colour room once per octave; here once per step (under 1 ms).
        room = tone_room(img[None], self.params.tone_margin)
        _step(img[None], self.net, self.objective, self.params, [gen], run, room)

    def floor(self, img: torch.Tensor, deepest: str) -> None:
        x = img[None].detach().requires_grad_(True)
        with autocast(img.device, self.dtype):
            out = self.net(x, [deepest])[deepest]
        torch.autograd.grad(out.float().pow(2).mean(), x)


def run_benchmark(
    sizes: Sequence[int],
    *,
    preset: str = "dogs",
    model: str | None = None,
    device: str | None = None,
    repeats: int = 5,
    precision: str = "auto",
    layout: str = "auto",
    compare: bool = False,
    dream_repeats: int = 1,
) -> list[BenchRow]:
    from .jobs import DreamOverrides

    p = resolve(PRESETS[preset], DreamOverrides(model=model))
    dev = torch.device(resolve_device(device))
    dtype = resolve_precision(precision, dev)
    fast_layout = resolve_layout(layout, dev)
    net = load_model(p.model, dev, layout=fast_layout)
    objective = build_objective(p, net, None)
    deepest = max(objective.layers, key=net.depth_of)
    rows = []
    for size in sizes:
        img = bench_picture(size, dev)

        def params(prec: str) -> DreamParams:
            # The preset's whole octave loop (its gradient side, turns, anchor), as users get it.
            return replace(dream_params(p, 0), precision=prec)

        fast = _Path(net, params(precision_name(dtype)), dtype, objective, [], [], [])
        paths = [fast]
        if compare:
            plain_net = load_model(p.model, dev, layout="nchw", fold=False)
            plain = _Path(plain_net, params("fp32"), torch.float32, objective, [], [], [])
            paths.append(plain)
        run = Execution(dev, dtype, p.tile_size)
        tile = run.tile_size
        # Interleaved, so drift in machine load hits every path alike; the fastest run of each
        # is the one least disturbed by other work (on a shared 2-core machine one call of the
        # same size varies by +-25%), so ratios compare minima, as timeit does.
        for path in paths:  # warm-up: allocator, kernels, caches
            gen = torch.Generator().manual_seed(0)
            path.floor(img, deepest)
            path.step(img, Execution(dev, path.dtype, tile), gen)
            # ... and every octave's shape: on an H200 the first 512 px dream, unwarmed, took
            # 1.04 s where the 1024 px one after it took 0.83 (kernels chosen per shape).
            dream(img, path.net, objective, replace(path.params, steps=1))
        for _ in range(repeats):
            for path in paths:
                gen = torch.Generator().manual_seed(0)
                r = Execution(dev, path.dtype, tile)
                path.floor_t.append(_time(lambda p=path, x=img: p.floor(x, deepest), dev))
                path.step_t.append(_time(lambda p=path, x=img, r=r, g=gen: p.step(x, r, g), dev))
        for _ in range(dream_repeats):
            for path in paths:
                _reset_peak(dev)
                path.dream_t.append(
                    _time(lambda p=path, x=img: dream(x, p.net, objective, p.params), dev)
                )
                path.peak = max(path.peak, _peak_mb(dev))
        row = BenchRow(
            size=size,
            model=p.model,
            preset=preset,
            device=str(dev),
            precision=precision_name(dtype),
            layout=fast_layout,
            tile=tile,
            step_s=min(fast.step_t),
            floor_s=min(fast.floor_t),
            ratio=min(fast.step_t) / min(fast.floor_t),
            dream_s=min(fast.dream_t),
            steps=p.steps * p.octaves,
            peak_mem_mb=fast.peak,
        )
        if compare:
            row = BenchRow(
                **{
                    **row.as_dict(),
                    "plain_step_s": min(plain.step_t),
                    "plain_dream_s": min(plain.dream_t),
                    "plain_peak_mem_mb": plain.peak,
                    "step_speedup": min(plain.step_t) / min(fast.step_t),
                    "dream_speedup": min(plain.dream_t) / min(fast.dream_t),
                }
            )
        rows.append(row)
    return rows


def bench_picture(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A smooth, deterministic picture: the cost of a step does not depend on the content."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([x, y, 0.5 + 0.5 * torch.sin(6.28 * (x + y))]) * 0.8 + 0.1
    return img.to(device)


def format_table(rows: Sequence[BenchRow]) -> str:
    compare = any(r.plain_step_s is not None for r in rows)
    head = (
        "| size | device | precision | layout | tile | step (s) | floor (s) | ratio "
        "| dream (s) | steps | peak mem (MiB) |"
    )
    sep = "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    if compare:
        head += " plain step (s) | plain dream (s) | plain peak (MiB) | speed-up step | speed-up dream |"
        sep += "---:|---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        line = (
            f"| {r.size} | {r.device} | {r.precision} | {r.layout} | {r.tile} | {r.step_s:.3f} "
            f"| {r.floor_s:.3f} | {r.ratio:.2f} | {r.dream_s:.2f} | {r.steps} "
            f"| {r.peak_mem_mb:.0f} |"
        )
        if compare:
            line += (
                f" {r.plain_step_s:.3f} | {r.plain_dream_s:.2f} | {r.plain_peak_mem_mb:.0f} "
                f"| {r.step_speedup:.2f}x | {r.dream_speedup:.2f}x |"
            )
        lines.append(line)
    return "\n".join(lines)
