"""`dreamcore bench --pool`: what the worker pool costs and what it buys.

In one run, on the same jobs (one synthetic image of `size` px, seeds 0..jobs-1):
- Overhead: each job is run in-process (`run_job` in this process) and through an idle 1-worker
  pool, alternating which goes first, so drift in the machine's speed falls on both sides alike;
  both use the same device and number of torch threads. The overhead is the mean difference per
  job (pool minus in-process), also as a percentage of the in-process time. Because that
  difference also holds the machine's noise, the pool's own time is given too: each pooled job's
  submit-to-result time minus the worker's own `run_job` time (transfer, pickling, dispatch and
  events; everything the pool adds that is not the dream itself). The in-process row's
  throughput and latency are of those runs one after another, as if all arrived at once.
- Throughput and latency: for each worker count, every job is submitted at once (a burst);
  latency is submit to result (p50 and p95), throughput is jobs per minute of wall time.
- Batches: for each `batch` above 1, each worker count runs the same burst again through a
  pool with `batch_max=batch` (queued jobs of one size dreamed together, see `batching`); the
  first job of each idle worker still starts alone. Several sizes (`batch=(4, 8)`) are measured
  in the same run, against the same in-process baseline. The table then gives batched against
  unbatched throughput and p95 latency, and the batches that ran.
Before any timing, one untimed job per worker (and one in-process) warms the caches, so model
loading and first-call costs count on neither side.

Worker counts are per device on CUDA (`workers_per_device`) and CPU workers otherwise, where the
torch threads are split between the workers (cores // workers each) as the pool does, unless
`threads` fixes them. On a CPU shared with other busy processes, several torch threads per process
can run many times slower and vary wildly from run to run (each parallel region waits for its
slowest thread); `threads=1` then gives steadier figures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from .jobs import DreamOverrides, JobSpec
from .pool import DreamPool, PoolConfig
from .pool.core import _percentile
from .pool.local import cores, plan
from .presets import PRESETS

__all__ = ["default_worker_counts", "format_table", "run_pool_benchmark"]

log = logging.getLogger(__name__)


def default_worker_counts() -> list[int]:
    """1, 2 and N workers: N is the core count on CPU, 4 per device on CUDA."""
    import torch

    n = 4 if torch.cuda.is_available() else cores()
    return sorted({1, 2, n})


def run_pool_benchmark(
    worker_counts: Sequence[int],
    jobs: int,
    size: int,
    preset: str,
    *,
    threads: int | None = None,
    batch: int | Sequence[int] = 1,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The in-process baseline (with the pool's overhead), then one row per worker count, and
    one more per batch size above 1 (unbatched, then batched).

    `threads` fixes the torch threads of every worker and of the in-process runs; None splits
    the cores between the workers as the pool does. `on_row` sees each row as it is measured
    (a run cut short by a time limit still says what it got).
    """
    sizes = (batch,) if isinstance(batch, int) else tuple(batch)
    if not sizes or min(sizes) < 1:
        raise ValueError("batch sizes must be at least 1")
    batches = sorted({b for b in sizes if b > 1})
    if jobs < 1 or not worker_counts or min(worker_counts) < 1:
        raise ValueError("need at least one job and worker counts of at least 1")
    specs = [
        JobSpec(preset=preset, overrides=DreamOverrides(max_size=size), seed=i) for i in range(jobs)
    ]
    counts = sorted(set(worker_counts))
    return asyncio.run(
        _benchmark(counts, sample_image(size), specs, threads, batches, on_row or (lambda r: None))
    )


