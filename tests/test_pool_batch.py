"""Batched jobs through a real pool: 2 CPU workers, each dreaming up to 3 queued jobs together.

A batch is queued jobs of one model, preset, settings and working size (see
`dreamcore.batching`). Every job keeps its own events, result, cancellation and time limit. "As
alone" is the same spec dreamed alone by the same pool; the pixel difference allowed is stated
per test (oneDNN rounds a batch's convolutions differently from one image's, and a dream
amplifies rounding, see tests/test_batch.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from io import BytesIO

import numpy as np
import pytest
import pytest_asyncio
from photos import photo, png_bytes
from PIL import Image

from dreamcore.errors import JobCancelledError, JobTimeoutError
from dreamcore.jobs import DreamOverrides, JobResult, JobSpec, ZoomSpec
from dreamcore.pool import DreamPool, JobFinished, JobProgress, JobStarted, PoolConfig

pytestmark = pytest.mark.timeout(240)
on_module_loop = pytest.mark.asyncio(loop_scope="module")

CONFIG = PoolConfig(
    devices=("cpu",),
    cpu_workers=2,
    torch_threads=1,
    batch_max=3,
    job_timeout_s=120.0,
    start_timeout_s=90.0,
    cancel_grace_s=5.0,
)
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "camera.png")
LONG = JobSpec(overrides=DreamOverrides(max_size=256, octaves=3, steps=100), seed=1)


@cache
def source(name: str, size: tuple[int, int] = (96, 64)) -> bytes:
    return png_bytes(photo(name).resize(size))


def tiny(seed: int) -> JobSpec:
    """A 64 px cap of a 96 x 64 photo: the detail is added back up to 96 x 64."""
    return JobSpec(overrides=DreamOverrides(max_size=64, octaves=1, steps=2), seed=seed)


MEDIUM = (384, 256)


def medium(seed: int) -> JobSpec:
    """Long enough to cancel or time out one of a batch mid-run (a batch of three takes a
    second or more), short enough that rounding has not grown yet (2 steps of 384 x 256 px; 6
    steps of 192 x 128 grew to 2 of 255 once the network ran channels_last)."""
    return JobSpec(overrides=DreamOverrides(max_size=384, octaves=1, steps=2), seed=seed)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"), dtype=np.float32)


def mean_diff(a: JobResult, b: JobResult) -> float:
    diff = float(np.abs(pixels(a.image) - pixels(b.image)).mean())
    print(f"mean |batched - alone| {diff:.5f} of 255 (seed {a.seed})")
    return diff


async def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"condition not met within {timeout_s} s")


async def settle(pool: DreamPool) -> None:
    await wait_until(lambda: pool.stats().idle == 2 and pool.stats().running == 0, 60)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool():
    async with DreamPool(CONFIG) as p:
        yield p


async def alone(pool: DreamPool, image: bytes, spec: JobSpec) -> JobResult:
    """The job dreamed by itself on an idle pool (nothing queued to batch it with)."""
    await settle(pool)
    batches = pool.stats().batches
    result = await (await pool.submit(image, spec)).result()
    assert pool.stats().batches == batches
    return result


async def occupy_both_workers(pool: DreamPool) -> list:  # type: ignore[type-arg]
    """Two long jobs running, so what is submitted next waits in the queue together."""
    await settle(pool)
    blockers = [await pool.submit(source("retina.jpg"), LONG) for _ in range(2)]
    await wait_until(lambda: pool.stats().running == 2 and pool.stats().queued == 0, 10)
    return blockers


@on_module_loop
async def test_queued_jobs_of_one_size_are_dreamed_in_batches_each_as_alone(
    pool: DreamPool,
) -> None:
    """7 jobs at once on 2 idle workers: 2 start alone, the 5 queued run as batches of 3 and 2.

    A different-size job and a zoom in the queue are never batched with them. Each result
    equals the same job dreamed alone: mean |diff| < 1 of 255 (measured, two runs: 0 for five
    jobs, 0.0005 and 0.15 for the other two; normalising across the batch would give ~6).
    """
    await settle(pool)
    before = pool.stats()
    specs = [(source(PHOTOS[i % 5]), tiny(seed=i)) for i in range(7)]
    odd_size = (source("coffee.png", (80, 80)), tiny(seed=9))
    zoom = JobSpec(
        overrides=DreamOverrides(max_size=64, octaves=1, steps=1),
        zoom=ZoomSpec(frames=2, frame_steps=1, format="gif"),
        seed=1,
    )
    jobs = [await pool.submit(image, spec) for image, spec in specs]
    others = [await pool.submit(*odd_size), await pool.submit(source("coffee.png"), zoom)]
    results = await asyncio.gather(*(j.result() for j in jobs + others))
    stats = pool.stats()
    assert stats.batches - before.batches == 2
    assert stats.batched - before.batched == 5
    assert stats.done - before.done == 9 and stats.failed == before.failed
    for (image, spec), got in zip(specs, results, strict=False):
        want = await alone(pool, image, spec)
        assert (got.width, got.height, got.seed) == (96, 64, spec.seed)
        assert mean_diff(got, want) < 1.0, (spec.seed, mean_diff(got, want))
    assert results[-1].kind == "zoom" and results[-1].frames == 2


async def batch_of_three(pool: DreamPool, **timeouts: float) -> tuple[list, list]:  # type: ignore[type-arg]
    """Three `medium` jobs queued behind two blockers, then one blocker cancelled: one worker
    takes all three as one batch. `timeouts` maps "a", "b", "c" to a job's time limit."""
    blockers = await occupy_both_workers(pool)
    batches = pool.stats().batches
    work = [(source(PHOTOS[i], MEDIUM), medium(seed=i + 1)) for i in range(3)]
    jobs = [
        await pool.submit(image, spec, timeout_s=timeouts.get(name))
        for name, (image, spec) in zip("abc", work, strict=True)
    ]
    assert await blockers[0].cancel()
    await wait_until(lambda: pool.stats().batches == batches + 1, 20)
    return jobs, blockers


