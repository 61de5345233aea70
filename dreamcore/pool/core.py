"""The pool's core: an asyncio caller (the bot) dreams jobs on workers off its event loop.

The caller submits image bytes and a `JobSpec`, gets a `Job` back at once, and awaits its
result or iterates its events while the event loop keeps serving chat. This module holds
everything that does not depend on where workers run: the queue, the limits, the events,
cancellation and time limits, crash handling and statistics. A `Backend` (see `backend`) runs
the workers: `local` runs them as processes on this machine, `ray` as actors on a Ray cluster.
All pool state lives on the loop's thread; backends report there.

How it works, and the choices the issue left open:

- Dispatch: a FIFO queue, and jobs handed to idle workers whenever something changes (a submit,
  a worker becoming idle or ready); with several devices, to the least busy device first.
- Back-pressure: `max_queue` bounds the jobs *waiting* (running ones not counted). A submit that
  would go past it fails at once with `PoolBusyError(queue_length)`.
- Per-owner limit: enforced here, not in the bot. `max_per_owner` counts an owner's queued plus
  running jobs; the bot passes the Discord user id as `owner`. Over it: `OwnerLimitError(limit)`.
- Events: `JobQueued(position)` at submit and again each time the job moves up the queue,
  `JobStarted(worker)` when the worker takes it, `JobProgress` at most every 0.1 s (first and last
  step always), then exactly one terminal `JobFinished` or `JobFailed`.
- Cancellation and time limits are cooperative: the backend asks the worker to stop the job
  and the engine's `should_cancel` sees it between steps. The caller is answered at once (`JobCancelledError`,
  `JobTimeoutError`); the worker stays busy until it reports that it stopped (one engine step),
  then takes the next job. Decoding, resizing, composing and encoding a 40 MP picture have no
  step to check (seconds), so a worker that has not stopped within a grace is killed and
  replaced: `timeout_grace_s` (1 s) after a time limit, `cancel_grace_s` (5 s) after a cancel.
  A worker being killed takes no new job; `PoolStats.killed` counts these kills (they are
  restarts too). `cancel()` returns True when it ended the job, False when it had already ended.
- Batches: a free worker takes the first queued job and, up to `batch_size(device)`, the
  queued jobs that can be dreamed with it (same `batching.batch_key`: model, settings, size),
  skipping others; they share one forward/backward pass per step. Every job of a batch keeps
  its own number, events, time limit, cancellation and result; a job that leaves (cancelled,
  timed out, failed) is reported by the worker at once and the rest go on. The worker is free
  once all have reported. A kill grace that runs out while batch-mates are still wanted waits
  for them: the slot would not be free before they end anyway.
- Time limit: `job_timeout_s` (or submit's `timeout_s`) counts from the hand-over to a worker,
  not from submit: waiting in the queue is bounded by the queue, not charged to the job.
- Crashes: the job of a worker that dies fails with `WorkerCrashedError` and is not retried
  (the job itself may be what killed the worker: a huge image would then kill a second one).
  A replacement starts at once; if a replacement fails to load, it is tried again after 1, 2,
  4 ... 60 s, and while no worker is ready, queued jobs fail with `WorkerCrashedError` instead of
  waiting for a worker that may never come. Kills by the pool count as restarts too.
- Readiness: `ready` is True once every worker has loaded its models (and False again while a
  replacement loads, or once closing starts).
- Statistics: the terminal counters are disjoint (done, failed, cancelled, timed_out; jobs
  refused at submit are `rejected`; jobs ended by `close` are `cancelled`). Job times are from
  hand-over to result of successful jobs, over the last 1000; 0.0 until the first one.
- Close: queued jobs fail with `PoolClosedError` at once, running jobs get up to `grace_s` to
  finish and are then cancelled with `PoolClosedError`; workers are told to stop, killed if they
  have not exited within `cancel_grace_s`, and joined.
- Errors from a worker arrive as the same DreamError class with the same message; anything
  unexpected arrives as a plain DreamError and its traceback is logged here.
- Additions to the agreed API, all optional: `PoolConfig.cancel_grace_s` and `.timeout_grace_s`,
  `PoolStats.idle`, `.rejected` and `.killed`, and `DreamPool.worker_pids()` (for ops, and for tests that kill a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..batching import BatchKey, batch_key
from ..errors import (
    DreamCancelled,
    DreamError,
    ImageTooLargeError,
    InvalidParameterError,
    JobCancelledError,
    JobTimeoutError,
    OwnerLimitError,
    PoolBusyError,
    PoolClosedError,
    PoolStartError,
    WorkerCrashedError,
)
from ..images import estimate_job_bytes
from ..jobs import JobResult, JobSpec, Progress
from ..precision import PRECISIONS
from ..presets import PRESETS, resolve

if TYPE_CHECKING:
    from .backend import Backend, WorkerHandle

__all__ = [
    "DreamPool",
    "Job",
    "JobEvent",
    "JobFailed",
    "JobFinished",
    "JobProgress",
    "JobQueued",
    "JobStarted",
    "PoolConfig",
    "PoolStats",
]

log = logging.getLogger(__name__)

_TIMES_KEPT = 1000
# The default batch on CUDA. 16 concurrent 512 px `dogs` jobs on 4 workers of an H100, against
# one in-process worker in the same run: 1.83x unbatched, 3.44x with batches of up to 4, 4.08x
# with up to 8 (p95 11.8 / 6.3 / 5.3 s; docs/speed.md, "An H100 run").
GPU_BATCH = 8
_MAX_RESTART_DELAY_S = 60.0


@dataclass(frozen=True)
class PoolConfig:
    """How many workers, where, with which models, and the pool's limits."""

    workers_per_device: int = 1
    devices: tuple[str, ...] | None = None  # None: every CUDA device, else ("cpu",)
    cpu_workers: int | None = None  # None: 1 worker on CPU
    torch_threads: int | None = None  # None: cores // workers (at least 1)
    models: tuple[str, ...] = ("efficientnet_lite0",)
    max_queue: int = 32
    max_per_owner: int | None = None  # queued + running per owner; None = no limit
    job_timeout_s: float = 300.0
    start_timeout_s: float = 300.0
    cancel_grace_s: float = 5.0  # a cancelled worker that has not stopped by then is killed
    timeout_grace_s: float = 1.0  # likewise after a time limit: the slot is free again soon
    ray_address: str | None = None  # None: local processes; else the Ray cluster ("auto", ...)
    # Each worker's memory for one job above its idle size; a job estimated to need more is
    # refused at submit, so N workers cannot take the machine down together. None: no check.
    worker_memory_bytes: int | None = None
    precision: str | None = None  # auto/fp32/bf16 for jobs that name none; None: the preset's
    # The most queued jobs a worker dreams together in one batch (same model, settings and
    # size; see `batching`). None: 1 on the CPU, where a batch buys little, GPU_BATCH on CUDA.
    batch_max: int | None = None

    def __post_init__(self) -> None:
        if self.workers_per_device < 1 or (self.cpu_workers is not None and self.cpu_workers < 1):
            raise InvalidParameterError("a pool needs at least one worker per device")
        if self.devices is not None and not self.devices:
            raise InvalidParameterError("devices must name at least one device (or be None)")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise InvalidParameterError("torch_threads must be at least 1")
        if not self.models:
            raise InvalidParameterError("workers must load at least one model")
        if self.max_queue < 0:
            raise InvalidParameterError("max_queue must not be negative")
        if self.max_per_owner is not None and self.max_per_owner < 1:
            raise InvalidParameterError("max_per_owner must be at least 1 (or None)")
        graces = (self.cancel_grace_s, self.timeout_grace_s)
        if min(self.job_timeout_s, self.start_timeout_s, *graces) <= 0:
            raise InvalidParameterError("timeouts must be positive")
        if self.worker_memory_bytes is not None and self.worker_memory_bytes <= 0:
            raise InvalidParameterError("worker_memory_bytes must be positive (or None)")
        if self.batch_max is not None and self.batch_max < 1:
            raise InvalidParameterError("batch_max must be at least 1 (or None)")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InvalidParameterError(
                f"Unknown precision {self.precision!r}. Valid: {', '.join(PRECISIONS)}."
            )

    def batch_size(self, device: str) -> int:
        """How many jobs a worker on `device` dreams together at most."""
        if self.batch_max is not None:
            return self.batch_max
        return GPU_BATCH if device.startswith("cuda") else 1


