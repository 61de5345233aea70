"""A log of every request the fake Discord answered, with waiting helpers for tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GatewayFrame", "Match", "RecordedFile", "RecordedRequest", "Recorder", "WaitTimeout"]


@dataclass(frozen=True)
class RecordedFile:
    """One uploaded file of a multipart request."""

    field: str
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One HTTP request and the fake's answer.

    ``path`` is relative to ``/api/v10`` for REST routes (``/channels/1/messages``) and absolute
    for others (``/attachments/...``); ``route`` is the fake's name for it (``create_message``)
    or ``"unknown"``.
    """

    method: str
    path: str
    route: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    files: list[RecordedFile] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: Any = None
    fault: str | None = None
    index: int = -1

    @property
    def ok(self) -> bool:
        """Whether the fake answered with a 2xx status."""
        return 200 <= self.status < 300

    @property
    def content(self) -> str | None:
        """The message content the request sent, if any."""
        if isinstance(self.json, dict):
            inner = self.json.get("data") if "type" in self.json else None
            source = inner if isinstance(inner, dict) else self.json
            return source.get("content")
        return None

    def __str__(self) -> str:
        extra = f" [{self.fault}]" if self.fault else ""
        return f"#{self.index} {self.method} {self.path} -> {self.status}{extra}"


@dataclass(frozen=True)
class GatewayFrame:
    """One frame the client sent on the gateway (op and data)."""

    index: int
    op: int
    data: Any
    session_id: str | None


Match = Callable[[RecordedRequest], bool] | tuple[str, str] | str
"""A predicate, ``(method, path_regex)`` or a route name such as ``"create_message"``."""


class WaitTimeout(AssertionError):
    """Nothing matching arrived in time; the message lists what did."""


def _compile(match: Match, include_failed: bool) -> Callable[[RecordedRequest], bool]:
    if callable(match):
        predicate = match
    elif isinstance(match, tuple):
        method, pattern = match
        regex = re.compile(pattern)

        def predicate(r: RecordedRequest) -> bool:
            return r.method == method.upper() and regex.fullmatch(r.path) is not None
    else:
        name = match

        def predicate(r: RecordedRequest) -> bool:
            return r.route == name

    if include_failed:
        return predicate
    return lambda r: r.ok and predicate(r)


class Recorder:
    """Every request in arrival order; ``wait_for`` hands each matching request out once."""

    def __init__(self, *, notes: Callable[[], list[str]] | None = None) -> None:
        self._notes = notes
        self.requests: list[RecordedRequest] = []
        self.gateway: list[GatewayFrame] = []
        self._claimed: set[int] = set()
        self._changed = asyncio.Condition()

    # recording ---------------------------------------------------------------------------

    async def add(self, request: RecordedRequest) -> None:
        """Store a finished request (numbering it) and wake waiters."""
        request.index = len(self.requests)
        self.requests.append(request)
        async with self._changed:
            self._changed.notify_all()

    async def add_gateway(self, op: int, data: Any, session_id: str | None) -> None:
        """Store a frame the client sent."""
        self.gateway.append(GatewayFrame(len(self.gateway), op, data, session_id))
        async with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """A position to pass as ``after=`` so only later requests match."""
        return len(self.requests)

    # querying ----------------------------------------------------------------------------

    def find(
        self, match: Match, *, include_failed: bool = False, after: int = 0
    ) -> list[RecordedRequest]:
        """All recorded requests that match (2xx only unless ``include_failed``)."""
        predicate = _compile(match, include_failed)
        return [r for r in self.requests[after:] if predicate(r)]

    async def wait_for(
        self,
        match: Match,
        *,
        timeout: float = 10.0,
        include_failed: bool = False,
        after: int = 0,
    ) -> RecordedRequest:
        """The first matching request not yet returned by an earlier ``wait_for``.

        Already-recorded requests count, so call it after triggering the bot. Raises
        :class:`WaitTimeout` listing the requests seen.
        """
        predicate = _compile(match, include_failed)

        def pick() -> RecordedRequest | None:
            for r in self.requests[after:]:
                if r.index not in self._claimed and predicate(r):
                    self._claimed.add(r.index)
                    return r
            return None

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while (found := pick()) is None:
                        await self._changed.wait()
                    return found
        except TimeoutError:
            raise WaitTimeout(
                f"no request matching {match!r} within {timeout}s; seen:\n"
                + self.describe()
                + self._describe_notes()
            ) from None

    async def wait_for_gateway(
        self, op: int, *, timeout: float = 10.0, after: int = 0
    ) -> GatewayFrame:
        """The first client frame with ``op`` at or after position ``after``."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        for frame in self.gateway[after:]:
                            if frame.op == op:
                                return frame
                        await self._changed.wait()
        except TimeoutError:
            ops = [f.op for f in self.gateway]
            raise WaitTimeout(f"no gateway op {op} within {timeout}s; seen ops {ops}") from None

    def _describe_notes(self) -> str:
        notes = self._notes() if self._notes is not None else []
        return "".join(f"\n  problem: {n}" for n in notes)

    def describe(self, requests: Iterable[RecordedRequest] | None = None) -> str:
        """One line per request, for failure messages."""
        items = list(self.requests if requests is None else requests)
        return "\n".join(f"  {r}" for r in items) or "  (none)"

    # shortcuts ---------------------------------------------------------------------------

    def messages_sent(self, channel_id: int | str | None = None) -> list[RecordedRequest]:
        """Successful ``POST /channels/{id}/messages`` requests (the bot's channel messages)."""
        return [
            r
            for r in self.find("create_message")
            if channel_id is None or r.params.get("channel_id") == str(channel_id)
        ]

    def edits(self, message_id: int | str | None = None) -> list[RecordedRequest]:
        """Successful message edits, by REST or by interaction webhook."""
        names = {"edit_message", "edit_webhook_message"}
        return [
            r
            for r in self.requests
            if r.ok
            and r.route in names
            and (message_id is None or r.params.get("message_id") == str(message_id))
        ]

    def callbacks(self, interaction_id: int | str | None = None) -> list[RecordedRequest]:
        """Successful interaction callbacks (type 4, 5, 6, 7, 8, 9)."""
        return [
            r
            for r in self.find("interaction_callback")
            if interaction_id is None or r.params.get("interaction_id") == str(interaction_id)
        ]

    def followups(self, token: str | None = None) -> list[RecordedRequest]:
        """Successful followup messages (``POST /webhooks/{app}/{token}``)."""
        return [
            r
            for r in self.find("create_followup")
            if token is None or r.params.get("token") == token
        ]

    def files_sent(self) -> list[RecordedFile]:
        """Every file uploaded in a successful request, in order."""
        return [f for r in self.requests if r.ok for f in r.files]
