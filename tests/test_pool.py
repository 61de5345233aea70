"""The worker pool, with real processes and the real engine at tiny sizes.

One pool of two CPU workers is shared by the module (a worker's start, model load included, takes
seconds); each test leaves it idle. Tests that need a pool of their own (close, a failed start)
make one. "Long" jobs are ones that would run for many seconds: they are always cancelled, timed
out or killed long before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import pickle
import re
import signal
import time
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from dreamcore.errors import (
    DreamError,
    InvalidParameterError,
    JobCancelledError,
    JobTimeoutError,
    OwnerLimitError,
    PoolBusyError,
    PoolClosedError,
    PoolError,
    PoolStartError,
    UnknownModelError,
    WorkerCrashedError,
)
from dreamcore.images import decode_image
from dreamcore.jobs import DreamOverrides, JobResult, JobSpec
from dreamcore.pool import (
    DreamPool,
    Job,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
    PoolConfig,
)
from dreamcore.pool._worker import portable_error

pytestmark = pytest.mark.timeout(120)
on_module_loop = pytest.mark.asyncio(loop_scope="module")

CHELSEA = Path(__file__).resolve().parent.parent / "assets" / "chelsea.png"
CONFIG = PoolConfig(
    devices=("cpu",),
    cpu_workers=2,
    torch_threads=1,
    max_queue=32,
    max_per_owner=2,
    job_timeout_s=60.0,
    start_timeout_s=90.0,
    cancel_grace_s=3.0,
)


def tiny(seed: int = 1) -> JobSpec:
    return JobSpec(overrides=DreamOverrides(max_size=64, octaves=1, steps=2), seed=seed)


LONG = JobSpec(overrides=DreamOverrides(max_size=256, octaves=3, steps=100), seed=1)


@cache
def png(width: int) -> bytes:
    img = Image.open(CHELSEA).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    out = BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(data)).convert("RGB"), dtype=np.float32)


async def wait_until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds it took for `condition` to hold; fails the test after `timeout_s`."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)
    return time.perf_counter() - start


async def collect(job: Job) -> list[JobEvent]:
    return [event async for event in job.events()]


async def running_on(job: Job) -> int:
    """Wait until the job has made progress on a worker; the worker's slot."""
    worker = -1
    async for event in job.events():
        if isinstance(event, JobStarted):
            worker = event.worker
        if isinstance(event, JobProgress | JobFinished | JobFailed):
            break
    assert worker >= 0
    return worker


async def settle(pool: DreamPool) -> None:
    """Let every worker go idle, so the next test starts from a quiet pool."""
    await wait_until(lambda: pool.stats().idle == 2 and pool.stats().running == 0, 30)


def assert_in_order(events: list[JobEvent]) -> None:
    kinds = [type(e) for e in events]
    started = kinds.index(JobStarted)
    assert set(kinds[:started]) == {JobQueued}
    positions = [e.position for e in events[:started] if isinstance(e, JobQueued)]
    assert positions == sorted(positions, reverse=True) and positions[-1] >= 1
    assert set(kinds[started + 1 : -1]) <= {JobProgress}
    fractions = [e.progress.fraction for e in events if isinstance(e, JobProgress)]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert kinds[-1] is JobFinished


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool():
    async with DreamPool(CONFIG) as p:
        assert p.ready
        yield p