@dataclass(frozen=True)
class PoolStats:
    """A snapshot for the bot's status command and a health check."""

    workers: int  # workers alive with their models loaded
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int
    timed_out: int
    restarts: int
    mean_s: float
    p50_s: float
    p95_s: float
    idle: int = 0  # ready workers with nothing to do
    rejected: int = 0  # submits refused (queue full or owner limit)
    killed: int = 0  # workers killed for not stopping a cancelled or timed-out job in time
    batches: int = 0  # hand-overs of several jobs dreamed together
    batched: int = 0  # jobs that ran in those batches


@dataclass(frozen=True)
class JobQueued:
    position: int  # 1 = next to start


@dataclass(frozen=True)
class JobStarted:
    worker: int


@dataclass(frozen=True)
class JobProgress:
    progress: Progress


@dataclass(frozen=True)
class JobFinished:
    result: JobResult


@dataclass(frozen=True)
class JobFailed:
    error: DreamError


JobEvent = JobQueued | JobStarted | JobProgress | JobFinished | JobFailed


class Job:
    """A submitted dream: its events, its result, and a way to cancel it. Made by `submit`."""

    def __init__(
        self,
        pool: DreamPool,
        image: bytes,
        spec: JobSpec,
        owner: str | None,
        timeout_s: float,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.owner = owner
        self.spec = spec
        self._pool = pool
        self._image: bytes | None = image  # dropped once handed to a worker
        self._timeout_s = timeout_s
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._iterated = False
        self._finished = asyncio.Event()
        self._result: JobResult | None = None
        self._error: DreamError | None = None
        self._position: int | None = None  # in the queue, 1-based; None once handed over
        self._batch_key: BatchKey | None = None  # jobs with equal keys may share a batch
        self._memory = 0  # the estimated peak (bytes) when the pool has a memory budget
        self._started_at: float | None = None

    def __repr__(self) -> str:
        state = "done" if self.done else "queued" if self.queued else "running"
        return f"<Job {self.id} owner={self.owner!r} {state}>"

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def queued(self) -> bool:
        """Still waiting in the pool's queue: no worker has taken it yet."""
        return not self.done and self._position is not None

    def events(self) -> AsyncIterator[JobEvent]:
        """Every event of this job from the start, in order, ending with a terminal one."""
        if self._iterated:
            raise RuntimeError("a job's events can be iterated only once")
        self._iterated = True
        return self._iter_events()

    async def _iter_events(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, JobFinished | JobFailed):
                return

    async def result(self) -> JobResult:
        """The dream, or the typed error that ended the job."""
        await self._finished.wait()
        if self._error is not None:
            raise self._error.with_traceback(None)  # each await gets a fresh traceback
        assert self._result is not None
        return self._result

    async def cancel(self) -> bool:
        """End the job, queued or running; False if it had already ended."""
        return self._pool._cancel(self)

    def _emit(self, event: JobEvent) -> None:
        self._events.put_nowait(event)

    def _end(self, result: JobResult | None, error: DreamError | None) -> None:
        self._result, self._error, self._image, self._position = result, error, None, None
        if result is not None:
            self._emit(JobFinished(result))
        else:
            assert error is not None
            self._emit(JobFailed(error))
        self._finished.set()


class _Worker:
    """The core's record of one life of a worker slot: its state and the backend's handle."""

    def __init__(self, slot: int, device: str) -> None:
        self.slot = slot
        self.device = device
        self.handle: WorkerHandle | None = None  # set as soon as the backend has spawned it
        self.ready = False
        self.exited = False
        self.how: str = "still running"  # how it exited, once it has
        self.start_error: DreamError | None = None
        # The jobs of the batch it works on, by job number, until each reports back.
        self.jobs: dict[int, Job] = {}
        self.killing = False  # killed by the pool: takes no job while its exit is on the way
        self.timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    @property
    def idle(self) -> bool:
        return self.ready and not self.exited and not self.killing and not self.jobs

    def live_jobs(self) -> list[tuple[int, Job]]:
        """Its jobs whose callers still wait (the others only wait for the worker's report)."""
        return [(seq, job) for seq, job in self.jobs.items() if not job.done]

    def clear_timer(self, name: str) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def clear_timers(self) -> None:
        for name in list(self.timers):
            self.clear_timer(name)

    def kill(self) -> None:
        if not self.exited and self.handle is not None:
            self.handle.kill()


class _Events:
    """What the backend calls for one worker life (`WorkerEvents`), forwarded to the pool."""

    def __init__(self, pool: DreamPool, w: _Worker) -> None:
        self._pool, self._w = pool, w

    def ready(self, pid: int | None) -> None:
        self._pool._on_ready(self._w)

    def start_failed(self, error: DreamError, traceback: str | None) -> None:
        self._pool._on_start_failed(self._w, error, traceback)

    def started(self, seq: int) -> None:
        if (job := self._pool._live_job(self._w, seq)) is not None:
            job._emit(JobStarted(self._w.slot))

    def progress(self, seq: int, progress: Progress) -> None:
        if (job := self._pool._live_job(self._w, seq)) is not None:
            job._emit(JobProgress(progress))

    def finished(self, seq: int, result: JobResult) -> None:
        self._pool._on_job_ended(self._w, seq, result, None)

    def failed(self, seq: int, error: DreamError, traceback: str | None) -> None:
        if traceback:
            log.error("dream worker %d: unexpected error in a job:\n%s", self._w.slot, traceback)
        self._pool._on_job_ended(self._w, seq, None, _caller_error(error))

    def garbled(self) -> None:
        self._pool._on_garbled(self._w)

    def exited(self, how: str) -> None:
        self._pool._on_exit(self._w, how)


class DreamPool:
    """Workers with warm models, a bounded queue, and an async API for the bot.

    `backend` runs the workers; None picks one from the config: Ray actors when
    `config.ray_address` is set, else local processes.
    """

    def __init__(self, config: PoolConfig = PoolConfig(), backend: Backend | None = None) -> None:
        self.config = config
        if backend is None and config.ray_address:
            try:
                from .ray import RayBackend  # only now: the local default never imports ray
            except ImportError as exc:
                raise PoolStartError(
                    f"workers on Ray were asked for ({config.ray_address!r}), but Ray cannot be "
                    f'imported ({exc}): install it with `pip install -e ".[ray]"`'
                ) from None
            backend = RayBackend(config)
        elif backend is None:
            from .local import LocalBackend

            backend = LocalBackend(config)
        self.backend = backend
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: list[str] = []  # the device of each worker slot
        self._workers: list[_Worker | None] = []
        self._start_failures: list[int] = []
        self._restart_timers: dict[int, asyncio.TimerHandle] = {}
        self._queue: deque[Job] = deque()
        self._active: dict[str, Job] = {}
        self._owners: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._counts = Counter[str]()
        self._times: deque[float] = deque(maxlen=_TIMES_KEPT)
        self._changed = asyncio.Event()  # set whenever a worker or job changes state
        self._started = False
        self._starting = False
        self._closing = False
        self._closed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> DreamPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every worker; returns once all have loaded their models (else PoolStartError)."""
        if self._started:
            raise PoolStartError("the pool was already started")
        self._started = self._starting = True
        self._loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            await self.backend.open()
            self._slots = self.backend.slots()
            self._workers = [None] * len(self._slots)
            self._start_failures = [0] * len(self._slots)
            log.info("starting %d dream workers: %s", len(self._slots), self.backend.describe())
            for slot in range(len(self._slots)):
                self._spawn(slot)
            await self._wait_until_started(began + self.config.start_timeout_s)
        except BaseException as exc:
            self._closing = True
            for job in list(self._queue):
                self._end(job, error=PoolStartError(f"the dream pool could not start: {exc}"))
            self._queue.clear()
            await self._stop_workers()
            self._closed.set()
            raise
        finally:
            self._starting = False
        log.info("dream pool ready in %.1f s", time.monotonic() - began)
        self._dispatch()

    async def _wait_until_started(self, deadline: float) -> None:
        while True:
            self._changed.clear()
            for w in self._workers:
                assert w is not None
                if w.exited or w.start_error is not None:
                    reason = w.start_error or f"the worker exited ({w.how})"
                    raise PoolStartError(
                        f"dream worker {w.slot} on {w.device} could not start: {reason}"
                    ) from w.start_error
            if all(w is not None and w.ready for w in self._workers):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise PoolStartError(
                    f"dream workers did not load their models within "
                    f"{self.config.start_timeout_s:g} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    @property
    def ready(self) -> bool:
        """True once every worker has loaded its models, until the pool starts closing."""
        return (
            self._started
            and not self._starting
            and not self._closing
            and all(
                w is not None and w.ready and not w.exited and not w.killing for w in self._workers
            )
        )

    async def close(self, grace_s: float = 10.0) -> None:
        """Refuse new jobs, fail queued ones, give running ones `grace_s`, then stop workers."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        if not self._started:
            self._closed.set()
            return
        for job in list(self._queue):
            self._end(job, error=PoolClosedError("the pool shut down before this job started"))
        self._queue.clear()
        deadline = time.monotonic() + max(0.0, grace_s)
        while self._running_jobs() and (left := deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        for w in self._live_workers():
            for seq, _ in w.live_jobs():
                error = PoolClosedError("the pool shut down before this job finished")
                self._stop_job(w, seq, error, "cancelled")
        await self._stop_workers()
        self._closed.set()
        log.info("dream pool closed")

    async def _stop_workers(self) -> None:
        """Ask every worker to exit, kill those that do not in time, and join them all."""
        for handle in self._restart_timers.values():
            handle.cancel()
        self._restart_timers.clear()
        for w in self._live_workers():
            if not w.ready:
                w.kill()  # still loading: nothing to lose
            elif w.handle is not None:
                w.handle.stop()
        await self._wait_for_exit(self.config.cancel_grace_s)
        for w in self._live_workers():
            log.warning("dream worker %d (pid %s) did not stop; killing it", w.slot, w.pid)
            w.kill()
        await self._wait_for_exit(10.0)
        await self.backend.join([w.handle for w in self._workers if w and w.handle])

    async def _wait_for_exit(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._live_workers() and (left := deadline - time.monotonic()) > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # -- jobs ------------------------------------------------------------------------------

    async def submit(
        self,
        image: bytes,
        spec: JobSpec,
        *,
        owner: str | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Queue a dream; fails at once with PoolBusyError, OwnerLimitError or PoolClosedError."""
        if not self._started or self._closing:
            raise PoolClosedError("the dream pool is not running")
        if not isinstance(image, bytes | bytearray | memoryview):
            raise TypeError(f"image must be bytes, not {type(image).__name__}")
        if not isinstance(spec, JobSpec):
            raise TypeError(f"spec must be a JobSpec, not {type(spec).__name__}")
        timeout = self.config.job_timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise InvalidParameterError("timeout_s must be positive")
        memory = self._check_memory(image, spec)
        limit = self.config.max_per_owner
        if owner is not None and limit is not None and self._owners[owner] >= limit:
            self._counts["rejected"] += 1
            raise OwnerLimitError(limit)
        if len(self._queue) >= self.config.max_queue and self._pick_worker() is None:
            self._counts["rejected"] += 1
            raise PoolBusyError(len(self._queue))
        if self.config.precision is not None and spec.overrides.precision is None:
            # The operator's precision, for every backend: it travels inside the spec.
            overrides = spec.overrides.model_copy(update={"precision": self.config.precision})
            spec = spec.model_copy(update={"overrides": overrides})
        job = Job(self, bytes(image), spec, owner, timeout)
        job._memory = memory
        if max(self.config.batch_size(d) for d in self._slots) > 1:
            job._batch_key = batch_key(job._image, spec)  # type: ignore[arg-type]
        self._active[job.id] = job
        if owner is not None:
            self._owners[owner] += 1
        self._queue.append(job)
        job._position = len(self._queue)
        job._emit(JobQueued(job._position))
        self._dispatch()
        return job

    def _check_memory(self, image: bytes, spec: JobSpec) -> int:
        """Refuse a job whose estimated peak does not fit one worker's memory budget; the
        estimate (0 without a budget)."""
        budget = self.config.worker_memory_bytes
        if budget is None:
            return 0
        max_side = resolve(PRESETS[spec.preset], spec.overrides).max_size
        need = estimate_job_bytes(bytes(image), max_side)
        if need > budget:
            self._counts["rejected"] += 1
            raise ImageTooLargeError(
                f"That image would need about {need / 2**30:.1f} GiB to dream, more than the "
                f"{budget / 2**30:.1f} GiB each dream may use here; please send a smaller one."
            )
        return need

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start; None when the job is running, ended or unknown."""
        job = self._active.get(job_id)
        return job._position if job is not None else None

    def stats(self) -> PoolStats:
        times = sorted(self._times)
        live = self._live_workers()
        return PoolStats(
            workers=sum(w.ready and not w.killing for w in live),
            queued=len(self._queue),
            running=len(self._running_jobs()),
            done=self._counts["done"],
            failed=self._counts["failed"],
            cancelled=self._counts["cancelled"],
            timed_out=self._counts["timed_out"],
            restarts=self._counts["restarts"],
            mean_s=sum(times) / len(times) if times else 0.0,
            p50_s=_percentile(times, 0.50),
            p95_s=_percentile(times, 0.95),
            idle=sum(w.idle for w in live),
            rejected=self._counts["rejected"],
            killed=self._counts["killed"],
            batches=self._counts["batches"],
            batched=self._counts["batched"],
        )

    def worker_pids(self) -> list[int | None]:
        """The pid of each worker slot (None while it has no process); for ops and tests."""
        return [w.pid if w is not None and not w.exited else None for w in self._workers]

    def _cancel(self, job: Job) -> bool:
        if job.done:
            return False
        if job._position is not None:
            self._queue.remove(job)
            self._end(job, error=JobCancelledError("the dream was cancelled before it started"))
            self._renumber()
            return True
        for w in self._live_workers():
            for seq, mine in w.live_jobs():
                if mine is job:
                    error = JobCancelledError("the dream was cancelled")
                    self._stop_job(w, seq, error, "cancelled")
                    return True
        # Handed to a worker that has just died: its exit is on the way; end the job now.
        self._end(job, error=JobCancelledError("the dream was cancelled"))
        return True

    def _stop_job(self, w: _Worker, seq: int, error: DreamError, kind: str) -> None:
        """End job `seq` for the caller now; the worker lets go of it at its next step (the rest
        of its batch goes on), or is killed after the grace (a time limit's is short: the slot
        must be free again soon)."""
        job = w.jobs[seq]
        if w.handle is not None:
            w.handle.cancel(seq)
        w.clear_timer(f"timeout:{seq}")
        self._end(job, error=error, kind=kind)
        grace = self.config.timeout_grace_s if kind == "timed_out" else self.config.cancel_grace_s
        if f"kill:{seq}" not in w.timers:
            w.timers[f"kill:{seq}"] = self._call_later(grace, self._on_kill_grace, w, seq, grace)

    def _end(
        self,
        job: Job,
        result: JobResult | None = None,
        error: DreamError | None = None,
        kind: str | None = None,
    ) -> None:
        if job.done:
            return
        if kind is None:
            kind = "done" if error is None else "cancelled" if _is_closed(error) else "failed"
        job._end(result, error)
        self._active.pop(job.id, None)
        if job.owner is not None:
            self._owners[job.owner] -= 1
            if self._owners[job.owner] <= 0:
                del self._owners[job.owner]
        self._counts[kind] += 1
        if result is not None and job._started_at is not None:
            self._times.append(time.monotonic() - job._started_at)
        self._changed.set()

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._closing or self._starting:
            return
        moved = False
        while self._queue and (w := self._pick_worker()) is not None:
            self._hand_over(w, self._take_batch(w.device))
            moved = True
        if moved:
            self._renumber()

    def _pick_worker(self) -> _Worker | None:
        idle = [w for w in self._live_workers() if w.idle]
        if not idle:
            return None
        busy = Counter(w.device for w in self._live_workers() if w.jobs)
        return min(idle, key=lambda w: (busy[w.device], w.slot))

    def _take_batch(self, device: str) -> list[Job]:
        """The first queued job, and the next ones that can be dreamed with it (same batch key),
        up to the device's batch size and, with a memory budget, what fits in it together."""
        first = self._queue.popleft()
        batch = [first]
        limit = self.config.batch_size(device)
        if first._batch_key is None or limit == 1:
            return batch
        budget = self.config.worker_memory_bytes
        need = first._memory
        for job in list(self._queue):
            if len(batch) >= limit:
                break
            if job._batch_key != first._batch_key:
                continue
            if budget is not None and need + job._memory > budget:
                continue
            need += job._memory
            batch.append(job)
            self._queue.remove(job)
        return batch

    def _hand_over(self, w: _Worker, batch: list[Job]) -> None:
        work: list[tuple[int, bytes, JobSpec]] = []
        for job in batch:
            seq = next(self._seq)
            w.jobs[seq] = job
            job._position = None
            job._started_at = time.monotonic()
            assert job._image is not None
            work.append((seq, job._image, job.spec))
            job._image = None
            w.timers[f"timeout:{seq}"] = self._call_later(job._timeout_s, self._on_timeout, w, seq)
        if len(batch) > 1:
            self._counts["batches"] += 1
            self._counts["batched"] += len(batch)
        assert w.handle is not None
        w.handle.run(work)

    def _renumber(self) -> None:
        for position, job in enumerate(self._queue, 1):
            if job._position != position:
                job._position = position
                job._emit(JobQueued(position))

    def _running_jobs(self) -> list[Job]:
        return [j for j in self._active.values() if j._position is None]

    def _live_workers(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None and not w.exited]

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        w = _Worker(slot, self._slots[slot])
        w.handle = self.backend.spawn(slot, _Events(self, w))
        self._workers[slot] = w
        w.timers["start"] = self._call_later(self.config.start_timeout_s, self._on_start_timeout, w)

    def _call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, callback, *args)

    def _on_ready(self, w: _Worker) -> None:
        if w.exited:
            return
        w.ready = True
        w.clear_timer("start")
        self._start_failures[w.slot] = 0
        log.info("dream worker %d (pid %s) ready on %s", w.slot, w.pid, w.device)
        self._changed.set()
        self._dispatch()

    def _on_start_failed(self, w: _Worker, error: DreamError, traceback: str | None) -> None:
        w.start_error = error
        log.error(
            "dream worker %d could not load its models: %s%s",
            w.slot,
            error,
            f"\n{traceback}" if traceback else "",
        )
        self._changed.set()

    def _live_job(self, w: _Worker, seq: int) -> Job | None:
        """The job `seq` if the worker is still on it and the caller still waits for it."""
        job = w.jobs.get(seq)
        return job if job is not None and not job.done else None

    def _on_job_ended(
        self, w: _Worker, seq: int, result: JobResult | None, error: DreamError | None
    ) -> None:
        if seq not in w.jobs:
            return
        if (job := self._live_job(w, seq)) is not None:
            self._end(job, result=result, error=error)
        del w.jobs[seq]
        w.clear_timer(f"timeout:{seq}")
        w.clear_timer(f"kill:{seq}")
        self._changed.set()
        if not w.jobs:
            self._dispatch()

    def _on_garbled(self, w: _Worker) -> None:
        # A reply that cannot be read could have been any job's: none of the batch is trusted.
        for seq, _ in w.live_jobs():
            error = DreamError("the dream worker sent an unreadable reply")
            self._stop_job(w, seq, error, "failed")

    def _on_timeout(self, w: _Worker, seq: int) -> None:
        w.timers.pop(f"timeout:{seq}", None)
        if (job := self._live_job(w, seq)) is not None and not w.exited:
            limit = job._timeout_s
            error = JobTimeoutError(f"the dream took longer than {limit:g} s")
            self._stop_job(w, seq, error, "timed_out")

    def _on_kill_grace(self, w: _Worker, seq: int, grace: float) -> None:
        w.timers.pop(f"kill:{seq}", None)
        if seq not in w.jobs or w.exited or w.killing:
            return
        if w.live_jobs():
            # Its batch-mates still make progress for callers who wait, and the slot is not free
            # before they end anyway: look again later, kill once nobody waits for it.
            w.timers[f"kill:{seq}"] = self._call_later(grace, self._on_kill_grace, w, seq, grace)
            return
        log.warning(
            "dream worker %d (pid %s) did not stop within %g s of being asked; "
            "killing it and starting a replacement",
            w.slot,
            w.pid,
            grace,
        )
        w.killing = True  # no new job for it, even if its last report is still on the way
        self._counts["killed"] += 1
        w.kill()

    def _on_start_timeout(self, w: _Worker) -> None:
        w.timers.pop("start", None)
        if not w.ready and not w.exited:
            w.start_error = PoolStartError(
                f"did not load its models within {self.config.start_timeout_s:g} s"
            )
            w.kill()

    def _on_exit(self, w: _Worker, how: str) -> None:
        if w.exited:
            return
        w.exited, w.how = True, how
        w.clear_timers()
        self._changed.set()
        jobs = list(w.jobs.values())
        w.jobs.clear()
        for job in jobs:
            self._end(
                job,
                error=WorkerCrashedError(f"the dream worker died while running this job ({how})"),
            )
        if self._closing or self._starting:
            return
        self._counts["restarts"] += 1
        if w.ready:
            delay = 0.0
            log.warning(
                "dream worker %d (pid %s) exited (%s); starting a replacement",
                w.slot,
                w.pid,
                how,
            )
        else:
            self._start_failures[w.slot] += 1
            delay = min(_MAX_RESTART_DELAY_S, 2.0 ** (self._start_failures[w.slot] - 1))
            reason = w.start_error or how
            log.error(
                "dream worker %d failed to start (%s); trying again in %g s", w.slot, reason, delay
            )
            if not any(x.ready for x in self._live_workers()):
                for queued in list(self._queue):
                    self._end(
                        queued, error=WorkerCrashedError(f"no dream worker could start: {reason}")
                    )
                self._queue.clear()
        self._restart_timers[w.slot] = self._call_later(delay, self._restart, w.slot)

    def _restart(self, slot: int) -> None:
        self._restart_timers.pop(slot, None)
        if self._closing:
            return
        try:
            self._spawn(slot)
        except Exception:
            log.exception("could not spawn dream worker %d", slot)
            self._start_failures[slot] += 1
            delay = min(_MAX_RESTART_DELAY_S, 2.0 ** self._start_failures[slot])
            self._restart_timers[slot] = self._call_later(delay, self._restart, slot)


def _caller_error(error: DreamError) -> DreamError:
    # The engine only stops on its own when we asked it to, so this is a cancellation.
    if isinstance(error, DreamCancelled):
        return JobCancelledError(str(error))
    return error


def _is_closed(error: DreamError) -> bool:
    return isinstance(error, PoolClosedError | JobCancelledError)


def _percentile(sorted_times: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 when there is nothing to rank."""
    if not sorted_times:
        return 0.0
    return sorted_times[min(len(sorted_times) - 1, max(0, math.ceil(q * len(sorted_times)) - 1))]
