"""The service's pieces that need no Discord: progress throttling, the button actions, and
giving a reservation back while the database (a real PostgreSQL server) does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import discord
import pytest
from discord.utils import MISSING
from pgserver import PostgresServer

from bot.errors import PoliteError
from bot.replies import Reply
from bot.service import DreamService, _changed, _Reporter
from bot.settings import Settings
from bot.store import DreamRecord, DreamStatus, LimitReached, Limits, Store
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


# --- a reservation given back while the database does not answer -------------------------------

LIMIT_S = 1.0
ONE_EACH = Limits(per_member=1)
ASKED = DreamRecord(
    id="0123456789ab",
    owner_id=7,
    guild_id=None,
    channel_id=None,
    label="dogs",
    spec=JobSpec(preset="dogs", seed=1),
)


@contextlib.asynccontextmanager
async def _service(url: str) -> AsyncIterator[tuple[DreamService, Store]]:
    async with Store.open(url, timeout_s=LIMIT_S) as store:
        settings = Settings(_env_file=None, discord_token="x", database_timeout_s=LIMIT_S)  # type: ignore[call-arg]
        service = DreamService(settings=settings, store=store, pool=None, session=None)  # type: ignore[arg-type]
        yield service, store


async def _status(store: Store, dream_id: str) -> DreamStatus:
    record = await store.dream(dream_id)
    assert record is not None
    return record.status


async def test_a_release_the_database_misses_is_written_once_it_is_back(
    stoppable_postgres_server: PostgresServer,
) -> None:
    """A dream cancelled (or failed before its submit) while the database hangs: the member is
    not kept waiting, and the reservation is given back within seconds of the database's
    return, so their one place is free again without a restart. The row keeps its true end."""
    server = stoppable_postgres_server
    async with _service(await server.new_database()) as (service, store):
        await store.reserve_dream(ASKED, ONE_EACH)
        server.pause()
        try:
            began = time.monotonic()
            await service.release(ASKED.id, "cancelled")
            assert time.monotonic() - began < LIMIT_S + 1.0
            await asyncio.sleep(2 * LIMIT_S)  # retried, still in vain
        finally:
            server.resume()
        resumed = time.time()
        async with asyncio.timeout(5.0):
            while await _status(store, ASKED.id) != "cancelled":
                await asyncio.sleep(0.1)
        assert service.unrecorded == {}
        record = await store.dream(ASKED.id)
        assert record is not None and record.finished_at is not None
        assert record.finished_at < resumed, "stamped when it ended, not when it was written"
        await store.reserve_dream(replace(ASKED, id="ba9876543210"), ONE_EACH)
        with pytest.raises(LimitReached):
            await store.reserve_dream(replace(ASKED, id="aaaaaaaaaaaa"), ONE_EACH)
        await service.close()


async def test_at_shutdown_a_release_still_missed_is_tried_once_more_and_named_in_the_log(
    stoppable_postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping while the database still hangs: one last try within its limit (not a hang),
    and the log names each dream whose end stays unrecorded. Once back, the database serves
    that last try when it answers in time."""
    server = stoppable_postgres_server
    caplog.set_level(logging.WARNING, logger="bot.service")
    async with _service(await server.new_database()) as (service, store):
        second = replace(ASKED, id="ba9876543210", owner_id=8)
        for record in (ASKED, second):
            await store.reserve_dream(record, ONE_EACH)
        server.pause()
        try:
            await service.release(ASKED.id, "failed")
            await service.release(second.id, "cancelled")
            began = time.monotonic()
            await asyncio.wait_for(service.close(), timeout=3 * LIMIT_S + 4)
            assert time.monotonic() - began < 2 * LIMIT_S + 1.0
        finally:
            server.resume()
        (said,) = [r.getMessage() for r in caplog.records if "never recorded" in r.getMessage()]
        assert f"{ASKED.id} (failed)" in said and f"{second.id} (cancelled)" in said, said
        assert await _status(store, ASKED.id) == "queued"
        assert service._recorder is None, "nothing is retried after the shutdown"
