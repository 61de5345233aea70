"""A loopback Discord: REST under ``/api/v10``, the v10 JSON gateway and a CDN, on 127.0.0.1.

discord.py's real client talks to it once ``discord.http.Route.BASE`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` point here (the fixtures do that).
Tests drive it with ``post_message``/``slash``/``click``... and read what the bot did from
:attr:`FakeDiscord.recorder`. Anything Discord would refuse (unknown route, invalid body, late
or double interaction acknowledgement) is kept in :attr:`FakeDiscord.problems`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import logging
import re
import secrets
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from . import payloads as p
from .recorder import Match, RecordedFile, RecordedRequest, Recorder
from .rules import COMPONENTS_V2, Rejection, check_command, check_message_body, invalid
from .world import GuildState, InteractionRecord, World

__all__ = ["API_PREFIX", "FakeDiscord", "Rejection"]

_log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
_LOADING = 1 << 7
_EPHEMERAL = 1 << 6
_GUILD_MESSAGES = 1 << 9
_DIRECT_MESSAGES = 1 << 12
_CLIENT_CLOSE_CODES = (1000, 1001)

# Which callback types Discord accepts for which interaction type.
_CALLBACKS_ALLOWED = {1: {1}, 2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


@dataclass
class _Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


_NO_CONTENT = _Reply(204)


@dataclass
class _Fault:
    match: Match
    status: int
    remaining: int
    retry_after: float
    is_global: bool

    def applies(self, req: RecordedRequest) -> bool:
        if self.remaining <= 0:
            return False
        if callable(self.match):
            return bool(self.match(req))
        if isinstance(self.match, tuple):
            method, pattern = self.match
            return req.method == method.upper() and re.fullmatch(pattern, req.path) is not None
        return req.route == self.match


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    path: str
    session: _Session | None = None
    closed_by_server: bool = False

    async def send(self, frame: Mapping[str, Any]) -> bool:
        """Send one frame; False when the socket is already gone."""
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(frame))
        except (ConnectionError, RuntimeError):
            return False
        return True


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    seq: int = 0
    conn: _Conn | None = None
    buffer: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shard: tuple[int, int] | None = None  # (shard id, shard count) from IDENTIFY

    def holds(self, guild_id: object) -> bool:
        """Discord's routing: a guild's events go to shard (guild_id >> 22) % count; DMs to 0."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (int(str(guild_id)) >> 22) % count == shard_id


Handler = Callable[[RecordedRequest], Awaitable[Any]]


@dataclass(frozen=True)
class _Route:
    method: str
    regex: re.Pattern[str]
    name: str
    handler: Handler
    auth: bool


