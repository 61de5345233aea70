"""The Ray backend: each worker is a Ray actor, placed by Ray on any node of a cluster.

Selected with `PoolConfig.ray_address` (the bot's `DREAMBOT_RAY_ADDRESS`: "auto" for the cluster
this machine belongs to, or "ray://head:10001"); only then is `ray` imported (`pip install -e
".[ray]"`). The core is the same as for local processes, so queueing, limits, events, time
limits, crash handling and statistics behave the same; only how a worker runs differs:

- One actor per GPU of the cluster (`num_gpus=1 / workers_per_device`), or `cpu_workers` CPU
  actors (`num_cpus=torch_threads`) when the cluster has no GPU. Each loads its models once.
- Image bytes go into Ray's object store (`ray.put`); the pool then drops its copy, and the
  result comes back as one object too.
- A batch of jobs (see `batching`) is one streaming generator call: each job's "started",
  progress (throttled like local workers) and result are yielded as they happen and reach the
  caller's event loop as they are made.
- Cancel is a second call on the actor (it runs several calls at once, in threads), which adds
  the job's number to the set the engine's `should_cancel` checks between two steps.
- Death: each actor also holds one call that only returns when the actor stops. When the actor
  dies (its process killed, its node lost), that call fails at once, and the core fails the
  running job with `WorkerCrashedError` and starts a replacement actor. Ray's own actor restarts
  are off, so one place decides (the core, with its back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from ..errors import DreamError, PoolStartError
from ..jobs import JobResult, JobSpec
from ._worker import portable_error, throttled
from .backend import Backend, WorkerEvents, WorkerHandle
from .core import PoolConfig

__all__ = ["DreamActor", "RayBackend"]

log = logging.getLogger(__name__)

_CALLS_AT_ONCE = 3  # a job, a cancel, and the call that waits for the actor's end


@ray.remote(max_restarts=0, max_task_retries=0)
class DreamActor:
    """One dream worker on a Ray node: models loaded once, one job at a time."""

    def __init__(self, device: str, models: Sequence[str], threads: int) -> None:
        self._device = device
        self._models = tuple(models)
        self._threads = threads
        self._cancelled: set[int] = set()
        self._stopped = threading.Event()

    def load(self) -> tuple[str, Any, Any]:
        """("ready", pid, device) or ("start_failed", DreamError, traceback)."""
        try:
            import torch

            torch.set_num_threads(self._threads)
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(1)
            from ..runner import warm_up

            if self._device == "cuda":
                self._device = "cuda:0"  # Ray shows the actor only its own GPU
            warm_up(self._models, self._device)
        except Exception as exc:
            return ("start_failed", *portable_error(exc))
        return ("ready", os.getpid(), self._device)

    def run(
        self, seqs: list[int], specs: list[JobSpec], *images: bytes
    ) -> Iterator[tuple[Any, ...]]:
        """For each job: ("started", seq), ("progress", seq, p) ..., then ("finished", seq, r)
        or ("failed", seq, e, tb); the call ends once every job of the batch has ended."""
        from ..runner import run_batch

        messages: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

        def ended(i: int, outcome: JobResult | Exception) -> None:
            if isinstance(outcome, JobResult):
                messages.put(("finished", seqs[i], outcome))
            else:
                messages.put(("failed", seqs[i], *portable_error(outcome)))

        def work() -> None:
            run_batch(
                list(zip(images, specs, strict=True)),
                ended=ended,
                device=self._device,
                progress=[
                    throttled(lambda p, seq=seq: messages.put(("progress", seq, p))) for seq in seqs
                ],
                should_cancel=[lambda seq=seq: seq in self._cancelled for seq in seqs],
            )

        for seq in seqs:
            yield ("started", seq)
        thread = threading.Thread(target=work, name=f"dream-{seqs[0]}", daemon=True)
        thread.start()
        left = len(seqs)
        while left:
            message = messages.get()
            yield message
            if message[0] != "progress":
                left -= 1
                self._cancelled.discard(message[1])
        thread.join()

    def cancel(self, seq: int) -> None:
        self._cancelled.add(seq)

    def wait_until_stopped(self) -> None:
        """Returns when the actor is told to stop; fails at once if the actor dies."""
        self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()


class RayWorker(WorkerHandle):
    """The pool's handle on one actor: the calls in flight and how it ended."""

    def __init__(self, slot: int, device: str, actor: Any, events: WorkerEvents) -> None:
        self.slot = slot
        self.device = device
        self.actor = actor
        self.events = events
        self.killed = False  # by the pool, on purpose
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    def _task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def run(self, work: Sequence[tuple[int, bytes, JobSpec]]) -> None:
        # Into the object store now: the pool drops its own copy as soon as this returns.
        seqs = [seq for seq, _, _ in work]
        specs = [spec for _, _, spec in work]
        self._task(self._run(seqs, specs, [ray.put(image) for _, image, _ in work]))

    async def _run(self, seqs: list[int], specs: list[JobSpec], images: list[Any]) -> None:
        left = set(seqs)
        try:
            stream = self.actor.run.options(num_returns="streaming").remote(seqs, specs, *images)
            async for ref in stream:
                message = await ref
                kind, seq = message[0], message[1]
                if kind == "started":
                    self.events.started(seq)
                elif kind == "progress":
                    self.events.progress(seq, message[2])
                elif kind == "finished":
                    left.discard(seq)
                    self.events.finished(seq, message[2])
                else:
                    left.discard(seq)
                    self.events.failed(seq, message[2], message[3])
        except RayActorError:
            pass  # the actor died: `_watch` reports it, and the core fails the jobs
        except Exception as exc:  # the reply could not be read: the jobs cannot be trusted
            log.exception("dream actor %d: unreadable reply", self.slot)
            for seq in sorted(left):
                error = DreamError(f"the dream actor's reply was lost: {exc}")
                self.events.failed(seq, error, None)

    def cancel(self, seq: int) -> None:
        self.actor.cancel.remote(seq)

    def stop(self) -> None:
        self.stopping = True
        self.actor.stop.remote()

    def kill(self) -> None:
        if not self.done.is_set():
            self.killed = True
            with contextlib.suppress(Exception):
                ray.kill(self.actor, no_restart=True)

    async def watch(self) -> None:
        """Load the models, report it, then wait for the actor's end and report that."""
        how = "the actor stopped"
        try:
            message = await self.actor.load.remote()
            if message[0] == "ready":
                self.pid, self.device = message[1], message[2]
                self.events.ready(message[1])
            else:
                self.events.start_failed(message[1], message[2])
                self.kill()
            await self.actor.wait_until_stopped.remote()
        except RayActorError as exc:
            how = "killed from the pool" if self.killed else f"the Ray actor died ({_first(exc)})"
        except Exception as exc:
            how = f"lost contact with the Ray actor ({_first(exc)})"
        finally:
            if not self.killed:
                with contextlib.suppress(Exception):
                    ray.kill(self.actor, no_restart=True)
            self.done.set()
        self.events.exited(how)


