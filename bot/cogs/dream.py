"""`!dream`, `/dream` and the "Dream this image" context menu: three doors to one service call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from ..errors import PoliteError
from ..messages import ANCHOR_OPTION_HELP, COLOUR_OPTION_HELP, PLAIN_OPTION_HELP, like_text
from ..parsing import EXPLORE_OPTIONS, ZOOM_OPTIONS, parse_dream_args
from ..replies import InteractionReply, MessageReply
from ..service import DreamRequest
from ..sources import looks_like_image, replied_to

if TYPE_CHECKING:
    from ..client import DreamBot

__all__ = ["DreamCog", "setup"]

_SEED_MAX = 2**53 - 1  # Discord's integer options stop here
Kind = Literal["dream", "zoom", "explore", "like"]


class DreamCog(commands.Cog, name="Dream"):
    """Turns each way of asking for a dream into a `DreamRequest`."""

    def __init__(self, bot: DreamBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Dream this image", callback=self.dream_this)

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @commands.group(
        name="dream",
        usage="[preset] [strength=2 steps=10 seed=7 size=768 channel=blocks.4:7 colour=keep "
        "plain=0.2]",
        invoke_without_command=True,
    )
    async def dream_prefix(self, ctx: commands.Context[DreamBot], *, args: str = "") -> None:
        """Dream on the attached (or replied-to, or latest) photo."""
        await self._prefix(ctx, args, "dream")

    @dream_prefix.command(
        name="zoom", usage="[preset] [frames=24 zoom=1.04 rotate=0 format=mp4 between=0]"
    )
    async def zoom_prefix(self, ctx: commands.Context[DreamBot], *, args: str = "") -> None:
        """A dream-zoom video of the photo."""
        await self._prefix(ctx, args, "zoom", ZOOM_OPTIONS)

    @dream_prefix.command(name="explore", usage="[top=blocks.4] [seed=7 size=256]")
    async def explore_prefix(self, ctx: commands.Context[DreamBot], *, args: str = "") -> None:
        """The photo dreamed at each layer of the network, on one sheet."""
        await self._prefix(ctx, args, "explore", EXPLORE_OPTIONS)

    @dream_prefix.command(name="like", usage="[preset] [strength=2 ...] with two photos")
    async def like_prefix(self, ctx: commands.Context[DreamBot], *, args: str = "") -> None:
        """Grow the second photo's features into the first."""
        reply = MessageReply(ctx.message)
        photo, guide = await like_pair(ctx.message)
        if photo is None or guide is None:
            await reply.error(like_text(self.bot.settings.command_prefix))
            return
        await self._prefix(ctx, args, "like", photo=photo, guide=guide)

    async def _prefix(
        self,
        ctx: commands.Context[DreamBot],
        args: str,
        kind: Kind,
        extra: tuple[str, ...] = (),
        *,
        photo: discord.Attachment | None = None,
        guide: discord.Attachment | None = None,
    ) -> None:
        reply = MessageReply(ctx.message)
        try:
            parsed = parse_dream_args(args, extra)
        except PoliteError as exc:
            await reply.error(exc.message)
            return
        preset = parsed.preset
        if kind == "like" and preset is None:
            preset = "default"
        await self.bot.dreams.start(
            DreamRequest(
                reply=reply,
                preset=preset,
                options=parsed.options,
                message=None if photo else ctx.message,
                attachment=photo,
                search_history=photo is None,
                kind=kind,
                guide=guide,
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
        size="the side the dream works at, up to this server's cap; "
        "the result keeps the photo's size",
        guide="a second picture whose features grow into the photo",
        channel="amplify one feature channel, e.g. blocks.4:7",
        colour=COLOUR_OPTION_HELP,
        plain=PLAIN_OPTION_HELP,
        anchor=ANCHOR_OPTION_HELP,
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
        guide: discord.Attachment | None = None,
        channel: app_commands.Range[str, 1, 64] | None = None,
        colour: Literal["keep", "free"] | None = None,
        plain: app_commands.Range[float, 0.0, 1.0] | None = None,
        anchor: app_commands.Range[float, 0.0, 1.0] | None = None,
    ) -> None:
        options = {
            "strength": strength,
            "steps": steps,
            "octaves": octaves,
            "seed": seed,
            "max_size": size,
            "channel": channel,
            "colour": colour,
            "plain_step": plain,
            "anchor": anchor,
        }
        await self.bot.dreams.start(
            DreamRequest(
                reply=InteractionReply(interaction, ttl_s=self.bot.settings.interaction_ttl_s),
                preset=preset,
                options={k: v for k, v in options.items() if v is not None},
                attachment=image,
                kind="like" if guide is not None else "dream",
                guide=guide,
            )
        )

    @app_commands.command(name="dream-zoom", description="A video that falls into its own dream")
    @app_commands.describe(
        image="the photo (default: the latest one in this channel)",
        preset="what grows out of it (see /presets)",
        frames="how many frames (the server sets the most)",
        zoom="scale from one frame to the next, 1.0-1.5",
        rotate="degrees from one frame to the next",
        format="mp4 (plays inline), gif or webp",
        between="in-between frames per dreamed frame: a smoother, longer video, no extra dreaming",
        strength="how hard to dream, 0.1-4",
        seed="the same seed and options give the same zoom",
    )
    async def zoom_slash(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        preset: str | None = None,
        frames: app_commands.Range[int, 2, 600] | None = None,
        zoom: app_commands.Range[float, 1.0, 1.5] | None = None,
        rotate: app_commands.Range[float, -45.0, 45.0] | None = None,
        format: Literal["mp4", "gif", "webp"] | None = None,
        between: app_commands.Range[int, 0, 7] | None = None,
        strength: app_commands.Range[float, 0.1, 4.0] | None = None,
        seed: app_commands.Range[int, 0, _SEED_MAX] | None = None,
    ) -> None:
        options = {"frames": frames, "zoom": zoom, "rotate": rotate, "format": format,
                   "between": between, "strength": strength, "seed": seed}  # fmt: skip
        await self.bot.dreams.start(
            DreamRequest(
                reply=InteractionReply(interaction, ttl_s=self.bot.settings.interaction_ttl_s),
                preset=preset,
                options={k: v for k, v in options.items() if v is not None},
                attachment=image,
                kind="zoom",
            )
        )

    @app_commands.command(name="dream-explore", description="The photo dreamed at each layer")
    @app_commands.describe(
        image="the photo (default: the latest one in this channel)",
        top="also show this layer's strongest channels, e.g. blocks.4",
        seed="the same seed gives the same sheet",
    )
    async def explore_slash(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        top: app_commands.Range[str, 1, 64] | None = None,
        seed: app_commands.Range[int, 0, _SEED_MAX] | None = None,
    ) -> None:
        options = {"top": top, "seed": seed}
        await self.bot.dreams.start(
            DreamRequest(
                reply=InteractionReply(interaction, ttl_s=self.bot.settings.interaction_ttl_s),
                options={k: v for k, v in options.items() if v is not None},
                attachment=image,
                kind="explore",
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

    zoom_slash.autocomplete("preset")(_preset_choices)

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


async def like_pair(
    message: discord.Message,
) -> tuple[discord.Attachment | None, discord.Attachment | None]:
    """`!dream like`'s two pictures: two attached, or the replied-to photo and one attached."""
    images = [a for a in message.attachments if looks_like_image(a)]
    # With fewer than two images, the files as attached: the download check names the one that
    # is not an image, where "needs two pictures" would blame the member for attaching one.
    attached = images if len(images) >= 2 else message.attachments
    if len(attached) >= 2:
        return attached[0], attached[1]
    replied = await replied_to(message)
    photos = [a for a in replied.attachments if looks_like_image(a)] if replied else []
    if photos and len(attached) == 1:
        return photos[0], attached[0]
    return None, None


async def setup(bot: DreamBot) -> None:
    await bot.add_cog(DreamCog(bot))
