"""Pytest fixtures: a running :class:`FakeDiscord` that discord.py talks to, and a bot runner.

Enable with ``pytest_plugins = ["fakediscord.fixtures"]`` in ``tests/conftest.py``.

Teardown is strict: a test fails when the fake saw something Discord would refuse (an unknown
route, an invalid body, a late or second interaction acknowledgement...) or when anything
logged at ERROR or above (discord.py only logs exceptions raised in events, commands and views).
Expected ones are declared with ``fake_discord.expect_problem(regex)`` and
``fake_discord.expect_error_log(regex)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import discord
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
import yarl

from .server import FakeDiscord

__all__ = [
    "BotRunner",
    "ErrorLogCollector",
    "bot_runner",
    "fake_discord",
    "point_discord_at",
    "serving",
    "teardown_failures",
]

ClientT = TypeVar("ClientT", bound=discord.Client)


class ErrorLogCollector(logging.Handler):
    """Keeps every record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self, record: logging.LogRecord) -> str:
        """The record's message with its traceback, for failure reports."""
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return text


def point_discord_at(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route discord.py's REST and gateway to ``fake`` (undone by ``monkeypatch``)."""
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )


@contextlib.asynccontextmanager
async def serving(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord that discord.py talks to; fails the test on problems or errors."""
    fake = FakeDiscord(**options)
    collector = ErrorLogCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    await fake.start()
    point_discord_at(fake, monkeypatch)
    try:
        yield fake
    finally:
        await fake.stop()
        root.removeHandler(collector)
    failures = teardown_failures(fake, collector)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest_asyncio.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with a populated guild; fails the test on problems or errors."""
    async with serving(monkeypatch) as fake:
        yield fake


def teardown_failures(fake: FakeDiscord, collector: ErrorLogCollector) -> list[str]:
    """Why the test must fail: unexpected problems and unexpected ERROR records."""
    failures = [
        f"Discord would refuse: {text}"
        for text in fake.problems
        if not any(rx.search(text) for rx in fake.expected_problems)
    ]
    failures += [
        f"logged: {collector.describe(rec)}"
        for rec in collector.records
        if not any(rx.search(rec.getMessage()) for rx in fake.expected_error_logs)
    ]
    return failures


class BotRunner:
    """Starts clients the way the issue asks: ``login`` + ``connect()`` in a task."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._tasks: dict[int, tuple[discord.Client, asyncio.Task[None]]] = {}

    async def start(
        self,
        client: ClientT,
        *,
        reconnect: bool = True,
        wait_ready: bool = True,
        timeout: float = 15.0,
        guild_ready_timeout: float | None = None,
    ) -> ClientT:
        """Log in with the fake's token, connect in a task and (by default) wait for ready.

        ``guild_ready_timeout`` overrides the client's wait after the last GUILD_CREATE
        (default 2 s); better pass ``guild_ready_timeout=0.1`` to the client's constructor.
        """
        if guild_ready_timeout is not None:
            client._connection.guild_ready_timeout = guild_ready_timeout
        try:
            await client.login(self.fake.token)
        except BaseException:
            await client.close()
            raise
        task = asyncio.create_task(
            client.connect(reconnect=reconnect), name=f"connect-{type(client).__name__}"
        )
        self._tasks[id(client)] = (client, task)
        if wait_ready:
            await self.wait_ready(client, timeout=timeout)
        return client

    __call__ = start

    async def wait_ready(self, client: discord.Client, *, timeout: float = 15.0) -> None:
        """Until ``client`` is ready; raises the connect task's error if it ends first."""
        task = self.task(client)
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait({ready, task}, timeout=timeout, return_when="FIRST_COMPLETED")
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            if task in done:
                task.result()  # raises the connection error
                raise RuntimeError("client.connect() returned before the client was ready")
            raise TimeoutError(f"{client!r} not ready after {timeout}s")

    def task(self, client: discord.Client) -> asyncio.Task[None]:
        """The task running ``client.connect()``."""
        return self._tasks[id(client)][1]

    async def stop(self, client: discord.Client) -> BaseException | None:
        """Close ``client`` and wait for its connect task; returns the task's error if any."""
        _, task = self._tasks.pop(id(client))
        await client.close()
        try:
            await asyncio.wait_for(task, timeout=10)
        except asyncio.CancelledError:
            return None
        except Exception as exc:
            return exc
        return None

    async def stop_all(self) -> list[BaseException]:
        """Stop every client still running (newest first)."""
        errors = []
        for client, _ in reversed(list(self._tasks.values())):
            exc = await self.stop(client)
            if exc is not None:
                errors.append(exc)
        return errors


@pytest_asyncio.fixture
async def bot_runner(fake_discord: FakeDiscord) -> AsyncIterator[BotRunner]:
    """Start bots with ``await bot_runner.start(bot)``; all are closed at teardown."""
    runner = BotRunner(fake_discord)
    try:
        yield runner
    finally:
        errors = await runner.stop_all()
    if errors:
        pytest.fail(f"a client's connect() failed: {errors!r}", pytrace=False)
