"""`dreamcore bench --explore`: an explorer sheet dreamed cell by cell against batched, one run.

The same sheet (the model's layers and the class presets, on the bench picture) is dreamed with
`batch=1` (each cell alone, as before batching) and with the explorer's batch cap, alternately,
so both see the same machine; the fastest of `repeats` of each counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .benchmark import bench_picture
from .explore import EXPLORE_BATCH, explore_cells
from .images import to_image
from .jobs import DreamOverrides, ExploreSpec
from .presets import resolve
from .runner import resolve_device

__all__ = ["ExploreBenchRow", "format_table", "run_explore_benchmark"]


@dataclass(frozen=True)
class ExploreBenchRow:
    size: int
    device: str
    cells: int
    batch: int
    alone_s: float
    batched_s: float
    speedup: float  # alone_s / batched_s

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _sheet(size: int, device: str, batch: int, steps: int | None) -> tuple[float, int]:
    """(seconds, cells dreamed) for one default sheet of the bench picture."""
    start = time.perf_counter()
    cells = explore_cells(
        to_image(bench_picture(size)),
        resolve("default", DreamOverrides(steps=steps)),
        ExploreSpec(),
        seed=1,
        side=size,
        device=device,
        batch=batch,
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, len(cells) - 1


def run_explore_benchmark(
    sizes: Sequence[int],
    *,
    device: str | None = None,
    batch: int = EXPLORE_BATCH,
    steps: int | None = None,
    repeats: int = 1,
) -> list[ExploreBenchRow]:
    """Per size: a warm-up sheet, then `repeats` x (alone, batched) interleaved; fastest counts."""
    dev = resolve_device(device)
    rows = []
    for size in sizes:
        _sheet(size, dev, batch, 1)  # warm-up: the model, the allocator, every shape once
        alone, batched = [], []
        for _ in range(repeats):
            alone.append(_sheet(size, dev, 1, steps))
            batched.append(_sheet(size, dev, batch, steps))
        a = min(r[0] for r in alone)
        b = min(r[0] for r in batched)
        rows.append(
            ExploreBenchRow(
                size=size,
                device=dev,
                cells=batched[0][1],
                batch=batch,
                alone_s=a,
                batched_s=b,
                speedup=a / b,
            )
        )
    return rows


def format_table(rows: Sequence[ExploreBenchRow]) -> str:
    lines = [
        "| size | device | cells | batch cap | alone (s) | batched (s) | speed-up |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.device} | {r.cells} | {r.batch} "
            f"| {r.alone_s:.2f} | {r.batched_s:.2f} | {r.speedup:.2f}x |"
        )
    return "\n".join(lines)
