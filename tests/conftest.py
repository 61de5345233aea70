"""Shared test set-up: the tests folder is importable (photos, judge, fakediscord).

`--layout nchw` and `--threads N` dream this run's in-process pictures in another layout and
thread count: another rounding, as another device has, so the quality tests can be tried on it
without a GPU (a dream amplifies rounding like a different seed). Pool workers keep the defaults.
`--seeds N` takes the quality tests' medians over seeds 1-N instead of 1-3 (tests/dreams.py).
On a CPU the quality tests' dreams run in `--processes N` processes at once (default: one per
core, up to 4, each with its share of the cores: one thread each on 2 cores; tests/dreams.py);
with `--threads` alone, or on CUDA, they run in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = [
    "fakediscord.fixtures",  # the loopback Discord: fake_discord, bot_runner
    "pgserver",  # a real PostgreSQL server: postgres_server
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dreams", "where the in-process dreams run")
    group.addoption("--layout", choices=("auto", "nchw", "channels_last"), default="auto")
    group.addoption("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    group.addoption("--seeds", type=int, default=3, help="quality medians over seeds 1-N")
    group.addoption(
        "--processes",
        type=int,
        default=0,
        help="quality dreams at once on a CPU (0: one per core, up to 4; 1 with --threads)",
    )


def pytest_configure(config: pytest.Config) -> None:
    import dreams
    import torch

    from dreamcore import runner

    if config.getoption("seeds") < 1:
        raise pytest.UsageError("--seeds takes a count of 1 or more")
    dreams.SEEDS = tuple(range(1, config.getoption("seeds") + 1))
    if config.getoption("threads"):
        torch.set_num_threads(config.getoption("threads"))
    layout = config.getoption("layout")
    if layout != "auto":
        runner.default_layout = lambda device: layout  # what load_model gets in the runner
    dreams.LAYOUT = layout
    dreams.PROCESSES, dreams.THREADS = _processes(config, runner.default_device())


def _processes(config: pytest.Config, device: str) -> tuple[int, int]:
    """How many processes dream the quality tests' dreams at once, and each one's threads."""
    cores = len(os.sched_getaffinity(0))
    asked = config.getoption("processes")
    if asked < 0:
        raise pytest.UsageError("--processes takes a count of 1 or more (0: automatic)")
    if device != "cpu" or (not asked and config.getoption("threads")):
        return 1, 0  # in this process, as --threads (or torch) has it
    n = asked or min(cores, 4)
    return n, config.getoption("threads") or max(1, cores // n)


def pytest_sessionfinish() -> None:
    import dreams

    dreams.close()


def pytest_report_header() -> str:
    """Say where the dreams of this run happen: on a GPU machine the tests must run on CUDA."""
    import dreams
    import torch

    from dreamcore import runner
    from dreamcore.precision import precision_name, resolve_precision

    dev = runner.default_device()
    name = f" ({torch.cuda.get_device_name()})" if dev == "cuda" else ""
    layout = runner.default_layout(dev)  # what the runner loads with (--layout included)
    # The presets' `auto` precision: bf16 on CPUs with AVX512-BF16 or AMX, fp32 elsewhere.
    precision = precision_name(resolve_precision("auto", dev))
    threads, seeds = torch.get_num_threads(), len(dreams.SEEDS)
    where = f"{threads} threads"
    if dreams.PROCESSES > 1:
        where += f" (quality dreams: {dreams.PROCESSES} processes x {dreams.THREADS} thread)"
    return f"dream device: {dev}{name}, {precision}, layout {layout}, {where}, seeds 1-{seeds}"
