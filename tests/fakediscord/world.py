"""The fake Discord's state: users, guilds, roles, channels, members, messages, CDN files."""

from __future__ import annotations

import copy
import io
import mimetypes
import re
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import payloads as p

__all__ = ["ALL_PERMISSIONS", "GuildState", "InteractionRecord", "World"]

ALL_PERMISSIONS = p.ALL_PERMISSIONS
_MENTION = re.compile(r"<@!?(\d+)>")


@dataclass
class GuildState:
    """One guild; the payload dicts inside are what the fake serves."""

    id: str
    name: str
    owner_id: str
    premium_tier: int = 0
    attachment_size_limit: int = p.UPLOAD_LIMIT
    features: list[str] = field(default_factory=list)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def everyone(self) -> dict[str, Any]:
        """The ``@everyone`` role (its id is the guild's)."""
        return self.roles[self.id]

    def payload(self, *, members: Iterable[str] | None = None) -> dict[str, Any]:
        """A GUILD_CREATE payload; ``members`` limits the member list to these user ids."""
        chosen = [m for uid, m in self.members.items() if members is None or uid in set(members)]
        return p.guild(
            id=self.id,
            name=self.name,
            owner_id=self.owner_id,
            roles=list(self.roles.values()),
            channels=list(self.channels.values()),
            members=chosen,
            member_count=len(self.members),
            premium_tier=self.premium_tier,
            features=self.features,
        )


