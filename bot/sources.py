"""Where a dream's photo comes from, and fetching it safely.

The image is looked for in a fixed order: the command's attachment option, the message's own
attachment, the message it replies to, then the latest image in the last few channel messages.
An attachment is judged by what Discord says about it (size, width, height, type) before a byte
is downloaded; the download is capped in bytes and time and only from the allowed CDN hosts over
the allowed schemes, with redirects refused. Decoding is the pool's job (Pillow, in a worker).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import discord

from .errors import PoliteError, quoted

__all__ = [
    "DownloadPolicy",
    "check_attachment",
    "download",
    "find_image",
    "looks_like_image",
    "replied_to",
]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class DownloadPolicy:
    """What the bot may fetch: sizes before download, then hosts, schemes, bytes and time."""

    max_bytes: int
    max_pixels: int
    timeout_s: float
    hosts: frozenset[str]
    schemes: frozenset[str]


def looks_like_image(attachment: discord.Attachment) -> bool:
    """Discord fills width and height (and an image/* type) for the images it could read."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    return attachment.width is not None or content_type.startswith("image/")


async def find_image(
    *,
    option: discord.Attachment | None = None,
    message: discord.Message | None = None,
    channel: discord.abc.Messageable | None = None,
    history_limit: int = 10,
) -> discord.Attachment | None:
    """The attachment to dream on, in the documented order; None if there is none."""
    if option is not None:
        return option
    if message is not None:
        if message.attachments:  # the first image; the first file if none is one (it is refused)
            return next(
                (a for a in message.attachments if looks_like_image(a)), message.attachments[0]
            )
        replied = await replied_to(message)
        if replied is not None and replied.attachments:
            return next(
                (a for a in replied.attachments if looks_like_image(a)), replied.attachments[0]
            )
    if channel is not None and history_limit > 0:
        try:
            async for earlier in channel.history(limit=history_limit, before=message):
                for attachment in earlier.attachments:
                    if looks_like_image(attachment):
                        return attachment
        except discord.HTTPException as exc:  # no Read Message History, or gone
            log.info("Cannot search the channel history for an image: %s", exc)
    return None


async def replied_to(message: discord.Message) -> discord.Message | None:
    ref = message.reference
    if ref is None or ref.message_id is None:
        return None
    if isinstance(ref.resolved, discord.Message):
        return ref.resolved
    if isinstance(ref.cached_message, discord.Message):
        return ref.cached_message
    try:
        return await message.channel.fetch_message(ref.message_id)
    except discord.HTTPException:
        return None


def check_attachment(attachment: discord.Attachment, policy: DownloadPolicy) -> None:
    """Refuse what Discord already tells us is too big or not an image: no download needed."""
    if attachment.size > policy.max_bytes:
        raise PoliteError(
            f"That file is {_mib(attachment.size)}; I can take images up to "
            f"{_mib(policy.max_bytes)}."
        )
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith("image/"):
        raise PoliteError(
            f"{quoted(attachment.filename)} isn't an image; send a JPEG, PNG, WebP, GIF or BMP photo."
        )
    if attachment.width is None or attachment.height is None:
        raise PoliteError(
            f"I can't read {quoted(attachment.filename)} as an image; "
            "send a JPEG, PNG, WebP, GIF or BMP photo."
        )
    if attachment.width * attachment.height > policy.max_pixels:
        raise PoliteError(
            f"That image is {attachment.width}×{attachment.height} pixels; I can take up to "
            f"{policy.max_pixels / 1e6:.0f} megapixels."
        )


def check_url(url: str, policy: DownloadPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in policy.schemes or (parts.hostname or "") not in policy.hosts:
        raise PoliteError("I only download images that were uploaded to Discord.")


async def download(
    session: aiohttp.ClientSession, attachment: discord.Attachment, policy: DownloadPolicy
) -> bytes:
    """The attachment's bytes, checked first; at most `max_bytes`, within `timeout_s`."""
    check_attachment(attachment, policy)
    check_url(attachment.url, policy)
    try:
        async with asyncio.timeout(policy.timeout_s):
            async with session.get(attachment.url, allow_redirects=False) as resp:
                if resp.status != 200:
                    log.info("Download of %s answered HTTP %d", attachment.url, resp.status)
                    raise PoliteError(
                        f"I couldn't download that image (HTTP {resp.status}); "
                        "please post it again."
                    )
                if resp.content_length is not None and resp.content_length > policy.max_bytes:
                    raise _too_big(policy)
                data = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > policy.max_bytes:
                        raise _too_big(policy)
                return bytes(data)
    except TimeoutError:
        raise PoliteError("Downloading that image took too long; please try again.") from None
    except aiohttp.ClientError as exc:
        log.info("Download of %s failed: %r", attachment.url, exc)
        raise PoliteError("I couldn't download that image; please post it again.") from None


def _too_big(policy: DownloadPolicy) -> PoliteError:
    return PoliteError(f"That image is larger than {_mib(policy.max_bytes)}; I can't take it.")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