# -- errors and configuration (no processes) ----------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        PoolBusyError(7),
        OwnerLimitError(3),
        JobTimeoutError("the dream took longer than 5 s"),
        JobCancelledError("the dream was cancelled"),
        WorkerCrashedError("the dream worker died"),
        PoolClosedError("the pool shut down"),
        PoolStartError("could not start"),
    ],
)
def test_pool_errors_pickle_intact(error: PoolError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and str(clone) == str(error)
    assert isinstance(clone, PoolError) and isinstance(clone, DreamError)
    assert vars(clone) == vars(error)


def test_busy_and_owner_errors_carry_their_numbers() -> None:
    assert PoolBusyError(7).queue_length == 7 and "7" in str(PoolBusyError(7))
    assert OwnerLimitError(3).limit == 3


def test_unexpected_worker_errors_become_short_dream_errors_with_a_traceback() -> None:
    try:
        raise KeyError("lost")
    except KeyError as exc:
        error, tb = portable_error(exc)
    assert type(error) is DreamError and "KeyError" in str(error)
    assert tb is not None and "raise KeyError" in tb

    class Unpicklable(DreamError):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}-{b}")

    error, tb = portable_error(Unpicklable(1, 2))
    assert type(error) is DreamError and str(error) == "1-2"
    error, tb = portable_error(UnknownModelError("nope"))
    assert type(error) is UnknownModelError and str(error) == "nope" and tb is None


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(InvalidParameterError):
        PoolConfig(max_queue=-1)
    with pytest.raises(InvalidParameterError):
        PoolConfig(devices=())


@on_module_loop
async def test_an_unstarted_pool_is_not_ready_and_refuses_jobs() -> None:
    fresh = DreamPool(CONFIG)
    assert not fresh.ready
    with pytest.raises(PoolClosedError):
        await fresh.submit(png(96), tiny())
    await fresh.close()


# -- the shared pool ----------------------------------------------------------------------------


@on_module_loop
async def test_many_concurrent_jobs_all_complete_with_ordered_events(pool: DreamPool) -> None:
    await settle(pool)
    source = png(96)
    before = pool.stats().done
    jobs = [await pool.submit(source, tiny(seed=i)) for i in range(22)]
    assert max(pool.queue_position(j.id) or 0 for j in jobs) == 20  # two went straight to work
    events = await asyncio.gather(*(collect(j) for j in jobs))
    results = await asyncio.gather(*(j.result() for j in jobs))

    original = pixels(source)
    for i, (job, job_events, result) in enumerate(zip(jobs, events, results, strict=True)):
        assert_in_order(job_events)
        assert job.done and job_events[-1] == JobFinished(result)
        dreamed = pixels(result.image)
        assert dreamed.shape == original.shape == (64, 96, 3)
        assert (result.width, result.height, result.seed) == (96, 64, i)
        assert np.abs(dreamed - original).mean() > 1.0  # it dreamed, not echoed
    assert {e.worker for es in events for e in es if isinstance(e, JobStarted)} == {0, 1}
    stats = pool.stats()
    assert stats.done == before + 22 and stats.queued == stats.running == 0
    assert 0 < stats.p50_s <= stats.p95_s and stats.mean_s > 0


@on_module_loop
async def test_a_pooled_dream_matches_the_engine_in_process(pool: DreamPool) -> None:
    from dreamcore.runner import run_job

    spec = tiny(seed=5)
    pooled = await (await pool.submit(png(96), spec)).result()
    local = await asyncio.to_thread(run_job, png(96), spec, device="cpu")
    assert (pooled.width, pooled.height, pooled.format) == (local.width, local.height, local.format)
    assert np.abs(pixels(pooled.image) - pixels(local.image)).mean() < 1.0


@on_module_loop
async def test_errors_in_a_worker_arrive_as_the_same_typed_error(pool: DreamPool) -> None:
    try:
        decode_image(b"not an image")
    except DreamError as exc:
        expected = exc
    job = await pool.submit(b"not an image", tiny())
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        await job.result()
    assert isinstance((await collect(job))[-1], JobFailed)
    with pytest.raises(RuntimeError):
        job.events()  # events are a one-time stream
    assert isinstance(await (await pool.submit(png(96), tiny())).result(), JobResult)


