"""A loopback Discord for end-to-end tests of discord.py bots.

``FakeDiscord`` serves REST, the gateway and a CDN on 127.0.0.1; ``payloads`` builds the JSON
Discord sends; ``Recorder`` keeps every request the bot made; ``rules`` holds the checks
Discord makes on what a bot sends. Fixtures live in
``fakediscord.fixtures`` (``fake_discord``, ``bot_runner``).
"""

from __future__ import annotations

from . import payloads
from .recorder import GatewayFrame, RecordedFile, RecordedRequest, Recorder, WaitTimeout
from .server import FakeDiscord, Rejection
from .world import GuildState, InteractionRecord

__all__ = [
    "FakeDiscord",
    "GatewayFrame",
    "GuildState",
    "InteractionRecord",
    "RecordedFile",
    "RecordedRequest",
    "Recorder",
    "Rejection",
    "WaitTimeout",
    "payloads",
]
