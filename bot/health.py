"""A tiny HTTP endpoint for container health checks: gateway ready, latency finite, pool alive."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import discord
from aiohttp import web

if TYPE_CHECKING:
    from dreamcore.pool import DreamPool

    from .client import DreamBot

__all__ = ["HealthServer", "HealthServerError", "health"]


class HealthServerError(OSError):
    """The health check cannot listen where the settings say (a port in use, a bad host)."""


def health(bot: DreamBot, pool: DreamPool) -> tuple[bool, dict[str, Any]]:
    """(healthy, details): what Docker's HEALTHCHECK (and a person with curl) reads.

    A sharded bot reports each of its shards, and is healthy only while every one of them is
    connected with a finite latency.
    """
    latency = bot.latency
    gateway = bot.is_ready() and not bot.is_closed()
    details: dict[str, Any] = {
        "gateway": gateway,
        "latency_s": latency if math.isfinite(latency) else None,
        "pool": pool.ready,
        "workers": pool.stats().workers,
    }
    shards_ok = True
    if isinstance(bot, discord.AutoShardedClient):
        details["shards"] = shards = _shards(bot)
        shards_ok = all(s["connected"] and s["latency_s"] is not None for s in shards.values())
    return gateway and math.isfinite(latency) and pool.ready and shards_ok, details


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
    """`GET /healthz` -> 200 or 503 with JSON details; started and stopped by the root."""

    def __init__(self, bot: DreamBot, pool: DreamPool, *, host: str, port: int) -> None:
        self._bot = bot
        self._pool = pool
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

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

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        ok, details = health(self._bot, self._pool)
        return web.json_response(details, status=200 if ok else 503)
