"""Buttons under dreams, as dynamic items: the custom id carries the dream and its owner.

Because the state is in the custom id (`dream:reroll:<dream id>:<owner id>`), the buttons keep
working after a restart: the bot registers the templates in `setup_hook` and rebuilds each item
from the id Discord sends back. Only the owner may press them; anyone else gets an ephemeral
refusal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import discord

if TYPE_CHECKING:
    from .client import DreamBot

__all__ = ["DREAM_ID", "CancelButton", "DreamAction", "DreamActionButton", "result_view",
           "running_view"]  # fmt: skip

DreamAction = Literal["reroll", "stronger", "weaker"]
DREAM_ID = r"[0-9a-f]{12}"

_ACTIONS: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.primary),
    "stronger": ("Stronger", "🔺", discord.ButtonStyle.secondary),
    "weaker": ("Weaker", "🔻", discord.ButtonStyle.secondary),
}


async def owner_only(interaction: discord.Interaction, owner_id: int) -> bool:
    """Let the owner through; tell anyone else, privately, why nothing happened."""
    if interaction.user.id == owner_id:
        return True
    await interaction.response.send_message(
        f"These buttons belong to <@{owner_id}>'s dream. Use `/dream` for one of your own.",
        ephemeral=True,
        allowed_mentions=discord.AllowedMentions.none(),
    )
    return False


def _bot(interaction: discord.Interaction) -> DreamBot:
    return cast("DreamBot", interaction.client)


class DreamActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"dream:(?P<action>reroll|stronger|weaker):(?P<dream>{DREAM_ID}):(?P<owner>[0-9]{{1,20}})",
):
    """Re-roll (new seed), Stronger or Weaker: dream the same input again, changed."""

    def __init__(self, action: DreamAction, dream_id: str, owner_id: int) -> None:
        label, emoji, style = _ACTIONS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                custom_id=f"dream:{action}:{dream_id}:{owner_id}",
            )
        )
        self.action: DreamAction = action
        self.dream_id = dream_id
        self.owner_id = owner_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(cast("DreamAction", match["action"]), match["dream"], int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await owner_only(interaction, self.owner_id)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _bot(interaction).dreams.act(interaction, self.dream_id, self.action)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"dream:cancel:(?P<dream>{DREAM_ID}):(?P<owner>[0-9]{{1,20}})",
):
    """Stop a queued or running dream."""

    def __init__(self, dream_id: str, owner_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel",
                emoji="✖️",
                style=discord.ButtonStyle.danger,
                custom_id=f"dream:cancel:{dream_id}:{owner_id}",
            )
        )
        self.dream_id = dream_id
        self.owner_id = owner_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(match["dream"], int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await owner_only(interaction, self.owner_id)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _bot(interaction).dreams.cancel(interaction, self.dream_id)


def result_view(dream_id: str, owner_id: int) -> discord.ui.View:
    """The buttons under a finished dream."""
    view = discord.ui.View(timeout=None)
    for action in ("reroll", "stronger", "weaker"):
        view.add_item(DreamActionButton(cast("DreamAction", action), dream_id, owner_id))
    return view


def running_view(dream_id: str, owner_id: int) -> discord.ui.View:
    """The button under a dream's progress message while it is queued or running."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(dream_id, owner_id))
    return view
