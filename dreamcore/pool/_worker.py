"""The main loop of a pool worker process: load the models once, then dream job after job.

It runs in a `spawn`ed child of `DreamPool` and talks to it over two one-way pipes. The messages
are plain tuples, all defined here, so the whole protocol can be read in one place:

    pool -> worker   [(seq, image bytes, JobSpec), ...]    one batch of jobs (often of one);
                                                           EOF on the pipe means "stop"
    worker -> pool   (READY, pid)                          models loaded, waiting for jobs
                     (START_FAILED, DreamError, traceback) could not load; the process then exits
                     (STARTED, seq)
                     (PROGRESS, seq, Progress)             throttled, see PROGRESS_INTERVAL_S
                     (FINISHED, seq, JobResult)
                     (FAILED, seq, DreamError, traceback)  traceback only for unexpected errors

A batch is dreamed together (see `batching`), but every job in it has its own messages, and
ends on its own: a cancelled one as soon as the engine lets go of it, the others when done. The
worker takes the next batch once every job of this one has reported.

Cancellation needs no message: the pool writes the seq of the job to stop into the shared
integer of that job's place in the batch, which `should_cancel` reads between two engine steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from ..errors import DreamError
from ..jobs import JobResult, Progress

__all__ = ["worker_main"]

log = logging.getLogger(__name__)

READY = "ready"
START_FAILED = "start_failed"
STARTED = "started"
PROGRESS = "progress"
FINISHED = "finished"
FAILED = "failed"

# One progress message per 0.1 s is plenty for a chat message and keeps tiny jobs cheap;
# the first and the last step are always sent.
PROGRESS_INTERVAL_S = 0.1


def worker_main(
    slot: int,
    device: str,
    models: Sequence[str],
    threads: int,
    jobs: Connection,
    events: Connection,
    cancel: Sequence[int],
) -> None:
    """Entry point of the child process: serve until the pool closes `jobs`, then exit at once."""
    # Ctrl-C reaches the whole process group; the pool, not the terminal, decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = 1
    try:
        code = _serve(device, models, threads, jobs, events, cancel)
    except BaseException:  # a bug in this loop: the pool sees the exit and replaces us
        print(f"dream worker {slot}: unexpected error in its main loop", file=sys.stderr)
        traceback.print_exc()
    finally:
        jobs.close()
        events.close()
        # The interpreter's teardown of torch takes a second or more, and a worker has nothing
        # left to save (no children, no files): exit now, so the pool's close need not wait.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _serve(
    device: str,
    models: Sequence[str],
    threads: int,
    jobs: Connection,
    events: Connection,
    cancel: Sequence[int],
) -> int:
    """Load the models, then run jobs until `jobs` closes; the exit code."""
    parent = os.getppid()
    try:
        import torch

        torch.set_num_threads(threads)
        # Fails only if something ran torch before us; the default is then no harm.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        from ..runner import run_batch, warm_up

        warm_up(models, device)
    except Exception as exc:
        _send(events, (START_FAILED, *portable_error(exc)))
        return 1
    if not _send(events, (READY, os.getpid())):
        return 0
    idle = _resident_bytes()

    while True:
        try:
            batch = jobs.recv()
        except (EOFError, OSError):
            return 0
        seqs = [seq for seq, _, _ in batch]
        for seq in seqs:
            if not _send(events, (STARTED, seq)):
                return 0
        reply = _Replies(events, seqs, idle, device)
        _reset_peak()  # a batch's peak is its own (its jobs share it)
        run_batch(
            [(image, spec) for _, image, spec in batch],
            ended=reply.ended,
            device=device,
            progress=[throttled(partial(_send_progress, events, seq)) for seq in seqs],
            should_cancel=[_cancel_check(cancel, i, seq, parent) for i, seq in enumerate(seqs)],
        )
        del batch
        if reply.pool_gone:
            return 0


class _Replies:
    """Sends each job's end (result or error) of one batch as it comes."""

    def __init__(self, events: Connection, seqs: list[int], idle: int, device: str) -> None:
        self.events, self.seqs, self.idle, self.device = events, seqs, idle, device
        self.pool_gone = False

    def ended(self, i: int, outcome: JobResult | Exception) -> None:
        if isinstance(outcome, JobResult):
            peak = max(0, _peak_resident_bytes() - self.idle)
            outcome = replace(outcome, peak_memory_bytes=peak)
            reply: tuple[Any, ...] = (FINISHED, self.seqs[i], outcome)
        else:
            reply = (FAILED, self.seqs[i], *portable_error(outcome))
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()  # after an out-of-memory error, give the memory back
        self.pool_gone = self.pool_gone or not _send(self.events, reply)


def throttled(send: Callable[[Progress], None]) -> Callable[[Progress], None]:
    """`send` at most once per PROGRESS_INTERVAL_S (and for the last step): a step can be ~1 ms."""
    last = 0.0

    def progress(p: Progress) -> None:
        nonlocal last
        now = time.monotonic()
        if p.fraction >= 1.0 or now - last >= PROGRESS_INTERVAL_S:
            last = now
            send(p)

    return progress


def _send_progress(events: Connection, seq: int, p: Progress) -> None:
    _send(events, (PROGRESS, seq, p))


def _cancel_check(cancel: Sequence[int], i: int, seq: int, parent: int) -> Callable[[], bool]:
    def should_cancel() -> bool:
        # A worker whose pool died stops too, instead of dreaming for nobody.
        return cancel[i] == seq or os.getppid() != parent

    return should_cancel


def _resident_bytes() -> int:
    """This process's resident memory now (Linux); 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _reset_peak() -> None:
    """Start this job's high-water mark at the present size (Linux), so each job's peak is its
    own, not the largest of the worker's life; where that cannot be done, the life's is kept."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _peak_resident_bytes() -> int:
    """The resident high-water mark since `_reset_peak` (VmHWM), else getrusage's (the life's)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def portable_error(exc: BaseException) -> tuple[DreamError, str | None]:
    """The error to send to the pool, and a traceback when it was not one we raise on purpose.

    A DreamError crosses as itself (same class, same message); anything else becomes a
    DreamError with a short message, and its traceback goes along to be logged by the pool.
    """
    if isinstance(exc, DreamError):
        try:
            clone = pickle.loads(pickle.dumps(exc))
            if type(clone) is type(exc) and str(clone) == str(exc):
                return exc, None
        except Exception:
            pass
        return DreamError(str(exc)), _format(exc)
    first_line = (str(exc).strip().splitlines() or [""])[0][:160]
    message = f"unexpected {type(exc).__name__} in the dream worker"
    return DreamError(f"{message}: {first_line}" if first_line else message), _format(exc)


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _send(conn: Connection, message: tuple[Any, ...]) -> bool:
    """Send to the pool; False when the pool has gone (then there is nobody left to work for)."""
    try:
        conn.send(message)
    except (OSError, ValueError):
        return False
    return True
