"""The service's pieces that need no Discord: progress throttling and the button actions."""

from __future__ import annotations

import asyncio
import itertools
import time

import discord
import pytest
from discord.utils import MISSING

from bot.errors import PoliteError
from bot.replies import Reply
from bot.service import _changed, _Reporter
from dreamcore.jobs import DreamOverrides, JobSpec


class RecordingReply(Reply):
    """A Reply that remembers when each progress text was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, str]] = []

    @property
    def filesize_limit(self) -> int:
        return 10 * 1024 * 1024

    async def ack(self) -> None:
        pass

    async def error(self, text: str) -> None:
        self.shown.append((time.monotonic(), text))

    async def progress(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        self.shown.append((time.monotonic(), text))

    async def result(self, **kwargs: object) -> None:  # type: ignore[override]
        raise AssertionError("not used")


async def test_progress_is_shown_at_once_then_edited_at_most_once_per_interval() -> None:
    reply = RecordingReply()
    reporter = _Reporter(reply, interval_s=0.2)
    await reporter.show("queued")
    for percent in range(50):
        reporter.update(f"{percent}%")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.25)
    await reporter.finish("done")

    texts = [text for _, text in reply.shown]
    assert texts[0] == "queued" and texts[-1] == "done"
    assert "49%" in texts, "the latest state is shown, not a stale one"
    times = [t for t, _ in reply.shown[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert len(texts) <= 5, texts


async def test_an_unchanged_text_is_not_edited_again() -> None:
    reply = RecordingReply()
    reporter = _Reporter(reply, interval_s=0.0)
    await reporter.show("queued")
    reporter.update("queued")
    await asyncio.sleep(0.05)
    reporter.stop()
    assert [text for _, text in reply.shown] == ["queued"]


def test_reroll_changes_only_the_seed() -> None:
    spec = JobSpec(preset="dogs", overrides=DreamOverrides(steps=3), seed=7)
    rerolled = _changed(spec, "reroll")
    assert rerolled.seed != 7
    assert rerolled.model_copy(update={"seed": 7}) == spec


def test_stronger_and_weaker_keep_the_seed_and_stay_in_range() -> None:
    spec = JobSpec(preset="dogs", seed=7)
    stronger = _changed(spec, "stronger")
    weaker = _changed(spec, "weaker")
    assert stronger.seed == weaker.seed == 7
    assert stronger.overrides.strength == 1.5 and weaker.overrides.strength == pytest.approx(0.667)
    top = JobSpec(preset="dogs", overrides=DreamOverrides(strength=3.5), seed=7)
    assert _changed(top, "stronger").overrides.strength == 4.0
    with pytest.raises(PoliteError, match="strongest"):
        _changed(_changed(top, "stronger"), "stronger")


def test_the_output_budget_stays_under_the_channels_upload_limit() -> None:
    from bot.service import DreamService
    from bot.settings import Settings

    settings = Settings(_env_file=None, discord_token="x", max_upload_bytes=25 * 1024 * 1024)  # type: ignore[call-arg]
    service = DreamService(settings=settings, store=None, pool=None, session=None)  # type: ignore[arg-type]
    reply = RecordingReply()
    assert service._budget(reply) < reply.filesize_limit
    assert service._budget(reply) > reply.filesize_limit - 64 * 1024
    small = Settings(_env_file=None, discord_token="x", max_upload_bytes=1024 * 1024)  # type: ignore[call-arg]
    capped = DreamService(settings=small, store=None, pool=None, session=None)  # type: ignore[arg-type]
    assert capped._budget(reply) < 1024 * 1024