# Never set: the thread that ran `ray.init` waits on it for the rest of the process's life.
_FOREVER = threading.Event()


def init_within(timeout_s: float, **options: Any) -> None:
    """`ray.init(**options)`, given up after `timeout_s` with a `PoolStartError`, as is any
    failure: at an address where no cluster answers Ray retries for ever, so it runs on a daemon
    thread, left behind on time-out (the caller is about to stop with the error). On success the
    thread stays: the processes of a cluster Ray starts are tied to the thread that started them
    (they die with it, PR_SET_PDEATHSIG)."""
    failed: list[BaseException] = []
    done = threading.Event()

    def connect() -> None:
        try:
            ray.init(**options)
        except BaseException as exc:  # raised again on the caller's thread
            failed.append(exc)
            done.set()
            return
        done.set()
        _FOREVER.wait()

    threading.Thread(target=connect, name="ray-connect", daemon=True).start()
    where = f"the Ray cluster at {options.get('address') or 'local'!r}"
    if not done.wait(timeout_s):
        raise PoolStartError(
            f"cannot reach {where} within {timeout_s:g} s (is the address right, and is the "
            "cluster up?)"
        )
    if failed:
        raise PoolStartError(f"cannot reach {where}: {_first(failed[0])}")


class RayBackend(Backend):
    """Dream actors on the Ray cluster at `config.ray_address` (connected at `open`)."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._plan: list[tuple[str, float, float]] = []  # (device, cpus, gpus) per actor
        self._workers: list[RayWorker] = []

    async def open(self) -> None:
        await asyncio.to_thread(self._connect)
        self._plan = self._make_plan(ray.cluster_resources())

    def _connect(self) -> None:
        if not ray.is_initialized():
            init_within(
                self.config.start_timeout_s,
                address=self.config.ray_address,
                ignore_reinit_error=True,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )

    def _make_plan(self, resources: dict[str, float]) -> list[tuple[str, float, float]]:
        threads = float(self.config.torch_threads or 1)
        gpus = int(resources.get("GPU", 0))
        if gpus and self.config.devices != ("cpu",):
            per = self.config.workers_per_device
            return [("cuda", threads, 1.0 / per)] * (gpus * per)
        return [("cpu", threads, 0.0)] * (self.config.cpu_workers or 1)

    def slots(self) -> list[str]:
        return [device for device, _, _ in self._plan]

    def describe(self) -> str:
        return f"Ray actors at {self.config.ray_address!r}: " + ", ".join(
            f"{d} ({c:g} cpu, {g:g} gpu)" for d, c, g in self._plan
        )

    def spawn(self, slot: int, events: WorkerEvents) -> RayWorker:
        device, cpus, gpus = self._plan[slot]
        actor = DreamActor.options(
            num_cpus=cpus, num_gpus=gpus, max_concurrency=_CALLS_AT_ONCE
        ).remote(device, self.config.models, int(cpus))
        w = RayWorker(slot, device, actor, events)
        w._task(w.watch())
        self._workers.append(w)
        return w

    async def join(self, workers: list[WorkerHandle]) -> None:
        mine = [w for w in workers if isinstance(w, RayWorker)]
        for w in mine:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(w.done.wait(), 10.0)
            for task in list(w.tasks):
                task.cancel()
        self._workers = [w for w in self._workers if w not in mine]


def _first(exc: BaseException) -> str:
    """The first line of an error, short: Ray's own messages run to pages."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
