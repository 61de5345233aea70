"""`dreamcore bench --pool`: what the worker pool costs and what it buys.

For a burst of identical-sized jobs it measures, in one run and on the same jobs:
- the engine called in-process, one job after another (the baseline);
- the pool with each worker count asked for: throughput (jobs per minute) and latency (submit to
  result, p50 and p95), with every job submitted at once.

The pool's overhead is the 1-worker pool against the in-process baseline, both using the same
device and the same number of torch threads: (pool wall time - in-process wall time) per job.
Rows with more workers show their speed-up over the baseline instead. Before each measurement,
one untimed job per worker (and one in-process) warms the caches, so model loading and first-call
costs are not counted on either side. The in-process pass runs before the pools.

Worker counts are per device on CUDA (`workers_per_device`) and CPU workers otherwise, where the
torch threads are split between the workers (cores // workers each) as the pool does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import time
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from .jobs import DreamOverrides, JobSpec
from .pool import DreamPool, PoolConfig, _cores, _percentile, _plan
from .presets import PRESETS

__all__ = ["default_worker_counts", "format_table", "run_pool_benchmark"]

log = logging.getLogger(__name__)


def default_worker_counts() -> list[int]:
    """1, 2 and N workers: N is the core count on CPU, 4 per device on CUDA."""
    import torch

    n = 4 if torch.cuda.is_available() else _cores()
    return sorted({1, 2, n})


def run_pool_benchmark(
    worker_counts: Sequence[int], jobs: int, size: int, preset: str
) -> list[dict[str, Any]]:
    """One row for the in-process baseline, then one per worker count (see `format_table`)."""
    if jobs < 1 or not worker_counts or min(worker_counts) < 1:
        raise ValueError("need at least one job and worker counts of at least 1")
    image = sample_image(size)
    specs = [
        JobSpec(preset=preset, overrides=DreamOverrides(max_size=size), seed=i) for i in range(jobs)
    ]
    model = PRESETS[specs[0].preset].model
    baseline = _in_process(image, specs, model, _config(1, model))
    rows = [baseline]
    for workers in worker_counts:
        row = asyncio.run(_pooled(image, specs, _config(workers, model)))
        speedup = baseline["wall_s"] / row["wall_s"]
        row["speedup"] = round(speedup, 3)
        if workers == 1:
            extra = (row["wall_s"] - baseline["wall_s"]) / jobs
            row["overhead_s_per_job"] = round(extra, 4)
            row["overhead_pct"] = round(100 * extra / (baseline["wall_s"] / jobs), 2)
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table, with the overhead of the pool spelled out below."""
    header = ("mode", "workers", "threads", "jobs/min", "p50 s", "p95 s", "engine s", "speed-up")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["mode"],
                str(r["workers"]),
                str(r["threads"]),
                f"{r['jobs_per_min']:.1f}",
                f"{r['p50_s']:.3f}",
                f"{r['p95_s']:.3f}",
                f"{r['engine_s']:.3f}",
                f"{r['speedup']:.2f}x",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    first = rows[0]
    text.insert(
        0,
        f"{first['jobs']} jobs of {first['size']} px, preset {first['preset']!r}, "
        f"on {first['device']}",
    )
    for r in rows:
        if r.get("overhead_pct") is not None:
            text.append(
                f"pool overhead (1 worker vs in-process): {r['overhead_s_per_job'] * 1000:+.1f} ms "
                f"per job ({r['overhead_pct']:+.2f}%)"
            )
    return "\n".join(text)


def sample_image(size: int) -> bytes:
    """A deterministic, textured PNG with a long side of `size` (the content does not matter
    for timing, only the pixel count)."""
    w, h = size, max(1, round(size * 3 / 4))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    rng = np.random.default_rng(0)
    channels = [
        0.5 + 0.25 * np.sin(2 * math.pi * (f * x + g * y)) + 0.1 * rng.standard_normal((h, w))
        for f, g in ((3, 1), (1, 4), (2, 2))
    ]
    rgb = (np.clip(np.stack(channels, axis=-1), 0, 1) * 255).astype(np.uint8)
    out = BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def _config(workers: int, model: str) -> PoolConfig:
    import torch

    on_cuda = torch.cuda.is_available()
    return PoolConfig(
        workers_per_device=workers if on_cuda else 1,
        devices=None if on_cuda else ("cpu",),
        cpu_workers=None if on_cuda else workers,
        models=(model,),
        max_queue=10_000,
        job_timeout_s=3600.0,
    )


def _in_process(
    image: bytes, specs: list[JobSpec], model: str, config: PoolConfig
) -> dict[str, Any]:
    import torch

    from .runner import run_job, warm_up

    device, threads = _plan(config)[0]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        warm_up([model], device)
        run_job(image, specs[0], device=device)  # untimed: first-call costs
        log.info("in-process: %d jobs on %s, %d threads", len(specs), device, threads)
        latencies, engine = [], []
        start = time.perf_counter()
        for spec in specs:
            result = run_job(image, spec, device=device)
            latencies.append(time.perf_counter() - start)  # a burst: each waits for those before
            engine.append(result.elapsed_s)
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return _row("in-process", 1, threads, device, specs, wall, latencies, engine)


async def _pooled(image: bytes, specs: list[JobSpec], config: PoolConfig) -> dict[str, Any]:
    plan = _plan(config)
    async with DreamPool(config) as pool:
        warm = [await pool.submit(image, specs[0]) for _ in plan]
        await asyncio.gather(*(job.result() for job in warm))
        log.info("pool: %d jobs, %d workers on %s", len(specs), len(plan), plan[0][0])

        start = time.perf_counter()
        latencies: list[float] = []
        engine: list[float] = []

        async def one(spec: JobSpec) -> None:
            job = await pool.submit(image, spec)
            result = await job.result()
            latencies.append(time.perf_counter() - start)
            engine.append(result.elapsed_s)

        await asyncio.gather(*(one(spec) for spec in specs))
        wall = time.perf_counter() - start
    device = (
        plan[0][0] if len({d for d, _ in plan}) == 1 else "+".join(sorted({d for d, _ in plan}))
    )
    return _row("pool", len(plan), plan[0][1], device, specs, wall, latencies, engine)


def _row(
    mode: str,
    workers: int,
    threads: int,
    device: str,
    specs: list[JobSpec],
    wall: float,
    latencies: list[float],
    engine: list[float],
) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "mode": mode,
        "workers": workers,
        "threads": threads,
        "device": device,
        "jobs": len(specs),
        "size": specs[0].overrides.max_size,
        "preset": specs[0].preset,
        "wall_s": round(wall, 4),
        "jobs_per_min": round(60 * len(specs) / wall, 2),
        "p50_s": round(_percentile(ordered, 0.50), 4),
        "p95_s": round(_percentile(ordered, 0.95), 4),
        "mean_latency_s": round(statistics.fmean(latencies), 4),
        "engine_s": round(statistics.fmean(engine), 4),  # run_job's own time, per job
        "speedup": 1.0,
        "overhead_s_per_job": None,
        "overhead_pct": None,
    }
