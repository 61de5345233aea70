"""The one code path every dream takes, whatever started it: prefix, slash, context menu, button.

`DreamService.start` checks the channel, the options, the limits and the image, submits bytes and a
`JobSpec` to the pool, and returns at once; a task per dream then follows the job's events into one
progress message (edited at most every `progress_interval_s`) and ends with the image reply. The
service never decodes an image: bytes go to the pool, bytes come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord.utils import MISSING

from dreamcore.errors import InvalidParameterError, JobCancelledError
from dreamcore.explore import EXPLORE_SIDE
from dreamcore.jobs import DreamOverrides, ExploreSpec, JobResult, JobSpec
from dreamcore.models import get_model
from dreamcore.pool import (
    DreamPool,
    Job,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
)
from dreamcore.presets import resolve

from .database import DatabaseUnavailableError
from .errors import PoliteError
from .messages import (
    continued_text,
    done_text,
    dropped_text,
    like_text,
    limit_text,
    no_image_text,
    paused_text,
    polite_error,
    progress_text,
    result_embed,
)
from .parsing import (
    EXPLORE_OPTIONS,
    ZOOM_OPTIONS,
    Catalog,
    ResolvedDream,
    build_spec,
    recheck,
    spec_summary,
    zoom_spec,
)
from .replies import InteractionReply, Reply
from .settings import Settings
from .sources import DownloadPolicy, download, find_image
from .store import DreamRecord, DreamStatus, GuildConfig, LimitReached, Limits, Store
from .views import DREAM_ID, DreamAction, result_view, running_view

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ActiveDream", "DreamRequest", "DreamService"]

log = logging.getLogger(__name__)

_DAY_S = 24 * 3600.0
_KIND_OPTIONS = frozenset({*ZOOM_OPTIONS, *EXPLORE_OPTIONS})
_BUDGET_MARGIN = 8 * 1024  # room for the multipart envelope under the upload limit
_STRENGTH_STEP = 1.5
_SEED_RANGE = 2**31
# A dream's end that the database missed is written again after 1 s, then 2, 4, 8, 15, 15...
_RECORD_RETRY_S = 1.0
_RECORD_RETRY_MAX_S = 15.0
# Where a dream resumed after a restart is looked for among what its channel already shows.
_POSTED_LOOKBACK = 100  # messages after it was asked (one request)
_POSTED_SKEW_S = 60.0  # the bot's clock against Discord's
_RESULT_ID = re.compile(rf"dream:(?:reroll|stronger|weaker):({DREAM_ID}):[0-9]+")


@dataclass
class DreamRequest:
    """What someone asked for, before it is checked."""

    reply: Reply
    preset: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    attachment: discord.Attachment | None = None  # the slash option or context-menu target
    message: discord.Message | None = None  # the command's own message (prefix, mention)
    search_history: bool = True
    kind: Literal["dream", "zoom", "explore", "like"] = "dream"
    guide: discord.Attachment | None = None  # `like`: the picture whose features grow


@dataclass
class ActiveDream:
    """A dream in the pool, and what the service needs to follow and cancel it."""

    id: str
    owner_id: int
    guild_id: int | None
    label: str
    job: Job
    reply: Reply
    task: asyncio.Task[None] | None = None
    started: bool = False
    suspended: bool = False  # withdrawn at shutdown: stays queued in the store for the next start
    resumed: bool = False  # picked up after a restart: its result is a new message, pointed to
    posted: discord.Message | None = None  # the result, once sent


class DreamService:
    """Starts dreams and follows them; the cogs and the buttons call into this, nothing else."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        pool: DreamPool,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.session = session
        self.active: dict[str, ActiveDream] = {}
        self.clock = time.time  # when a dream is asked; tests move it past a cooldown
        self._closing = False
        # How dreams ended (id -> status, when) that the database failed to record: written
        # again in the background until they land, and once more at shutdown (`_record`).
        self.unrecorded: dict[str, tuple[DreamStatus, float]] = {}
        self._recorder: asyncio.Task[None] | None = None
        self._records_closed = False
        self.policy = DownloadPolicy(
            max_bytes=settings.max_attachment_bytes,
            max_pixels=settings.max_input_pixels,
            timeout_s=settings.download_timeout_s,
            hosts=frozenset(settings.cdn_hosts),
            schemes=frozenset(settings.cdn_schemes),
        )

    def __repr__(self) -> str:
        return f"<DreamService active={len(self.active)}>"

    # --- what a server offers ----------------------------------------------------------------

    async def guild_config(self, guild_id: int | None) -> GuildConfig | None:
        return await self.store.guild_config(guild_id) if guild_id is not None else None

    async def catalog(self, guild_id: int | None) -> Catalog:
        config = await self.guild_config(guild_id)
        presets = await self.store.presets(guild_id) if guild_id is not None else []
        return Catalog.build(
            config,
            presets,
            models=self.settings.models,
            max_side=self.settings.max_image_side,
        )

    def limits(self, config: GuildConfig | None) -> Limits:
        """The limits that apply to a dream asked for under `config` (None: a DM)."""
        cooldown = self.settings.cooldown_s
        if config is not None and config.cooldown_s is not None:
            cooldown = config.cooldown_s
        return Limits(
            cooldown_s=cooldown,
            daily_quota=self.settings.daily_quota,
            per_guild=self.settings.max_jobs_per_guild,
            per_member=self.settings.max_jobs_per_user,
        )

    async def cooldown_left(self, user_id: int, config: GuildConfig | None) -> float:
        last = await self.store.last_dream_at(user_id)
        cooldown = self.limits(config).cooldown_s
        return 0.0 if last is None else max(0.0, last + cooldown - self.clock())

    async def quota_left(self, user_id: int) -> int | None:
        if self.settings.daily_quota <= 0:
            return None
        used = await self.store.count_dreams_since(user_id, self.clock() - _DAY_S)
        return max(0, self.settings.daily_quota - used)

    def mine(self, user_id: int) -> tuple[int, int]:
        """(running, queued) dreams of a user."""
        running = queued = 0
        for dream in self.active.values():
            if dream.owner_id == user_id:
                if dream.started:
                    running += 1
                else:
                    queued += 1
        return running, queued

    # --- starting a dream --------------------------------------------------------------------

    async def start(self, request: DreamRequest) -> ActiveDream | None:
        """Check, fetch and submit; errors become one polite reply. Returns at submit."""
        reply = request.reply
        try:
            config = await self.guild_config(reply.guild.id if reply.guild else None)
            self._check_channel(reply, config)
            catalog = await self.catalog(reply.guild.id if reply.guild else None)
            options = {k: v for k, v in request.options.items() if k not in _KIND_OPTIONS}
            resolved = build_spec(
                catalog, request.preset, options, output_budget=self._budget(reply)
            )
            resolved = self._shape(request, resolved, config)
            reserved = await self.reserve(reply, resolved, config)
        except Exception as exc:
            await self._say(reply, polite_error(exc))
            return None
        try:
            await reply.ack()
            attachment = await find_image(
                option=request.attachment,
                message=request.message,
                channel=reply.channel if request.search_history else None,
                history_limit=self.settings.history_limit,
            )
            if attachment is None:
                raise PoliteError(no_image_text(self.settings.command_prefix))
            image = await download(self.session, attachment, self.policy)
            if request.kind == "like":
                reserved = await self._with_guide(reserved, request.guide)
            return await self._submit(reply, reserved, image)
        except BaseException as exc:
            await self.release(reserved.id, "cancelled" if _is_cancel(exc) else "failed")
            if not isinstance(exc, Exception):
                raise
            await self._say(reply, polite_error(exc))
            return None

    async def act(
        self, interaction: discord.Interaction, dream_id: str, action: DreamAction
    ) -> None:
        """Re-roll, Stronger or Weaker: the stored input and spec, changed, dreamed again."""
        reply = InteractionReply(interaction, ttl_s=self.settings.interaction_ttl_s)
        try:
            record = await self.store.dream(dream_id)
            if record is None or record.source is None:
                raise PoliteError(
                    "I no longer have the photo of that dream; post it again with `/dream`."
                )
            source = record.source
            guild_id = reply.guild.id if reply.guild else None
            config = await self.guild_config(guild_id)
            self._check_channel(reply, config)
            spec = recheck(await self.catalog(guild_id), record.label, record.spec)
            spec = _changed(spec, action)
            spec = spec.model_copy(update={"output_budget": self._budget(reply)})
            reserved = await self.reserve(reply, ResolvedDream(record.label, spec), config)
        except Exception as exc:
            await self._say(reply, polite_error(exc))
            return
        try:
            await reply.ack()
            await self._submit(reply, reserved, source)
        except BaseException as exc:
            await self.release(reserved.id, "cancelled" if _is_cancel(exc) else "failed")
            if not isinstance(exc, Exception):
                raise
            await self._say(reply, polite_error(exc))

    async def cancel(self, interaction: discord.Interaction, dream_id: str) -> None:
        dream = self.active.get(dream_id)
        if dream is None or dream.job.done:
            await interaction.response.edit_message(view=None)
            return
        await interaction.response.edit_message(content="✖️ Cancelling…", view=None)
        await dream.job.cancel()

    def _shape(
        self, request: DreamRequest, resolved: ResolvedDream, config: GuildConfig | None
    ) -> ResolvedDream:
        """A zoom, an explorer sheet or a `like` is a dream spec plus its own part."""
        spec = resolved.spec
        if request.kind == "zoom":
            cap = self.settings.max_zoom_frames
            if config is not None and config.max_zoom_frames is not None:
                cap = min(cap, config.max_zoom_frames)
            zoom = zoom_spec(
                request.options,
                default_frames=min(cap, self.settings.zoom_frames),
                max_frames=cap,
            )
            side = min(resolve(spec.preset, spec.overrides).max_size, self.settings.zoom_side)
            overrides = spec.overrides.model_copy(update={"max_size": side})
            spec = spec.model_copy(update={"zoom": zoom, "overrides": overrides})
            return ResolvedDream(f"zoom {resolved.label}", spec)
        if request.kind == "explore":
            top = request.options.get("top")
            explore = ExploreSpec(top_channels=str(top) if top else None)
            if explore.top_channels:
                try:
                    get_model(resolve(spec.preset, spec.overrides).model).layer(
                        explore.top_channels
                    )
                except InvalidParameterError as exc:
                    raise PoliteError(str(exc)) from None
            # Cells at most EXPLORE_SIDE whatever the server's cap: 14 cells at a 512 px cap
            # would be 14 stills' work for one dream of the quota.
            side = min(resolve(spec.preset, spec.overrides).max_size, EXPLORE_SIDE)
            overrides = spec.overrides.model_copy(update={"max_size": side})
            spec = spec.model_copy(update={"explore": explore, "overrides": overrides})
            return ResolvedDream("explore", spec)
        if request.kind == "like":
            if request.guide is None:
                raise PoliteError(like_text(self.settings.command_prefix))
            return ResolvedDream(f"like {resolved.label}", spec)
        if spec.preset == "guide":  # a server preset built on `guide` needs the second picture
            prefix = self.settings.command_prefix
            raise PoliteError(
                f"The preset `{resolved.label}` grows a second picture into the first: attach "
                f"both with `{prefix}dream like {resolved.label}`, or pick the second as `guide` "
                "in `/dream`."
            )
        return resolved

    async def _with_guide(
        self, record: DreamRecord, guide: discord.Attachment | None
    ) -> DreamRecord:
        """The guide's bytes, downloaded under the same checks as the photo's, into the spec."""
        if guide is None:
            raise PoliteError(like_text(self.settings.command_prefix))
        try:
            data = await download(self.session, guide, self.policy)
        except PoliteError as exc:
            raise PoliteError(f"The second picture (the guide): {exc.message}") from None
        return replace(record, spec=record.spec.model_copy(update={"guide": data}))

    def _check_channel(self, reply: Reply, config: GuildConfig | None) -> None:
        if config is None or reply.channel is None:
            return
        channel = reply.channel
        parent = getattr(channel, "parent_id", None)
        if not config.allows_channel(getattr(channel, "id", None), parent):
            if not config.allowed_channels:
                raise PoliteError("Dreams don't happen in this channel on this server.")
            where = ", ".join(f"<#{c}>" for c in sorted(config.allowed_channels))
            raise PoliteError(f"Dreams happen in {where} on this server.")

    async def reserve(
        self, reply: Reply, resolved: ResolvedDream, config: GuildConfig | None
    ) -> DreamRecord:
        """The one way into the pool: check and take every limit at once, before any await.

        Stores the dream as queued (which is what the cooldown, the daily quota and the server's
        limit count) in one transaction, so a burst of requests cannot all pass the checks. Every
        command that dreams calls this first, and `release` (or `_follow`, at the end) after.
        """
        if self._closing:
            raise PoliteError("I'm restarting; please try again in a minute.")
        spec = resolved.spec
        if spec.seed is None:
            spec = spec.model_copy(update={"seed": secrets.randbelow(_SEED_RANGE)})
        record = DreamRecord(
            id=secrets.token_hex(6),
            owner_id=reply.user.id,
            guild_id=reply.guild.id if reply.guild else None,
            channel_id=getattr(reply.channel, "id", None),
            label=resolved.label,
            spec=spec,
        )
        try:
            await self.store.reserve_dream(record, self.limits(config), clock=self.clock)
        except LimitReached as exc:
            raise PoliteError(limit_text(exc)) from None
        return record

    async def release(self, dream_id: str, status: DreamStatus = "failed") -> None:
        """Give a reservation back: the dream will not run (failed before submit, or cancelled)."""
        await self._record(dream_id, status)

    async def _record(self, dream_id: str, status: DreamStatus) -> None:
        """Write how a dream ended; a write the database fails is not lost, but retried.

        The member has their answer by now (the image, or why not). Left queued, the row would
        keep counting against their limits, and the next start would dream it (and post it)
        again; so a failed write (a database that hangs, is down or locked) is kept and
        written again in the background, every few seconds, until it lands (`_record_later`),
        and tried once more at shutdown (`close`). The write is idempotent, so every failure is
        retried, a bug's included.
        """
        at = time.time()
        try:
            await self.store.finish_dream(dream_id, status, at=at)
            return
        except Exception as exc:
            self.unrecorded[dream_id] = (status, at)
            log.warning(
                "Could not record dream %s as %s (%s); %s",
                dream_id,
                status,
                exc,
                "stopping, so it stays queued"
                if self._records_closed
                else "trying again in the background",
                # Not the database failing (hung, down, locked): a bug, with its traceback.
                exc_info=not isinstance(exc, DatabaseUnavailableError | OSError),
            )
        if not self._records_closed and (self._recorder is None or self._recorder.done()):
            self._recorder = asyncio.create_task(self._record_later(), name="dreambot-records")

    async def _record_later(self) -> None:
        """Write again the ends the database missed, backing off, until none is left."""
        delay = _RECORD_RETRY_S
        while self.unrecorded:
            await asyncio.sleep(delay)
            await self._record_missed()
            delay = min(delay * 2, _RECORD_RETRY_MAX_S)

    async def _record_missed(self) -> None:
        """One more try for each end the database missed, all at once: each within the
        database's time limit, so the whole takes no longer than one call."""
        missed = list(self.unrecorded.items())
        results = await asyncio.gather(
            *(self.store.finish_dream(id_, status, at=at) for id_, (status, at) in missed),
            return_exceptions=True,
        )
        for (dream_id, (status, at)), result in zip(missed, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("Still could not record dream %s as %s: %s", dream_id, status, result)
            elif self.unrecorded.get(dream_id) == (status, at):
                del self.unrecorded[dream_id]
                log.info(
                    "Recorded dream %s as %s, late: the database answers again", dream_id, status
                )

    def _budget(self, reply: Reply) -> int:
        limit = min(reply.filesize_limit, self.settings.max_upload_bytes)
        return max(64 * 1024, limit - _BUDGET_MARGIN)

    async def _submit(
        self, reply: Reply, record: DreamRecord, image: bytes, *, resumed: bool = False
    ) -> ActiveDream:
        """Hand a reserved dream to the pool and follow it; the reservation is the caller's."""
        if self.settings.source_retention_h > 0:
            await self.store.set_source(record.id, image, record.spec.guide)
        job = await self.pool.submit(
            image,
            record.spec,
            owner=str(record.owner_id),
            timeout_s=self.settings.job_timeout_s * record.spec.cost,
        )
        dream = ActiveDream(
            id=record.id,
            owner_id=record.owner_id,
            guild_id=record.guild_id,
            label=record.label,
            job=job,
            reply=reply,
            resumed=resumed,
        )
        self.active[dream.id] = dream
        dream.task = asyncio.create_task(self._follow(dream), name=f"dream-{dream.id}")
        return dream

    # --- following a dream -------------------------------------------------------------------

    async def _follow(self, dream: ActiveDream) -> None:
        """Events -> one throttled progress message -> the image, or one polite sentence."""
        reporter = _Reporter(dream.reply, self.settings.progress_interval_s)
        status: DreamStatus | None = "failed"
        try:
            await reporter.show(
                progress_text(position=self.pool.queue_position(dream.job.id), label=dream.label),
                view=running_view(dream.id, dream.owner_id),
            )
            async for event in dream.job.events():
                match event:
                    case JobQueued(position=position):
                        reporter.update(progress_text(position=position, label=dream.label))
                    case JobStarted():
                        dream.started = True
                        reporter.update(progress_text(fraction=0.0, label=dream.label))
                    case JobProgress(progress=p):
                        reporter.update(
                            progress_text(
                                fraction=p.fraction,
                                label=dream.label,
                                frame=p.frame,
                                frames=p.frames,
                                unit="frame" if dream.job.spec.zoom else "cell",
                            )
                        )
                    case JobFinished() | JobFailed():
                        break
            result = await dream.job.result()
        except asyncio.CancelledError:
            status = None if dream.suspended else "cancelled"
            with contextlib.suppress(Exception):
                await dream.job.cancel()
            raise
        except JobCancelledError:
            if dream.suspended:
                status = None  # still queued in the store: the next start dreams it
                await reporter.finish(paused_text(dream.label))
                await self._remember_paused(dream)
            elif self._closing:  # withdrawn at shutdown with no photo kept to resume it
                await reporter.finish(dropped_text(dream.label, self.settings.command_prefix))
            else:
                status = "cancelled"
                await reporter.finish("✖️ Dream cancelled.")
        except Exception as exc:
            await reporter.finish(f"⚠️ {polite_error(exc)}")
        else:
            await reporter.finish(done_text(dream.label, result.elapsed_s))
            if await self._deliver(dream, result):
                status = "done"
            if dream.resumed and dream.posted is not None:
                url = dream.posted.jump_url
                await reporter.finish(continued_text(dream.label, result.elapsed_s, url))
        finally:
            self.active.pop(dream.id, None)
            reporter.stop()
            if status is not None:
                # The member has their answer (the image, or why not) whatever the store says;
                # a write the database fails is retried in the background.
                await self._record(dream.id, status)

    async def _deliver(self, dream: ActiveDream, result: JobResult) -> bool:
        embed = result_embed(
            dream.label, result, dream.reply.user, details=spec_summary(dream.job.spec)
        )
        for attempt in range(2):
            file = discord.File(io.BytesIO(result.image), filename=result.filename)
            try:
                dream.posted = await dream.reply.result(
                    embed=embed,
                    file=file,
                    view=result_view(dream.id, dream.owner_id),
                )
                return True
            except discord.HTTPException as exc:
                log.warning("Could not send dream %s (try %d): %s", dream.id, attempt + 1, exc)
                await asyncio.sleep(1.0)
        return False

    async def _say(self, reply: Reply, text: str) -> None:
        try:
            await reply.error(text)
        except discord.HTTPException as exc:
            log.warning("Could not tell %s: %s (%s)", reply.user.id, text, exc)

    # --- shutting down -----------------------------------------------------------------------

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking dreams; running ones get `grace_s` to finish and be delivered.

        Dreams still queued (or still running after the grace) are withdrawn from the pool but
        stay queued in the store with their photo, and the member is told they will continue:
        the next start picks them up (`resume`). Without a stored photo they cannot be resumed,
        so they are dropped, and the member is told how to ask again.

        Last, the ends of dreams the database missed get one more try, within its time limit;
        the log names those that still stay unrecorded.
        """
        self._closing = True
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        for dream in [d for d in self.active.values() if not d.started]:
            await self._suspend(dream)
        running = [d.task for d in self.active.values() if d.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace)
        for dream in list(self.active.values()):
            await self._suspend(dream)
        tasks = [d.task for d in self.active.values() if d.task is not None]
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_records()

    async def _close_records(self) -> None:
        """No more retries in the background: one last try for the ends the database missed
        (within its time limit), and the log names those that still stay unrecorded."""
        self._records_closed = True
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recorder
            self._recorder = None
        if self.unrecorded:
            await self._record_missed()
        if self.unrecorded:
            left = ", ".join(f"{id_} ({status})" for id_, (status, _) in self.unrecorded.items())
            log.warning(
                "Stopping, and the database never recorded how %d dreams ended: %s. Their rows "
                "stay queued: the next start records as done each one whose image it finds in "
                "its channel, and dreams the others again.",
                len(self.unrecorded),
                left,
            )

    async def _suspend(self, dream: ActiveDream) -> None:
        dream.suspended = self.settings.source_retention_h > 0  # else: dropped, and said so
        with contextlib.suppress(Exception):
            await dream.job.cancel()

    async def _remember_paused(self, dream: ActiveDream) -> None:
        """Note which message says the dream is saved: the next start continues it there."""
        message_id = dream.reply.progress_id
        if message_id is None:
            return
        try:
            await self.store.set_paused_message(dream.id, message_id)
        except Exception:
            log.exception("Could not note the saved message of dream %s", dream.id)

    async def resume(self, record: DreamRecord, reply: Reply | None) -> None:
        """Dream again a request the previous run stored as queued; or say plainly it is lost.
        One whose image is already in its channel is recorded as done instead (`_posted`)."""
        if reply is not None and await self._posted(record, reply):
            log.info("Dream %s was delivered before the restart; recording it as done", record.id)
            await self._record(record.id, "done")
            return
        if reply is None or record.source is None:
            await self.release(record.id, "failed")
            if reply is not None:
                await self._say(reply, dropped_text(record.label, self.settings.command_prefix))
            return
        try:
            await self._submit(reply, record, record.source, resumed=True)
        except Exception as exc:
            await self.release(record.id, "failed")
            await self._say(reply, polite_error(exc))

    async def _posted(self, record: DreamRecord, reply: Reply) -> bool:
        """Whether a previous run already posted this dream's image, though its row says queued:
        the process stopped (killed, or with the database down) between posting it and
        recording it. The channel is asked, not the database, since the database is what missed
        it: one request for the messages since the dream was asked, searched for its result
        buttons (their ids carry the dream's id). Not found or not readable: dreamed again."""
        channel = reply.channel
        if channel is None:
            return False
        asked = datetime.fromtimestamp(record.created_at - _POSTED_SKEW_S, tz=UTC)
        try:
            async for message in channel.history(limit=_POSTED_LOOKBACK, after=asked):
                if message.author.bot and record.id in _result_ids(message):
                    return True
        except discord.HTTPException as exc:
            log.info("Could not look for dream %s in its channel: %s", record.id, exc)
        return False


def _result_ids(message: discord.Message) -> set[str]:
    """The dreams whose result buttons (Re-roll, Stronger, Weaker) a message holds."""
    found = set()
    for row in message.components:
        for item in getattr(row, "children", ()):
            if match := _RESULT_ID.fullmatch(getattr(item, "custom_id", None) or ""):
                found.add(match[1])
    return found


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError | JobCancelledError)


def _changed(spec: JobSpec, action: DreamAction) -> JobSpec:
    """The spec of a Re-roll (new seed), or one step Stronger or Weaker (same seed)."""
    if action == "reroll":
        old = spec.seed
        seed = secrets.randbelow(_SEED_RANGE)
        while seed == old:
            seed = secrets.randbelow(_SEED_RANGE)
        return spec.model_copy(update={"seed": seed})
    strength = resolve(spec.preset, spec.overrides).strength
    lo, hi = _strength_bounds()
    new = strength * _STRENGTH_STEP if action == "stronger" else strength / _STRENGTH_STEP
    new = round(min(hi, max(lo, new)), 3)
    if new == strength:
        word = "strongest" if action == "stronger" else "weakest"
        raise PoliteError(f"That dream is already at its {word} ({strength:g}).")
    overrides = spec.overrides.model_copy(update={"strength": new})
    return spec.model_copy(
        update={"overrides": DreamOverrides.model_validate(overrides.model_dump())}
    )


def _strength_bounds() -> tuple[float, float]:
    lo, hi = 0.1, 4.0
    for meta in DreamOverrides.model_fields["strength"].metadata:
        lo = getattr(meta, "ge", lo)
        hi = getattr(meta, "le", hi)
    return lo, hi


class _Reporter:
    """One progress message: shown at once, then edited at most every `interval_s` seconds."""

    def __init__(self, reply: Reply, interval_s: float) -> None:
        self._reply = reply
        self._interval = interval_s
        self._shown: str | None = None
        self._wanted: str | None = None
        self._last = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def show(self, text: str, *, view: discord.ui.View | None = MISSING) -> None:
        await self._edit(text, view=view)
        self._task = asyncio.create_task(self._run())

    def update(self, text: str) -> None:
        self._wanted = text
        self._wake.set()

    async def finish(self, text: str) -> None:
        self.stop()
        await self._edit(text, view=None)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self._last + self._interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._wanted is not None and self._wanted != self._shown:
                await self._edit(self._wanted)

    async def _edit(self, text: str, *, view: Any = MISSING) -> None:
        self._last = time.monotonic()
        try:
            await self._reply.progress(text, view=view)
            self._shown = text
        except discord.HTTPException as exc:
            log.warning("Could not update a progress message: %s", exc)
