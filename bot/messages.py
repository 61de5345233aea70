"""Every sentence and embed the bot shows, in one place, so tone and wording stay consistent.

Failures reach users as one polite sentence: `polite_error` maps each typed error of dreamcore
and of the pool to what the person can do about it, and never shows a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import discord

from dreamcore.errors import (
    DreamCancelled,
    DreamError,
    ImageError,
    InvalidParameterError,
    JobCancelledError,
    JobTimeoutError,
    OwnerLimitError,
    PoolBusyError,
    PoolClosedError,
    PoolError,
    WeightsError,
    WorkerCrashedError,
)
from dreamcore.jobs import JobResult

from .database import DatabaseUnavailableError
from .errors import PoliteError
from .store import LimitReached

__all__ = [
    "ANCHOR_OPTION_HELP",
    "COLOUR_OPTION_HELP",
    "EMBED_COLOUR",
    "PLAIN_OPTION_HELP",
    "continued_text",
    "database_text",
    "done_text",
    "dropped_text",
    "help_embed",
    "info_text",
    "like_text",
    "limit_text",
    "no_image_text",
    "paused_text",
    "polite_error",
    "presets_embed",
    "progress_text",
    "result_embed",
]

log = logging.getLogger(__name__)

EMBED_COLOUR = discord.Colour(0x7B5CD6)
# What the slash options `colour`, `plain` and `anchor` say (/dream, /preset add).
COLOUR_OPTION_HELP = (
    "keep: dream brightness only, the photo keeps its colours; free: colours may change"
)
PLAIN_OPTION_HELP = "0-1: the step share of plain regions (sky, backdrops); lower keeps them calmer"
ANCHOR_OPTION_HELP = "0-1: how much of each step's change to the photo's layout is undone; 0: none"
_BAR = 12


def polite_error(exc: BaseException) -> str:
    """One sentence for the user; the unexpected ones are logged with their traceback."""
    match exc:
        case PoliteError():
            return exc.message
        case PoolBusyError():
            return "I'm busy with a lot of dreams right now; please try again in a minute."
        case OwnerLimitError():
            return (
                f"You already have {exc.limit} dream(s) running or waiting; "
                "let one finish and try again."
            )
        case JobTimeoutError():
            return "That dream took too long and was stopped; try a smaller image or fewer steps."
        case JobCancelledError() | DreamCancelled():
            return "Dream cancelled."
        case WorkerCrashedError():
            return "The dreaming worker stumbled on that one; please try again."
        case PoolClosedError():
            return "I'm restarting; please try again in a minute."
        case ImageError() | InvalidParameterError():
            return str(exc)
        case WeightsError():
            log.error("Model weights problem: %s", exc)
            return "That model isn't available right now; try another preset."
        case PoolError() | DreamError():
            log.warning("Dream failed: %r", exc)
            return "That dream failed; please try again."
        case DatabaseUnavailableError():  # hung, locked or down: said, not a bug's traceback
            log.warning("The database failed a member's request: %s", exc)
            return database_text()
    log.error("Unexpected error while dreaming", exc_info=exc)
    return "Something went wrong on my side; please try again."


def database_text() -> str:
    return "My database isn't answering right now; please try again in a minute."


def limit_text(exc: LimitReached) -> str:
    """Which limit a request ran into, and when it may be asked again."""
    match exc.kind:
        case "cooldown":
            return f"Easy there: you can dream again in {max(1, round(exc.wait_s))} s."
        case "quota" if exc.cost > 1 and exc.left > 0:
            return (
                f"That counts as {exc.cost} dreams and you have {exc.left} left today; "
                "ask for fewer frames or come back tomorrow."
            )
        case "quota":
            count = int(exc.limit)
            dreams = "dream" if count == 1 else "dreams"
            return f"You've had your {count} {dreams} for today; come back tomorrow."
        case "member":
            return (
                f"You already have {int(exc.limit)} dream(s) running or waiting; "
                "let one finish and try again."
            )
        case _:
            return "This server has many dreams in progress; please try again in a minute."


def no_image_text(prefix: str) -> str:
    return (
        "I need a photo to dream on: attach one to your message "
        f"(`{prefix}dream dogs` with the image), reply to a message that has one, "
        "or use `/dream` and pick the image."
    )


def progress_text(
    *,
    position: int | None = None,
    fraction: float | None = None,
    label: str = "",
    frame: int = 0,
    frames: int = 0,
    unit: str = "frame",
) -> str:
    """Queued with a position, then a bar with a percentage (and frames done, for a zoom)."""
    name = f" `{label}`" if label else ""
    if fraction is None:
        where = f"position {position}" if position else "next up"
        return f"⏳ Queued{name} dream — {where} in line."
    done = max(0, min(_BAR, round(fraction * _BAR)))
    count = f" · {unit}s {frame}/{frames}" if frames else ""
    return f"🌀 Dreaming{name}… `{'█' * done}{'░' * (_BAR - done)}` {fraction:.0%}{count}"


def like_text(prefix: str) -> str:
    return (
        f"`{prefix}dream like` needs two pictures: attach both (the photo first, then the one "
        "whose features should grow into it), or reply to a photo and attach the second. "
        "With `/dream`, pick the second as `guide`."
    )


def paused_text(label: str) -> str:
    return f"⏸️ I'm restarting: your `{label}` dream is saved and will continue when I'm back."


def dropped_text(label: str, prefix: str) -> str:
    return (
        f"I restarted before your `{label}` dream could run, and it was dropped; "
        f"please ask again with `{prefix}dream` or `/dream`."
    )


def done_text(label: str, elapsed_s: float) -> str:
    return f"✅ Dreamed `{label}` in {elapsed_s:.1f} s."


def continued_text(label: str, elapsed_s: float, result_url: str) -> str:
    """What the message that said "saved, will continue" ends as: where the result went."""
    return f"✅ Your `{label}` dream continued after my restart ({elapsed_s:.1f} s): {result_url}"


def result_embed(
    label: str, result: JobResult, owner: discord.abc.User, *, details: str = ""
) -> discord.Embed:
    """The line under the image: preset, the options that changed it (`details`), model, seed
    and time taken."""
    shown = f"**{label}** · {details}" if details else f"**{label}**"
    embed = discord.Embed(
        description=f"{shown} · {result.model} · seed `{result.seed}` · {result.elapsed_s:.1f} s",
        colour=EMBED_COLOUR,
    )
    if result.kind == "zoom":
        # An embed cannot show a video; the MP4 (or GIF) plays as the message's attachment.
        embed.description = f"{embed.description} · {result.frames} frames"
    else:
        embed.set_image(url=f"attachment://{result.filename}")
    name = getattr(owner, "display_name", None)  # a resumed dream may know only the owner's id
    if name:
        embed.set_footer(text=f"Dreamed for {name}")
    return embed


def presets_embed(rows: Sequence[tuple[str, str]], default: str, prefix: str) -> discord.Embed:
    lines = [
        f"**{name}**{' (default)' if name == default else ''} — {description}"
        for name, description in rows
    ]
    embed = discord.Embed(title="Dream presets", description="\n".join(lines)[:4000])
    embed.colour = EMBED_COLOUR
    embed.set_footer(text=f"Use: {prefix}dream <preset> [strength=2 steps=10 seed=7 size=768]")
    return embed


def help_embed(prefix: str) -> discord.Embed:
    embed = discord.Embed(title="DeepDream", colour=EMBED_COLOUR)
    embed.description = (
        "I dream on your photos: eyes, dogs and swirls grow out of them.\n\n"
        f"**Try it:** attach a photo and type `{prefix}dream dogs`, or use `/dream`.\n"
        "Or right-click a message with a photo → **Apps** → **Dream this image**.\n\n"
        f"**Options:** `{prefix}dream <preset> strength=2 steps=10 octaves=4 seed=7 size=768`\n"
        f"`{prefix}presets` lists the presets, `/dream-info` shows the queue and your quota.\n"
        "Under each dream: **Re-roll** (new seed), **Stronger**, **Weaker**.\n\n"
        f"**Zoom:** `{prefix}dream zoom dogs frames=24` or `/dream-zoom`: a video that falls into "
        "its own dream (a zoom counts as several dreams of your quota; it says how many).\n"
        f"**Explore:** `{prefix}dream explore` or `/dream-explore`: one sheet, the photo dreamed "
        "at each layer of the network (strokes low, textures, then parts and faces); "
        "`top=blocks.4` adds that layer's strongest channels.\n"
        f"**Like:** `{prefix}dream like` with two photos attached, or `/dream` with `guide`: "
        "grow the second picture's features into the first.\n"
        f"**Channels:** `{prefix}dream channel=blocks.4:7` amplifies one feature channel; "
        "`dreamcore layers` lists how many each layer has.\n"
        f"**Colour:** `{prefix}dream colour=keep` dreams brightness only, the photo keeps its "
        "colours (the default for greyscale photos); `colour=free` lets colours change.\n"
        f"**Plain:** `{prefix}dream plain=0.2` dreams plain regions like sky more gently "
        "(0 to 1: lower keeps them calmer, 1 dreams them like the rest).\n"
        f"**Anchor:** `{prefix}dream dogs anchor=0 plain=1` lets the scene go: `anchor` (0 to 1) "
        "is how much of each step's change to the photo's layout is undone."
    )
    return embed


def info_text(
    *,
    queued: int,
    running: int,
    mine_running: int,
    mine_queued: int,
    quota_left: int | None,
    cooldown_left_s: float,
) -> str:
    quota = "unlimited" if quota_left is None else f"{quota_left} left today"
    wait = f" · cooldown {cooldown_left_s:.0f} s" if cooldown_left_s > 0 else ""
    return (
        f"Queue: {queued} waiting, {running} dreaming.\n"
        f"You: {mine_running} dreaming, {mine_queued} waiting · quota {quota}{wait}."
    )
