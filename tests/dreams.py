"""Dreams shared between test modules, each (preset, photo, seed, size) dreamed once a session.

The scene test and the animal judge test read the same dreams (what `!dream <preset>` makes of a
photo), so the judge costs no extra dreaming.

`SEEDS` are the seeds every quality test takes its medians over: 1-3, or 1-N with `--seeds N`
(conftest), to see whether a bar met at three seeds holds over more.

On a CPU the quality tests' dreams run `PROCESSES` at a time (`prefetch`, `run_jobs`), each in
a process of `THREADS` torch threads (one on 2 cores). The quality tests are most of the suite's
time, and a small dream keeps two threads only partly busy: on the 2-core AMD EPYC,
`test_animals` and `test_scene` took 486 s in two single-threaded processes against 614 s in one
two-threaded process (1.26x; `dreamcore bench --pool` finds 1.52x for 512 px jobs). A dream on
one thread rounds as one thread does: `test_animals` and `test_scene` had measured every bar on
it (their docstrings' "one thread" readings), and `test_guide` and `test_depth` pass on it.
Every such dream goes to the processes, a lone one too, so none takes another rounding.
`PROCESSES` is 1 on CUDA and with `--threads` alone (conftest): the dreams then run in this
process. `test_dogs` keeps its dreams in the test process (its docstring says why).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch
from photos import photo
from PIL import Image

from dreamcore import runner
from dreamcore.jobs import JobResult, JobSpec
from dreamcore.presets import PRESETS
from dreamcore.runner import dream_image, run_job

SEEDS: tuple[int, ...] = (1, 2, 3)  # conftest replaces it for `--seeds N` before tests import it
PROCESSES = 1  # conftest: the CPU's cores, unless the dreams run on CUDA or with --threads
THREADS = 1  # conftest: each process's torch threads
LAYOUT = "auto"  # conftest: --layout, for the processes too

Key = tuple[str, str, int, int]  # preset, photo, seed, side
A = TypeVar("A")
R = TypeVar("R")

_dreams: dict[Key, Image.Image] = {}
_executor: ProcessPoolExecutor | None = None


def dreamed(preset: str, name: str, seed: int, side: int) -> Image.Image:
    """`preset` at its default strength on photo `name` scaled to `side` (treat as read-only)."""
    key = (preset, name, seed, side)
    if key not in _dreams:
        prefetch([key])
    return _dreams[key]


def prefetch(keys: Iterable[Key]) -> None:
    """Dream every key not dreamed yet, `PROCESSES` at a time."""
    missing = [k for k in dict.fromkeys(keys) if k not in _dreams]
    _dreams.update(zip(missing, parallel(_dream, missing), strict=True))


def run_jobs(jobs: Sequence[tuple[bytes, JobSpec]]) -> list[JobResult]:
    """`run_job` on each (image, spec), `PROCESSES` at a time, in order."""
    return parallel(_run, jobs)


def parallel(fn: Callable[[A], R], args: Sequence[A]) -> list[R]:
    """`fn` over `args` in order: here, or with `PROCESSES` > 1 on that many processes (spawned
    once, then warm for the rest of the session: each loads the model once)."""
    if PROCESSES <= 1 or not args:
        return [fn(a) for a in args]
    global _executor
    if _executor is None:
        _executor = ProcessPoolExecutor(
            PROCESSES,
            mp_context=mp.get_context("spawn"),
            initializer=_start,
            initargs=(LAYOUT, THREADS),
        )
    return list(_executor.map(fn, args))


@atexit.register
def close() -> None:
    """Stop the processes (conftest calls it when the session ends)."""
    global _executor
    if _executor is not None:
        _executor.shutdown(cancel_futures=True)
        _executor = None


def _start(layout: str, threads: int) -> None:
    torch.set_num_threads(threads)
    if layout != "auto":
        runner.default_layout = lambda device: layout  # as conftest does for this process


def _dream(key: Key) -> Image.Image:
    preset, name, seed, side = key
    return dream_image(photo(name, side), PRESETS[preset], seed=seed)


def _run(job: tuple[bytes, JobSpec]) -> JobResult:
    return run_job(*job)
