# ruff: noqa: F811  (the fixtures imported from test_bot_e2e are named as parameters)
"""End-to-end on the loopback Discord with the store on a real PostgreSQL server that stops
answering (`pgserver`'s pause: SIGSTOP), as a hung server or a network that drops everything
would: members are told so within the database's time limit, and dream again once it is back.

Same set-up as test_bot_e2e.py (its fixtures and helpers, a real one-worker CPU pool of its own
for this module).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from fakediscord import FakeDiscord
from pgserver import PostgresServer
from test_bot_e2e import (  # noqa: F401  (fixtures are found by name)
    EPHEMERAL,
    Harness,
    ask,
    dream_result,
    edited_to,
    eventually,
    fake,
    harness,
    pool,
    replies_to,
    upload_of,
    wait_callback,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

LIMIT_S = 1.0
NOT_ANSWERING = "database isn't answering"


async def _start(harness: Harness, server: PostgresServer) -> None:
    bot = await harness.start(database_url=await server.new_database(), database_timeout_s=LIMIT_S)
    # The look for dreams a previous run left is done before the database stops answering.
    await eventually(lambda: bot._resumer is not None and bot._resumer.done())


async def test_members_are_told_the_database_is_not_answering_and_dream_again_once_it_is_back(
    fake: FakeDiscord, harness: Harness, stoppable_postgres_server: PostgresServer
) -> None:
    server = stoppable_postgres_server
    await _start(harness, server)
    server.pause()
    try:
        began = time.monotonic()
        asked = await ask(fake, "!dream dogs")
        answer = await eventually(lambda: replies_to(fake, asked), timeout=LIMIT_S + 4)
        took = time.monotonic() - began
        assert NOT_ANSWERING in answer[0]["content"], answer
        assert took < LIMIT_S + 1.0, f"answered in {took:.2f} s"

        slash = await fake.slash("dream", {"image": fake.attachment(b"x" * 10, "p.png")})
        reply = (await wait_callback(fake, slash)).json["data"]
        assert NOT_ANSWERING in reply["content"] and reply["flags"] & EPHEMERAL, reply

        listed = await fake.slash("presets")  # a hybrid command: its own error path
        reply = (await wait_callback(fake, listed)).json["data"]
        assert NOT_ANSWERING in reply["content"] and reply["flags"] & EPHEMERAL, reply

        shown = await fake.slash("dream-config show", user=fake.moderator)  # an app command
        reply = (await wait_callback(fake, shown)).json["data"]
        assert NOT_ANSWERING in reply["content"] and reply["flags"] & EPHEMERAL, reply
    finally:
        server.resume()
    asked = await ask(fake, "!dream dogs")
    assert upload_of(fake, await dream_result(fake, asked))


async def test_a_dream_under_way_when_the_database_hangs_is_still_delivered(
    fake: FakeDiscord,
    harness: Harness,
    stoppable_postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dream was accepted before the database stopped answering: its image still reaches
    the member, and the store's write at its end costs a warning within the limit, not a hung
    task or an error."""
    server = stoppable_postgres_server
    await _start(harness, server)
    asked = await ask(fake, "!dream dogs steps=40 octaves=2")

    def dreaming() -> Any:
        progress = replies_to(fake, asked)
        return progress and any("Dreaming" in text for text in edited_to(fake, progress[0]["id"]))

    await eventually(dreaming, what="the dream under way")
    server.pause()
    try:
        result = await dream_result(fake, asked)
        assert upload_of(fake, result)
        delivered = time.monotonic()

        def warned() -> bool:
            return any(
                r.levelno == logging.WARNING and "Could not record dream" in r.getMessage()
                for r in caplog.records
            )

        await eventually(warned, timeout=LIMIT_S + 4, what="the warning")
        assert time.monotonic() - delivered < LIMIT_S + 1.0
    finally:
        server.resume()
