"""`help`, `presets`, `dream-info` for everyone, and the owner's explicit command `sync`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from discord.ext import commands

from ..messages import help_embed, info_text, presets_embed

if TYPE_CHECKING:
    from ..client import DreamBot

__all__ = ["GeneralCog", "setup"]

log = logging.getLogger(__name__)


class GeneralCog(commands.Cog, name="General"):
    """What the bot offers and where your dreams stand."""

    def __init__(self, bot: DreamBot) -> None:
        self.bot = bot

    @commands.hybrid_command(name="help", description="How to dream, with an example")
    async def help_command(self, ctx: commands.Context[DreamBot]) -> None:
        await ctx.send(embed=help_embed(self.bot.settings.command_prefix), ephemeral=True)

    @commands.hybrid_command(name="presets", description="The presets this server offers")
    async def presets(self, ctx: commands.Context[DreamBot]) -> None:
        catalog = await self.bot.dreams.catalog(ctx.guild.id if ctx.guild else None)
        embed = presets_embed(catalog.describe(), catalog.default, self.bot.settings.command_prefix)
        await ctx.send(embed=embed, ephemeral=True)

    @commands.hybrid_command(
        name="dream-info", description="The queue, your dreams and your remaining quota"
    )
    async def dream_info(self, ctx: commands.Context[DreamBot]) -> None:
        dreams = self.bot.dreams
        stats = self.bot.pool.stats()
        running, queued = dreams.mine(ctx.author.id)
        config = await dreams.guild_config(ctx.guild.id if ctx.guild else None)
        text = info_text(
            queued=stats.queued,
            running=stats.running,
            mine_running=running,
            mine_queued=queued,
            quota_left=await dreams.quota_left(ctx.author.id),
            cooldown_left_s=await dreams.cooldown_left(ctx.author.id, config),
        )
        await ctx.send(text, ephemeral=True)

    @commands.command(name="sync", hidden=True)
    @commands.is_owner()
    async def sync(
        self, ctx: commands.Context[DreamBot], where: Literal["global", "here", "clear"] = "global"
    ) -> None:
        """Register the slash commands with Discord: only on purpose, never on every start."""
        if where == "global":
            synced = await self.bot.tree.sync()
        elif ctx.guild is None:
            await ctx.send("`here` and `clear` work in a server.")
            return
        elif where == "here":
            self.bot.tree.copy_global_to(guild=ctx.guild)
            synced = await self.bot.tree.sync(guild=ctx.guild)
        else:
            self.bot.tree.clear_commands(guild=ctx.guild)
            synced = await self.bot.tree.sync(guild=ctx.guild)
        log.info("Synced %d commands (%s) at %s's request", len(synced), where, ctx.author.id)
        await ctx.send(f"Synced {len(synced)} commands ({where}).")


async def setup(bot: DreamBot) -> None:
    await bot.add_cog(GeneralCog(bot))