@on_module_loop
async def test_cancelling_one_job_of_a_batch_leaves_the_others_as_alone(pool: DreamPool) -> None:
    """The middle job of a batch of three is cancelled after its first progress; the other two
    finish and equal the same jobs dreamed alone: mean |diff| < 1 of 255 (measured 0 and 0).
    The worker is not restarted and serves the next job."""
    restarts = pool.stats().restarts
    await cancel_the_middle_of_a_batch(pool)
    assert pool.stats().restarts == restarts and pool.stats().killed == 0


async def cancel_the_middle_of_a_batch(pool: DreamPool) -> None:
    """Cancel the middle job of three batched ones after its first progress; the other two
    finish and equal the same jobs dreamed alone (mean |diff| < 1 of 255). Any backend."""
    (a, b, c), blockers = await batch_of_three(pool)
    async for event in b.events():
        if isinstance(event, JobProgress):
            break
    assert await b.cancel()
    with pytest.raises(JobCancelledError):
        await b.result()
    got = [await a.result(), await c.result()]
    await blockers[1].cancel()
    for i, result in zip((0, 2), got, strict=True):
        want = await alone(pool, source(PHOTOS[i], MEDIUM), medium(seed=i + 1))
        assert mean_diff(result, want) < 1.0, (i, mean_diff(result, want))


@on_module_loop
async def test_a_job_of_a_batch_that_times_out_leaves_and_the_others_finish(
    pool: DreamPool,
) -> None:
    """The third job of a batch has a 0.3 s time limit (the batch takes a second or more): it
    ends with JobTimeoutError; the first two finish with their own events and equal the same
    jobs dreamed alone (mean |diff| < 1 of 255; measured 0 and 0), and no worker is
    killed."""
    restarts = pool.stats().restarts
    (a, b, c), blockers = await batch_of_three(pool, c=0.3)
    with pytest.raises(JobTimeoutError):
        await c.result()
    events = [[e async for e in job.events()] for job in (a, b)]
    for job_events in events:
        kinds = [type(e) for e in job_events]
        assert JobStarted in kinds and JobProgress in kinds and kinds[-1] is JobFinished
    await blockers[1].cancel()
    for i, job in enumerate((a, b)):
        want = await alone(pool, source(PHOTOS[i], MEDIUM), medium(seed=i + 1))
        assert mean_diff(await job.result(), want) < 1.0
    await settle(pool)
    assert pool.stats().restarts == restarts and pool.stats().killed == 0
    assert pool.stats().timed_out >= 1


def test_the_pool_benchmark_reports_batched_against_unbatched_throughput() -> None:
    """`dreamcore bench --pool --batch 2,4` in small: 4 jobs at once on 1 worker; the first runs
    alone, the other three queue: batches of 2 then 1 job, or all 3 together. Both sizes are
    measured in one run against one baseline. The figures themselves are the benchmark's to
    report, not a test's."""
    from dreamcore.poolbench import format_table, run_pool_benchmark

    rows = run_pool_benchmark([1], 4, 64, "edges", threads=1, batch=(4, 2))
    assert [(r["mode"], r["batch"]) for r in rows] == [
        ("in-process", 1),
        ("pool", 1),
        ("pool batched", 2),
        ("pool batched", 4),
    ]
    assert [(r["batches"], r["batched_jobs"]) for r in rows[2:]] == [(1, 2), (1, 3)]
    assert all(r["jobs_per_min"] > 0 and r["p95_s"] >= r["p50_s"] > 0 for r in rows)
    table = format_table(rows)
    assert "batched (up to 2) vs unbatched, 1 worker(s):" in table
    assert "2 of 4 jobs ran in 1 batches" in table and "3 of 4 jobs ran in 1 batches" in table


def test_the_explorer_benchmark_takes_one_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    from dreamcore.cli import EXIT_USAGE, main

    assert main(["bench", "--explore", "--batch", "2,4"]) == EXIT_USAGE
    assert "--explore takes one --batch" in capsys.readouterr().err