async def _benchmark(
    worker_counts: list[int],
    image: bytes,
    specs: list[JobSpec],
    threads: int | None,
    batches: list[int],
    on_row: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    import torch

    model = PRESETS[specs[0].preset].model
    rows: list[dict[str, Any]] = []
    threads_before = torch.get_num_threads()
    try:
        for workers in sorted({1, *worker_counts}):
            config = _config(workers, model, threads)
            async with DreamPool(config) as pool:
                warm = [await pool.submit(image, specs[0]) for _ in range(pool.stats().workers)]
                await asyncio.gather(*(job.result() for job in warm))
                if workers == 1:
                    rows.append(await _paired(pool, image, specs, *plan(config)[0], model))
                    on_row(rows[-1])
                if workers in worker_counts:
                    rows.append(await _burst(pool, image, specs, plan(config)))
                    on_row(rows[-1])
            for batch in batches if workers in worker_counts else []:
                rows.append(await _batched(workers, model, threads, batch, image, specs))
                on_row(rows[-1])
    finally:
        torch.set_num_threads(threads_before)
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup"] = round(base / row["wall_s"], 3)
    return rows


async def _batched(
    workers: int,
    model: str,
    threads: int | None,
    batch: int,
    image: bytes,
    specs: list[JobSpec],
) -> dict[str, Any]:
    """The burst through a warmed pool whose workers dream up to `batch` queued jobs at once."""
    config = _config(workers, model, threads, batch)
    async with DreamPool(config) as pool:
        warm = [await pool.submit(image, specs[0]) for _ in range(workers)]
        await asyncio.gather(*(job.result() for job in warm))
        before = pool.stats()
        row = await _burst(pool, image, specs, plan(config))
        row["mode"], row["batch"] = "pool batched", batch
        row["batches"] = pool.stats().batches - before.batches
        row["batched_jobs"] = pool.stats().batched - before.batched
    return row


async def _paired(
    pool: DreamPool, image: bytes, specs: list[JobSpec], device: str, threads: int, model: str
) -> dict[str, Any]:
    """Each job in-process and through the idle 1-worker pool, alternating which goes first,
    so that drift in the machine's speed falls on both sides alike."""
    import torch

    from .runner import run_job, warm_up

    torch.set_num_threads(threads)  # the same as the worker's
    warm_up([model], device)
    run_job(image, specs[0], device=device)  # untimed: first-call costs
    log.info("paired: %d jobs in-process and through 1 worker on %s", len(specs), device)
    local: list[float] = []
    pooled: list[float] = []
    own: list[float] = []  # pool latency minus the worker's own run_job time
    engine: list[float] = []
    for i, spec in enumerate(specs):
        for side in ("local", "pool") if i % 2 == 0 else ("pool", "local"):
            start = time.perf_counter()
            if side == "local":
                engine.append(run_job(image, spec, device=device).elapsed_s)
                local.append(time.perf_counter() - start)
            else:
                result = await (await pool.submit(image, spec)).result()
                pooled.append(time.perf_counter() - start)
                own.append(pooled[-1] - result.elapsed_s)
    # In-process jobs one after another, as if all had arrived at once.
    finished = list(itertools.accumulate(local))
    row = _row("in-process", 1, threads, device, specs, finished[-1], finished, engine)
    extra = (sum(pooled) - sum(local)) / len(specs)
    row["pool_sequential_s"] = round(statistics.fmean(pooled), 4)
    row["overhead_s_per_job"] = round(extra, 4)
    row["overhead_pct"] = round(100 * extra / statistics.fmean(local), 2)
    row["pool_own_s_per_job"] = round(statistics.fmean(own), 4)
    row["pool_own_pct"] = round(100 * statistics.fmean(own) / statistics.fmean(local), 2)
    return row


async def _burst(
    pool: DreamPool, image: bytes, specs: list[JobSpec], plan: list[tuple[str, int]]
) -> dict[str, Any]:
    """Every job submitted at once; latency is submit to result."""
    log.info("burst: %d jobs, %d workers on %s", len(specs), len(plan), plan[0][0])
    start = time.perf_counter()
    latencies: list[float] = []
    engine: list[float] = []

    async def one(spec: JobSpec) -> None:
        result = await (await pool.submit(image, spec)).result()
        latencies.append(time.perf_counter() - start)
        engine.append(result.elapsed_s)

    await asyncio.gather(*(one(spec) for spec in specs))
    wall = time.perf_counter() - start
    devices = sorted({d for d, _ in plan})
    return _row("pool", len(plan), plan[0][1], "+".join(devices), specs, wall, latencies, engine)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table, with the overhead of the pool spelled out below."""
    header = (
        "mode",
        "workers",
        "threads",
        "batch",
        "jobs/min",
        "p50 s",
        "p95 s",
        "engine s",
        "speed-up",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["mode"],
                str(r["workers"]),
                str(r["threads"]),
                str(r["batch"]),
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
            local = r["wall_s"] / r["jobs"]
            text.append(
                f"pool overhead: {r['overhead_s_per_job'] * 1000:+.1f} ms per job "
                f"({r['overhead_pct']:+.2f}%): each job in-process {local:.3f} s, through an idle "
                f"1-worker pool {r['pool_sequential_s']:.3f} s (mean, alternating)"
            )
            text.append(
                f"pool's own time: {r['pool_own_s_per_job'] * 1000:+.1f} ms per job "
                f"({r['pool_own_pct']:+.2f}%): submit-to-result minus the worker's run_job time"
            )
    for r in rows:
        plain = next(
            (p for p in rows if p["mode"] == "pool" and p["workers"] == r["workers"]), None
        )
        if r["mode"] == "pool batched" and plain is not None:
            text.append(
                f"batched (up to {r['batch']}) vs unbatched, {r['workers']} worker(s): "
                f"{r['jobs_per_min'] / plain['jobs_per_min']:.2f}x the jobs/min "
                f"({r['jobs_per_min']:.1f} vs {plain['jobs_per_min']:.1f}), p95 "
                f"{r['p95_s']:.2f} s vs {plain['p95_s']:.2f} s; {r['batched_jobs']} of "
                f"{r['jobs']} jobs ran in {r['batches']} batches"
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


def _config(workers: int, model: str, threads: int | None, batch: int = 1) -> PoolConfig:
    import torch

    on_cuda = torch.cuda.is_available()
    return PoolConfig(
        workers_per_device=workers if on_cuda else 1,
        devices=None if on_cuda else ("cpu",),
        cpu_workers=None if on_cuda else workers,
        torch_threads=threads,
        models=(model,),
        max_queue=10_000,
        job_timeout_s=3600.0,
        batch_max=batch,
    )


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
        "batch": 1,
        "batches": 0,
        "batched_jobs": 0,
        "pool_sequential_s": None,
        "overhead_s_per_job": None,
        "overhead_pct": None,
        "pool_own_s_per_job": None,
        "pool_own_pct": None,
    }