class FakeDiscord(World):
    """The fake server plus its world; ``populate`` builds a guild with a few members.

    With ``populate``: :attr:`guild`, :attr:`channel` (#general), :attr:`alice`,
    :attr:`bob` (plain members), :attr:`moderator` (has a role with Manage Server),
    :attr:`owner` (owns the guild and the application) and :attr:`bot_user`.
    """

    def __init__(
        self,
        *,
        populate: bool = True,
        heartbeat_interval_ms: int = 41_250,
        ack_deadline: float | None = 3.0,
        token_lifetime: float | None = 15 * 60.0,
        enabled_privileged_intents: int = p.PRIVILEGED_INTENTS,
        echo_events: bool = True,
    ) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.recorder = Recorder(notes=lambda: self.problems)
        self.expected_problems: list[re.Pattern[str]] = []
        self.expected_error_logs: list[re.Pattern[str]] = []
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.enabled_privileged_intents = enabled_privileged_intents
        self.echo_events = echo_events
        self.identify_count = 0
        self.recommended_shards = 1  # what GET /gateway/bot advises
        self.resume_count = 0
        self.presence_updates: list[Any] = []
        self.gateway_connections: list[str] = []
        self.cdn_delay = 0.0
        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._routes = self._build_routes()
        self._connected = asyncio.Event()
        self.port = 0
        if populate:
            self.guild: GuildState = self.add_guild()
            self.moderator_role = self.add_role(self.guild, "Moderator", permissions=p.MANAGE_GUILD)
            self.channel: dict[str, Any] = self.add_channel(self.guild, "general")
            self.alice = self.add_user("alice")
            self.bob = self.add_user("bob")
            self.moderator = self.add_user("mod")
            self.add_member(self.guild, self.alice)
            self.add_member(self.guild, self.bob)
            self.add_member(self.guild, self.moderator, roles=[self.moderator_role])

    # lifecycle -----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """The ``resume_gateway_url`` of READY (another path, to see that it is used)."""
        return f"ws://127.0.0.1:{self.port}/gateway-resume"

    async def start(self) -> None:
        """Serve on a free loopback port."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        """Close every socket and the server."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        for conn in list(self._conns):
            conn.closed_by_server = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def expect_problem(self, pattern: str) -> None:
        """Let the fixture accept problems matching ``pattern`` (e.g. ``"40060"``)."""
        self.expected_problems.append(re.compile(pattern))

    def expect_error_log(self, pattern: str) -> None:
        """Let the fixture accept ERROR log records whose message matches ``pattern``."""
        self.expected_error_logs.append(re.compile(pattern))

    # test controls: faults -----------------------------------------------------------------

    def fail_next(
        self,
        match: Match,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (429 or 5xx).

        ``match`` is a route name (``"create_message"``, ``"create_followup"``...), a
        ``(method, path_regex)`` pair or a predicate. Rules queue in the order given.
        """
        self._faults.append(_Fault(match, status, times, retry_after, is_global))

    def _fault_reply(self, fault: _Fault) -> _Reply:
        if fault.status == 429:
            now = time.time()
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, round(fault.retry_after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{now + fault.retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                "X-RateLimit-Bucket": "fakebucket",
                "X-RateLimit-Scope": "shared" if not fault.is_global else "global",
            }
            if fault.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": fault.retry_after,
                "global": fault.is_global,
            }
            return _Reply(429, body, headers)
        return _Reply(fault.status, {"message": f"{fault.status}: Server Error", "code": 0})

    # test controls: gateway ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether some identified session has a live socket."""
        return any(s.conn is not None and not s.conn.ws.closed for s in self._sessions.values())

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until a session is live again (after a close or an invalid session)."""
        async with asyncio.timeout(timeout):
            while not self.connected:
                self._connected.clear()
                await self._connected.wait()

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> None:
        """Send a DISPATCH to every session; a disconnected one gets it on RESUME."""
        if not self._sessions:
            raise RuntimeError(f"cannot dispatch {event}: no gateway session (is the bot up?)")
        for session in list(self._sessions.values()):
            if not session.holds(data.get("guild_id")):
                continue
            view = self._view_for(session, event, data)
            if view is not None:
                await self._send_dispatch(session, event, view)

    async def close_gateway(self, code: int = 4000, reason: str = "") -> None:
        """Close every gateway socket with ``code``; sessions stay resumable.

        4000-4003, 4005-4009 and 1000/1001 make discord.py resume; 4004, 4010-4014 are fatal.
        """
        for conn in list(self._conns):
            conn.closed_by_server = True
            await conn.ws.close(code=code, message=reason.encode())

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION (op 9); not resumable drops the sessions (re-IDENTIFY)."""
        for conn in list(self._conns):
            if conn.session is not None:
                await conn.send({"op": 9, "d": resumable, "s": None, "t": None})
        if not resumable:
            self._sessions.clear()

    async def request_reconnect(self) -> None:
        """Send RECONNECT (op 7): the client closes and resumes."""
        for conn in list(self._conns):
            if conn.session is not None:
                await conn.send({"op": 7, "d": None, "s": None, "t": None})

    # test controls: users act --------------------------------------------------------------

    def _channel(self, channel: Mapping[str, Any] | int | str | None) -> dict[str, Any]:
        if channel is None:
            channel = self.channel
        cid = str(channel["id"] if isinstance(channel, Mapping) else channel)
        return self.channels[cid]

    def attachment(
        self,
        data: bytes,
        filename: str = "image.png",
        *,
        channel: Mapping[str, Any] | int | str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """An attachment payload served by the fake's CDN (see ``World.add_attachment``)."""
        cid = self._channel(channel)["id"]
        return self.add_attachment(data, filename, channel_id=cid, **kwargs)

    def _member_payload(self, guild: GuildState | None, user: Mapping[str, Any]) -> Any:
        if guild is None:
            return None
        return guild.members.get(str(user["id"]))

    async def post_message(
        self,
        content: str = "",
        *,
        author: Mapping[str, Any] | None = None,
        channel: Mapping[str, Any] | int | str | None = None,
        attachments: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...] = (),
        reply_to: Mapping[str, Any] | None = None,
        embeds: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...] = (),
        mentions: list[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: stored, then MESSAGE_CREATE to the bot.

        Mentions of known users (``<@id>``) are filled in from ``content``.
        """
        author = author or self.alice
        chan = self._channel(channel)
        guild = self.guild_of(chan["id"])
        if reply_to is not None:
            reply_to = self.messages.get(str(reply_to["id"]), reply_to)
        payload = p.message(
            channel_id=chan["id"],
            guild_id=None if guild is None else guild.id,
            author=author,
            member=self._member_payload(guild, author),
            content=content,
            attachments=attachments,
            embeds=embeds,
            mentions=self.mentions_in(content, guild) if mentions is None else mentions,
            reference=reply_to,
        )
        self.store_message(payload)
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def _interaction_base(
        self,
        user: Mapping[str, Any] | None,
        channel: Mapping[str, Any] | int | str | None,
        *,
        permissions: int | None = None,
    ) -> dict[str, Any]:
        user = user or self.alice
        chan = self._channel(channel)
        guild = self.guild_of(chan["id"])
        base: dict[str, Any] = {
            "application_id": self.application_id,
            "channel_payload": chan,
            "user_payload": self.users.get(str(user["id"]), user),
        }
        if guild is None:
            return base
        member = guild.members.get(str(user["id"]))
        if member is None:
            raise ValueError(f"user {user['username']} is not a member of {guild.name}")
        perms = self.permissions_for(guild, str(user["id"]), chan["id"])
        member_payload = dict(member)
        member_payload["permissions"] = str(perms if permissions is None else permissions)
        base.update(
            guild_id=guild.id,
            member_payload=member_payload,
            app_permissions=self.permissions_for(guild, self.bot_user["id"], chan["id"]),
            attachment_size_limit=guild.attachment_size_limit,
            guild_features=guild.features,
        )
        return base

    async def dispatch_interaction(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register an INTERACTION_CREATE payload (for its callback and token) and send it."""
        self.interactions[str(payload["id"])] = InteractionRecord(payload, time.monotonic())
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: Mapping[str, Any] | None = None,
        channel: Mapping[str, Any] | int | str | None = None,
        permissions: int | None = None,
        guild_command: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """A user runs ``/name`` (``"preset add"`` for a subcommand) with ``options``.

        ``permissions`` overrides the member's computed channel permissions;
        ``guild_command`` marks it as a guild-registered command; ``extra`` goes to the
        payload builder (``id=snowflake(at=...)`` to make an old, expiring interaction).
        """
        base = self._interaction_base(user, channel, permissions=permissions)
        command_guild = base.get("guild_id") if guild_command else None
        payload = p.slash_interaction(
            name, options, command_guild_id=command_guild, **base, **extra
        )
        return await self.dispatch_interaction(payload)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: Mapping[str, Any] | None = None,
        channel: Mapping[str, Any] | int | str | None = None,
    ) -> dict[str, Any]:
        """A user types into option ``focused`` of ``/name``."""
        base = self._interaction_base(user, channel)
        payload = p.autocomplete_interaction(name, options, focused=focused, **base)
        return await self.dispatch_interaction(payload)

    async def context_menu(
        self,
        name: str,
        target: Mapping[str, Any],
        *,
        user: Mapping[str, Any] | None = None,
        channel: Mapping[str, Any] | int | str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A user picks Apps -> ``name`` on message ``target`` (full content, any intents)."""
        target = self.messages.get(str(target["id"]), target)
        base = self._interaction_base(user, channel or target["channel_id"])
        payload = p.message_command_interaction(name, target, **base, **extra)
        return await self.dispatch_interaction(payload)

    async def click(
        self,
        message: Mapping[str, Any] | int | str,
        custom_id: str,
        *,
        user: Mapping[str, Any] | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> dict[str, Any]:
        """A user clicks the component ``custom_id`` on a message (its current stored state)."""
        mid = str(message["id"] if isinstance(message, Mapping) else message)
        current = self.messages.get(mid)
        if current is None:
            raise KeyError(f"no message {mid} in the fake")
        if custom_id not in p.custom_ids(current):
            raise ValueError(f"{custom_id!r} is not on message {mid}: {p.custom_ids(current)}")
        base = self._interaction_base(user, current["channel_id"])
        payload = p.component_interaction(
            custom_id, current, component_type=component_type, values=values, **base
        )
        return await self.dispatch_interaction(payload)

    async def submit_modal(
        self,
        custom_id: str,
        fields: Mapping[str, str],
        *,
        user: Mapping[str, Any] | None = None,
        channel: Mapping[str, Any] | int | str | None = None,
    ) -> dict[str, Any]:
        """A user submits a modal with text ``fields``."""
        base = self._interaction_base(user, channel)
        payload = p.modal_submit_interaction(custom_id, fields, **base)
        return await self.dispatch_interaction(payload)

    # answers seen --------------------------------------------------------------------------

    def interaction(self, payload_or_id: Mapping[str, Any] | int | str) -> InteractionRecord:
        """The fake's record of a dispatched interaction."""
        key = payload_or_id["id"] if isinstance(payload_or_id, Mapping) else payload_or_id
        return self.interactions[str(key)]

    def original_response(self, payload_or_id: Mapping[str, Any] | int | str) -> dict[str, Any]:
        """The current state of an interaction's original response message."""
        record = self.interaction(payload_or_id)
        if record.original_message_id is None:
            raise LookupError(f"interaction {record.id} has no original response")
        return self.messages[record.original_message_id]

    async def wait_for_reply(
        self,
        channel: Mapping[str, Any] | int | str | None = None,
        *,
        timeout: float = 10.0,
        with_files: bool = False,
    ) -> dict[str, Any]:
        """The next message the bot posts in a channel (REST), as the fake stored it."""
        cid = self._channel(channel)["id"]

        def match(r: RecordedRequest) -> bool:
            return (
                r.route == "create_message"
                and r.params.get("channel_id") == cid
                and (not with_files or bool(r.files))
            )

        req = await self.recorder.wait_for(match, timeout=timeout)
        return self.messages[str(req.response["id"])]

    # plumbing: HTTP ------------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, str, Handler, bool]] = [
            ("GET", "/users/@me", "get_me", self._h_get_me, True),
            ("GET", "/gateway", "get_gateway", self._h_gateway, False),
            ("GET", "/gateway/bot", "get_gateway_bot", self._h_gateway_bot, True),
            ("GET", "/oauth2/applications/@me", "get_application", self._h_application, True),
            ("GET", "/applications/@me", "get_application", self._h_application, True),
            ("POST", "/users/@me/channels", "create_dm", self._h_create_dm, True),
            ("GET", "/channels/{channel_id}", "get_channel", self._h_get_channel, True),
            ("GET", "/channels/{channel_id}/messages", "get_messages", self._h_history, True),
            ("POST", "/channels/{channel_id}/messages", "create_message", self._h_create, True),
            ("POST", "/channels/{channel_id}/typing", "typing", self._h_typing, True),
            (
                "GET",
                "/channels/{channel_id}/messages/{message_id}",
                "get_message",
                self._h_get_message,
                True,
            ),
            (
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                "edit_message",
                self._h_edit,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                "delete_message",
                self._h_delete,
                True,
            ),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "add_reaction",
                self._h_add_reaction,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/{user_id}",
                "remove_reaction",
                self._h_remove_reaction,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions",
                "clear_reactions",
                self._h_clear_reactions,
                True,
            ),
            ("GET", "/guilds/{guild_id}", "get_guild", self._h_get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", "get_guild_channels", self._h_gchannels, True),
            ("GET", "/guilds/{guild_id}/roles", "get_roles", self._h_roles, True),
            (
                "GET",
                "/guilds/{guild_id}/members/{user_id}",
                "get_member",
                self._h_get_member,
                True,
            ),
            (
                "GET",
                "/applications/{application_id}/commands",
                "get_global_commands",
                self._h_get_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{application_id}/commands",
                "bulk_global_commands",
                self._h_put_commands,
                True,
            ),
            (
                "POST",
                "/applications/{application_id}/commands",
                "create_global_command",
                self._h_post_command,
                True,
            ),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "get_guild_commands",
                self._h_get_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "bulk_guild_commands",
                self._h_put_commands,
                True,
            ),
            (
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "create_guild_command",
                self._h_post_command,
                True,
            ),
            (
                "POST",
                "/interactions/{interaction_id}/{token}/callback",
                "interaction_callback",
                self._h_callback,
                False,
            ),
            ("GET", "/webhooks/{application_id}/{token}", "get_webhook", self._h_webhook, False),
            (
                "POST",
                "/webhooks/{application_id}/{token}",
                "create_followup",
                self._h_followup,
                False,
            ),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "get_webhook_message",
                self._h_get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "edit_webhook_message",
                self._h_edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "delete_webhook_message",
                self._h_delete_webhook_message,
                False,
            ),
        ]
        routes = []
        for method, template, name, handler, auth in table:
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            routes.append(_Route(method, re.compile(pattern), name, handler, auth))
        return routes

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path in ("/gateway", "/gateway-resume") and request.method == "GET":
            return await self._gateway(request)
        is_api = raw_path.startswith(API_PREFIX + "/")
        path = raw_path[len(API_PREFIX) :] if is_api else raw_path
        req = RecordedRequest(
            method=request.method,
            path=path,
            route="unknown",
            query=dict(request.query),
            headers=dict(request.headers),
        )
        try:
            await self._read_body(request, req)
        except Exception as exc:
            req.status = 400
            self._problem(f"{request.method} {path}: unreadable body ({exc!r})")
            await self.recorder.add(req)
            return self._json(400, {"message": "400: Bad Request", "code": 0})

        reply: _Reply
        if not is_api:
            if request.method in ("GET", "HEAD") and raw_path.startswith("/attachments/"):
                req.route = "cdn"
                return await self._cdn(request, req, raw_path)
            reply = self._unknown(req)
        else:
            reply = await self._dispatch_route(req)
        req.status = reply.status
        req.response = reply.body
        await self.recorder.add(req)
        if reply.status == 204:
            return web.Response(status=204, headers=reply.headers)
        return self._json(reply.status, reply.body, reply.headers)

    async def _dispatch_route(self, req: RecordedRequest) -> _Reply:
        for route in self._routes:
            if route.method != req.method:
                continue
            found = route.regex.fullmatch(req.path)
            if found is None:
                continue
            req.route = route.name
            req.params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
            for fault in self._faults:
                if fault.applies(req):
                    fault.remaining -= 1
                    req.fault = f"injected {fault.status}"
                    return self._fault_reply(fault)
            if route.auth and req.headers.get("Authorization") != f"Bot {self.token}":
                return _Reply(401, {"message": "401: Unauthorized", "code": 0})
            try:
                result = await route.handler(req)
            except Rejection as rej:
                if rej.problem:
                    self._problem(f"{req.method} {req.path}: {rej}")
                return _Reply(rej.status, rej.body())
            except Exception as exc:  # a bug in the fake, or a body it cannot make sense of
                # Not a 5xx: discord.py would retry those for ~25 s before failing.
                self._problem(f"{req.method} {req.path}: the fake failed on it: {exc!r}")
                return _Reply(400, {"message": f"fake discord: {exc!r}", "code": 0})
            return result if isinstance(result, _Reply) else _Reply(200, result)
        return self._unknown(req)

    def _unknown(self, req: RecordedRequest) -> _Reply:
        self._problem(f"unknown route {req.method} {req.path}")
        return _Reply(404, {"message": "404: Not Found", "code": 0})

    def _problem(self, text: str) -> None:
        _log.warning("fake discord: %s", text)
        self.problems.append(text)

    @staticmethod
    def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        # discord.py parses JSON only when Content-Type is exactly "application/json".
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)

    @staticmethod
    async def _read_body(request: web.Request, req: RecordedRequest) -> None:
        if not request.can_read_body:
            return
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):  # nested multipart: unused
                    continue
                data = bytes(await part.read(decode=False))
                if part.name == "payload_json":
                    req.json = json.loads(data.decode())
                else:
                    req.files.append(
                        RecordedFile(
                            field=part.name or "",
                            filename=part.filename or "",
                            content_type=part.headers.get("Content-Type"),
                            data=data,
                        )
                    )
            return
        text = await request.text()
        if text:
            req.json = json.loads(text) if request.content_type == "application/json" else text

    async def _cdn(
        self, request: web.Request, req: RecordedRequest, raw_path: str
    ) -> web.StreamResponse:
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        for fault in self._faults:
            if fault.applies(req):
                fault.remaining -= 1
                req.fault = f"injected {fault.status}"
                req.status = fault.status
                await self.recorder.add(req)
                return web.Response(status=fault.status, text="CDN error")
        blob = self.blobs.get(urllib.parse.unquote(raw_path))
        if blob is None:
            req.status = 404
            await self.recorder.add(req)
            return web.Response(status=404, text="Not Found")
        data, content_type = blob
        req.status = 200
        await self.recorder.add(req)
        return web.Response(status=200, body=data, headers={"Content-Type": content_type})

    # plumbing: REST handlers ---------------------------------------------------------------

    async def _h_get_me(self, req: RecordedRequest) -> Any:
        return self.bot_user

    async def _h_gateway(self, req: RecordedRequest) -> Any:
        return {"url": self.gateway_url}

    async def _h_gateway_bot(self, req: RecordedRequest) -> Any:
        return {
            "url": self.gateway_url,
            "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    async def _h_application(self, req: RecordedRequest) -> Any:
        return p.application(
            id=self.application_id,
            owner=self.owner,
            name=self.bot_user["username"],
            flags=self.application_flags,
            bot=self.bot_user,
        )

    async def _h_create_dm(self, req: RecordedRequest) -> Any:
        recipient = self.users.get(str((req.json or {}).get("recipient_id")))
        if recipient is None:
            raise Rejection(400, 50033, "Invalid Recipient(s)")
        return self.dm_channel(recipient)

    def _known_channel(self, req: RecordedRequest) -> dict[str, Any]:
        chan = self.channels.get(req.params["channel_id"])
        if chan is None:
            raise Rejection(404, 10003, "Unknown Channel")
        return chan

    def _known_message(self, req: RecordedRequest) -> dict[str, Any]:
        self._known_channel(req)
        msg = self.messages.get(req.params["message_id"])
        if (
            msg is None
            or msg["channel_id"] != req.params["channel_id"]
            or msg["flags"] & _EPHEMERAL
        ):
            raise Rejection(404, 10008, "Unknown Message", problem=False)
        return msg

    async def _h_get_channel(self, req: RecordedRequest) -> Any:
        return self._known_channel(req)

    def _as_bot_sees(self, msg: dict[str, Any]) -> dict[str, Any]:
        """REST answers obey the Message Content intent like the gateway does."""
        return msg if self.message_content_intent else self._strip(msg)

    def _strip(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        """``msg`` as a bot without the Message Content intent sees it."""
        seen = (
            copy.deepcopy(dict(msg)) if self._content_exempt(msg) else p.strip_message_content(msg)
        )
        if isinstance(seen.get("referenced_message"), dict):
            seen["referenced_message"] = self._strip(seen["referenced_message"])
        return seen

    def _require(self, channel_id: str, permission: int) -> None:
        """403 Missing Permissions when the bot lacks ``permission`` in a guild channel."""
        guild = self.guild_of(channel_id)
        if guild is None:
            return
        have = self.permissions_for(guild, self.bot_user["id"], channel_id)
        if have & (p.VIEW_CHANNEL | permission) != p.VIEW_CHANNEL | permission:
            raise Rejection(403, 50013, "Missing Permissions", problem=False)

    async def _h_history(self, req: RecordedRequest) -> Any:
        chan = self._known_channel(req)
        self._require(chan["id"], p.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(req.query.get("limit", 50))))
        items = self.channel_messages(chan["id"])
        if "before" in req.query:
            items = [m for m in items if int(m["id"]) < int(req.query["before"])]
        if "after" in req.query:
            items = [m for m in items if int(m["id"]) > int(req.query["after"])]
            items = items[:limit]
        if "around" in req.query:
            pivot = int(req.query["around"])
            older = [m for m in items if int(m["id"]) <= pivot][-((limit + 1) // 2) :]
            newer = [m for m in items if int(m["id"]) > pivot][: limit // 2]
            items = older + newer
        newest_first = list(reversed(items))[:limit]
        return [self._as_bot_sees(m) for m in newest_first]

    async def _h_get_message(self, req: RecordedRequest) -> Any:
        self._require(req.params["channel_id"], p.READ_MESSAGE_HISTORY)
        return self._as_bot_sees(self._known_message(req))

    async def _h_typing(self, req: RecordedRequest) -> Any:
        self._require(self._known_channel(req)["id"], p.SEND_MESSAGES)
        return _NO_CONTENT

    async def _h_create(self, req: RecordedRequest) -> Any:
        chan = self._known_channel(req)
        body = req.json if isinstance(req.json, dict) else {}
        needed = p.SEND_MESSAGES | (p.ATTACH_FILES if req.files else 0)
        if body.get("message_reference"):
            needed |= p.READ_MESSAGE_HISTORY
        self._require(chan["id"], needed)
        msg = self._new_message(chan["id"], body, req.files)
        ref = body.get("message_reference")
        if ref is not None and ref.get("message_id") is not None:
            target = self.messages.get(str(ref["message_id"]))
            if target is None:
                if ref.get("fail_if_not_exists", True):
                    raise invalid(
                        "message_reference", "Unknown message", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
                    )
            else:
                reply = p.message(
                    id=msg["id"], channel_id=chan["id"], author=self.bot_user, reference=target
                )
                msg["type"] = 19
                msg["message_reference"] = reply["message_reference"]
                msg["referenced_message"] = reply["referenced_message"]
        self.store_message(msg)
        self._echo("MESSAGE_CREATE", msg)
        return msg

    async def _h_edit(self, req: RecordedRequest) -> Any:
        msg = self._known_message(req)
        if msg["author"]["id"] != self.bot_user["id"]:
            raise Rejection(403, 50005, "Cannot edit a message authored by another user")
        body = req.json if isinstance(req.json, dict) else {}
        self._apply_edit(msg, body, req.files)
        self._echo("MESSAGE_UPDATE", msg)
        return msg

    async def _h_delete(self, req: RecordedRequest) -> Any:
        msg = self._known_message(req)
        self.forget_message(msg["id"])
        self._echo_delete(msg)
        return _NO_CONTENT

    async def _h_add_reaction(self, req: RecordedRequest) -> Any:
        msg = self._known_message(req)
        self.reactions.append((msg["id"], req.params["emoji"], self.bot_user["id"]))
        return _NO_CONTENT

    async def _h_remove_reaction(self, req: RecordedRequest) -> Any:
        msg = self._known_message(req)
        uid = self.bot_user["id"] if req.params["user_id"] == "@me" else req.params["user_id"]
        key = (msg["id"], req.params["emoji"], uid)
        if key in self.reactions:
            self.reactions.remove(key)
        return _NO_CONTENT

    async def _h_clear_reactions(self, req: RecordedRequest) -> Any:
        msg = self._known_message(req)
        self.reactions = [r for r in self.reactions if r[0] != msg["id"]]
        return _NO_CONTENT

    def _known_guild(self, req: RecordedRequest) -> GuildState:
        guild = self.guilds.get(req.params["guild_id"])
        if guild is None:
            raise Rejection(404, 10004, "Unknown Guild")
        return guild

    async def _h_get_guild(self, req: RecordedRequest) -> Any:
        guild = self._known_guild(req)
        data = guild.payload(members=())
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            data.pop(key, None)
        data["approximate_member_count"] = len(guild.members)
        data["approximate_presence_count"] = len(guild.members)
        return data

    async def _h_gchannels(self, req: RecordedRequest) -> Any:
        return list(self._known_guild(req).channels.values())

    async def _h_roles(self, req: RecordedRequest) -> Any:
        return list(self._known_guild(req).roles.values())

    async def _h_get_member(self, req: RecordedRequest) -> Any:
        member = self._known_guild(req).members.get(req.params["user_id"])
        if member is None:
            raise Rejection(404, 10007, "Unknown Member", problem=False)
        return member

    # commands

    def _command_list(self, req: RecordedRequest) -> list[dict[str, Any]]:
        if req.params["application_id"] != self.application_id:
            raise Rejection(403, 50001, "Missing Access")
        gid = req.params.get("guild_id")
        if gid is None:
            return self.global_commands
        if gid not in self.guilds:
            raise Rejection(403, 50001, "Missing Access")
        return self.guild_commands.setdefault(gid, [])

    async def _h_get_commands(self, req: RecordedRequest) -> Any:
        return self._command_list(req)

    async def _h_put_commands(self, req: RecordedRequest) -> Any:
        current = self._command_list(req)
        specs = req.json if isinstance(req.json, list) else []
        if len(specs) > 100:
            raise invalid("_", "Maximum number of application commands reached (100)")
        for i, spec in enumerate(specs):
            check_command(i, spec)
        known = {(c["name"], c.get("type", 1)): c["id"] for c in current}
        new = []
        for spec in specs:
            spec = dict(spec)
            spec["id"] = known.get((spec["name"], spec.get("type", 1)))
            new.append(
                p.app_command(
                    spec, application_id=self.application_id, guild_id=req.params.get("guild_id")
                )
            )
        current[:] = new
        return new

    async def _h_post_command(self, req: RecordedRequest) -> Any:
        current = self._command_list(req)
        spec = dict(req.json or {})
        check_command(0, spec)
        current[:] = [
            c for c in current if (c["name"], c["type"]) != (spec["name"], spec.get("type", 1))
        ]
        command = p.app_command(
            spec, application_id=self.application_id, guild_id=req.params.get("guild_id")
        )
        current.append(command)
        return command

    # messages: validation and building -------------------------------------------------------

    def _attachments_for(
        self,
        channel_id: str,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        existing: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Attachments after a create or edit: kept ones by id, new ones from ``files[n]``."""
        limit = self.upload_limit(channel_id)
        uploads: dict[str, RecordedFile] = {}
        for f in files:
            found = re.fullmatch(r"files\[(\d+)\]|file(\d*)", f.field)
            key = next((g for g in found.groups() if g), "0") if found else f.field
            uploads[key] = f
            if len(f.data) > limit:
                raise Rejection(
                    413,
                    40005,
                    "Request entity too large",
                    detail=f"{f.filename}: {len(f.data)} bytes > {limit}",
                )
        by_id = {a["id"]: a for a in existing}
        listed = body.get("attachments")
        result: list[dict[str, Any]] = []
        used: set[str] = set()
        if listed is None:
            listed = [] if not uploads else [{"id": k} for k in uploads]
            if "attachments" not in body:
                result.extend(existing)
        for entry in listed:
            key = str(entry.get("id"))
            if key in by_id:
                result.append(by_id[key])
            elif key in uploads:
                f = uploads[key]
                used.add(key)
                result.append(
                    self.add_attachment(
                        f.data,
                        entry.get("filename") or f.filename,
                        channel_id=channel_id,
                        description=entry.get("description"),
                    )
                )
            else:
                raise invalid("attachments", f"Unknown attachment id {key}")
        for key, f in uploads.items():
            if key not in used and all(str(e.get("id")) != key for e in listed):
                result.append(self.add_attachment(f.data, f.filename, channel_id=channel_id))
        if len(result) > 10:
            raise invalid("attachments", "Must be 10 or fewer in length.")
        return result

    @staticmethod
    def _is_empty(msg: Mapping[str, Any]) -> bool:
        return not (
            msg.get("content")
            or msg.get("embeds")
            or msg.get("attachments")
            or msg.get("components")
            or msg.get("sticker_items")
            or msg.get("poll")
        )

    def _new_message(
        self,
        channel_id: str,
        body: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        flags_extra: int = 0,
        interaction: InteractionRecord | None = None,
        allow_empty: bool = False,
    ) -> dict[str, Any]:
        check_message_body(body, n_files=len(files))
        guild = self.guild_of(channel_id)
        content = str(body.get("content") or "")
        msg = p.message(
            channel_id=channel_id,
            guild_id=None if guild is None else guild.id,
            author=self.bot_user,
            content=content,
            attachments=self._attachments_for(channel_id, body, files, []),
            embeds=[_embed(e) for e in body.get("embeds") or []],
            components=_components(body.get("components") or []),
            mentions=self.mentions_in(content, guild),
            flags=(int(body.get("flags") or 0) & ~_LOADING) | flags_extra,
            tts=bool(body.get("tts")),
        )
        if body.get("poll"):
            msg["poll"] = copy.deepcopy(body["poll"])
        if body.get("sticker_ids"):
            msg["sticker_items"] = [
                {"id": str(s), "name": "sticker", "format_type": 1} for s in body["sticker_ids"]
            ]
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        if interaction is not None:
            itype = interaction.payload["type"]
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get(
                "user"
            )
            msg["webhook_id"] = self.application_id
            msg["application_id"] = self.application_id
            msg["interaction_metadata"] = {
                "id": interaction.id,
                "type": itype,
                "user": user,
                "authorizing_integration_owners": interaction.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
            data = interaction.payload.get("data") or {}
            if itype == 2 and interaction.original_message_id is None:
                msg["type"] = 20 if data.get("type", 1) == 1 else 23
        if not allow_empty and self._is_empty(msg):
            raise Rejection(400, 50006, "Cannot send an empty message")
        return msg

    def _apply_edit(
        self, msg: dict[str, Any], body: Mapping[str, Any], files: list[RecordedFile]
    ) -> None:
        check_message_body(body, n_files=len(files))
        updated = copy.deepcopy(msg)
        if "content" in body:
            updated["content"] = str(body["content"] or "")
            guild = self.guild_of(msg["channel_id"])
            updated["mentions"] = self.mentions_in(updated["content"], guild)
        if "embeds" in body:
            updated["embeds"] = [_embed(e) for e in body["embeds"] or []]
        if "components" in body:
            updated["components"] = _components(body["components"] or [])
        if "flags" in body and body["flags"] is not None:
            keep = updated["flags"] & (_EPHEMERAL | COMPONENTS_V2)
            updated["flags"] = (int(body["flags"]) & ~(_LOADING | _EPHEMERAL)) | keep
        if "attachments" in body or files:
            updated["attachments"] = self._attachments_for(
                msg["channel_id"], body, files, msg["attachments"]
            )
        updated["flags"] &= ~_LOADING
        if self._is_empty(updated):
            raise Rejection(400, 50006, "Cannot send an empty message")
        updated["edited_timestamp"] = p.iso()
        msg.clear()
        msg.update(updated)

    # interactions ------------------------------------------------------------------------

    def _record_for_token(self, req: RecordedRequest) -> InteractionRecord:
        if req.params["application_id"] != self.application_id:
            raise Rejection(404, 10015, "Unknown Webhook")
        token = req.params["token"]
        record = next((r for r in self.interactions.values() if r.token == token), None)
        if record is None:
            raise Rejection(404, 10015, "Unknown Webhook")
        if (
            self.token_lifetime is not None
            and time.time() > record.created_at + self.token_lifetime
        ):
            raise Rejection(401, 50027, "Invalid Webhook Token", problem=False)
        return record

    def _webhook_message(self, record: InteractionRecord, message_id: str) -> dict[str, Any]:
        if message_id == "@original":
            if record.original_message_id is None:
                raise Rejection(404, 10008, "Unknown Message")
            message_id = record.original_message_id
        if message_id != record.original_message_id and message_id not in record.message_ids:
            raise Rejection(404, 10008, "Unknown Message")
        msg = self.messages.get(message_id)
        if msg is None:
            raise Rejection(404, 10008, "Unknown Message")
        return msg

    async def _h_callback(self, req: RecordedRequest) -> Any:
        record = self.interactions.get(req.params["interaction_id"])
        if record is None or record.token != req.params["token"]:
            raise Rejection(404, 10062, "Unknown interaction")
        if record.response_type is not None:
            raise Rejection(400, 40060, "Interaction has already been acknowledged.")
        waited = time.monotonic() - record.dispatched_at
        if self.ack_deadline is not None and waited > self.ack_deadline:
            raise Rejection(
                404, 10062, "Unknown interaction", detail=f"acknowledged after {waited:.2f}s"
            )
        body = req.json if isinstance(req.json, dict) else {}
        kind = int(body.get("type", 0))
        itype = int(record.payload["type"])
        if kind not in _CALLBACKS_ALLOWED.get(itype, set()):
            raise invalid("type", f"callback type {kind} is invalid for interaction type {itype}")
        message = self._perform_callback(record, kind, body.get("data") or {}, req.files)
        record.response_type = kind
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return _NO_CONTENT
        answer: dict[str, Any] = {
            "interaction": {
                "id": record.id,
                "type": itype,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & _EPHEMERAL),
            }
        }
        if record.original_message_id is not None:
            answer["interaction"]["response_message_id"] = record.original_message_id
        if kind in (4, 5, 6, 7):
            answer["resource"] = {"type": kind}
            if message is not None:
                answer["resource"]["message"] = message
        return answer

    def _perform_callback(
        self,
        record: InteractionRecord,
        kind: int,
        data: Mapping[str, Any],
        files: list[RecordedFile],
    ) -> dict[str, Any] | None:
        """Apply a callback to the world; returns the message it created or changed."""
        component_message = record.payload.get("message")
        if kind == 4:  # CHANNEL_MESSAGE_WITH_SOURCE
            msg = self._new_message(record.channel_id, data, files, interaction=record)
            return self._remember(record, msg, original=True)
        if kind == 5:  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: a "thinking..." placeholder
            flags = _LOADING | (int(data.get("flags") or 0) & _EPHEMERAL)
            msg = self._new_message(record.channel_id, {}, [], interaction=record, allow_empty=True)
            msg["flags"] = flags
            record.loading = True
            return self._remember(record, msg, original=True)
        if kind in (6, 7):  # DEFERRED_UPDATE_MESSAGE / UPDATE_MESSAGE: @original is the clicked one
            if component_message is None:
                if kind == 7:
                    raise invalid("type", "UPDATE_MESSAGE needs a component's message")
                return None
            record.original_message_id = str(component_message["id"])
            target = self.messages.get(record.original_message_id)
            if kind == 6:
                return None
            if target is None:
                raise Rejection(404, 10008, "Unknown Message")
            self._apply_edit(target, data, files)
            self._echo("MESSAGE_UPDATE", target)
            return target
        if kind == 8:  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise invalid("data.choices", "Must be 25 or fewer in length.")
            for i, choice in enumerate(choices):
                if not 1 <= len(str(choice.get("name", ""))) <= 100:
                    raise invalid(f"data.choices.{i}.name", "Must be between 1 and 100.")
        if kind == 9 and (not data.get("custom_id") or not data.get("title")):  # MODAL
            raise invalid("data", "A modal needs a custom_id and a title")
        return None

    def _remember(
        self, record: InteractionRecord, msg: dict[str, Any], *, original: bool
    ) -> dict[str, Any]:
        self.store_message(msg)
        if original:
            record.original_message_id = msg["id"]
        else:
            record.message_ids.append(msg["id"])
        if not msg["flags"] & (_EPHEMERAL | _LOADING):
            self._echo("MESSAGE_CREATE", msg)
        return msg

    async def _h_webhook(self, req: RecordedRequest) -> Any:
        self._record_for_token(req)
        return {
            "id": self.application_id,
            "type": 3,
            "name": self.bot_user["username"],
            "avatar": None,
            "application_id": self.application_id,
            "token": req.params["token"],
        }

    async def _h_followup(self, req: RecordedRequest) -> Any:
        record = self._record_for_token(req)
        if record.response_type is None:
            raise Rejection(
                404, 10015, "Unknown Webhook", detail="followup before the interaction was answered"
            )
        body = req.json if isinstance(req.json, dict) else {}
        if record.loading and record.original_message_id is not None:
            # The first followup after a deferral fills in the "thinking..." message.
            msg = self.messages[record.original_message_id]
            self._apply_edit(msg, body, req.files)
            record.loading = False
            if not msg["flags"] & _EPHEMERAL:
                self._echo("MESSAGE_CREATE", msg)
        else:
            extra = int(body.get("flags") or 0) & _EPHEMERAL
            msg = self._new_message(
                record.channel_id, body, req.files, flags_extra=extra, interaction=record
            )
            self._remember(record, msg, original=False)
        if req.query.get("wait", "").lower() not in ("1", "true"):
            return _NO_CONTENT
        return msg

    async def _h_get_webhook_message(self, req: RecordedRequest) -> Any:
        record = self._record_for_token(req)
        return self._webhook_message(record, req.params["message_id"])

    async def _h_edit_webhook_message(self, req: RecordedRequest) -> Any:
        record = self._record_for_token(req)
        msg = self._webhook_message(record, req.params["message_id"])
        req.params["message_id"] = msg["id"]
        was_loading = bool(msg["flags"] & _LOADING)
        body = req.json if isinstance(req.json, dict) else {}
        self._apply_edit(msg, body, req.files)
        if msg["id"] == record.original_message_id:
            record.loading = False
        if not msg["flags"] & _EPHEMERAL:
            self._echo("MESSAGE_CREATE" if was_loading else "MESSAGE_UPDATE", msg)
        return msg

    async def _h_delete_webhook_message(self, req: RecordedRequest) -> Any:
        record = self._record_for_token(req)
        msg = self._webhook_message(record, req.params["message_id"])
        self.forget_message(msg["id"])
        if not msg["flags"] & _EPHEMERAL:
            self._echo_delete(msg)
        return _NO_CONTENT

    # plumbing: gateway ---------------------------------------------------------------------

    @property
    def message_content_intent(self) -> bool:
        """Whether the bot's latest session asked for the Message Content intent."""
        if not self._sessions:
            return True
        latest = list(self._sessions.values())[-1]
        return bool(latest.intents & p.INTENT_MESSAGE_CONTENT)

    def _content_exempt(self, msg: Mapping[str, Any]) -> bool:
        bot_id = self.bot_user["id"]
        return (
            "guild_id" not in msg
            or msg["author"]["id"] == bot_id
            or any(str(m.get("id")) == bot_id for m in msg.get("mentions", []))
        )

    def _view_for(
        self, session: _Session, event: str, data: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The event as this session receives it (intents applied), or None to skip it."""
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            needed = _GUILD_MESSAGES if "guild_id" in data else _DIRECT_MESSAGES
            if not session.intents & needed:
                return None
            if event != "MESSAGE_DELETE" and not session.intents & p.INTENT_MESSAGE_CONTENT:
                return self._strip(data)
        return copy.deepcopy(dict(data))

    async def _send_dispatch(self, session: _Session, event: str, data: Any) -> None:
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.buffer.append(frame)
            if session.conn is not None:
                await session.conn.send(frame)

    def _echo(self, event: str, msg: Mapping[str, Any]) -> None:
        """Discord also sends the bot its own messages on the gateway; do it after answering."""
        if not self.echo_events or not self._sessions:
            return
        snapshot = copy.deepcopy(dict(msg))
        self._spawn(self.dispatch(event, snapshot))

    def _echo_delete(self, msg: Mapping[str, Any]) -> None:
        data = {"id": msg["id"], "channel_id": msg["channel_id"]}
        if "guild_id" in msg:
            data["guild_id"] = msg["guild_id"]
        self._echo("MESSAGE_DELETE", data)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await asyncio.sleep(0)
            with contextlib.suppress(RuntimeError):
                await coro

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request.path)
        self._conns.add(conn)
        self.gateway_connections.append(request.path_qs)
        try:
            await conn.send(
                {
                    "op": 10,
                    "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake"]},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(conn, json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    self._problem("gateway: client sent a binary frame (ETF is not supported)")
                    await ws.close(code=4002)
        finally:
            self._conns.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if ws.close_code in _CLIENT_CLOSE_CODES and not conn.closed_by_server:
                    # A client's clean close ends its session, as on Discord.
                    self._sessions.pop(session.id, None)
        return ws

    async def _on_frame(self, conn: _Conn, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        data = frame.get("d")
        session_id = conn.session.id if conn.session else None
        await self.recorder.add_gateway(int(op or -1), data, session_id)
        if op == 1:
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif conn.session is None:
            self._problem(f"gateway: op {op} before IDENTIFY")
            await conn.ws.close(code=4003)
        elif op == 3:
            self.presence_updates.append(data)
        elif op == 8:
            await self._request_members(conn.session, data or {})
        elif op == 4:
            pass  # voice state update: no voice here
        else:
            self._problem(f"gateway: unknown op {op}")
            await conn.ws.close(code=4001)

    async def _identify(self, conn: _Conn, data: Mapping[str, Any]) -> None:
        if data.get("token") not in (self.token, f"Bot {self.token}"):
            await conn.ws.close(code=4004)
            return
        if conn.session is not None:
            await conn.ws.close(code=4005)
            return
        intents = int(data.get("intents", 0))
        if intents & p.PRIVILEGED_INTENTS & ~self.enabled_privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard")
        if shard is not None and not (
            isinstance(shard, list | tuple) and len(shard) == 2 and 0 <= shard[0] < shard[1]
        ):
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        session = _Session(
            id=secrets.token_hex(16),
            intents=intents,
            conn=conn,
            shard=(int(shard[0]), int(shard[1])) if shard is not None else None,
        )
        conn.session = session
        self._sessions[session.id] = session
        self.identify_count += 1
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [
                {"id": gid, "unavailable": True} for gid in self.guilds if session.holds(gid)
            ],
            "session_id": session.id,
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": self.application_id, "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake"],
        }
        if "shard" in data:
            ready["shard"] = list(data["shard"])
        await self._send_dispatch(session, "READY", ready)
        every_member = bool(intents & p.INTENT_GUILD_MEMBERS)
        for guild in self.guilds.values():
            if not session.holds(guild.id):
                continue
            members = None if every_member else [self.bot_user["id"]]
            await self._send_dispatch(session, "GUILD_CREATE", guild.payload(members=members))
        self._connected.set()

    async def _resume(self, conn: _Conn, data: Mapping[str, Any]) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if data.get("token") not in (self.token, f"Bot {self.token}"):
            await conn.ws.close(code=4004)
            return
        if session is None:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        seq = int(data.get("seq") or 0)
        async with session.lock:
            old = session.conn
            session.conn = conn
            conn.session = session
            if old is not None and old is not conn:
                old.session = None
                with contextlib.suppress(Exception):
                    await old.ws.close(code=4000)
            for frame in list(session.buffer):
                if frame["s"] > seq:
                    await conn.send(frame)
        self.resume_count += 1
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake"]})
        self._connected.set()

    async def _request_members(self, session: _Session, data: Mapping[str, Any]) -> None:
        guild = self.guilds.get(str(data.get("guild_id")))
        if guild is None:
            return
        query = str(data.get("query") or "").lower()
        wanted = {str(u) for u in data.get("user_ids") or []}
        members = [
            m
            for uid, m in guild.members.items()
            if (not wanted or uid in wanted) and m["user"]["username"].lower().startswith(query)
        ]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": guild.id,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)


def _embed(data: Mapping[str, Any]) -> dict[str, Any]:
    embed = copy.deepcopy(dict(data))
    embed.setdefault("type", "rich")
    return embed


def _components(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Components as Discord echoes them back (buttons get an ``id``)."""
    result = copy.deepcopy([dict(r) for r in rows])
    counter = 0

    def number(node: Any) -> None:
        nonlocal counter
        if isinstance(node, dict):
            counter += 1
            node.setdefault("id", counter)
            for child in node.get("components", []) or []:
                number(child)
            if isinstance(node.get("accessory"), dict):
                number(node["accessory"])

    for row in result:
        number(row)
    return result
