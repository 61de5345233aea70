"""A tiny HTTP endpoint for container health checks: gateway ready, latency finite, pool alive,
database answering."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

import discord
from aiohttp import web

if TYPE_CHECKING:
    from dreamcore.pool import DreamPool

    from .client import DreamBot
    from .store import Store

__all__ = ["PING_TIMEOUT_S", "HealthServer", "HealthServerError", "health"]

log = logging.getLogger(__name__)

# How long the health check waits for the database's ping: under the 5 s that Docker's
# HEALTHCHECK client waits (Dockerfile), so a database that hangs makes the answer "unhealthy",
# never no answer. Not the store's own limit on each call (DREAMBOT_DATABASE_TIMEOUT_S).
PING_TIMEOUT_S = 2.0


class HealthServerError(OSError):
    """The health check cannot listen where the settings say (a port in use, a bad host)."""


def health(bot: DreamBot, pool: DreamPool, *, database: bool) -> tuple[bool, dict[str, Any]]:
    """(healthy, details): what Docker's HEALTHCHECK (and a person with curl) reads.

    `database`: whether the database answered (`HealthServer` asks it); every member's
    command needs it. A sharded bot reports each of its shards, and is healthy only while every one of
    them is connected with a finite latency.
    """
    latency = bot.latency
    gateway = bot.is_ready() and not bot.is_closed()
    details: dict[str, Any] = {
        "gateway": gateway,
        "latency_s": latency if math.isfinite(latency) else None,
        "pool": pool.ready,
        "workers": pool.stats().workers,
        "database": database,
    }
    shards_ok = True
    if isinstance(bot, discord.AutoShardedClient):
        details["shards"] = shards = _shards(bot)
        shards_ok = all(s["connected"] and s["latency_s"] is not None for s in shards.values())
    healthy = gateway and math.isfinite(latency) and pool.ready and shards_ok and database
    return healthy, details


def _shards(bot: discord.AutoShardedClient) -> dict[str, dict[str, Any]]:
    """Every shard this process should hold, connected or not."""
    expected = bot.shard_ids or range(bot.shard_count or 0)
    report: dict[str, dict[str, Any]] = {}
    for shard_id in expected:
        info = bot.get_shard(shard_id)
        latency = info.latency if info is not None else math.inf
        report[str(shard_id)] = {
            "connected": info is not None and not info.is_closed(),
            "latency_s": latency if math.isfinite(latency) else None,
        }
    return report


class HealthServer:
    """`GET /healthz` -> 200 or 503 with JSON details; started and stopped by the root.

    It listens before the dream workers start, so a port in use fails the start at once, and
    answers 503 (`"starting": true`) until `watch` gives it the bot to report on.
    """

    def __init__(self, *, host: str, port: int, ping_timeout_s: float = PING_TIMEOUT_S) -> None:
        self._host = host
        self._port = port
        self._ping_timeout_s = ping_timeout_s
        self._bot: DreamBot | None = None
        self._ping: asyncio.Task[None] | None = None
        self._database_down = False  # as last reported: the log says each change once
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def watch(self, bot: DreamBot) -> None:
        """Report on this bot (its pool and its store) from now on."""
        self._bot = bot

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise HealthServerError(
                f"The health check cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
                " (DREAMBOT_HEALTH_PORT, DREAMBOT_HEALTH_HOST; DREAMBOT_HEALTH_ENABLED=false "
                "turns it off)"
            ) from None
        address = self._runner.addresses[0]
        self.port = int(address[1])
        log.info("Health check on http://%s:%s/healthz", self._host, self.port)

    async def stop(self) -> None:
        if self._ping is not None:
            self._ping.cancel()  # a ping still out on a hung database: not waited for
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        bot = self._bot
        if bot is None:
            return web.json_response({"starting": True}, status=503)
        database = await self._database_answers(bot.store)
        ok, details = health(bot, bot.pool, database=database)
        return web.json_response(details, status=200 if ok else 503)

    async def _database_answers(self, store: Store) -> bool:
        """Whether a `SELECT 1` comes back within the time limit.

        One at a time, and not cancelled at its time limit: asyncpg's cancel of a query asks
        the server, so on a server that hangs the cancel hangs too. A ping past its time is
        left running (the database counts as not answering until it is back; the store's own
        limit ends it), and the next check waits on it. The log says when the database stops
        answering and when it is back, not at every check, and never shows its password.
        """
        if self._ping is None or self._ping.done():
            self._ping = asyncio.create_task(store.ping(), name="dreambot-health-ping")
            self._ping.add_done_callback(_retrieve)
        ping = self._ping
        done, _ = await asyncio.wait({ping}, timeout=self._ping_timeout_s)
        if not done:
            reason = f"no answer in {self._ping_timeout_s:g} s"
        elif ping.cancelled():
            reason = "cancelled"
        elif (error := ping.exception()) is not None:
            reason = store.scrubbed(f"{type(error).__name__}: {error}".rstrip(": "))
        else:
            if self._database_down:
                self._database_down = False
                log.info("Health check: the database answers again")
            return True
        if not self._database_down:
            self._database_down = True
            log.warning("Health check: the database did not answer (%s)", reason)
        return False


def _retrieve(task: asyncio.Task[None]) -> None:
    """A ping that ends when nobody waits any more: its error is seen, not logged as lost."""
    if not task.cancelled():
        task.exception()