@on_module_loop
async def test_a_full_queue_refuses_the_next_submit_at_once(pool: DreamPool) -> None:
    await settle(pool)
    running = [await pool.submit(png(256), LONG) for _ in range(2)]
    queued = [await pool.submit(png(96), tiny()) for _ in range(CONFIG.max_queue)]
    assert pool.queue_position(queued[0].id) == 1
    assert pool.queue_position(queued[-1].id) == CONFIG.max_queue
    assert pool.queue_position(running[0].id) is None

    start = time.perf_counter()
    with pytest.raises(PoolBusyError) as refused:
        await pool.submit(png(96), tiny())
    assert time.perf_counter() - start < 0.1
    assert refused.value.queue_length == CONFIG.max_queue
    assert pool.stats().queued == CONFIG.max_queue and pool.stats().rejected >= 1

    for job in running + queued:
        assert await job.cancel()
    await settle(pool)


@on_module_loop
async def test_an_owner_cannot_go_past_the_per_owner_limit(pool: DreamPool) -> None:
    await settle(pool)
    mine = [await pool.submit(png(256), LONG, owner="alice") for _ in range(2)]
    with pytest.raises(OwnerLimitError) as refused:
        await pool.submit(png(96), tiny(), owner="alice")
    assert refused.value.limit == 2
    others = await pool.submit(png(96), tiny(), owner="bob")  # queued: other owners unaffected
    assert await mine[0].cancel()
    again = await pool.submit(png(96), tiny(), owner="alice")  # the cancelled one freed a place
    assert isinstance(await others.result(), JobResult)
    assert isinstance(await again.result(), JobResult)
    assert await mine[1].cancel()
    await settle(pool)


@on_module_loop
async def test_cancelling_queued_and_running_jobs_keeps_the_workers(pool: DreamPool) -> None:
    await settle(pool)
    restarts, pids, cancelled = pool.stats().restarts, pool.worker_pids(), pool.stats().cancelled
    first = await pool.submit(png(256), LONG)
    second = await pool.submit(png(256), LONG)
    waiting = await pool.submit(png(96), tiny())

    assert await waiting.cancel() is True
    with pytest.raises(JobCancelledError):
        await waiting.result()
    assert [type(e) for e in await collect(waiting)] == [JobQueued, JobFailed]

    worker = await running_on(first)
    assert await first.cancel() is True
    with pytest.raises(JobCancelledError):
        await first.result()
    # The worker stops within an engine step and goes idle (the other is still busy).
    assert await wait_until(lambda: pool.stats().idle == 1, 5.0) < 5.0
    assert await first.cancel() is False

    follow_up = await pool.submit(png(96), tiny())
    assert await running_on(follow_up) == worker
    assert isinstance(await follow_up.result(), JobResult)

    assert await second.cancel() is True
    await settle(pool)
    assert pool.stats().restarts == restarts and pool.worker_pids() == pids
    assert pool.stats().cancelled == cancelled + 3


@on_module_loop
async def test_a_timed_out_job_stops_and_its_worker_serves_the_next(pool: DreamPool) -> None:
    await settle(pool)
    restarts, timed_out = pool.stats().restarts, pool.stats().timed_out
    start = time.perf_counter()
    job = await pool.submit(png(256), LONG, timeout_s=1.0)
    worker = await running_on(job)
    with pytest.raises(JobTimeoutError):
        await job.result()
    assert 1.0 <= time.perf_counter() - start < 3.0
    await settle(pool)  # it stopped rather than running on
    assert pool.stats().timed_out == timed_out + 1

    follow_up = await pool.submit(png(96), tiny())
    assert await running_on(follow_up) == worker
    assert isinstance(await follow_up.result(), JobResult)
    assert pool.stats().restarts == restarts


