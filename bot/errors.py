"""The bot's own error: a sentence meant for the person who asked, not a traceback."""

from __future__ import annotations

__all__ = ["MESSAGE_LIMIT", "PoliteError", "quoted"]

# Discord refuses a message over 2000 characters, and a refused reply is no reply at all; this
# leaves room for a mention in front.
MESSAGE_LIMIT = 1900


class PoliteError(Exception):
    """Raised anywhere between the command and the pool; its message is shown to the user as is
    (clipped to `MESSAGE_LIMIT`, so a long echo of what they typed cannot silence the reply)."""

    def __init__(self, message: str, *, ephemeral: bool = True) -> None:
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        super().__init__(message)
        self.message = message
        self.ephemeral = ephemeral


def quoted(text: object, limit: int = 60) -> str:
    """What a user typed, shown back as inline code: one line, at most `limit` characters, its
    backticks swapped for a look-alike so they cannot end the code span."""
    flat = " ".join(str(text).split()).replace("`", "ˋ")
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return f"`{flat}`"
