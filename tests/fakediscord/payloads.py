"""Builders for the JSON objects Discord sends, complete enough for discord.py 2.7 to parse.

Every builder returns a fresh plain ``dict`` (ids as strings, like Discord) so a test can tweak
it before dispatching. The keys are the ones discord.py reads with ``data[...]`` (a missing one
is a ``KeyError`` inside the library, logged and swallowed): for example a member needs
``flags`` and ``roles``, a user needs ``avatar`` and ``discriminator``, an interaction needs
``attachment_size_limit``, ``version``, ``token`` and ``application_id``.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "BOT_PERMISSIONS",
    "DEFAULT_PERMISSIONS",
    "DISCORD_EPOCH_MS",
    "EMBED_LINKS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "MANAGE_GUILD",
    "MANAGE_MESSAGES",
    "PRIVILEGED_INTENTS",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "UPLOAD_LIMIT",
    "USE_APPLICATION_COMMANDS",
    "VIEW_CHANNEL",
    "app_command",
    "application",
    "attachment",
    "autocomplete_interaction",
    "channel",
    "component_interaction",
    "custom_ids",
    "dm_channel",
    "guild",
    "interaction",
    "iso",
    "member",
    "message",
    "message_command_interaction",
    "modal_submit_interaction",
    "options_from",
    "role",
    "slash_interaction",
    "snowflake",
    "snowflake_time",
    "strip_message_content",
    "user",
    "user_command_interaction",
]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 53) - 1
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
ADD_REACTIONS = 1 << 6
DEFAULT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS
)
BOT_PERMISSIONS = DEFAULT_PERMISSIONS

# Gateway intents that Discord treats as privileged.
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

UPLOAD_LIMIT = 10 * 1024 * 1024
"""Discord's default per-file upload limit (``attachment_size_limit``)."""

_increment: Iterator[int] = itertools.count(1)
_lock = threading.Lock()


def snowflake(at: dt.datetime | float | None = None) -> int:
    """Return a new unique snowflake; ``at`` sets its timestamp (discord.py derives ``created_at``
    and ``Interaction.expires_at`` from it)."""
    if at is None:
        seconds = time.time()
    elif isinstance(at, dt.datetime):
        seconds = at.timestamp()
    else:
        seconds = float(at)
    with _lock:
        increment = next(_increment) & 0x3FFFFF
    return ((int(seconds * 1000) - DISCORD_EPOCH_MS) << 22) | increment


def snowflake_time(value: int | str) -> float:
    """The UNIX time (seconds) a snowflake was made at."""
    return ((int(value) >> 22) + DISCORD_EPOCH_MS) / 1000


def iso(when: dt.datetime | float | None = None) -> str:
    """An ISO 8601 timestamp the way Discord writes them."""
    if when is None:
        when = dt.datetime.now(dt.UTC)
    elif not isinstance(when, dt.datetime):
        when = dt.datetime.fromtimestamp(when, dt.UTC)
    return when.isoformat()


def _sid(value: int | str | None) -> str:
    return str(snowflake() if value is None else value)


