"""The bot's extensions: thin cogs that parse, then hand the work to the service."""

from __future__ import annotations

__all__ = ["EXTENSIONS"]

EXTENSIONS = ("bot.cogs.dream", "bot.cogs.general", "bot.cogs.moderation")
