# ruff: noqa: F811  (the fixtures imported from test_bot_e2e are named as parameters)
"""End-to-end on the loopback Discord with the store on a real PostgreSQL server that stops
answering (`pgserver`'s pause: SIGSTOP), as a hung server or a network that drops everything
would: members are told so within the database's time limit, and dream again once it is back;
a dream delivered meanwhile has its end recorded once the database is back, and is not dreamed
or posted again after a restart.

Same set-up as test_bot_e2e.py (its fixtures and helpers, a real one-worker CPU pool of its own
for this module).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from fakediscord import FakeDiscord
from pgserver import PostgresServer
from test_bot_e2e import (  # noqa: F401  (fixtures are found by name)
    EPHEMERAL,
    RESULT_ID,
    Harness,
    _pool_idle,
    ask,
    button,
    dream_result,
    edited_to,
    eventually,
    fake,
    harness,
    pool,
    replies_to,
    upload_of,
    wait_callback,
    with_files,
)

from bot.client import DreamBot
from bot.store import Store

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

LIMIT_S = 1.0
NOT_ANSWERING = "database isn't answering"


async def _start(harness: Harness, server: PostgresServer, url: str | None = None) -> DreamBot:
    url = url or await server.new_database()
    bot = await harness.start(database_url=url, database_timeout_s=LIMIT_S)
    # The look for dreams a previous run left is done before the database stops answering.
    await eventually(lambda: bot._resumer is not None and bot._resumer.done())
    return bot


async def _told_not_answering(
    fake: FakeDiscord, *, within_s: float, moderator: bool = False
) -> None:
    """`!dream`, `/dream` and `/presets` (and `/dream-config show`, as a moderator) each get the
    polite database reply, the private ones ephemeral; `!dream`'s within `within_s`."""
    began = time.monotonic()
    asked = await ask(fake, "!dream dogs")
    answer = await eventually(lambda: replies_to(fake, asked), timeout=LIMIT_S + 4)
    took = time.monotonic() - began
    assert NOT_ANSWERING in answer[0]["content"], answer
    assert took < within_s, f"answered in {took:.2f} s"
    commands = [
        ("dream", {"image": fake.attachment(b"x" * 10, "p.png")}, None),
        ("presets", None, None),  # a hybrid command: its own error path
    ]
    if moderator:
        commands.append(("dream-config show", None, fake.moderator))  # an app command
    for name, options, user in commands:
        interaction = await fake.slash(name, options, user=user)
        reply = (await wait_callback(fake, interaction)).json["data"]
        assert NOT_ANSWERING in reply["content"] and reply["flags"] & EPHEMERAL, (name, reply)


async def test_members_are_told_the_database_is_not_answering_and_dream_again_once_it_is_back(
    fake: FakeDiscord, stoppable_postgres_server: PostgresServer, harness: Harness
) -> None:
    server = stoppable_postgres_server
    await _start(harness, server)
    server.pause()
    try:
        await _told_not_answering(fake, within_s=LIMIT_S + 1.0, moderator=True)
    finally:
        server.resume()
    asked = await ask(fake, "!dream dogs")
    assert upload_of(fake, await dream_result(fake, asked))


