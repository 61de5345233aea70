"""The Bot subclass: it receives its dependencies, and sets itself up in `setup_hook`.

Settings, the store, the dream pool and the HTTP session are made by the composition root
(`bot.__main__`) and handed in, so tests can build a bot around a temporary database and a small
pool. Extensions and the dynamic buttons are registered in `setup_hook`; slash commands are
synced only when asked (`--sync` or the owner's `sync` command), never on every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from .cogs import EXTENSIONS
from .database import DatabaseUnavailableError
from .errors import PoliteError, quoted
from .messages import polite_error
from .replies import ChannelReply
from .service import DreamService
from .settings import Settings
from .store import DreamRecord, Store
from .views import CancelButton, DreamActionButton

if TYPE_CHECKING:
    import aiohttp

    from dreamcore.pool import DreamPool

__all__ = ["DreamBot", "DreamTree", "ShardedDreamBot", "make_bot", "sync_app_commands"]

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0
_RESUME_RETRY_S = 30.0


class DreamTree(app_commands.CommandTree["DreamBot"]):
    """Slash-command failures end as one private sentence; only real bugs are logged."""

    async def on_error(
        self, interaction: discord.Interaction[DreamBot], error: app_commands.AppCommandError, /
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.MissingPermissions):
            text = "You need the **Manage Server** permission for this."
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = "This works in a server, not in DMs."
        elif isinstance(error, app_commands.CheckFailure):
            text = "You can't use this here."
        elif isinstance(original, PoliteError | DatabaseUnavailableError):
            text = polite_error(original)
        elif isinstance(error, app_commands.TransformerError):
            text = f"I couldn't read {quoted(error.value)} there."
        else:
            log.error("App command %r failed", interaction.command, exc_info=original)
            text = "Something went wrong on my side; please try again."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("Could not report an app command error: %s", exc)


class DreamBot(commands.Bot):
    """A DeepDream bot around a dream pool; see `bot.__main__` for how it is put together."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pool: DreamPool,
        session: aiohttp.ClientSession,
        sync_commands: bool = False,
        message_content: bool | None = None,
        **options: Any,
    ) -> None:
        intents = discord.Intents.default()
        intents.typing = False
        intents.dm_typing = False
        intents.message_content = (
            settings.message_content if message_content is None else message_content
        )
        super().__init__(
            command_prefix=commands.when_mentioned_or(settings.command_prefix),
            intents=intents,
            help_command=None,
            tree_cls=DreamTree,
            owner_ids=set(settings.owner_ids),
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False),
            case_insensitive=True,
            **options,
        )
        self.settings = settings
        self.store = store
        self.pool = pool
        self.session = session
        self.sync_commands = sync_commands
        self.dreams = DreamService(settings=settings, store=store, pool=pool, session=session)
        self._janitor: asyncio.Task[None] | None = None
        self._resumer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<DreamBot user={self.user!s} guilds={len(self.guilds)}>"

    async def setup_hook(self) -> None:
        if not self.intents.message_content:
            log.warning(
                "The Message Content intent is off: prefix commands only work as a mention "
                "(@%s dream dogs); /dream, the 'Dream this image' menu and buttons work as usual.",
                self.user.name if self.user else "bot",
            )
        self._resumer = asyncio.create_task(self._resume_dreams(), name="dreambot-resume")
        self.add_dynamic_items(DreamActionButton, CancelButton)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self._janitor = asyncio.create_task(self._prune_sources(), name="dreambot-janitor")
        if self.sync_commands:
            await sync_app_commands(self)

    async def on_ready(self) -> None:
        log.info("Ready as %s in %d servers", self.user, len(self.guilds))

    async def on_command_error(  # type: ignore[override]
        self, ctx: commands.Context[DreamBot], error: commands.CommandError, /
    ) -> None:
        """Prefix (and hybrid) failures: one sentence, or silence for what isn't ours."""
        original = _cause(error)
        if isinstance(error, commands.CommandNotFound | commands.NotOwner):
            return
        if isinstance(original, PoliteError | DatabaseUnavailableError):
            text = polite_error(original)
        elif isinstance(error, commands.NoPrivateMessage):
            text = "This works in a server, not in DMs."
        elif isinstance(error, commands.CheckFailure):
            return
        elif isinstance(error, commands.UserInputError) and ctx.command is not None:
            text = (
                f"Usage: `{ctx.clean_prefix}{ctx.command.qualified_name} {ctx.command.signature}`"
            )
        else:
            log.error("Command %r failed", ctx.command, exc_info=original)
            text = "Something went wrong on my side; please try again."
        try:
            await ctx.send(text, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("Could not report a command error: %s", exc)

    async def _resume_dreams(self) -> None:
        """Once connected, dream what the previous run left queued (or say it was dropped)."""
        await self.wait_until_ready()
        while True:
            try:
                records = await self.store.unfinished_dreams(adopt=self.settings.holds_guild)
                break
            except DatabaseUnavailableError as exc:  # hung or down: they wait, and so do we
                log.warning("Could not look for dreams a previous run left queued: %s", exc)
                await asyncio.sleep(_RESUME_RETRY_S)
        if records:
            log.info("Picking up %d dreams a previous run left queued", len(records))
        for record in records:
            try:
                await self.dreams.resume(record, self._reply_in_channel(record))
            except Exception:
                log.exception("Could not resume dream %s", record.id)

    def _reply_in_channel(self, record: DreamRecord) -> ChannelReply | None:
        channel = self.get_channel(record.channel_id) if record.channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            return None
        guild = getattr(channel, "guild", None)
        owner = guild.get_member(record.owner_id) if guild is not None else None
        return ChannelReply(
            channel,
            owner or self.get_user(record.owner_id) or discord.Object(record.owner_id),
            message_id=record.paused_message_id,
        )

    async def _prune_sources(self) -> None:
        """Forget input images past their retention, now and then."""
        while True:
            keep_s = self.settings.source_retention_h * 3600.0
            try:
                await self.store.prune_sources(time.time() - keep_s)
            except DatabaseUnavailableError as exc:
                log.warning("Could not prune old input images: %s", exc)
            except Exception:
                log.exception("Could not prune old input images")
            await asyncio.sleep(_PRUNE_EVERY_S)

    async def close(self) -> None:
        for task in (self._janitor, self._resumer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.dreams.close()
        await super().close()


class ShardedDreamBot(DreamBot, commands.AutoShardedBot):
    """The same bot on several gateway shards (discord.py's AutoShardedBot).

    Discord requires sharding past 2,500 servers. Each process holds `shard_ids` of
    `shard_count` shards; processes share the database and the dream workers (PostgreSQL, Ray),
    so limits and queues hold across them.
    """

    def __repr__(self) -> str:
        return f"<ShardedDreamBot shards={self.shard_ids} of {self.shard_count}>"


def _cause(error: BaseException) -> BaseException:
    """What a command really raised, under discord.py's wrappers (a hybrid command used as a
    slash command wraps it twice: HybridCommandError, then CommandInvokeError)."""
    while (original := getattr(error, "original", None)) is not None:
        error = original
    return error


def make_bot(settings: Settings, **options: Any) -> DreamBot:
    """A sharded bot when `DREAMBOT_SHARD_COUNT` is set, else a plain one on one connection."""
    if settings.shard_count is None:
        return DreamBot(settings=settings, **options)
    return ShardedDreamBot(
        settings=settings,
        shard_count=settings.shard_count,
        shard_ids=sorted(settings.shard_ids) or None,
        **options,
    )


async def sync_app_commands(bot: DreamBot) -> None:
    """Register the slash commands: to the configured guilds at once, or globally."""
    guilds = bot.settings.sync_guilds
    if guilds:
        for guild_id in guilds:
            guild = discord.Object(id=guild_id)
            bot.tree.copy_global_to(guild=guild)
            synced = await bot.tree.sync(guild=guild)
            log.info("Synced %d commands to guild %s", len(synced), guild_id)
    else:
        synced = await bot.tree.sync()
        log.info("Synced %d global commands (they may take a while to appear)", len(synced))
