"""How a dream talks back: one progress message it edits, then a reply with the image.

A prefix command answers with message replies; a slash command, context menu or button answers
through its interaction (deferred at once, the "thinking" message becomes the progress message,
the image comes as a followup). Interaction tokens die after 15 minutes, so past `ttl_s` the
interaction reply falls back to a normal message in the channel that mentions the user.
"""

from __future__ import annotations

import datetime
import logging
from abc import ABC, abstractmethod
from typing import Any

import discord
from discord.utils import MISSING

__all__ = ["ChannelReply", "InteractionReply", "MessageReply", "Reply"]

log = logging.getLogger(__name__)

_MENTION_USER = discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True)
_QUIET = discord.AllowedMentions(everyone=False, roles=False, users=False, replied_user=False)


class Reply(ABC):
    """Where one dream's messages go, whatever started it."""

    user: discord.abc.User
    channel: discord.abc.Messageable | None
    guild: discord.Guild | None
    _progress: discord.Message | discord.PartialMessage | None = None

    @property
    @abstractmethod
    def filesize_limit(self) -> int:
        """The largest file this channel takes (Discord's own number for the guild)."""

    @abstractmethod
    async def ack(self) -> None:
        """Tell Discord we heard it (interactions have 3 s); messages need nothing."""

    @abstractmethod
    async def error(self, text: str) -> None:
        """A polite failure, visible to the asker (privately where Discord allows)."""

    @abstractmethod
    async def progress(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        """Create the progress message, or edit it; `view=None` removes its buttons."""

    @abstractmethod
    async def result(
        self, *, embed: discord.Embed, file: discord.File, view: discord.ui.View
    ) -> discord.Message | None:
        """The dreamed image with its line and buttons."""

    @property
    def progress_id(self) -> int | None:
        """The progress message's id, once there is one: a dream saved at shutdown names it,
        and the next start continues in it (`ChannelReply(message_id=...)`)."""
        return self._progress.id if self._progress is not None else None


class MessageReply(Reply):
    """Replies to a chat message (prefix command or mention)."""

    def __init__(self, message: discord.Message) -> None:
        self.message = message
        self.user = message.author
        self.channel = message.channel
        self.guild = message.guild
        self._progress = None

    @property
    def filesize_limit(self) -> int:
        if self.guild is not None:
            return self.guild.filesize_limit
        return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def ack(self) -> None:
        """A message needs no acknowledgement: the progress reply is the answer."""

    def _reference(self) -> discord.MessageReference:
        return self.message.to_reference(fail_if_not_exists=False)

    async def error(self, text: str) -> None:
        if self._progress is not None:
            await self.progress(text, view=None)
            return
        await self.message.channel.send(text, reference=self._reference(), allowed_mentions=_QUIET)

    async def progress(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        if self._progress is None:
            self._progress = await self.message.channel.send(
                text,
                reference=self._reference(),
                allowed_mentions=_QUIET,
                view=view if view is not None else MISSING,
            )
        else:
            self._progress = await self._progress.edit(content=text, view=view)

    async def result(
        self, *, embed: discord.Embed, file: discord.File, view: discord.ui.View
    ) -> discord.Message | None:
        return await self.message.channel.send(
            embed=embed,
            file=file,
            view=view,
            reference=self._reference(),
            allowed_mentions=_MENTION_USER,
        )


class InteractionReply(Reply):
    """Replies through an interaction while its token lives, then through the channel."""

    def __init__(self, interaction: discord.Interaction, *, ttl_s: float) -> None:
        self.interaction = interaction
        self.user = interaction.user
        self.channel = interaction.channel  # type: ignore[assignment]
        self.guild = interaction.guild
        self._deadline = interaction.created_at + datetime.timedelta(seconds=ttl_s)

    @property
    def filesize_limit(self) -> int:
        return self.interaction.filesize_limit

    def token_alive(self) -> bool:
        return discord.utils.utcnow() < self._deadline

    async def ack(self) -> None:
        if not self.interaction.response.is_done():
            await self.interaction.response.defer(thinking=True)

    async def error(self, text: str) -> None:
        response = self.interaction.response
        if not response.is_done():
            await response.send_message(text, ephemeral=True, allowed_mentions=_QUIET)
        elif self.token_alive():
            await self.interaction.edit_original_response(content=text, view=None)
        elif self.channel is not None:
            await self.channel.send(f"{self.user.mention} {text}", allowed_mentions=_MENTION_USER)

    async def progress(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        if not self.interaction.response.is_done():
            await self.ack()
        if self.token_alive():
            kwargs: dict[str, Any] = {"content": text}
            if view is not MISSING:
                kwargs["view"] = view
            self._progress = await self.interaction.edit_original_response(**kwargs)
        # Past the token's life the "thinking" message can no longer be edited: stay quiet and
        # let the result, sent to the channel, speak.

    async def result(
        self, *, embed: discord.Embed, file: discord.File, view: discord.ui.View
    ) -> discord.Message | None:
        if self.token_alive():
            return await self.interaction.followup.send(
                embed=embed, file=file, view=view, wait=True, allowed_mentions=_MENTION_USER
            )
        if self.channel is None:
            log.warning(
                "Interaction %s expired and has no channel to reply in", self.interaction.id
            )
            return None
        return await self.channel.send(
            f"{self.user.mention}, your dream is ready.",
            embed=embed,
            file=file,
            view=view,
            allowed_mentions=_MENTION_USER,
        )


class ChannelReply(Reply):
    """A dream picked up after a restart: its command is gone, so it speaks in the channel."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        user: discord.abc.User | discord.Object,
        *,
        message_id: int | None = None,
    ) -> None:
        """`user` may be a bare `discord.Object`: without the members intent, none is cached.

        `message_id`: the message that said the dream was saved at shutdown; its progress goes
        on in it (a new message if it is gone), so it does not keep saying the dream waits.
        """
        self.channel = channel
        self.user = user  # type: ignore[assignment]
        self.guild = getattr(channel, "guild", None)
        self._mention = f"<@{user.id}>"
        self._progress = _message(channel, message_id)

    @property
    def filesize_limit(self) -> int:
        if self.guild is not None:
            return self.guild.filesize_limit
        return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    async def ack(self) -> None:
        """Nobody is waiting on an acknowledgement."""

    async def error(self, text: str) -> None:
        if self._progress is not None:
            await self.progress(text, view=None)
            return
        await self.channel.send(f"{self._mention} {text}", allowed_mentions=_MENTION_USER)

    async def progress(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        if self._progress is not None:
            try:
                self._progress = await self._progress.edit(
                    content=f"{self._mention} {text}", view=view
                )
                return
            except discord.NotFound:  # the saved message was deleted: say it in a new one
                self._progress = None
        self._progress = await self.channel.send(
            f"{self._mention} {text}",
            allowed_mentions=_QUIET,
            view=view if view is not None else MISSING,
        )

    async def result(
        self, *, embed: discord.Embed, file: discord.File, view: discord.ui.View
    ) -> discord.Message | None:
        return await self.channel.send(
            f"{self._mention}, your dream is ready.",
            embed=embed,
            file=file,
            view=view,
            allowed_mentions=_MENTION_USER,
        )


def _message(
    channel: discord.abc.Messageable, message_id: int | None
) -> discord.PartialMessage | None:
    """A message of `channel` by its id, fetched by nobody: edits go straight to it."""
    get = getattr(channel, "get_partial_message", None)
    return get(message_id) if message_id is not None and get is not None else None
