"""`dreamcore bench --pool --backend ray`: what running the workers on Ray costs per job.

In one run, on the same jobs (one synthetic image of `size` px, seeds 0..jobs-1) and the same
torch threads, a pool of local processes and a pool of Ray actors, both warm:
- Per job: each job goes through an idle 1-worker local pool and an idle 1-actor Ray pool,
  alternating which goes first, so drift in the machine's speed falls on both alike. Ray's
  overhead is the mean difference of submit-to-result (Ray minus local), also as a percentage
  of the local time; each backend's own time (submit-to-result minus the worker's `run_job`
  time) is given too, since the difference also holds the machine's noise.
- Throughput: for each worker count, every job at once through each backend; jobs per minute
  of wall time, latency p50/p95.
Without `address` a local Ray cluster with as many CPUs as the workers need is started here (and
stopped at the end); with one, the benchmark joins that cluster as a driver.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

from ..jobs import DreamOverrides, JobSpec
from ..poolbench import sample_image
from ..presets import PRESETS
from .core import DreamPool, PoolConfig, _percentile

__all__ = ["format_table", "run_ray_benchmark"]

log = logging.getLogger(__name__)


# Starting a local cluster takes seconds; an address where nobody answers would take for ever.
_CONNECT_S = 60.0


def run_ray_benchmark(
    worker_counts: Sequence[int],
    jobs: int,
    size: int,
    preset: str,
    *,
    threads: int | None = None,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """One paired row (Ray vs local, 1 worker each), then a local and a Ray row per count."""
    import ray

    from .ray import init_within

    if jobs < 1 or not worker_counts or min(worker_counts) < 1:
        raise ValueError("need at least one job and worker counts of at least 1")
    threads = threads or 1
    specs = [
        JobSpec(preset=preset, overrides=DreamOverrides(max_size=size), seed=i) for i in range(jobs)
    ]
    counts = sorted(set(worker_counts))
    started_here = not ray.is_initialized()
    if started_here:
        init_within(
            _CONNECT_S,
            # "local": a cluster of its own even where one already runs on this machine
            address=address or "local",
            num_cpus=None if address else max(counts) * threads,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )

    try:
        return asyncio.run(_benchmark(counts, sample_image(size), specs, threads))
    finally:
        if started_here:
            ray.shutdown()


def _config(workers: int, model: str, threads: int, ray_address: str | None) -> PoolConfig:
    return PoolConfig(
        devices=("cpu",),
        cpu_workers=workers,
        torch_threads=threads,
        models=(model,),
        max_queue=10_000,
        job_timeout_s=3600.0,
        start_timeout_s=600.0,
        ray_address=ray_address,
    )


async def _benchmark(
    counts: list[int], image: bytes, specs: list[JobSpec], threads: int
) -> list[dict[str, Any]]:
    model = PRESETS[specs[0].preset].model
    rows: list[dict[str, Any]] = []
    for workers in sorted({1, *counts}):
        async with (
            DreamPool(_config(workers, model, threads, None)) as local,
            DreamPool(_config(workers, model, threads, "auto")) as on_ray,
        ):
            for pool in (local, on_ray):  # untimed: first-call costs on every worker
                warm = [await pool.submit(image, specs[0]) for _ in range(workers)]
                await asyncio.gather(*(job.result() for job in warm))
            if workers == 1:
                rows.append(await _paired(local, on_ray, image, specs, threads))
            if workers in counts:
                rows.append(await _burst("local", local, image, specs, workers, threads))
                rows.append(await _burst("ray", on_ray, image, specs, workers, threads))
    return rows


async def _paired(
    local: DreamPool, on_ray: DreamPool, image: bytes, specs: list[JobSpec], threads: int
) -> dict[str, Any]:
    log.info("paired: %d jobs through 1 local worker and 1 Ray actor", len(specs))
    times: dict[str, list[float]] = {"local": [], "ray": []}
    own: dict[str, list[float]] = {"local": [], "ray": []}
    for i, spec in enumerate(specs):
        for side in ("local", "ray") if i % 2 == 0 else ("ray", "local"):
            pool = local if side == "local" else on_ray
            start = time.perf_counter()
            result = await (await pool.submit(image, spec)).result()
            times[side].append(time.perf_counter() - start)
            own[side].append(times[side][-1] - result.elapsed_s)
    mean_local = statistics.fmean(times["local"])
    extra = statistics.fmean(times["ray"]) - mean_local
    return {
        "mode": "paired",
        "workers": 1,
        "threads": threads,
        "jobs": len(specs),
        "size": specs[0].overrides.max_size,
        "preset": specs[0].preset,
        "local_s_per_job": round(mean_local, 4),
        "ray_s_per_job": round(statistics.fmean(times["ray"]), 4),
        "overhead_s_per_job": round(extra, 4),
        "overhead_pct": round(100 * extra / mean_local, 2),
        "local_own_s_per_job": round(statistics.fmean(own["local"]), 4),
        "ray_own_s_per_job": round(statistics.fmean(own["ray"]), 4),
    }


async def _burst(
    backend: str, pool: DreamPool, image: bytes, specs: list[JobSpec], workers: int, threads: int
) -> dict[str, Any]:
    log.info("burst: %d jobs, %d %s workers", len(specs), workers, backend)
    start = time.perf_counter()
    latencies: list[float] = []
    engine: list[float] = []

    async def one(spec: JobSpec) -> None:
        result = await (await pool.submit(image, spec)).result()
        latencies.append(time.perf_counter() - start)
        engine.append(result.elapsed_s)

    await asyncio.gather(*(one(spec) for spec in specs))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "mode": backend,
        "workers": workers,
        "threads": threads,
        "jobs": len(specs),
        "size": specs[0].overrides.max_size,
        "preset": specs[0].preset,
        "wall_s": round(wall, 4),
        "jobs_per_min": round(60 * len(specs) / wall, 2),
        "p50_s": round(_percentile(ordered, 0.50), 4),
        "p95_s": round(_percentile(ordered, 0.95), 4),
        "engine_s": round(statistics.fmean(engine), 4),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The bursts as an aligned table; Ray's per-job overhead spelled out below."""
    bursts = [r for r in rows if r["mode"] != "paired"]
    header = ("backend", "workers", "threads", "jobs/min", "p50 s", "p95 s", "engine s")
    lines = [header] + [
        (
            r["mode"],
            str(r["workers"]),
            str(r["threads"]),
            f"{r['jobs_per_min']:.1f}",
            f"{r['p50_s']:.3f}",
            f"{r['p95_s']:.3f}",
            f"{r['engine_s']:.3f}",
        )
        for r in bursts
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    first = rows[0]
    text = [f"{first['jobs']} jobs of {first['size']} px, preset {first['preset']!r}, on cpu"]
    text += [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    for r in rows:
        if r["mode"] == "paired":
            text.append(
                f"Ray overhead: {r['overhead_s_per_job'] * 1000:+.1f} ms per job "
                f"({r['overhead_pct']:+.2f}%): each job through 1 local worker "
                f"{r['local_s_per_job']:.3f} s, through 1 Ray actor {r['ray_s_per_job']:.3f} s "
                "(mean, alternating)"
            )
            text.append(
                f"own time per job (submit-to-result minus run_job): local "
                f"{r['local_own_s_per_job'] * 1000:.1f} ms, Ray {r['ray_own_s_per_job'] * 1000:.1f} ms"
            )
    return "\n".join(text)