@dataclass
class InteractionRecord:
    """What the fake remembers about a dispatched interaction."""

    payload: dict[str, Any]
    dispatched_at: float
    response_type: int | None = None
    original_message_id: str | None = None
    loading: bool = False
    message_ids: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The interaction id."""
        return str(self.payload["id"])

    @property
    def token(self) -> str:
        """The interaction token (also the followup webhook token)."""
        return str(self.payload["token"])

    @property
    def channel_id(self) -> str:
        """The channel the interaction happened in."""
        return str(self.payload["channel_id"])

    @property
    def guild_id(self) -> str | None:
        """The guild, or None in DMs."""
        value = self.payload.get("guild_id")
        return None if value is None else str(value)

    @property
    def created_at(self) -> float:
        """UNIX time from the snowflake; the token lives 15 minutes from here."""
        return p.snowflake_time(self.id)


class World:
    """Users, guilds and messages; knows nothing about HTTP or websockets."""

    def __init__(self, *, base_url: str = "", bot_name: str = "DreamBot") -> None:
        self.base_url = base_url
        self.token = f"fake.{secrets.token_urlsafe(24)}"
        self.bot_user: dict[str, Any] = p.user(username=bot_name, bot=True)
        self.application_id: str = self.bot_user["id"]
        self.owner: dict[str, Any] = p.user(username="owner")
        self.application_flags = (1 << 13) | (1 << 15) | (1 << 19) | (1 << 23)
        self.users: dict[str, dict[str, Any]] = {}
        self.guilds: dict[str, GuildState] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[str]] = {}
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.interactions: dict[str, InteractionRecord] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[str, list[dict[str, Any]]] = {}
        self.reactions: list[tuple[str, str, str]] = []
        self.users[self.bot_user["id"]] = self.bot_user
        self.users[self.owner["id"]] = self.owner

    # building ------------------------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False) -> dict[str, Any]:
        """A new user known to the fake (not yet a member of any guild)."""
        payload = p.user(username=username, bot=bot)
        self.users[payload["id"]] = payload
        return payload

    def add_guild(
        self,
        name: str = "Dream Guild",
        *,
        owner: Mapping[str, Any] | None = None,
        premium_tier: int = 0,
        attachment_size_limit: int = p.UPLOAD_LIMIT,
        bot_permissions: int = p.BOT_PERMISSIONS,
    ) -> GuildState:
        """A guild with ``@everyone``, the bot's managed role and the bot as a member.

        Call before the bot connects (or dispatch GUILD_CREATE yourself).
        """
        owner = owner or self.owner
        gid = str(p.snowflake())
        state = GuildState(
            id=gid,
            name=name,
            owner_id=str(owner["id"]),
            premium_tier=premium_tier,
            attachment_size_limit=attachment_size_limit,
        )
        state.roles[gid] = p.role(
            id=gid, name="@everyone", permissions=p.DEFAULT_PERMISSIONS, position=0
        )
        self.guilds[gid] = state
        bot_role = self.add_role(
            state,
            self.bot_user["username"],
            permissions=bot_permissions,
            managed=True,
            tags={"bot_id": self.bot_user["id"]},
        )
        self.add_member(state, self.bot_user, roles=[bot_role])
        if str(owner["id"]) not in state.members:
            self.users.setdefault(str(owner["id"]), dict(owner))
            self.add_member(state, owner)
        return state

    def add_role(
        self,
        guild: GuildState,
        name: str,
        *,
        permissions: int = 0,
        managed: bool = False,
        tags: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A role in ``guild`` placed above the existing ones."""
        payload = p.role(
            name=name,
            permissions=permissions,
            position=len(guild.roles),
            managed=managed,
            tags=tags,
        )
        guild.roles[payload["id"]] = payload
        return payload

    def add_channel(
        self,
        guild: GuildState,
        name: str = "general",
        *,
        type: int = 0,
        permission_overwrites: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A channel in ``guild`` (type 0 text by default)."""
        payload = p.channel(
            guild_id=guild.id,
            name=name,
            type=type,
            position=len(guild.channels),
            permission_overwrites=list(permission_overwrites),
        )
        guild.channels[payload["id"]] = payload
        self.channels[payload["id"]] = payload
        self.history[payload["id"]] = []
        return payload

    def add_member(
        self,
        guild: GuildState,
        user: Mapping[str, Any],
        *,
        roles: Iterable[Mapping[str, Any] | int | str] = (),
        nick: str | None = None,
    ) -> dict[str, Any]:
        """Make ``user`` a member of ``guild`` with ``roles``."""
        self.users.setdefault(str(user["id"]), dict(user))
        payload = p.member(user, roles=roles, nick=nick)
        guild.members[str(user["id"])] = payload
        return payload

    def dm_channel(self, user: Mapping[str, Any]) -> dict[str, Any]:
        """The DM channel between the bot and ``user`` (created on first use)."""
        for payload in self.channels.values():
            if payload.get("type") == 1 and payload["recipients"][0]["id"] == str(user["id"]):
                return payload
        payload = p.dm_channel(user)
        self.channels[payload["id"]] = payload
        self.history[payload["id"]] = []
        return payload

    # lookups -------------------------------------------------------------------------------

    def guild_of(self, channel_id: str) -> GuildState | None:
        """The guild a channel belongs to (None for DMs and unknown channels)."""
        payload = self.channels.get(str(channel_id))
        if payload is None or "guild_id" not in payload:
            return None
        return self.guilds.get(payload["guild_id"])

    def member_of(self, guild: GuildState, user_id: str) -> dict[str, Any] | None:
        """A member payload (with ``user``) or None."""
        return guild.members.get(str(user_id))

    def permissions_for(
        self, guild: GuildState, user_id: str, channel_id: str | None = None
    ) -> int:
        """Discord's permission computation: roles, then channel overwrites."""
        user_id = str(user_id)
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        role_ids = [] if member is None else list(member["roles"])
        value = int(guild.everyone["permissions"])
        for rid in role_ids:
            if rid in guild.roles:
                value |= int(guild.roles[rid]["permissions"])
        if value & p.ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel_id is None or channel_id not in guild.channels:
            return value
        overwrites = guild.channels[channel_id].get("permission_overwrites", [])
        for ow in overwrites:
            if ow["id"] == guild.id:
                value = (value & ~int(ow["deny"])) | int(ow["allow"])
        allow = deny = 0
        for ow in overwrites:
            if ow["type"] == 0 and ow["id"] in role_ids:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        value = (value & ~deny) | allow
        for ow in overwrites:
            if ow["type"] == 1 and ow["id"] == user_id:
                value = (value & ~int(ow["deny"])) | int(ow["allow"])
        return value

    def upload_limit(self, channel_id: str) -> int:
        """The per-file upload limit in a channel."""
        guild = self.guild_of(channel_id)
        return p.UPLOAD_LIMIT if guild is None else guild.attachment_size_limit

    def mentions_in(self, content: str, guild: GuildState | None) -> list[dict[str, Any]]:
        """User objects (with ``member`` in a guild) for ``<@id>`` mentions of known users."""
        found: list[dict[str, Any]] = []
        for uid in dict.fromkeys(_MENTION.findall(content)):
            if uid not in self.users:
                continue
            mention = copy.deepcopy(self.users[uid])
            if guild is not None and uid in guild.members:
                partial = copy.deepcopy(guild.members[uid])
                partial.pop("user", None)
                mention["member"] = partial
            found.append(mention)
        return found

    # CDN -----------------------------------------------------------------------------------

    def add_attachment(
        self,
        data: bytes,
        filename: str = "image.png",
        *,
        channel_id: str | int = "0",
        content_type: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """An attachment payload whose ``url`` the fake's CDN serves with ``data``.

        ``size``, ``width``, ``height`` and ``content_type`` default to what the bytes are
        (Pillow sniffs images); pass them to lie like a hostile client could.
        """
        sniffed_type, dims = _sniff(data)
        if content_type is None:
            content_type = sniffed_type or mimetypes.guess_type(filename)[0]
        if width is None and height is None and dims is not None:
            width, height = dims
        aid = str(p.snowflake())
        path = f"/attachments/{channel_id}/{aid}/{filename}"
        self.blobs[path] = (data, content_type or "application/octet-stream")
        signature = f"?ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm={aid}&"
        return p.attachment(
            id=aid,
            filename=filename,
            size=len(data) if size is None else size,
            url=f"{self.base_url}{path}{signature}",
            proxy_url=f"{self.base_url}{path}{signature}",
            content_type=content_type,
            width=width,
            height=height,
            description=description,
        )

    # messages ------------------------------------------------------------------------------

    def store_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Remember a message (ephemeral ones stay out of the channel history)."""
        mid = str(payload["id"])
        self.messages[mid] = payload
        if not payload.get("flags", 0) & 64:
            history = self.history.setdefault(str(payload["channel_id"]), [])
            if mid not in history:
                history.append(mid)
        return payload

    def forget_message(self, message_id: str) -> dict[str, Any] | None:
        """Delete a message; returns it if it existed."""
        payload = self.messages.pop(str(message_id), None)
        if payload is not None:
            history = self.history.get(str(payload["channel_id"]), [])
            if str(message_id) in history:
                history.remove(str(message_id))
        return payload

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """A channel's messages, oldest first."""
        return [self.messages[m] for m in self.history.get(str(channel_id), [])]


def _sniff(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """MIME type and size of image bytes, or (None, None) if Pillow cannot read them."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a decompression bomb only warns on open
            with Image.open(io.BytesIO(data)) as img:
                return Image.MIME.get(img.format or ""), img.size
    except Exception:
        return None, None
