"""Composition root: settings -> store -> pool -> bot. Run with `python -m bot` or `dreambot`.

`--sync` registers the slash commands with Discord on this start (to `DREAMBOT_SYNC_GUILDS` at
once, else globally); without it the bot never syncs by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import discord
from pydantic import ValidationError

from dreamcore.errors import PoolStartError
from dreamcore.pool import DreamPool, PoolConfig

from .client import DreamBot, make_bot
from .database import DatabaseUnavailableError, SchemaError
from .health import HealthServer, HealthServerError
from .settings import Settings
from .store import Store

__all__ = ["describe_settings_error", "main", "pool_config", "run"]

log = logging.getLogger("bot")


def pool_config(settings: Settings) -> PoolConfig:
    return PoolConfig(
        workers_per_device=settings.workers_per_device,
        devices=tuple(settings.devices) or None,
        cpu_workers=settings.cpu_workers,
        torch_threads=settings.torch_threads,
        models=tuple(settings.models),
        max_queue=settings.max_queue,
        max_per_owner=settings.max_jobs_per_user,
        job_timeout_s=settings.job_timeout_s,
        worker_memory_bytes=(
            int(settings.worker_memory_gib * 2**30) if settings.worker_memory_gib else None
        ),
        start_timeout_s=settings.pool_start_timeout_s,
        ray_address=settings.ray_address,
        precision=settings.precision,
        batch_max=settings.batch_max,
    )


def describe_settings_error(exc: ValidationError) -> str:
    """Which settings are wrong, named as environment variables; never their values."""
    lines = ["The bot's settings are incomplete or invalid:"]
    for error in exc.errors():
        if not error["loc"]:  # a rule between settings (shard ids and count): its own words
            lines.append(f"  {error['msg'].removeprefix('Value error, ')}")
            continue
        name = str(error["loc"][0])
        env = "DISCORD_TOKEN" if name.lower() == "discord_token" else f"DREAMBOT_{name.upper()}"
        if error["type"] == "missing":
            lines.append(f"  {env} is not set (see .env.example).")
        else:
            lines.append(f"  {env}: {error['msg']}")
    return "\n".join(lines)


async def run(settings: Settings, *, sync: bool = False) -> None:
    """Open everything, connect, and close it all in reverse order on the way out.

    The health check listens first: a port in use fails the start at once, not after the
    workers have loaded their models.
    """
    async with (
        _health_server(settings) as health,
        Store.open(
            settings.database_target(),
            runner=settings.runner,
            timeout_s=settings.database_timeout_s,
        ) as store,
        aiohttp.ClientSession() as session,
        DreamPool(pool_config(settings)) as pool,
    ):
        log.info("Settings, presets and limits are kept in %r", store)
        message_content = settings.message_content
        while True:
            bot = make_bot(
                settings,
                store=store,
                pool=pool,
                session=session,
                sync_commands=sync,
                message_content=message_content,
            )
            try:
                await _serve(bot, settings, health)
                return
            except discord.PrivilegedIntentsRequired:
                if not message_content:
                    raise
                log.warning(
                    "Discord refused the Message Content intent: it is not enabled for this "
                    "application in the Developer Portal. Going on without it. Enable it, or "
                    "set DREAMBOT_MESSAGE_CONTENT=false to skip this attempt."
                )
                message_content = False


def _health_server(
    settings: Settings,
) -> contextlib.AbstractAsyncContextManager[HealthServer | None]:
    if not settings.health_enabled:
        return contextlib.nullcontext(None)
    return HealthServer(host=settings.health_host, port=settings.health_port)


async def _serve(bot: DreamBot, settings: Settings, health: HealthServer | None) -> None:
    loop = asyncio.get_running_loop()
    async with bot:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
        try:
            if health is not None:
                health.watch(bot)
            await bot.start(settings.discord_token.get_secret_value())
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreambot", description="The DeepDream Discord bot.")
    parser.add_argument(
        "--sync", action="store_true", help="register the slash commands with Discord on start"
    )
    parser.add_argument("--env-file", type=Path, help="settings file (default: ./.env if any)")
    args = parser.parse_args(argv)
    if args.env_file is not None and not args.env_file.is_file():
        parser.error(f"--env-file: {args.env_file} is not a file")
    try:
        settings = Settings(_env_file=args.env_file or Path(".env"))  # type: ignore[call-arg]
    except ValidationError as exc:
        print(describe_settings_error(exc), file=sys.stderr)
        return 2
    discord.utils.setup_logging(level=logging.getLevelName(settings.log_level), root=True)
    try:
        asyncio.run(run(settings, sync=args.sync))
    except KeyboardInterrupt:
        pass
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN (Developer Portal -> Bot).")
        return 1
    except PoolStartError as exc:
        log.error("The dream workers could not start: %s", exc)
        return 1
    except DatabaseUnavailableError as exc:
        log.error(
            "The database cannot be opened: %s. Check DREAMBOT_DATABASE_URL (PostgreSQL) or "
            "DREAMBOT_DATABASE_PATH (the SQLite file).",
            exc,
        )
        return 1
    except (SchemaError, HealthServerError) as exc:
        log.error("%s", exc)
        return 1
    except (aiohttp.ClientError, OSError) as exc:
        log.error("Cannot reach Discord: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
