"""Memory per job: a 40-megapixel photo through a real pool worker, measured in the worker.

The worker reports `JobResult.peak_memory_bytes`: its resident high-water mark during the job
(VmHWM, reset as the job starts) less its idle size after loading the model. Before strips and uint8 composition this was 3.9 GiB
(RGB) and 4.4 GiB (alpha, WebP out); the goal is at most 1.5 GiB whatever the input mode.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from dreamcore.errors import ImageTooLargeError
from dreamcore.jobs import DreamOverrides, JobSpec
from dreamcore.pool import DreamPool, PoolConfig

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

WIDTH, HEIGHT = 8000, 5000
GOAL = int(1.5 * 2**30)


def forty_megapixels(mode: str) -> bytes:
    """An 8000x5000 PNG of smooth ramps (a few MB; decoded, 40 M pixels like any photo)."""
    ramp = np.add.outer(np.arange(HEIGHT) * 255 // HEIGHT, np.arange(WIDTH) * 255 // WIDTH) // 2
    ramp = ramp.astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(ramp.astype(np.uint16) * 257)
    else:
        channels = [ramp, ramp[::-1], 255 - ramp] + (
            [np.full_like(ramp, 200)] if mode == "RGBA" else []
        )
        image = Image.fromarray(np.stack(channels, axis=-1))
    assert image.mode == mode
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[DreamPool]:
    config = PoolConfig(
        devices=("cpu",), cpu_workers=1, torch_threads=1, job_timeout_s=300.0,
        worker_memory_bytes=GOAL,
    )  # fmt: skip
    async with DreamPool(config) as started:
        yield started


# Dreamed at 128 px with one step: what is measured is decoding, composing and encoding 40 MP.
SMALL_DREAM = DreamOverrides(max_size=128, octaves=1, steps=1)


@pytest.mark.parametrize(
    ("mode", "budget", "fmt"),
    [("RGB", 25 << 20, "png"), ("RGBA", 2 << 20, "webp"), ("I;16", 25 << 20, "png")],
)
async def test_a_forty_megapixel_job_peaks_under_1_5_gib_above_the_idle_worker(
    pool: DreamPool, mode: str, budget: int, fmt: str
) -> None:
    """Threshold 1.5 GiB. Measured on 2 CPU cores with run_job in a fresh process: RGB 0.63 GiB,
    RGBA 0.68, 16-bit grey 0.66 (before: 3.15 above idle for RGB); dreamed at the bot's default
    1024 px with `dogs`, RGB peaks at 1.31 GiB (the dream itself, not the 40 MP, dominates)."""
    # `cats` dreams plain ground too: the ramps are all plain, and a preset that calms plain
    # regions (edges, dogs, birds) leaves them nearly smooth, small enough as PNG to skip the
    # WebP fallback.
    spec = JobSpec(preset="cats", overrides=SMALL_DREAM, seed=1, output_budget=budget)
    job = await pool.submit(forty_megapixels(mode), spec)
    result = await job.result()
    assert result.format == fmt
    assert 0 < result.peak_memory_bytes <= GOAL, result.peak_memory_bytes / 2**30


async def test_a_job_whose_estimate_exceeds_the_worker_budget_is_refused_at_once(
    pool: DreamPool,
) -> None:
    """Dreaming all 40 MP at full size would need tens of GiB: refused before it is queued."""
    spec = JobSpec(preset="edges", overrides=DreamOverrides(max_size=8000), seed=1)
    with pytest.raises(ImageTooLargeError, match=r"GiB each dream may use here"):
        await pool.submit(forty_megapixels("RGB"), spec)
    assert pool.stats().queued == 0
