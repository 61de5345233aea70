"""The local backend: each worker is a `spawn`ed process on this machine (main loop in `_worker`).

Talking to a worker: two one-way pipes. Jobs go out through a writer thread (so a large image
never blocks the event loop); messages come back through a reader thread that hands each one to
the loop with `call_soon_threadsafe`. EOF on a worker's pipe means its process exited: that is
how a crash is noticed, and `Process.exitcode` says how it died.

Cancellation needs no round trip: each worker has a shared integer per place in a batch;
`cancel(seq)` writes the job number into its job's place and the engine's `should_cancel` reads
it between steps.

Workers are daemonic, so even an interpreter exit without `close()` ends them, and a worker
whose parent died stops its job at the next step and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ..jobs import JobSpec
from . import _worker
from .backend import Backend, WorkerEvents, WorkerHandle
from .core import PoolConfig

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)

_STOP = object()  # tells a writer thread to close its pipe: the worker then exits


class LocalWorker(WorkerHandle):
    """One worker process (one life of a slot) and the two threads that talk to it."""

    def __init__(self, slot: int, device: str, process: BaseProcess, cancel: Any) -> None:
        self.slot = slot
        self.device = device
        self.process = process
        self.pid = process.pid
        self._cancel = cancel  # a shared int64 array: one place per job of a batch
        self._place: dict[int, int] = {}  # seq -> its place in the batch being run
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.killed = False  # by the pool, on purpose

    def run(self, work: Sequence[tuple[int, bytes, JobSpec]]) -> None:
        self._place = {seq: i for i, (seq, _, _) in enumerate(work)}
        self.outbox.put(list(work))

    def cancel(self, seq: int) -> None:
        if (place := self._place.get(seq)) is not None:
            self._cancel[place] = seq

    def stop(self) -> None:
        self.outbox.put(_STOP)

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.killed = True
            with contextlib.suppress(OSError, ValueError):
                self.process.kill()

    def describe_exit(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "exit code unknown"
        if code < 0:
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
                return f"killed by {name}" + (" from the pool" if self.killed else "")
            return f"killed by signal {-code}"
        return f"exit code {code}"


class LocalBackend(Backend):
    """Worker processes on this machine: `workers_per_device` per CUDA device, or CPU workers."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._ctx = mp.get_context("spawn")
        self._plan: list[tuple[str, int]] | None = None

    def plan(self) -> list[tuple[str, int]]:
        """(device, torch threads) of each slot; worked out once (it may look for CUDA)."""
        if self._plan is None:
            self._plan = plan(self.config)
        return self._plan

    def slots(self) -> list[str]:
        return [device for device, _ in self.plan()]

    def describe(self) -> str:
        return ", ".join(f"{d} ({t} threads)" for d, t in self.plan())

    def spawn(self, slot: int, events: WorkerEvents) -> LocalWorker:
        device, threads = self.plan()[slot]
        loop = asyncio.get_running_loop()
        jobs_in, jobs_out = self._ctx.Pipe(duplex=False)
        events_in, events_out = self._ctx.Pipe(duplex=False)
        cancel = self._ctx.RawArray(ctypes.c_int64, self.config.batch_size(device))
        process = self._ctx.Process(
            target=_worker.worker_main,
            args=(slot, device, self.config.models, threads, jobs_in, events_out, cancel),
            name=f"dreamcore-worker-{slot}",
            daemon=True,
        )
        process.start()
        jobs_in.close()  # the child has its own copies; ours must go, or EOF would never come
        events_out.close()
        w = LocalWorker(slot, device, process, cancel)
        w.threads = [
            threading.Thread(
                target=_read,
                args=(w, events_in, events, loop),
                name=f"{process.name}-reader",
                daemon=True,
            ),
            threading.Thread(
                target=_write, args=(w, jobs_out), name=f"{process.name}-writer", daemon=True
            ),
        ]
        for t in w.threads:
            t.start()
        log.debug("spawned dream worker %d (pid %s) on %s", slot, process.pid, device)
        return w

    async def join(self, workers: list[WorkerHandle]) -> None:
        local = [w for w in workers if isinstance(w, LocalWorker)]
        await asyncio.get_running_loop().run_in_executor(None, _join, local)


def _read(
    w: LocalWorker, conn: Connection, events: WorkerEvents, loop: asyncio.AbstractEventLoop
) -> None:
    """Reader thread: every message from the worker goes to the loop; EOF means it exited."""

    def to_loop(callback: Any, *args: Any) -> bool:
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        except Exception:  # a message that does not unpickle: the stream is still in step
            log.exception("unreadable message from dream worker %d", w.slot)
            message = ("garbled",)
        if not to_loop(_deliver, w, events, message):
            break
    conn.close()
    w.process.join(10.0)  # it closed the pipe by exiting; collect its exit code
    if w.process.exitcode is None:  # closed the pipe yet lives on: never leave it behind
        w.kill()
        w.process.join(10.0)
    to_loop(events.exited, w.describe_exit())


def _deliver(w: LocalWorker, events: WorkerEvents, message: tuple[Any, ...]) -> None:
    """One message of the `_worker` protocol, as the matching `WorkerEvents` call."""
    kind = message[0]
    if kind == _worker.READY:
        w.pid = message[1]
        events.ready(message[1])
    elif kind == _worker.START_FAILED:
        events.start_failed(message[1], message[2])
    elif kind == _worker.STARTED:
        events.started(message[1])
    elif kind == _worker.PROGRESS:
        events.progress(message[1], message[2])
    elif kind == _worker.FINISHED:
        events.finished(message[1], message[2])
    elif kind == _worker.FAILED:
        events.failed(message[1], message[2], message[3])
    else:
        events.garbled()


def _write(w: LocalWorker, conn: Connection) -> None:
    """Writer thread: sends jobs in order; `_STOP` closes the pipe, telling the worker to exit."""
    while True:
        item = w.outbox.get()
        if item is _STOP:
            break
        try:
            conn.send(item)
        except (OSError, ValueError):  # the worker died; the reader thread reports it
            break
    conn.close()


def _join(workers: Sequence[LocalWorker]) -> None:
    for w in workers:
        if w.process.exitcode is None:
            w.process.join(5.0)
        w.outbox.put(_STOP)
        for t in w.threads:
            t.join(5.0)
        with contextlib.suppress(ValueError):
            w.process.close()


def plan(config: PoolConfig) -> list[tuple[str, int]]:
    """(device, torch threads) for each worker, threads split so workers do not oversubscribe."""
    devices = config.devices or cuda_devices() or ("cpu",)
    slots: list[str] = []
    for device in devices:
        n = (config.cpu_workers or 1) if device == "cpu" else config.workers_per_device
        slots += [device] * n
    threads = config.torch_threads or max(1, cores() // len(slots))
    return [(device, threads) for device in slots]


def cuda_devices() -> tuple[str, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
