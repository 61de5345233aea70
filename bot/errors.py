"""The bot's own error: a sentence meant for the person who asked, not a traceback."""

from __future__ import annotations

__all__ = ["PoliteError"]


class PoliteError(Exception):
    """Raised anywhere between the command and the pool; its message is shown to the user as is."""

    def __init__(self, message: str, *, ephemeral: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.ephemeral = ephemeral
