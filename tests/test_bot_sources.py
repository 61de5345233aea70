"""Fetching photos safely: judged before download, then only from allowed hosts, capped, no redirects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from aiohttp import web

from bot.errors import PoliteError
from bot.health import health
from bot.sources import DownloadPolicy, check_attachment, download

BODY = b"\x89PNG" + b"x" * 5000


def attachment(url: str, **fields: Any) -> discord.Attachment:
    data = {
        "id": "1",
        "filename": "photo.png",
        "size": len(BODY),
        "url": url,
        "proxy_url": url,
        "width": 96,
        "height": 64,
        "content_type": "image/png",
        **fields,
    }
    return discord.Attachment(data=data, state=SimpleNamespace(http=None))  # type: ignore[arg-type]


def policy(**changes: Any) -> DownloadPolicy:
    values: dict[str, Any] = {
        "max_bytes": 10_000,
        "max_pixels": 1_000_000,
        "timeout_s": 2.0,
        "hosts": frozenset({"127.0.0.1"}),
        "schemes": frozenset({"http"}),
        **changes,
    }
    return DownloadPolicy(**values)


@pytest_asyncio.fixture
async def cdn() -> AsyncIterator[str]:
    """A tiny server: a photo, a redirect, a huge chunked body, a slow answer, a 404."""

    async def photo(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/photo.png")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"y" * 1024)
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/photo.png", photo)
    app.router.add_get("/redirect.png", redirect)
    app.router.add_get("/huge.png", huge)
    app.router.add_get("/slow.png", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_an_allowed_photo_is_downloaded(cdn: str, session: aiohttp.ClientSession) -> None:
    assert await download(session, attachment(f"{cdn}/photo.png"), policy()) == BODY


async def test_redirects_are_refused(cdn: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(PoliteError, match="HTTP 302"):
        await download(session, attachment(f"{cdn}/redirect.png"), policy())


async def test_a_body_past_the_cap_is_cut_off(cdn: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(PoliteError, match="larger than"):
        await download(session, attachment(f"{cdn}/huge.png", size=100), policy())


async def test_a_slow_download_times_out(cdn: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(PoliteError, match="took too long"):
        await download(session, attachment(f"{cdn}/slow.png"), policy(timeout_s=0.2))


async def test_a_missing_file_is_one_sentence(cdn: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(PoliteError, match="HTTP 404"):
        await download(session, attachment(f"{cdn}/gone.png"), policy())


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/photo.png",  # another host
        "https://127.0.0.1/photo.png",  # another scheme than allowed
        "file:///etc/passwd",
    ],
)
async def test_only_allowed_hosts_and_schemes(url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(PoliteError, match="uploaded to Discord"):
        await download(session, attachment(url), policy())


async def test_the_default_policy_wants_https_from_discords_cdn(
    session: aiohttp.ClientSession,
) -> None:
    strict = policy(
        hosts=frozenset({"cdn.discordapp.com", "media.discordapp.net"}),
        schemes=frozenset({"https"}),
    )
    with pytest.raises(PoliteError, match="uploaded to Discord"):
        await download(session, attachment("http://cdn.discordapp.com/a.png"), strict)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"size": 50_000}, "up to"),
        ({"content_type": "text/plain"}, "isn't an image"),
        ({"width": None, "height": None}, "can't read"),
        ({"width": 10_000, "height": 10_000}, "megapixels"),
    ],
)
def test_attachments_are_judged_before_download(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(PoliteError, match=message):
        check_attachment(attachment("http://127.0.0.1/x.png", **fields), policy())


def test_health_needs_gateway_latency_pool_and_database() -> None:
    def bot(ready: bool, latency: float) -> Any:
        return SimpleNamespace(latency=latency, is_ready=lambda: ready, is_closed=lambda: False)

    pool = SimpleNamespace(ready=True, stats=lambda: SimpleNamespace(workers=1))
    assert health(bot(True, 0.05), pool, database=True)[0]  # type: ignore[arg-type]
    assert not health(bot(False, 0.05), pool, database=True)[0]  # type: ignore[arg-type]
    assert not health(bot(True, float("inf")), pool, database=True)[0]  # type: ignore[arg-type]
    dead = SimpleNamespace(ready=False, stats=lambda: SimpleNamespace(workers=0))
    ok, details = health(bot(True, 0.05), dead, database=True)  # type: ignore[arg-type]
    assert not ok and details["pool"] is False
    ok, details = health(bot(True, 0.05), pool, database=False)  # type: ignore[arg-type]
    assert not ok and details["database"] is False
