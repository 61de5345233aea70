"""`/preset add|edit|remove|list` and `/dream-config`: what moderators shape for their server.

`default_permissions` only hides the commands (Discord treats it as a hint server admins may
override), so every command here also passes `interaction_check`: the member's Manage Server
permission as Discord resolved it for this interaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from dreamcore.presets import PRESETS

from ..errors import PoliteError, quoted
from ..messages import ANCHOR_OPTION_HELP, COLOUR_OPTION_HELP, PLAIN_OPTION_HELP
from ..parsing import HIDDEN_PRESETS, validate_server_preset
from ..store import GuildConfig, ServerPreset

if TYPE_CHECKING:
    from ..client import DreamBot

__all__ = ["ModerationCog", "setup"]

log = logging.getLogger(__name__)

_MANAGE = discord.Permissions(manage_guild=True)


def _describe(preset: ServerPreset) -> str:
    changed = preset.spec.overrides.model_dump(exclude_none=True)
    options = " ".join(f"{k}={v}" for k, v in changed.items()) or "no changes"
    return f"**{preset.name}** = `{preset.spec.preset}` + {options} — {preset.description}"


class ModerationCog(commands.Cog, name="Moderation"):
    """Server presets and server settings, for members with Manage Server."""

    preset = app_commands.Group(
        name="preset",
        description="This server's own presets",
        guild_only=True,
        default_permissions=_MANAGE,
    )
    config = app_commands.Group(
        name="dream-config",
        description="Where and how this server dreams",
        guild_only=True,
        default_permissions=_MANAGE,
    )

    def __init__(self, bot: DreamBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:  # type: ignore[override]
        """The real check: the permissions Discord resolved for this member in this channel."""
        if interaction.guild is None:
            raise app_commands.NoPrivateMessage()
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    # --- /preset -----------------------------------------------------------------------------

    @preset.command(name="add", description="Add a preset: a built-in base plus changes")
    @app_commands.describe(
        name="the new preset's name",
        base="the built-in preset it starts from",
        description="shown in /presets",
        strength="0.1-4",
        steps="1-100",
        octaves="1-10",
        layer="a layer of the model, e.g. blocks.4",
        model="a model this bot offers",
        size="the side it dreams at in pixels, up to the server's cap "
        "(results keep the photo's size)",
        colour=COLOUR_OPTION_HELP,
        plain=PLAIN_OPTION_HELP,
        anchor=ANCHOR_OPTION_HELP,
    )
    async def preset_add(
        self,
        interaction: discord.Interaction,
        name: str,
        base: str,
        description: str = "",
        strength: app_commands.Range[float, 0.1, 4.0] | None = None,
        steps: app_commands.Range[int, 1, 100] | None = None,
        octaves: app_commands.Range[int, 1, 10] | None = None,
        layer: str | None = None,
        model: str | None = None,
        size: app_commands.Range[int, 32, 8192] | None = None,
        colour: Literal["keep", "free"] | None = None,
        plain: app_commands.Range[float, 0.0, 1.0] | None = None,
        anchor: app_commands.Range[float, 0.0, 1.0] | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        store = self.bot.store
        if await store.preset(guild_id, name.strip().lower()) is not None:
            raise PoliteError(f"{quoted(name)} exists already; use `/preset edit`.")
        options = _options(strength, steps, octaves, layer, model, size, colour, plain, anchor)
        self._check_model(model)
        preset = validate_server_preset(name, base, description, options)
        await store.put_preset(guild_id, preset, user_id=interaction.user.id)
        log.info("Guild %s: %s added preset %s", guild_id, interaction.user.id, preset.name)
        note = await self._size_note(guild_id, preset)
        await interaction.response.send_message(f"Added {_describe(preset)}{note}", ephemeral=True)

    @preset.command(name="edit", description="Change a preset of this server")
    async def preset_edit(
        self,
        interaction: discord.Interaction,
        name: str,
        base: str | None = None,
        description: str | None = None,
        strength: app_commands.Range[float, 0.1, 4.0] | None = None,
        steps: app_commands.Range[int, 1, 100] | None = None,
        octaves: app_commands.Range[int, 1, 10] | None = None,
        layer: str | None = None,
        model: str | None = None,
        size: app_commands.Range[int, 32, 8192] | None = None,
        colour: Literal["keep", "free"] | None = None,
        plain: app_commands.Range[float, 0.0, 1.0] | None = None,
        anchor: app_commands.Range[float, 0.0, 1.0] | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        store = self.bot.store
        old = await store.preset(guild_id, name.strip().lower())
        if old is None:
            raise PoliteError(f"This server has no preset {quoted(name)}; see `/preset list`.")
        self._check_model(model)
        options = {
            **old.spec.overrides.model_dump(exclude_none=True),
            **_options(strength, steps, octaves, layer, model, size, colour, plain, anchor),
        }
        preset = validate_server_preset(
            old.name,
            base or old.spec.preset,
            description if description is not None else old.description,
            options,
        )
        await store.put_preset(guild_id, preset, user_id=interaction.user.id)
        log.info("Guild %s: %s edited preset %s", guild_id, interaction.user.id, preset.name)
        note = await self._size_note(guild_id, preset)
        await interaction.response.send_message(
            f"Changed {_describe(preset)}{note}", ephemeral=True
        )

    @preset.command(name="remove", description="Remove a preset of this server")
    async def preset_remove(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = _guild_id(interaction)
        name = name.strip().lower()
        was_default = (await self.bot.store.guild_config(guild_id)).default_preset == name
        if not await self.bot.store.remove_preset(guild_id, name):
            raise PoliteError(f"This server has no preset {quoted(name)}.")
        log.info("Guild %s: %s removed preset %s", guild_id, interaction.user.id, name)
        text = f"Removed `{name}`."
        if was_default:
            default = (await self.bot.dreams.catalog(guild_id)).default
            text += f" It was the default preset; the default is now `{default}`."
        await interaction.response.send_message(text, ephemeral=True)

    @preset.command(name="list", description="This server's presets and what they change")
    async def preset_list(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        presets = await self.bot.store.presets(guild_id)
        config = await self.bot.store.guild_config(guild_id)
        lines = [_describe(p) for p in presets] or ["No server presets yet: `/preset add`."]
        if config.disabled_presets:
            lines.append(f"Disabled: {', '.join(sorted(config.disabled_presets))}")
        await interaction.response.send_message("\n".join(lines)[:1900], ephemeral=True)

    @preset_edit.autocomplete("name")
    @preset_remove.autocomplete("name")
    async def _server_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        presets = await self.bot.store.presets(interaction.guild_id)
        return [
            app_commands.Choice(name=p.name, value=p.name)
            for p in presets
            if current.lower() in p.name
        ][:25]

    @preset_add.autocomplete("base")
    @preset_edit.autocomplete("base")
    async def _base_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = [*_builtin_names(), *HIDDEN_PRESETS]  # `guide` too: a base for `!dream like`
        return [app_commands.Choice(name=n, value=n) for n in names if current.lower() in n][:25]

    # --- /dream-config -----------------------------------------------------------------------

    @config.command(name="show", description="This server's dream settings")
    async def config_show(self, interaction: discord.Interaction) -> None:
        guild_id = _guild_id(interaction)
        await interaction.response.send_message(await self._summary(guild_id), ephemeral=True)

    @config.command(name="set", description="Default preset, largest side, cooldown, zoom frames")
    @app_commands.describe(
        default_preset="the preset used when none is named",
        max_image_side="largest side dreams work at, px; results keep the photo's size; "
        "the bot's cap applies",
        cooldown="seconds between two dreams of one member",
        zoom_frames="most frames of a zoom video (the bot's own cap still applies)",
    )
    async def config_set(
        self,
        interaction: discord.Interaction,
        default_preset: str | None = None,
        max_image_side: app_commands.Range[int, 64, 8192] | None = None,
        cooldown: app_commands.Range[float, 0.0, 3600.0] | None = None,
        zoom_frames: app_commands.Range[int, 2, 600] | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        changes: dict[str, object] = {}
        if default_preset is not None:
            catalog = await self.bot.dreams.catalog(guild_id)
            name = default_preset.strip().lower()
            if name not in catalog.names:
                raise catalog.unknown(name)
            changes["default_preset"] = name
        if max_image_side is not None:
            changes["max_image_side"] = min(max_image_side, self.bot.settings.max_image_side)
        if cooldown is not None:
            changes["cooldown_s"] = float(cooldown)
        if zoom_frames is not None:
            changes["max_zoom_frames"] = min(zoom_frames, self.bot.settings.max_zoom_frames)
        if not changes:
            raise PoliteError("Nothing to change: pick at least one option.")
        await self.bot.store.update_guild_config(guild_id, **changes)
        log.info("Guild %s: %s set %s", guild_id, interaction.user.id, changes)
        await interaction.response.send_message(await self._summary(guild_id), ephemeral=True)

    @config_set.autocomplete("default_preset")
    async def _offered_names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        catalog = await self.bot.dreams.catalog(interaction.guild_id)
        return [
            app_commands.Choice(name=n, value=n) for n in catalog.names if current.lower() in n
        ][:25]

    @config.command(name="channel", description="Allow or disallow dreams in a channel")
    @app_commands.describe(
        action="allow: dreams only in listed channels; disallow: never in this one; "
        "everywhere: every channel",
        channel="the channel (default: this one)",
    )
    async def config_channel(
        self,
        interaction: discord.Interaction,
        action: Literal["allow", "disallow", "everywhere"],
        channel: discord.TextChannel | None = None,
    ) -> None:
        guild_id = _guild_id(interaction)
        config = await self.bot.store.guild_config(guild_id)
        channel_id = channel.id if channel is not None else interaction.channel_id
        allowed, denied = set(config.allowed_channels), set(config.denied_channels)
        if action == "everywhere":
            allowed.clear()
            denied.clear()
        elif channel_id is None:
            raise PoliteError("Name a channel.")
        elif action == "allow":
            allowed.add(channel_id)
            denied.discard(channel_id)
        else:
            if allowed == {channel_id}:
                raise PoliteError(
                    f"<#{channel_id}> is the only channel where dreams happen. To move them, "
                    "`allow` the new channel first; `everywhere` opens every channel."
                )
            allowed.discard(channel_id)
            denied.add(channel_id)
        await self.bot.store.update_guild_config(
            guild_id, allowed_channels=frozenset(allowed), denied_channels=frozenset(denied)
        )
        await interaction.response.send_message(await self._summary(guild_id), ephemeral=True)

    @config.command(name="presets", description="Enable or disable a preset on this server")
    async def config_presets(
        self,
        interaction: discord.Interaction,
        action: Literal["enable", "disable"],
        name: str,
    ) -> None:
        guild_id = _guild_id(interaction)
        name = name.strip().lower()
        config = await self.bot.store.guild_config(guild_id)
        server = {p.name for p in await self.bot.store.presets(guild_id)}
        known = set(_builtin_names()) | server
        if name not in known:
            raise PoliteError(f"There is no preset {quoted(name)}; see `/presets`.")
        disabled = set(config.disabled_presets)
        if action == "disable":
            disabled.add(name)
        else:
            disabled.discard(name)
        if known <= disabled:
            raise PoliteError("At least one preset has to stay enabled.")
        await self.bot.store.update_guild_config(guild_id, disabled_presets=frozenset(disabled))
        await interaction.response.send_message(await self._summary(guild_id), ephemeral=True)

    async def _summary(self, guild_id: int) -> str:
        config = await self.bot.store.guild_config(guild_id)
        catalog = await self.bot.dreams.catalog(guild_id)
        settings = self.bot.settings
        channels = _channels(config)
        cooldown = config.cooldown_s if config.cooldown_s is not None else settings.cooldown_s
        disabled = ", ".join(sorted(config.disabled_presets)) or "none"
        frames = min(config.max_zoom_frames or settings.max_zoom_frames, settings.max_zoom_frames)
        return (
            f"**Dream settings**\nChannels: {channels}\nDefault preset: `{catalog.default}`\n"
            f"Largest side: {catalog.max_side} px\nCooldown: {cooldown:g} s\n"
            f"Zoom frames: at most {frames}\nDisabled presets: {disabled}"
        )

    async def _size_note(self, guild_id: int, preset: ServerPreset) -> str:
        """A word when the preset's size is above what this server dreams at (it is capped)."""
        size = preset.spec.overrides.max_size
        cap = (await self.bot.dreams.catalog(guild_id)).max_side
        if size is None or size <= cap:
            return ""
        return f"\nIts size ({size} px) is above this server's largest side; it dreams at {cap} px."

    def _check_model(self, model: str | None) -> None:
        if model is not None and model not in self.bot.settings.models:
            raise PoliteError(
                f"The model {quoted(model)} is not offered by this bot. "
                f"Models: {', '.join(self.bot.settings.models)}."
            )


def _guild_id(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise PoliteError("This works in a server.")
    return interaction.guild_id


def _options(
    strength: float | None,
    steps: int | None,
    octaves: int | None,
    layer: str | None,
    model: str | None,
    size: int | None,
    colour: Literal["keep", "free"] | None,
    plain: float | None,
    anchor: float | None,
) -> dict[str, object]:
    values = {
        "strength": strength,
        "steps": steps,
        "octaves": octaves,
        "layer": layer,
        "model": model,
        "max_size": size,
        "colour": colour,
        "plain_step": plain,
        "anchor": anchor,
    }
    return {k: v for k, v in values.items() if v is not None}


def _channels(config: GuildConfig) -> str:
    """Where dreams happen: the allowed list, or every channel but the denied ones."""
    if config.allowed_channels:
        return ", ".join(f"<#{c}>" for c in sorted(config.allowed_channels))
    if config.denied_channels:
        return "every channel but " + ", ".join(f"<#{c}>" for c in sorted(config.denied_channels))
    return "every channel"


def _builtin_names() -> list[str]:
    return [n for n in PRESETS if n not in HIDDEN_PRESETS]


async def setup(bot: DreamBot) -> None:
    await bot.add_cog(ModerationCog(bot))
