"""The types that cross the process boundary: a job spec in, a result out, progress between.

Images travel as bytes; everything here pickles, so the pool can hand it to a worker process.
`JobSpec` is the one validated description of "what to dream" shared by the CLI, the pool and the
bot (a server's preset is a `JobSpec` too: a base preset plus overrides).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import UnknownPresetError

__all__ = ["DEFAULT_OUTPUT_BUDGET", "DreamOverrides", "JobResult", "JobSpec", "Progress"]

DEFAULT_OUTPUT_BUDGET = 10 * 1024 * 1024  # Discord's default upload limit


class DreamOverrides(BaseModel):
    """Per-call changes to a preset; None keeps the preset's value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strength: float | None = Field(None, ge=0.1, le=4.0)
    steps: int | None = Field(None, ge=1, le=100)
    octaves: int | None = Field(None, ge=1, le=10)
    octave_scale: float | None = Field(None, ge=1.1, le=2.0)
    step_size: float | None = Field(None, gt=0.0, le=0.1)
    jitter: int | None = Field(None, ge=0, le=256)
    layer: str | None = Field(None, min_length=1, max_length=64)
    model: str | None = Field(None, min_length=1, max_length=64)
    max_size: int | None = Field(None, ge=32, le=8192)
    tile_size: int | None = Field(None, ge=64, le=8192)


class JobSpec(BaseModel):
    """What to dream: a preset by name, overrides, a seed and the encoded output's byte budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "default"
    overrides: DreamOverrides = DreamOverrides()
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    output_budget: int = Field(DEFAULT_OUTPUT_BUDGET, ge=64 * 1024)
    guide: bytes | None = Field(None, repr=False, description="guide image bytes (preset 'guide')")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        from .presets import PRESETS, closest_preset

        name = name.strip().lower()
        if name not in PRESETS:
            raise UnknownPresetError(closest_preset(name))
        return name


@dataclass(frozen=True)
class Progress:
    """Where a running dream is: fraction of all steps done, current octave and step (1-based)."""

    fraction: float
    octave: int
    octaves: int
    step: int
    steps: int


@dataclass(frozen=True)
class JobResult:
    """An encoded dream and what made it."""

    image: bytes
    format: str  # "png", "jpeg" or "webp"
    width: int
    height: int
    preset: str
    model: str
    seed: int
    elapsed_s: float
    # A pool worker's peak resident memory above its idle size (getrusage's lifetime high-water
    # mark, so an upper bound for this job); 0 outside a worker.
    peak_memory_bytes: int = 0

    @property
    def filename(self) -> str:
        return f"dream-{self.preset}-{self.seed}.{'jpg' if self.format == 'jpeg' else self.format}"