def user(
    *,
    id: int | str | None = None,
    username: str = "user",
    bot: bool = False,
    global_name: str | None = None,
) -> dict[str, Any]:
    """A user object (``avatar`` and ``discriminator`` are required by discord.py)."""
    return {
        "id": _sid(id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "bot": bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "verified": True,
        "mfa_enabled": False,
        "locale": "en-US",
    }


def role(
    *,
    id: int | str | None = None,
    name: str = "role",
    permissions: int = 0,
    position: int = 1,
    managed: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A role; the ``@everyone`` role has the guild's id and position 0."""
    data: dict[str, Any] = {
        "id": _sid(id),
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "managed": managed,
        "mentionable": False,
        "flags": 0,
    }
    if tags is not None:
        data["tags"] = dict(tags)
    return data


def member(
    user_payload: Mapping[str, Any] | None,
    *,
    roles: Iterable[int | str | Mapping[str, Any]] = (),
    nick: str | None = None,
    joined_at: str | None = None,
    permissions: int | None = None,
    flags: int = 0,
) -> dict[str, Any]:
    """A guild member; ``user_payload`` None gives the partial member of MESSAGE_CREATE.

    ``permissions`` (the member's permissions in the channel) is present in interactions only.
    """
    data: dict[str, Any] = {
        "roles": [str(r["id"]) if isinstance(r, Mapping) else str(r) for r in roles],
        "nick": nick,
        "avatar": None,
        "banner": None,
        "joined_at": joined_at or iso(),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": flags,
        "communication_disabled_until": None,
    }
    if user_payload is not None:
        data["user"] = dict(user_payload)
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def channel(
    *,
    id: int | str | None = None,
    guild_id: int | str | None = None,
    name: str = "general",
    type: int = 0,
    position: int = 0,
    topic: str | None = None,
    nsfw: bool = False,
    parent_id: int | str | None = None,
    permission_overwrites: Sequence[Mapping[str, Any]] = (),
    rate_limit_per_user: int = 0,
) -> dict[str, Any]:
    """A guild channel (type 0 text, 2 voice, 4 category, 5 news, 11 public thread...)."""
    data: dict[str, Any] = {
        "id": _sid(id),
        "type": type,
        "name": name,
        "position": position,
        "topic": topic,
        "nsfw": nsfw,
        "parent_id": None if parent_id is None else str(parent_id),
        "permission_overwrites": [dict(o) for o in permission_overwrites],
        "rate_limit_per_user": rate_limit_per_user,
        "last_message_id": None,
        "flags": 0,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    return data


def dm_channel(recipient: Mapping[str, Any], *, id: int | str | None = None) -> dict[str, Any]:
    """A DM channel with one recipient."""
    return {
        "id": _sid(id),
        "type": 1,
        "last_message_id": None,
        "recipients": [dict(recipient)],
        "flags": 0,
    }


def guild(
    *,
    id: int | str | None = None,
    name: str = "Dream Guild",
    owner_id: int | str,
    roles: Sequence[Mapping[str, Any]] = (),
    channels: Sequence[Mapping[str, Any]] = (),
    members: Sequence[Mapping[str, Any]] = (),
    member_count: int | None = None,
    premium_tier: int = 0,
    features: Sequence[str] = (),
    preferred_locale: str = "en-US",
) -> dict[str, Any]:
    """A full GUILD_CREATE payload; an ``@everyone`` role is added when ``roles`` lacks one."""
    guild_id = _sid(id)
    role_list = [dict(r) for r in roles]
    if not any(r["id"] == guild_id for r in role_list):
        role_list.insert(
            0, role(id=guild_id, name="@everyone", permissions=DEFAULT_PERMISSIONS, position=0)
        )
    channel_list = []
    for c in channels:
        item = dict(c)
        item.pop("guild_id", None)  # GUILD_CREATE channels carry no guild_id
        channel_list.append(item)
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": premium_tier,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "preferred_locale": preferred_locale,
        "features": list(features),
        "roles": role_list,
        "emojis": [],
        "stickers": [],
        "channels": channel_list,
        "threads": [],
        "members": [dict(m) for m in members],
        "member_count": len(members) if member_count is None else member_count,
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": iso(),
        "max_members": 500000,
        "max_video_channel_users": 25,
        "incidents_data": None,
    }


def attachment(
    *,
    id: int | str | None = None,
    filename: str = "image.png",
    size: int = 0,
    url: str,
    proxy_url: str | None = None,
    content_type: str | None = None,
    width: int | None = None,
    height: int | None = None,
    description: str | None = None,
    ephemeral: bool = False,
) -> dict[str, Any]:
    """An attachment object; ``url`` should point at the fake's CDN route."""
    data: dict[str, Any] = {
        "id": _sid(id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": proxy_url or url,
        "flags": 0,
    }
    if content_type is not None:
        data["content_type"] = content_type
    if width is not None and height is not None:
        data["width"] = width
        data["height"] = height
    if description is not None:
        data["description"] = description
    if ephemeral:
        data["ephemeral"] = True
    return data


def message(
    *,
    id: int | str | None = None,
    channel_id: int | str,
    guild_id: int | str | None = None,
    author: Mapping[str, Any],
    member: Mapping[str, Any] | None = None,
    content: str = "",
    attachments: Sequence[Mapping[str, Any]] = (),
    embeds: Sequence[Mapping[str, Any]] = (),
    mentions: Sequence[Mapping[str, Any]] = (),
    mention_roles: Sequence[int | str] = (),
    components: Sequence[Mapping[str, Any]] = (),
    reference: Mapping[str, Any] | None = None,
    flags: int = 0,
    webhook_id: int | str | None = None,
    application_id: int | str | None = None,
    interaction_metadata: Mapping[str, Any] | None = None,
    timestamp: str | None = None,
    tts: bool = False,
) -> dict[str, Any]:
    """A message; ``reference`` (another message payload) makes it a reply (type 19).

    ``member`` is the partial member (no ``user`` key) sent with guild messages.
    """
    data: dict[str, Any] = {
        "id": _sid(id),
        "channel_id": str(channel_id),
        "author": dict(author),
        "content": content,
        "timestamp": timestamp or iso(),
        "edited_timestamp": None,
        "tts": tts,
        "mention_everyone": False,
        "mentions": [dict(m) for m in mentions],
        "mention_roles": [str(r) for r in mention_roles],
        "mention_channels": [],
        "attachments": [dict(a) for a in attachments],
        "embeds": [dict(e) for e in embeds],
        "reactions": [],
        "pinned": False,
        "type": 0,
        "flags": flags,
        "components": [dict(c) for c in components],
        "sticker_items": [],
        "nonce": None,
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
        if member is not None:
            partial = dict(member)
            partial.pop("user", None)
            partial.pop("permissions", None)
            data["member"] = partial
    if reference is not None:
        data["type"] = 19
        data["message_reference"] = {
            "type": 0,
            "message_id": str(reference["id"]),
            "channel_id": str(reference["channel_id"]),
            "fail_if_not_exists": False,
        }
        if "guild_id" in reference:
            data["message_reference"]["guild_id"] = str(reference["guild_id"])
        data["referenced_message"] = copy.deepcopy(dict(reference))
    if webhook_id is not None:
        data["webhook_id"] = str(webhook_id)
    if application_id is not None:
        data["application_id"] = str(application_id)
    if interaction_metadata is not None:
        data["interaction_metadata"] = dict(interaction_metadata)
    return data


def strip_message_content(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a bot without the Message Content intent receives for someone else's message."""
    stripped = copy.deepcopy(dict(data))
    stripped["content"] = ""
    stripped["embeds"] = []
    stripped["attachments"] = []
    stripped["components"] = []
    stripped.pop("poll", None)
    stripped["message_snapshots"] = []
    return stripped


def custom_ids(message_payload: Mapping[str, Any]) -> list[str]:
    """All ``custom_id`` values in a message's components, depth first."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if "custom_id" in node:
                found.append(str(node["custom_id"]))
            for key in ("components", "accessory", "component"):
                if key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(list(message_payload.get("components", [])))
    return found


def application(
    *,
    id: int | str,
    owner: Mapping[str, Any],
    name: str = "DreamBot",
    flags: int = 0,
    bot: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The application object of ``GET /oauth2/applications/@me`` (``owner`` drives is_owner)."""
    data: dict[str, Any] = {
        "id": str(id),
        "name": name,
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "owner": dict(owner),
        "team": None,
        "flags": flags,
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "approximate_guild_count": 1,
    }
    if bot is not None:
        data["bot"] = dict(bot)
    return data


def app_command(
    spec: Mapping[str, Any], *, application_id: int | str, guild_id: int | str | None = None
) -> dict[str, Any]:
    """Discord's answer for one registered command: the spec plus ids and defaults."""
    data = copy.deepcopy(dict(spec))
    data.setdefault("type", 1)
    data.setdefault("description", "")
    data.setdefault("options", [])
    data.setdefault("default_member_permissions", None)
    data.setdefault("nsfw", False)
    data["id"] = str(data.get("id") or snowflake())
    data["application_id"] = str(application_id)
    data["version"] = str(snowflake())
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    return data


# Interactions ------------------------------------------------------------------------------


def interaction(
    *,
    type: int,
    data: Mapping[str, Any] | None,
    application_id: int | str,
    channel_payload: Mapping[str, Any],
    user_payload: Mapping[str, Any],
    member_payload: Mapping[str, Any] | None = None,
    guild_id: int | str | None = None,
    message_payload: Mapping[str, Any] | None = None,
    app_permissions: int = BOT_PERMISSIONS,
    token: str | None = None,
    id: int | str | None = None,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    attachment_size_limit: int = UPLOAD_LIMIT,
    guild_features: Sequence[str] = (),
) -> dict[str, Any]:
    """An INTERACTION_CREATE payload: in a guild ``member_payload`` (with ``user`` and
    ``permissions``) stands for the user; in a DM pass ``guild_id=None``."""
    interaction_id = _sid(id)
    payload: dict[str, Any] = {
        "id": interaction_id,
        "application_id": str(application_id),
        "type": type,
        "token": token or f"itoken-{interaction_id}-{secrets.token_urlsafe(12)}",
        "version": 1,
        "channel_id": str(channel_payload["id"]),
        "channel": dict(channel_payload),
        "app_permissions": str(app_permissions),
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": attachment_size_limit,
    }
    if data is not None:
        payload["data"] = dict(data)
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
        payload["guild"] = {
            "id": str(guild_id),
            "locale": guild_locale,
            "features": list(guild_features),
        }
        payload["guild_locale"] = guild_locale
        payload["context"] = 0
        payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        if member_payload is None:
            member_payload = member(user_payload, permissions=DEFAULT_PERMISSIONS)
        full_member = dict(member_payload)
        full_member["user"] = dict(user_payload)
        full_member.setdefault("permissions", str(DEFAULT_PERMISSIONS))
        payload["member"] = full_member
    else:
        payload["context"] = 1 if channel_payload.get("type") == 1 else 2
        payload["authorizing_integration_owners"] = {"0": "0"}
        payload["user"] = dict(user_payload)
    if message_payload is not None:
        payload["message"] = copy.deepcopy(dict(message_payload))
    return payload


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, str):
        return 3
    if isinstance(value, Mapping):
        if "filename" in value and "url" in value:
            return 11
        if "username" in value:
            return 6
        if "permissions" in value and "position" in value and "type" not in value:
            return 8
        if "type" in value and "name" in value:
            return 7
    raise TypeError(f"cannot infer an option type for {value!r}; pass (type, value)")


def options_from(
    values: Mapping[str, Any], *, focused: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Options and ``resolved`` data from ``{"name": value}``.

    Values are inferred: str 3, int 4, bool 5, float 10, a user payload 6, a channel payload 7,
    a role payload 8, an attachment payload 11; ``(type, value)`` tuples set the type by hand.
    """
    options: list[dict[str, Any]] = []
    resolved: dict[str, Any] = {}
    for name, raw in values.items():
        if isinstance(raw, tuple):
            opt_type, value = raw
        else:
            opt_type, value = _option_type(raw), raw
        option: dict[str, Any] = {"name": name, "type": opt_type}
        if isinstance(value, Mapping):
            key = {6: "users", 7: "channels", 8: "roles", 11: "attachments"}.get(opt_type)
            if key is None:
                raise TypeError(f"option {name!r}: a mapping needs type 6, 7, 8 or 11")
            entry = copy.deepcopy(dict(value))
            if key == "channels":  # Discord adds the member's permissions in a resolved channel
                entry.setdefault("permissions", str(ALL_PERMISSIONS))
            resolved.setdefault(key, {})[str(value["id"])] = entry
            option["value"] = str(value["id"])
        else:
            option["value"] = value
        if focused == name:
            option["focused"] = True
        options.append(option)
    return options, resolved


def _command_data(
    name: str,
    options: Mapping[str, Any] | None,
    *,
    command_id: int | str | None,
    command_guild_id: int | str | None,
    focused: str | None = None,
) -> dict[str, Any]:
    parts = name.split()
    leaf_options, resolved = options_from(options or {}, focused=focused)
    # "preset add" -> subcommand; "a b c" -> group + subcommand.
    nested = leaf_options
    for sub in reversed(parts[1:]):
        kind = 1 if nested is leaf_options else 2
        nested = [{"name": sub, "type": kind, "options": nested}]
    data: dict[str, Any] = {
        "id": _sid(command_id),
        "name": parts[0],
        "type": 1,
        "options": nested,
    }
    if resolved:
        data["resolved"] = resolved
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    return data


def slash_interaction(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    command_id: int | str | None = None,
    command_guild_id: int | str | None = None,
    **base: Any,
) -> dict[str, Any]:
    """A chat-input command (type 2, data.type 1); a space in ``name`` makes subcommands.

    ``base`` goes to :func:`interaction` (application_id, channel_payload, user_payload, ...).
    """
    data = _command_data(name, options, command_id=command_id, command_guild_id=command_guild_id)
    return interaction(type=2, data=data, **base)


def autocomplete_interaction(
    name: str,
    options: Mapping[str, Any],
    *,
    focused: str,
    command_id: int | str | None = None,
    command_guild_id: int | str | None = None,
    **base: Any,
) -> dict[str, Any]:
    """An autocomplete request (type 4); ``focused`` names the option being typed."""
    data = _command_data(
        name, options, command_id=command_id, command_guild_id=command_guild_id, focused=focused
    )
    return interaction(type=4, data=data, **base)


def message_command_interaction(
    name: str,
    target: Mapping[str, Any],
    *,
    command_id: int | str | None = None,
    command_guild_id: int | str | None = None,
    **base: Any,
) -> dict[str, Any]:
    """A message context-menu command (type 2, data.type 3) on ``target``.

    The resolved message carries its full content whatever the bot's intents are.
    """
    data: dict[str, Any] = {
        "id": _sid(command_id),
        "name": name,
        "type": 3,
        "target_id": str(target["id"]),
        "resolved": {"messages": {str(target["id"]): copy.deepcopy(dict(target))}},
    }
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    return interaction(type=2, data=data, **base)


def user_command_interaction(
    name: str,
    target_user: Mapping[str, Any],
    *,
    target_member: Mapping[str, Any] | None = None,
    command_id: int | str | None = None,
    **base: Any,
) -> dict[str, Any]:
    """A user context-menu command (type 2, data.type 2)."""
    resolved: dict[str, Any] = {"users": {str(target_user["id"]): dict(target_user)}}
    if target_member is not None:
        partial = dict(target_member)
        partial.pop("user", None)
        resolved["members"] = {str(target_user["id"]): partial}
    data = {
        "id": _sid(command_id),
        "name": name,
        "type": 2,
        "target_id": str(target_user["id"]),
        "resolved": resolved,
    }
    return interaction(type=2, data=data, **base)


def component_interaction(
    custom_id: str,
    message_payload: Mapping[str, Any],
    *,
    component_type: int = 2,
    values: Sequence[str] | None = None,
    **base: Any,
) -> dict[str, Any]:
    """A button click (component_type 2) or select (3, with ``values``) on a bot message."""
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
    if values is not None:
        data["values"] = list(values)
    return interaction(type=3, data=data, message_payload=message_payload, **base)


def modal_submit_interaction(
    custom_id: str,
    fields: Mapping[str, str],
    *,
    message_payload: Mapping[str, Any] | None = None,
    **base: Any,
) -> dict[str, Any]:
    """A modal submission (type 5): one text input per action row."""
    rows = [
        {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
        for key, value in fields.items()
    ]
    data = {"custom_id": custom_id, "components": rows}
    return interaction(type=5, data=data, message_payload=message_payload, **base)
