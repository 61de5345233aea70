"""`!dream`, `/dream` and the "Dream this image" context menu: three doors to one service call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from ..errors import PoliteError
from ..parsing import parse_dream_args
from ..replies import InteractionReply, MessageReply
from ..service import DreamRequest
from ..sources import looks_like_image

if TYPE_CHECKING:
    from ..client import DreamBot

__all__ = ["DreamCog", "setup"]

_SEED_MAX = 2**53 - 1  # Discord's integer options stop here


class DreamCog(commands.Cog, name="Dream"):
    """Turns each way of asking for a dream into a `DreamRequest`."""

    def __init__(self, bot: DreamBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Dream this image", callback=self.dream_this)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @commands.command(name="dream", usage="[preset] [strength=2 steps=10 seed=7 size=768]")
    async def dream_prefix(self, ctx: commands.Context[DreamBot], *, args: str = "") -> None:
        """Dream on the attached (or replied-to, or latest) photo."""
        reply = MessageReply(ctx.message)
        try:
            parsed = parse_dream_args(args)
        except PoliteError as exc:
            await reply.error(exc.message)
            return
        await self.bot.dreams.start(
            DreamRequest(
                reply=reply, preset=parsed.preset, options=parsed.options, message=ctx.message
            )
        )

    @app_commands.command(name="dream", description="Dream on a photo")
    @app_commands.describe(
        image="the photo (default: the latest one in this channel)",
        preset="what grows out of it (see /presets)",
        strength="how hard to dream, 0.1-4",
        steps="steps per octave, 1-100",
        octaves="how many scales, 1-10",
        seed="the same seed and options give the same dream",
        size="largest side of the result in pixels, up to this server's cap",
    )
    async def dream_slash(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        preset: str | None = None,
        strength: app_commands.Range[float, 0.1, 4.0] | None = None,
        steps: app_commands.Range[int, 1, 100] | None = None,
        octaves: app_commands.Range[int, 1, 10] | None = None,
        seed: app_commands.Range[int, 0, _SEED_MAX] | None = None,
        size: app_commands.Range[int, 32] | None = None,  # the cap is per server: checked later
    ) -> None:
        options = {
            "strength": strength,
            "steps": steps,
            "octaves": octaves,
            "seed": seed,
            "max_size": size,
        }
        await self.bot.dreams.start(
            DreamRequest(
                reply=InteractionReply(interaction, ttl_s=self.bot.settings.interaction_ttl_s),
                preset=preset,
                options={k: v for k, v in options.items() if v is not None},
                attachment=image,
            )
        )

    @dream_slash.autocomplete("preset")
    async def _preset_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        catalog = await self.bot.dreams.catalog(interaction.guild_id)
        current = current.strip().lower()
        return [
            app_commands.Choice(name=f"{name} — {description}"[:100], value=name)
            for name, description in catalog.describe()
            if current in name
        ][:25]

    async def dream_this(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Context menu: its target is readable even without the Message Content intent."""
        reply = InteractionReply(interaction, ttl_s=self.bot.settings.interaction_ttl_s)
        attachment = next(
            (a for a in message.attachments if looks_like_image(a)),
            message.attachments[0] if message.attachments else None,
        )
        if attachment is None:
            await reply.error("That message has no image to dream on.")
            return
        await self.bot.dreams.start(
            DreamRequest(reply=reply, attachment=attachment, search_history=False)
        )


async def setup(bot: DreamBot) -> None:
    await bot.add_cog(DreamCog(bot))
