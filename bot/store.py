"""Storage behind typed methods: server settings, server presets, the dreams and their limits.

A SQLite file by default (its path comes from settings), or a PostgreSQL server when
`DREAMBOT_DATABASE_URL` names one (several bot processes then share it); `database` runs the
same SQL and the same migrations on either, without blocking the event loop. The schema is
created and migrated on open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from dreamcore.jobs import JobSpec

from .database import (
    DATABASE_TIMEOUT_S,
    Database,
    Queries,
    SchemaError,
    is_postgres_url,
    open_database,
    redact_url,
)

__all__ = [
    "SCHEMA_VERSION",
    "DreamRecord",
    "DreamStatus",
    "GuildConfig",
    "LimitReached",
    "Limits",
    "SchemaError",
    "ServerPreset",
    "Store",
]

log = logging.getLogger(__name__)

DreamStatus = Literal["queued", "done", "failed", "cancelled"]

# Each entry moves the schema one version up; never edit one that has shipped, append instead.
_MIGRATIONS: tuple[str, ...] = (
    # 1: server settings, server presets, dreams
    """
    CREATE TABLE guild_config (
        guild_id INTEGER PRIMARY KEY,
        allowed_channels TEXT NOT NULL DEFAULT '[]',
        default_preset TEXT,
        max_image_side INTEGER,
        cooldown_s REAL,
        disabled_presets TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE guild_presets (
        guild_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        spec TEXT NOT NULL,
        updated_by INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (guild_id, name)
    );
    CREATE TABLE dreams (
        id TEXT PRIMARY KEY,
        owner_id INTEGER NOT NULL,
        guild_id INTEGER,
        channel_id INTEGER,
        label TEXT NOT NULL,
        spec TEXT NOT NULL,
        source BLOB,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    """,
    # 2: quota look-ups by owner and finish time
    """
    CREATE INDEX dreams_by_owner ON dreams (owner_id, status, finished_at);
    """,
    # 3: limits are reserved on rows that are not finished yet, counted from when they were asked
    """
    CREATE INDEX dreams_by_owner_asked ON dreams (owner_id, created_at);
    CREATE INDEX dreams_by_guild_status ON dreams (guild_id, status);
    """,
    # 4: several bot processes share one database: each one's dreams carry its name
    """
    ALTER TABLE dreams ADD COLUMN runner TEXT NOT NULL DEFAULT '';
    CREATE INDEX dreams_by_runner_status ON dreams (runner, status);
    """,
    # 5: a zoom counts as several dreams; a server may cap the frames of a zoom
    """
    ALTER TABLE dreams ADD COLUMN cost INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE guild_config ADD COLUMN max_zoom_frames INTEGER;
    """,
    # 6: a `like` dream keeps its guide picture beside its photo (Re-roll, resume after restart)
    """
    ALTER TABLE dreams ADD COLUMN guide BLOB;
    """,
    # 7: a server may keep dreams out of some channels while every other one stays open
    """
    ALTER TABLE guild_config ADD COLUMN denied_channels TEXT NOT NULL DEFAULT '[]';
    """,
    # 8: a dream saved at shutdown names the message that said so: the next start continues in it
    """
    ALTER TABLE dreams ADD COLUMN paused_message_id INTEGER;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class GuildConfig:
    """What a server's moderators chose; None means "the bot's default"."""

    guild_id: int
    allowed_channels: frozenset[int] = frozenset()  # empty: every channel
    denied_channels: frozenset[int] = frozenset()  # never these, whatever the allowed list
    default_preset: str | None = None
    max_image_side: int | None = None
    cooldown_s: float | None = None
    disabled_presets: frozenset[str] = frozenset()
    max_zoom_frames: int | None = None

    def allows_channel(self, channel_id: int | None, parent_id: int | None = None) -> bool:
        """Threads count as their parent channel."""
        where = {channel_id, parent_id} - {None}
        if where & self.denied_channels:
            return False
        return not self.allowed_channels or bool(where & self.allowed_channels)


@dataclass(frozen=True)
class ServerPreset:
    """A moderator's preset: a name, a description and a validated job spec (base + overrides)."""

    name: str
    description: str
    spec: JobSpec


@dataclass(frozen=True)
class DreamRecord:
    """One dream as asked for: enough to dream it again after a restart."""

    id: str
    owner_id: int
    guild_id: int | None
    channel_id: int | None
    label: str  # the preset name the user chose (a server preset's name, not its base)
    spec: JobSpec
    source: bytes | None = field(default=None, repr=False)
    status: DreamStatus = "queued"
    created_at: float = 0.0
    finished_at: float | None = None
    paused_message_id: int | None = None  # "saved, will continue": where the next start goes on


@dataclass(frozen=True)
class Limits:
    """What one dream may take, checked and reserved together; 0 means "no limit"."""

    cooldown_s: float = 0.0  # between two dreams of one member
    daily_quota: int = 0  # dreams of one member in 24 h, queued, running or done
    per_guild: int = 0  # dreams of one server queued or running at once
    per_member: int = 0  # dreams of one member queued or running at once, in every bot process


class LimitReached(Exception):
    """A reservation was refused: which limit, its value, and when to try again (cooldown)."""

    def __init__(
        self,
        kind: Literal["cooldown", "quota", "guild", "member"],
        limit: float,
        wait_s: float,
        *,
        cost: int = 1,
        left: int = 0,
    ):
        super().__init__(f"{kind} limit {limit:g} reached (wait {wait_s:.1f} s)")
        self.kind = kind
        self.limit = limit
        self.wait_s = wait_s
        self.cost = cost  # how many dreams the refused request counted as
        self.left = left  # of the quota, what was left


# Rows that hold a reservation: a dream asked for and not yet failed or cancelled. "queued" covers
# waiting, downloading and running; "done" still counts for the quota and the cooldown.
_HOLDS = "('queued', 'done')"
_DAY_S = 24 * 3600.0


def _spec_json(spec: JobSpec) -> str:
    return spec.model_dump_json(exclude={"guide"})


class Store:
    """The bot's database; open with `await Store.open(target)` or `async with Store.open(...)`.

    `target` is a SQLite file's path, or a `postgresql://` URL. `runner` names this bot process
    among those sharing the database (e.g. its shard ids): a restart fails only the unfinished
    dreams of its own name, never those another process is still dreaming.
    """

    def __init__(self, db: Database, runner: str = "") -> None:
        self._db = db
        self.runner = runner
        self.path = getattr(db, "path", None)  # the SQLite file, if it is one

    def __repr__(self) -> str:
        return f"<Store {self._db.name!r}>"

    @classmethod
    def open(
        cls, target: Path | str, *, runner: str = "", timeout_s: float = DATABASE_TIMEOUT_S
    ) -> _Opener:
        """Open (creating and migrating) the database; await it or use it with `async with`.

        `timeout_s`: the time limit of every call (a transaction whole); past it the call raises
        `DatabaseTimeoutError` (a `DatabaseUnavailableError`) and holds nothing.
        """
        target = target if is_postgres_url(target) else Path(target)
        return _Opener(cls, target, runner, timeout_s)

    @classmethod
    async def _open(
        cls, target: Path | str, runner: str = "", timeout_s: float = DATABASE_TIMEOUT_S
    ) -> Store:
        db = await open_database(target, timeout_s=timeout_s)
        try:
            version = await db.schema_version()
            if version < SCHEMA_VERSION:
                log.info("Migrating %s to schema version %d", db.name, SCHEMA_VERSION)
            await db.migrate(_MIGRATIONS)
        except BaseException:
            await db.close()
            raise
        return cls(db, runner)

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    async def ping(self) -> None:
        """One trivial round trip (`SELECT 1`): the health check's proof the database answers."""
        await self._db.fetchone("SELECT 1")

    def scrubbed(self, text: str) -> str:
        """A driver's message fit for a log: without the database's password."""
        return self._db.scrubbed(text)

    # --- server settings ---------------------------------------------------------------------

    async def guild_config(self, guild_id: int) -> GuildConfig:
        return await _guild_config(self._db, guild_id)

    async def update_guild_config(self, guild_id: int, **changes: Any) -> GuildConfig:
        """Change some fields of a server's settings; the others keep their values."""
        async with self._db.transaction(f"guild-config:{guild_id}") as q:
            config = replace(await _guild_config(q, guild_id), **changes)
            await _put_guild_config(q, config)
        return config

    # --- server presets ----------------------------------------------------------------------

    async def presets(self, guild_id: int) -> list[ServerPreset]:
        rows = await self._db.fetchall(
            "SELECT name, description, spec FROM guild_presets WHERE guild_id = ? ORDER BY name",
            (guild_id,),
        )
        return [_preset(row) for row in rows]

    async def preset(self, guild_id: int, name: str) -> ServerPreset | None:
        row = await self._db.fetchone(
            "SELECT name, description, spec FROM guild_presets WHERE guild_id = ? AND name = ?",
            (guild_id, name),
        )
        return _preset(row) if row else None

    async def put_preset(
        self, guild_id: int, preset: ServerPreset, *, user_id: int | None = None
    ) -> None:
        """Add a server preset, or replace the one of that name."""
        async with self._db.transaction() as q:
            await q.execute(
                """
                INSERT INTO guild_presets (guild_id, name, description, spec, updated_by,
                                           updated_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (guild_id, name) DO UPDATE SET
                    description = excluded.description, spec = excluded.spec,
                    updated_by = excluded.updated_by, updated_at = excluded.updated_at
                """,
                (
                    guild_id,
                    preset.name,
                    preset.description,
                    _spec_json(preset.spec),
                    user_id,
                    time.time(),
                ),
            )

    async def remove_preset(self, guild_id: int, name: str) -> bool:
        """Remove a server preset, and its name from the server's settings (default, disabled):
        a preset added later under the same name starts with none of the old one's standing."""
        async with self._db.transaction(f"guild-config:{guild_id}") as q:
            changed = await q.execute(
                "DELETE FROM guild_presets WHERE guild_id = ? AND name = ?", (guild_id, name)
            )
            config = await _guild_config(q, guild_id)
            if changed and (config.default_preset == name or name in config.disabled_presets):
                await _put_guild_config(
                    q,
                    replace(
                        config,
                        default_preset=None
                        if config.default_preset == name
                        else config.default_preset,
                        disabled_presets=config.disabled_presets - {name},
                    ),
                )
        return changed > 0

    # --- dreams and the limits they hold -----------------------------------------------------

    async def reserve_dream(
        self, record: DreamRecord, limits: Limits, clock: Callable[[], float] = time.time
    ) -> None:
        """Check every limit and insert the dream as queued, in one transaction.

        The row itself is the reservation: it counts against the cooldown, the daily quota and
        the server's limit until `finish_dream` marks it failed or cancelled. Raises
        `LimitReached` (and writes nothing) when a limit is full. The dream's `created_at` is
        `clock()` read once the locks are held (a caller's stamp would predate a wait for them).
        On PostgreSQL the transaction holds the member's and the server's advisory locks, so
        bot processes sharing the server cannot both take the last place.
        """
        locks = [f"member:{record.owner_id}"]
        if record.guild_id is not None:
            locks.append(f"guild:{record.guild_id}")
        async with self._db.transaction(*locks) as q:
            # Stamped once the locks are held: a reservation that waited for them starts now.
            now = clock()
            await _check_limits(q, record.owner_id, record.guild_id, limits, now, record.spec.cost)
            await _insert_dream(q, replace(record, status="queued", created_at=now), self.runner)

    async def add_dream(self, record: DreamRecord) -> None:
        """Insert a dream without checking any limit (imports, tests)."""
        async with self._db.transaction() as q:
            record = replace(record, created_at=record.created_at or time.time())
            await _insert_dream(q, record, self.runner)

    async def set_source(
        self, dream_id: str, source: bytes | None, guide: bytes | None = None
    ) -> None:
        """Keep the input image (and a `like` dream's guide) of a reserved dream.

        They are downloaded after the reservation; with them the dream can be dreamed again
        (Re-roll, Stronger, Weaker) or resumed after a restart.
        """
        async with self._db.transaction() as q:
            await q.execute(
                "UPDATE dreams SET source = ?, guide = ? WHERE id = ?", (source, guide, dream_id)
            )

    async def dream(self, dream_id: str) -> DreamRecord | None:
        row = await self._db.fetchone("SELECT * FROM dreams WHERE id = ?", (dream_id,))
        return _record(row) if row is not None else None

    async def unfinished_dreams(
        self, adopt: Callable[[int | None], bool] | None = None
    ) -> list[DreamRecord]:
        """This runner's dreams still queued (a previous run stopped before they ended), and
        those of any runner in the servers `adopt` says are this one's: after the shards were
        split differently, a dream saved under the old layout's name is picked up by whichever
        process now holds its server, not left queued (and counted against limits) for good."""
        rows = await self._db.fetchall(
            "SELECT * FROM dreams WHERE status = 'queued' ORDER BY created_at"
        )
        return [
            _record(row)
            for row in rows
            if row["runner"] == self.runner or (adopt is not None and adopt(row["guild_id"]))
        ]

    async def set_paused_message(self, dream_id: str, message_id: int) -> None:
        """The message that told the member their dream is saved (at shutdown): the next start
        continues the dream in it, so it does not keep saying the dream is waiting."""
        async with self._db.transaction() as q:
            await q.execute(
                "UPDATE dreams SET paused_message_id = ? WHERE id = ?", (message_id, dream_id)
            )

    async def finish_dream(
        self, dream_id: str, status: DreamStatus, *, at: float | None = None
    ) -> None:
        """End a dream; failed and cancelled ones give their reservation back. `at`: when it
        ended (now unless given: a write retried after a database outage keeps the true time)."""
        async with self._db.transaction() as q:
            await q.execute(
                "UPDATE dreams SET status = ?, finished_at = ? WHERE id = ?",
                (status, time.time() if at is None else at, dream_id),
            )

    async def count_dreams_since(self, owner_id: int, since: float) -> int:
        """Dreams a user asked for since a time, queued, running or done (not failed/cancelled)."""
        return await _count_dreams_since(self._db, owner_id, since)

    async def last_dream_at(self, owner_id: int) -> float | None:
        """When the user last asked for a dream that holds its cooldown (not failed/cancelled)."""
        return await _last_dream_at(self._db, owner_id)

    async def fail_unfinished(self) -> int:
        """This runner's dreams left queued by its previous run will never finish: failed."""
        async with self._db.transaction() as q:
            return await q.execute(
                "UPDATE dreams SET status = 'failed', finished_at = ? "
                "WHERE status = 'queued' AND runner = ?",
                (time.time(), self.runner),
            )

    async def prune_sources(self, older_than: float) -> int:
        """Forget input images older than a time (the dreams' rows stay, for quotas)."""
        async with self._db.transaction() as q:
            return await q.execute(
                "UPDATE dreams SET source = NULL, guide = NULL "
                "WHERE source IS NOT NULL AND created_at < ? "
                "AND status != 'queued'",
                (older_than,),
            )


async def _put_guild_config(q: Queries, config: GuildConfig) -> None:
    await q.execute(
        """
        INSERT INTO guild_config
            (guild_id, allowed_channels, denied_channels, default_preset, max_image_side,
             cooldown_s, disabled_presets, max_zoom_frames)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (guild_id) DO UPDATE SET
            allowed_channels = excluded.allowed_channels,
            denied_channels = excluded.denied_channels,
            default_preset = excluded.default_preset,
            max_image_side = excluded.max_image_side,
            cooldown_s = excluded.cooldown_s,
            disabled_presets = excluded.disabled_presets,
            max_zoom_frames = excluded.max_zoom_frames
        """,
        (
            config.guild_id,
            json.dumps(sorted(config.allowed_channels)),
            json.dumps(sorted(config.denied_channels)),
            config.default_preset,
            config.max_image_side,
            config.cooldown_s,
            json.dumps(sorted(config.disabled_presets)),
            config.max_zoom_frames,
        ),
    )


async def _guild_config(q: Queries, guild_id: int) -> GuildConfig:
    row = await q.fetchone("SELECT * FROM guild_config WHERE guild_id = ?", (guild_id,))
    if row is None:
        return GuildConfig(guild_id)
    return GuildConfig(
        guild_id=guild_id,
        allowed_channels=frozenset(json.loads(row["allowed_channels"])),
        denied_channels=frozenset(json.loads(row["denied_channels"])),
        default_preset=row["default_preset"],
        max_image_side=row["max_image_side"],
        cooldown_s=row["cooldown_s"],
        disabled_presets=frozenset(json.loads(row["disabled_presets"])),
        max_zoom_frames=row["max_zoom_frames"],
    )


async def _check_limits(
    q: Queries, owner_id: int, guild_id: int | None, limits: Limits, now: float, cost: int = 1
) -> None:
    """`cost`: how many dreams this one counts as against the quota (a zoom counts several)."""
    if limits.cooldown_s > 0:
        last = await _last_dream_at(q, owner_id)
        if last is not None and now < last + limits.cooldown_s:
            raise LimitReached("cooldown", limits.cooldown_s, last + limits.cooldown_s - now)
    if limits.daily_quota > 0:
        used = await _count_dreams_since(q, owner_id, now - _DAY_S)
        if used + cost > limits.daily_quota:
            raise LimitReached(
                "quota", limits.daily_quota, 0.0, cost=cost, left=max(0, limits.daily_quota - used)
            )
    if limits.per_member > 0:
        mine = await _scalar(
            q, "SELECT COUNT(*) FROM dreams WHERE owner_id = ? AND status = 'queued'", (owner_id,)
        )
        if (mine or 0) >= limits.per_member:
            raise LimitReached("member", limits.per_member, 0.0)
    if limits.per_guild > 0 and guild_id is not None:
        running = await _scalar(
            q, "SELECT COUNT(*) FROM dreams WHERE guild_id = ? AND status = 'queued'", (guild_id,)
        )
        if (running or 0) >= limits.per_guild:
            raise LimitReached("guild", limits.per_guild, 0.0)


async def _count_dreams_since(q: Queries, owner_id: int, since: float) -> int:
    count = await _scalar(
        q,
        f"SELECT COALESCE(SUM(cost), 0) FROM dreams WHERE owner_id = ? AND status IN {_HOLDS} "
        "AND created_at >= ?",
        (owner_id, since),
    )
    return int(count or 0)


async def _last_dream_at(q: Queries, owner_id: int) -> float | None:
    return await _scalar(
        q,
        f"SELECT MAX(created_at) FROM dreams WHERE owner_id = ? AND status IN {_HOLDS}",
        (owner_id,),
    )


async def _scalar(q: Queries, sql: str, params: tuple[Any, ...]) -> Any:
    row = await q.fetchone(sql, params)
    return row[0] if row else None


async def _insert_dream(q: Queries, record: DreamRecord, runner: str) -> None:
    await q.execute(
        """
        INSERT INTO dreams (id, owner_id, guild_id, channel_id, label, spec, source, status,
                            created_at, finished_at, runner, cost, guide)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (
            record.id,
            record.owner_id,
            record.guild_id,
            record.channel_id,
            record.label,
            _spec_json(record.spec),
            record.source,
            record.status,
            record.created_at,
            record.finished_at,
            runner,
            record.spec.cost,
            record.spec.guide if record.source is not None else None,
        ),
    )


def _record(row: Any) -> DreamRecord:
    return DreamRecord(
        id=row["id"],
        owner_id=row["owner_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        label=row["label"],
        spec=_spec(row),
        source=row["source"],
        status=row["status"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        paused_message_id=row["paused_message_id"],
    )


def _spec(row: Any) -> JobSpec:
    """The stored spec, with its guide picture put back (kept apart from the JSON: it's bytes)."""
    spec = JobSpec.model_validate_json(row["spec"])
    return spec if row["guide"] is None else spec.model_copy(update={"guide": row["guide"]})


def _preset(row: Iterable[Any]) -> ServerPreset:
    name, description, spec = tuple(row)
    return ServerPreset(name=name, description=description, spec=JobSpec.model_validate_json(spec))


class _Opener:
    """`Store.open(...)`: awaitable, or an async context manager that closes the store."""

    def __init__(self, cls: type[Store], path: Path | str, runner: str, timeout_s: float) -> None:
        self._cls = cls
        self._path = path
        self._runner = runner
        self._timeout_s = timeout_s
        self._store: Store | None = None

    def __await__(self) -> Generator[Any, None, Store]:
        return self._cls._open(self._path, self._runner, self._timeout_s).__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._cls._open(self._path, self._runner, self._timeout_s)
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()

    def __repr__(self) -> str:
        return f"<Store.open {redact_url(str(self._path))!r}>"
