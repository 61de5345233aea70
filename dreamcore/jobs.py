"""The types that cross the process boundary: a job spec in, a result out, progress between.

Images travel as bytes; everything here pickles, so the pool can hand it to a worker process.
`JobSpec` is the one validated description of "what to dream" shared by the CLI, the pool and the
bot (a server's preset is a `JobSpec` too: a base preset plus overrides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import InvalidParameterError, UnknownPresetError

__all__ = [
    "DEFAULT_OUTPUT_BUDGET",
    "DreamOverrides",
    "ExploreSpec",
    "JobResult",
    "JobSpec",
    "Progress",
    "ZoomSpec",
    "parse_channel",
]

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
    precision: Literal["auto", "fp32", "bf16"] | None = None
    colour: Literal["keep", "free"] | None = None
    plain_step: float | None = Field(None, ge=0.0, le=1.0)
    anchor: float | None = Field(None, ge=0.0, le=1.0)
    channel: str | None = Field(
        None, max_length=64, description="LAYER:INDEX[,INDEX...] or INDEX[,...]: amplify channels"
    )

    @field_validator("channel")
    @classmethod
    def _channel_syntax(cls, text: str | None) -> str | None:
        if text is not None:
            parse_channel(text)
        return text


def parse_channel(text: str) -> tuple[str | None, tuple[int, ...]]:
    """`blocks.4:123` -> ("blocks.4", (123,)); `3,17` -> (None, (3, 17)): the preset's layer."""
    name, sep, numbers = text.strip().rpartition(":")
    try:
        index = tuple(int(n) for n in numbers.split(","))
    except ValueError:
        index = ()
    if (sep and not name.strip()) or not index or min(index) < 0 or len(index) > 16:
        raise InvalidParameterError(
            f"A channel pick looks like `blocks.4:123` or `blocks.4:3,17` (a layer, a colon, "
            f"up to 16 channel numbers from 0), not {text!r}."
        )
    return (name.strip() or None), tuple(dict.fromkeys(index))


MAX_VIDEO_FRAMES = 1200  # a zoom's frames, in-between ones included: 100 s at 12 fps


class ZoomSpec(BaseModel):
    """A dream zoom: dream, zoom in a little, dream again from the previous frame, and so on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frames: int = Field(48, ge=2, le=600)
    zoom: float = Field(1.04, ge=1.0, le=1.5, description="scale from one frame to the next")
    rotate: float = Field(0.0, ge=-45.0, le=45.0, description="degrees from one frame to the next")
    frame_steps: int = Field(4, ge=1, le=100, description="dream steps per frame after the first")
    fps: int = Field(12, ge=1, le=60)
    format: Literal["mp4", "gif", "webp"] = "mp4"
    between: int = Field(
        0, ge=0, le=7, description="in-between frames per dreamed frame: the camera's move only"
    )

    @model_validator(mode="after")
    def _video_length(self) -> ZoomSpec:
        if self.video_frames > MAX_VIDEO_FRAMES:
            raise InvalidParameterError(
                f"A zoom of {self.frames} frames with {self.between} in-between frames each makes "
                f"{self.video_frames} frames; at most {MAX_VIDEO_FRAMES}."
            )
        return self

    @property
    def video_frames(self) -> int:
        """The frames of the video: the dreamed ones and the in-between ones."""
        return self.frames + (self.frames - 1) * self.between


class ExploreSpec(BaseModel):
    """A layer explorer sheet: the photo dreamed at each depth, each class preset, top channels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layers: tuple[str, ...] | None = Field(None, description="None: the model's explorer layers")
    presets: tuple[str, ...] | None = Field(None, description="None: the class presets")
    top_channels: str | None = Field(None, max_length=64, description="a layer: its top channels")
    channels: int = Field(4, ge=1, le=16, description="how many top channels to show")


class JobSpec(BaseModel):
    """What to dream: a preset by name, overrides, a seed and the encoded output's byte budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "default"
    overrides: DreamOverrides = DreamOverrides()
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    output_budget: int = Field(DEFAULT_OUTPUT_BUDGET, ge=64 * 1024)
    guide: bytes | None = Field(None, repr=False, description="guide image bytes (preset 'guide')")
    zoom: ZoomSpec | None = Field(None, description="make a dream-zoom video instead of a still")
    explore: ExploreSpec | None = Field(None, description="make a layer explorer sheet instead")

    @model_validator(mode="after")
    def _one_kind(self) -> JobSpec:
        if self.zoom is not None and self.explore is not None:
            raise InvalidParameterError("A job is a zoom or an explorer sheet, not both.")
        return self

    @property
    def kind(self) -> Literal["dream", "zoom", "explore"]:
        return "zoom" if self.zoom else "explore" if self.explore else "dream"

    @property
    def cost(self) -> int:
        """How many dreams this job counts as against limits and quotas."""
        if self.zoom is not None:
            return zoom_cost(self.zoom)
        return 1

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
    frame: int = 0  # zoom frames and explorer cells done, of `frames` (0 for a still)
    frames: int = 0


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
    # A pool worker's peak resident memory during this job above its idle size (Linux VmHWM,
    # reset at the job's start; elsewhere getrusage's lifetime mark, an upper bound); 0 outside.
    peak_memory_bytes: int = 0
    kind: str = "dream"  # "dream", "zoom" or "explore"
    frames: int = 1
    fps: float = 0.0

    @property
    def filename(self) -> str:
        suffix = "jpg" if self.format == "jpeg" else self.format
        return f"{self.kind}-{self.preset}-{self.seed}.{suffix}"


# A still of the default preset costs about 20 full-size steps: 10 steps on each of 5 octaves,
# each octave 1/1.96 the pixels of the next (sum 1.97). A zoom frame is `frame_steps` full-size steps.
STILL_STEPS = 20


def zoom_cost(zoom: ZoomSpec) -> int:
    """A zoom's price in dreams: the first frame is a still, then every 20 frame steps another."""
    return 1 + -(-(zoom.frames - 1) * zoom.frame_steps // STILL_STEPS)
