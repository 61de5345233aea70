"""What a pool backend must offer, so one core (queue, limits, events, stats) serves them all.

The core (`DreamPool`) decides what runs where and when; a backend only runs workers. Each
worker is one life of a slot: the backend starts it, hands it jobs, relays a cancel, kills it
on request, and reports what happened through the `WorkerEvents` the core gave it. A worker that
dies is never revived by the backend: it reports `exited` and the core spawns a replacement in
the same slot (so restart counts, back-off and the crash error are the same for every backend).

Rules for a backend:
- Every `WorkerEvents` method is called on the event loop's thread, in the order things
  happened for that worker; `exited` is the last call for a worker and comes exactly once.
- `run` and `cancel` never block the loop: a large image goes out on another thread or task.
- `cancel(seq)` asks the worker to stop job `seq` at its next engine step; the worker then
  reports `failed(seq, DreamCancelled)` (or `finished`, if it was faster). The other jobs of
  its batch go on. The core answers the
  caller at once and kills the worker only if it has not reported back after a grace period.
- `stop()` asks an idle worker to exit; `kill()` ends it now, whatever it is doing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from ..errors import DreamError
from ..jobs import JobResult, JobSpec, Progress

__all__ = ["Backend", "WorkerEvents", "WorkerHandle"]


class WorkerEvents(Protocol):
    """How a worker tells the core what happened (on the loop's thread, in order)."""

    def ready(self, pid: int | None) -> None:
        """Models loaded; waiting for jobs. `pid` is the worker's process id, if it has one."""

    def start_failed(self, error: DreamError, traceback: str | None) -> None:
        """Could not load its models; `exited` follows."""

    def started(self, seq: int) -> None:
        """Job `seq` began."""

    def progress(self, seq: int, progress: Progress) -> None:
        """Job `seq` made progress (throttled by the worker)."""

    def finished(self, seq: int, result: JobResult) -> None:
        """Job `seq` made its dream; the worker is free again."""

    def failed(self, seq: int, error: DreamError, traceback: str | None) -> None:
        """Job `seq` ended with an error (traceback only for unexpected ones); free again."""

    def garbled(self) -> None:
        """A reply could not be read; the worker's current job cannot be trusted."""

    def exited(self, how: str) -> None:
        """The worker is gone (how, e.g. "killed by SIGKILL"); its job, if any, is lost."""


class WorkerHandle(ABC):
    """The core's grip on one running worker."""

    slot: int
    device: str
    pid: int | None = None

    @abstractmethod
    def run(self, work: Sequence[tuple[int, bytes, JobSpec]]) -> None:
        """Hand a batch of jobs (seq, image, spec) to the worker (it is idle); returns at once.

        The worker dreams them together (see `batching`) and reports each job on its own;
        it is idle again once every one of them has reported its end.
        """

    @abstractmethod
    def cancel(self, seq: int) -> None:
        """Ask the worker to stop job `seq` at its next step; returns at once."""

    @abstractmethod
    def stop(self) -> None:
        """Ask the worker to exit once it is idle; `exited` follows."""

    @abstractmethod
    def kill(self) -> None:
        """End the worker now; `exited` follows (with how it ended)."""


class Backend(ABC):
    """Starts workers for the slots it plans, and cleans up after them."""

    async def open(self) -> None:  # noqa: B027 (a hook: most backends need nothing here)
        """Connect to whatever runs the workers, before `slots` (raise PoolStartError if not)."""

    @abstractmethod
    def slots(self) -> list[str]:
        """The device of each worker slot (its length is the number of workers)."""

    @abstractmethod
    def spawn(self, slot: int, events: WorkerEvents) -> WorkerHandle:
        """Start a worker for `slot` (called on the loop); it reports `ready` when it can work."""

    @abstractmethod
    async def join(self, workers: list[WorkerHandle]) -> None:
        """Release what is left of these workers once they have all exited (threads, handles)."""

    def describe(self) -> str:
        """One line for the log: where the workers run."""
        return ", ".join(self.slots())