async def test_members_are_told_the_database_is_down_and_dream_again_once_it_is_back(
    fake: FakeDiscord,
    stoppable_postgres_server: PostgresServer,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL stopped (not hung): its connections are closed and new ones refused. Members
    got "Something went wrong on my side" and the log a bug's traceback for the driver's
    ConnectionRefusedError; now they are told the database isn't answering, at once, and dream
    again once the server is started again, without a restart of the bot."""
    server = stoppable_postgres_server
    await _start(harness, server)
    server.halt()
    try:  # at once, not at the limit as if the server hung
        await _told_not_answering(fake, within_s=LIMIT_S)
    finally:
        server.start_again()
    asked = await ask(fake, "!dream dogs")
    assert upload_of(fake, await dream_result(fake, asked))
    bugs = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bugs, bugs


async def test_a_dream_under_way_when_the_database_hangs_is_still_delivered(
    fake: FakeDiscord,
    stoppable_postgres_server: PostgresServer,  # set up first: it outlives the bots
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dream was accepted before the database stopped answering: its image still reaches
    the member, and the store's write at its end costs a warning within the limit, not a hung
    task or an error."""
    server = stoppable_postgres_server
    await _start(harness, server)
    try:
        await _delivered_while_the_database_hangs(fake, server, caplog)
    finally:
        server.resume()


async def _delivered_while_the_database_hangs(
    fake: FakeDiscord, server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> str:
    """A dream under way when the server stops answering: its image is posted, and the write
    of its end fails at the database's limit (the server is left paused). The dream's id."""
    asked = await ask(fake, "!dream dogs steps=40 octaves=2")

    def dreaming() -> Any:
        progress = replies_to(fake, asked)
        return progress and any("Dreaming" in text for text in edited_to(fake, progress[0]["id"]))

    await eventually(dreaming, what="the dream under way")
    server.pause()
    result = await dream_result(fake, asked)
    assert upload_of(fake, result)
    delivered = time.monotonic()
    found = RESULT_ID.fullmatch(button(result, "reroll"))
    assert found is not None
    dream_id = found[2]

    def missed() -> bool:
        return any(
            r.levelno == logging.WARNING
            and f"Could not record dream {dream_id} as done" in r.getMessage()
            for r in caplog.records
        )

    await eventually(missed, timeout=LIMIT_S + 4, what="the failed write of its end")
    assert time.monotonic() - delivered < LIMIT_S + 1.0  # within the limit, not hung
    return dream_id


async def _status(store: Store, dream_id: str) -> str:
    record = await store.dream(dream_id)
    assert record is not None
    return record.status


async def _images(fake: FakeDiscord, harness: Harness) -> int:
    """The images the bot has posted in the channel, once the pool is idle and a moment has
    passed (a dream posted again would show by then)."""
    await _pool_idle(harness.pool)
    await asyncio.sleep(0.5)
    bot_id = fake.bot_user["id"]
    return len([m for m in with_files(list(fake.messages.values())) if m["author"]["id"] == bot_id])


async def test_a_dream_end_the_database_missed_is_recorded_once_it_is_back_without_a_restart(
    fake: FakeDiscord,
    stoppable_postgres_server: PostgresServer,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The write of a delivered dream's end failed (the database hung): the row stayed queued,
    counting against the member's limits, and the next start dreamed and posted it again. Now
    the write is retried in the background: done within seconds of the database's return, and
    a restart after that neither dreams nor posts it again."""
    server = stoppable_postgres_server
    caplog.set_level(logging.INFO, logger="bot.service")
    url = await server.new_database()
    bot = await _start(harness, server, url)
    try:
        dream_id = await _delivered_while_the_database_hangs(fake, server, caplog)
        await asyncio.sleep(LIMIT_S)  # a try or two more fail meanwhile
    finally:
        server.resume()
    resumed = time.monotonic()
    deadline = resumed + 5.0
    while await _status(bot.store, dream_id) != "done":
        assert time.monotonic() < deadline, "the end of the dream was not recorded"
        await asyncio.sleep(0.1)
    assert any(f"Recorded dream {dream_id} as done, late" in r.getMessage() for r in caplog.records)

    bot = await harness.restart(database_url=url, database_timeout_s=LIMIT_S)
    await eventually(lambda: bot._resumer is not None and bot._resumer.done())
    assert await _images(fake, harness) == 1
    assert await _status(bot.store, dream_id) == "done"


async def test_a_dream_posted_by_a_run_that_stopped_before_recording_it_is_not_posted_again(
    fake: FakeDiscord,
    stoppable_postgres_server: PostgresServer,
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bot stops while the database still hangs: its last try at shutdown fails too, the
    log names the dream, and the row stays queued. The next start finds the dream's image in
    its channel and records it as done instead of dreaming and posting it again."""
    server = stoppable_postgres_server
    url = await server.new_database()
    bot = await _start(harness, server, url)
    try:
        dream_id = await _delivered_while_the_database_hangs(fake, server, caplog)
        began = time.monotonic()
        await harness.runner.stop(bot)
        assert time.monotonic() - began < 3 * LIMIT_S + 2, "the shutdown waited on the database"
        await harness.stores.pop().close()
    finally:
        server.resume()
    said = [r.getMessage() for r in caplog.records if "never recorded" in r.getMessage()]
    assert len(said) == 1 and f"{dream_id} (done)" in said[0], said
    async with Store.open(url) as store:
        assert await _status(store, dream_id) == "queued", "the write was not made after all"

    bot = await _start(harness, server, url)
    assert await _images(fake, harness) == 1
    assert await _status(bot.store, dream_id) == "done"