@on_module_loop
async def test_a_killed_worker_fails_its_job_and_is_replaced(pool: DreamPool) -> None:
    await settle(pool)
    restarts = pool.stats().restarts
    job = await pool.submit(png(256), LONG)
    worker = await running_on(job)
    pid = pool.worker_pids()[worker]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        await asyncio.wait_for(job.result(), 10)
    assert not pool.ready
    await wait_until(lambda: pool.ready, 60)
    assert pool.stats().restarts == restarts + 1
    assert pool.worker_pids()[worker] not in (None, pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped

    jobs = [await pool.submit(png(96), tiny()) for _ in range(2)]
    assert {await running_on(j) for j in jobs} == {0, 1}
    for j in jobs:
        assert isinstance(await j.result(), JobResult)


@on_module_loop
async def test_a_worker_that_does_not_stop_when_asked_is_killed_and_replaced(
    pool: DreamPool,
) -> None:
    await settle(pool)
    restarts = pool.stats().restarts
    job = await pool.submit(png(256), LONG)
    worker = await running_on(job)
    pid = pool.worker_pids()[worker]
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # hung, as if stuck inside one long operation
    try:
        assert await job.cancel() is True
        with pytest.raises(JobCancelledError):
            await job.result()  # the caller is answered at once, hung worker or not
        await wait_until(lambda: pool.stats().restarts == restarts + 1, CONFIG.cancel_grace_s + 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    await wait_until(lambda: pool.ready, 60)
    assert pool.worker_pids()[worker] not in (None, pid)
    assert isinstance(await (await pool.submit(png(96), tiny())).result(), JobResult)


@on_module_loop
async def test_a_worker_stuck_past_a_time_limit_is_free_or_replaced_within_a_second(
    pool: DreamPool,
) -> None:
    """A 40 MP job whose time limit (2 s) expires while its worker works on all 40 MP at once
    (decoding and resizing before the engine, composing and encoding after it: no step there to
    see a cancel). Measured alone on 2 cores (AMD EPYC): decode + resize 0.8 s, the one-step dream
    done at 1.1 s, then 5.9 s composing and encoding; before the kill, the worker stayed busy that
    long. On a Xeon (one thread, as a worker runs): the dream done at 0.49 s, the job at 4.2 s, so
    a 4 s limit (as here until 2026-11-27) fell 0.2 s before the job's end and it freed itself
    within the grace, no kill, where the test asked for one. At 2 s the limit fell after the
    dream on both, with 2.2 s (Xeon) to 5 s (EPYC) of step-free work left, until a clean-clone run
    of 2026-11-29 whose worker finished 0.95 s after it, inside the 1 s grace: no kill, and the
    test failed where the pool was right. At 1.5 s the limit still falls after the dream (done at
    0.49-1.1 s) and leaves 0.5 s more of step-free work after it; where a slow machine is still
    dreaming at the limit, a step sees the cancel and no kill is asked for.
    Within `timeout_grace_s` (1 s) + 1.5 s the old worker must be dead or on the next job; the
    1.5 s margin is for SIGKILL tearing down a 1 GB process and the reader thread reporting it
    on a loaded 2-core machine (measured: free 1.33-1.39 s after the limit, the kill included;
    the old code failed here). The other worker's job goes on untouched."""
    await stuck_past_its_limit(pool, margin_s=1.5)


async def stuck_past_its_limit(pool: DreamPool, margin_s: float) -> None:
    """A 40 MP job times out where its worker has no step to see a cancel; within the grace
    plus `margin_s` the worker is free or replaced, the next job is dreamed, the other worker's
    job is untouched, and the stats count one time-out, the other's cancel if it was still running,
    and any kill. Any backend."""
    from test_memory import forty_megapixels

    await settle(pool)
    before = pool.stats()
    other = await pool.submit(png(256), LONG)
    other_worker = await running_on(other)
    big = forty_megapixels("RGB")
    overrides = DreamOverrides(max_size=64, octaves=1, steps=1)
    # `dogs` dreams the plain ramps as it would a photo (edges calms plain regions: the nearly
    # smooth result encoded so fast that the worker was free before any kill).
    spec = JobSpec(preset="dogs", overrides=overrides, output_budget=2 << 20)
    stuck = await pool.submit(big, spec, timeout_s=1.5)
    worker = 1 - other_worker
    pid = pool.worker_pids()[worker]
    following = await pool.submit(png(96), tiny(seed=3))
    assert pool.queue_position(following.id) == 1

    with pytest.raises(JobTimeoutError):
        await stuck.result()
    freed = await wait_until(
        lambda: pool.worker_pids()[worker] != pid or pool.queue_position(following.id) is None,
        pool.config.timeout_grace_s + margin_s,
    )
    print(f"worker free or replaced {freed:.2f} s after the time limit")
    dreamt = any(
        isinstance(e, JobProgress) and e.progress.fraction == 1.0 for e in await collect(stuck)
    )
    result = await asyncio.wait_for(following.result(), 120)
    dreamed = pixels(result.image)
    assert dreamed.shape == (64, 96, 3) and result.seed == 3
    assert np.abs(dreamed - pixels(png(96))).mean() > 1.0
    # The other worker's job was not touched: still running, or finished with its picture (on a
    # quiet machine its 300 steps can end before the stuck job's worker is freed).
    cancelled = not other.done and await other.cancel()
    if cancelled:
        with pytest.raises(JobCancelledError):
            await other.result()
    else:
        assert isinstance(await other.result(), JobResult)
    await wait_until(lambda: pool.ready, 120)
    await settle(pool)
    after = pool.stats()
    assert after.timed_out == before.timed_out + 1
    assert after.cancelled == before.cancelled + cancelled and after.failed == before.failed
    assert after.killed - before.killed == after.restarts - before.restarts
    print(f"dreamed before the limit: {dreamt}; killed: {after.killed - before.killed}")
    if dreamt:  # the limit fell in the step-free part after the dream: only a kill frees it
        assert after.killed == before.killed + 1
    if after.killed > before.killed:
        assert pool.worker_pids()[worker] != pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone and reaped


# -- pools of their own --------------------------------------------------------------------------


@on_module_loop
async def test_close_answers_every_caller_and_leaves_no_process() -> None:
    closing = DreamPool(PoolConfig(devices=("cpu",), cpu_workers=2, torch_threads=1))
    await closing.start()
    pids = closing.worker_pids()
    assert all(pids)
    quick = await closing.submit(
        png(96), JobSpec(overrides=DreamOverrides(max_size=64, octaves=1, steps=5))
    )
    slow = await closing.submit(png(256), LONG)
    queued = [await closing.submit(png(96), tiny()) for _ in range(3)]
    await running_on(slow)

    # A grace of 3 s for a job of a fraction of a second alone: it ran 1-3 s at a load of 7.5
    # on the 2 cores, and the quick job's delivery, not its speed, is what this checks.
    # Jobs still queued when the pool closes are refused. The quick job's worker may already
    # have taken some (tiny jobs start and end in a blink on the faster CPU path; CI once saw two
    # of them finish): those finish or are stopped like any running job.
    waiting = [j.queued for j in queued]
    start = time.perf_counter()
    await closing.close(grace_s=3.0)
    assert time.perf_counter() - start < 8.0
    outcomes = await asyncio.gather(
        *(j.result() for j in [quick, slow, *queued]), return_exceptions=True
    )
    assert isinstance(outcomes[0], JobResult)  # finished within the grace period
    assert isinstance(outcomes[1], PoolClosedError)  # 300 steps do not fit in the grace
    for was_waiting, outcome in zip(waiting, outcomes[2:], strict=True):
        if was_waiting:
            assert isinstance(outcome, PoolClosedError), outcome
            assert "before this job started" in str(outcome)
        else:
            assert isinstance(outcome, JobResult | PoolClosedError), outcome
    assert all(j.done for j in [quick, slow, *queued])

    assert not closing.ready
    children = {p.pid for p in mp.active_children()}
    for pid in pids:
        assert pid not in children
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(PoolClosedError):
        await closing.submit(png(96), tiny())
    await closing.close()  # twice is harmless


@on_module_loop
async def test_a_pool_whose_models_cannot_load_fails_to_start() -> None:
    broken = DreamPool(PoolConfig(devices=("cpu",), torch_threads=1, models=("no_such_model",)))
    with pytest.raises(PoolStartError, match="no_such_model"):
        await broken.start()
    assert not broken.ready and broken.worker_pids() == [None]
    await broken.close()
