"""SQLite storage behind typed methods: server settings, server presets and the dreams made.

One file (its path comes from settings) opened through aiosqlite, so the event loop never waits on
the disk. The schema is created and migrated on open, from `PRAGMA user_version`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiosqlite

from dreamcore.jobs import JobSpec

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
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SchemaError(RuntimeError):
    """The database file was written by a newer version of the bot."""


@dataclass(frozen=True)
class GuildConfig:
    """What a server's moderators chose; None means "the bot's default"."""

    guild_id: int
    allowed_channels: frozenset[int] = frozenset()  # empty: every channel
    default_preset: str | None = None
    max_image_side: int | None = None
    cooldown_s: float | None = None
    disabled_presets: frozenset[str] = frozenset()

    def allows_channel(self, channel_id: int | None, parent_id: int | None = None) -> bool:
        """Threads count as their parent channel."""
        if not self.allowed_channels:
            return True
        return channel_id in self.allowed_channels or parent_id in self.allowed_channels


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


@dataclass(frozen=True)
class Limits:
    """What one dream may take, checked and reserved together; 0 means "no limit"."""

    cooldown_s: float = 0.0  # between two dreams of one member
    daily_quota: int = 0  # dreams of one member in 24 h, queued, running or done
    per_guild: int = 0  # dreams of one server queued or running at once


class LimitReached(Exception):
    """A reservation was refused: which limit, its value, and when to try again (cooldown)."""

    def __init__(self, kind: Literal["cooldown", "quota", "guild"], limit: float, wait_s: float):
        super().__init__(f"{kind} limit {limit:g} reached (wait {wait_s:.1f} s)")
        self.kind = kind
        self.limit = limit
        self.wait_s = wait_s


# Rows that hold a reservation: a dream asked for and not yet failed or cancelled. "queued" covers
# waiting, downloading and running; "done" still counts for the quota and the cooldown.
_HOLDS = "('queued', 'done')"
_DAY_S = 24 * 3600.0


def _spec_json(spec: JobSpec) -> str:
    return spec.model_dump_json(exclude={"guide"})


class Store:
    """The bot's database; open with `await Store.open(path)` or `async with Store.open(path)`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._write_lock = asyncio.Lock()  # one connection: one transaction at a time

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}>"

    @classmethod
    def open(cls, path: Path | str) -> _Opener:
        """Open (creating and migrating) the database; await it or use it with `async with`."""
        return _Opener(cls, Path(path))

    @classmethod
    async def _open(cls, path: Path) -> Store:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            store = cls(db, path)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has schema version {version}, this bot knows up to {SCHEMA_VERSION}"
            )
        for number in range(version, SCHEMA_VERSION):
            log.info("Migrating %s to schema version %d", self.path, number + 1)
            await self._db.executescript(
                f"BEGIN;\n{_MIGRATIONS[number]}\nPRAGMA user_version = {number + 1};\nCOMMIT;"
            )

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken before the first read, so a check
        and the write that depends on it cannot be split by another writer (task or process)."""
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    # --- server settings ---------------------------------------------------------------------

    async def guild_config(self, guild_id: int) -> GuildConfig:
        async with self._db.execute(
            "SELECT * FROM guild_config WHERE guild_id = ?", (guild_id,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return GuildConfig(guild_id)
        return GuildConfig(
            guild_id=guild_id,
            allowed_channels=frozenset(json.loads(row["allowed_channels"])),
            default_preset=row["default_preset"],
            max_image_side=row["max_image_side"],
            cooldown_s=row["cooldown_s"],
            disabled_presets=frozenset(json.loads(row["disabled_presets"])),
        )

    async def update_guild_config(self, guild_id: int, **changes: Any) -> GuildConfig:
        """Change some fields of a server's settings; the others keep their values."""
        async with self._transaction() as db:
            config = replace(await self.guild_config(guild_id), **changes)
            await db.execute(
                """
                INSERT INTO guild_config
                    (guild_id, allowed_channels, default_preset, max_image_side, cooldown_s,
                     disabled_presets)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (guild_id) DO UPDATE SET
                    allowed_channels = excluded.allowed_channels,
                    default_preset = excluded.default_preset,
                    max_image_side = excluded.max_image_side,
                    cooldown_s = excluded.cooldown_s,
                    disabled_presets = excluded.disabled_presets
                """,
                (
                    guild_id,
                    json.dumps(sorted(config.allowed_channels)),
                    config.default_preset,
                    config.max_image_side,
                    config.cooldown_s,
                    json.dumps(sorted(config.disabled_presets)),
                ),
            )
        return config

    # --- server presets ----------------------------------------------------------------------

    async def presets(self, guild_id: int) -> list[ServerPreset]:
        async with self._db.execute(
            "SELECT name, description, spec FROM guild_presets WHERE guild_id = ? ORDER BY name",
            (guild_id,),
        ) as cur:
            rows = await cur.fetchall()
        return [_preset(row) for row in rows]

    async def preset(self, guild_id: int, name: str) -> ServerPreset | None:
        async with self._db.execute(
            "SELECT name, description, spec FROM guild_presets WHERE guild_id = ? AND name = ?",
            (guild_id, name),
        ) as cur:
            row = await cur.fetchone()
        return _preset(row) if row else None

    async def put_preset(
        self, guild_id: int, preset: ServerPreset, *, user_id: int | None = None
    ) -> None:
        """Add a server preset, or replace the one of that name."""
        async with self._transaction() as db:
            await db.execute(
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
        async with self._transaction() as db:
            cur = await db.execute(
                "DELETE FROM guild_presets WHERE guild_id = ? AND name = ?", (guild_id, name)
            )
        return cur.rowcount > 0

    # --- dreams and the limits they hold -----------------------------------------------------

    async def reserve_dream(self, record: DreamRecord, limits: Limits) -> None:
        """Check every limit and insert the dream as queued, in one transaction.

        The row itself is the reservation: it counts against the cooldown, the daily quota and
        the server's limit until `finish_dream` marks it failed or cancelled. Raises
        `LimitReached` (and writes nothing) when a limit is full. `record.created_at` is "now".
        """
        now = record.created_at or time.time()
        async with self._transaction():
            await self._check_limits(record.owner_id, record.guild_id, limits, now)
            await self._insert_dream(replace(record, status="queued", created_at=now))

    async def _check_limits(
        self, owner_id: int, guild_id: int | None, limits: Limits, now: float
    ) -> None:
        if limits.cooldown_s > 0:
            last = await self._scalar(
                f"SELECT MAX(created_at) FROM dreams WHERE owner_id = ? AND status IN {_HOLDS}",
                (owner_id,),
            )
            if last is not None and now < last + limits.cooldown_s:
                raise LimitReached("cooldown", limits.cooldown_s, last + limits.cooldown_s - now)
        if limits.daily_quota > 0:
            used = await self.count_dreams_since(owner_id, now - _DAY_S)
            if used >= limits.daily_quota:
                raise LimitReached("quota", limits.daily_quota, 0.0)
        if limits.per_guild > 0 and guild_id is not None:
            running = await self._scalar(
                "SELECT COUNT(*) FROM dreams WHERE guild_id = ? AND status = 'queued'",
                (guild_id,),
            )
            if (running or 0) >= limits.per_guild:
                raise LimitReached("guild", limits.per_guild, 0.0)

    async def _scalar(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self._db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def add_dream(self, record: DreamRecord) -> None:
        """Insert a dream without checking any limit (imports, tests)."""
        async with self._transaction():
            await self._insert_dream(replace(record, created_at=record.created_at or time.time()))

    async def _insert_dream(self, record: DreamRecord) -> None:
        await self._db.execute(
            """
            INSERT INTO dreams (id, owner_id, guild_id, channel_id, label, spec, source, status,
                                created_at, finished_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
            ),
        )

    async def set_source(self, dream_id: str, source: bytes | None) -> None:
        """Keep the input image of a reserved dream (downloaded after the reservation)."""
        async with self._transaction() as db:
            await db.execute("UPDATE dreams SET source = ? WHERE id = ?", (source, dream_id))

    async def dream(self, dream_id: str) -> DreamRecord | None:
        async with self._db.execute("SELECT * FROM dreams WHERE id = ?", (dream_id,)) as cur:
            row = await cur.fetchone()
        return _record(row) if row is not None else None

    async def unfinished_dreams(self) -> list[DreamRecord]:
        """Dreams still queued (a previous run stopped before they ended), oldest first."""
        async with self._db.execute(
            "SELECT * FROM dreams WHERE status = 'queued' ORDER BY created_at"
        ) as cur:
            rows = await cur.fetchall()
        return [_record(row) for row in rows]

    async def finish_dream(self, dream_id: str, status: DreamStatus) -> None:
        """End a dream; failed and cancelled ones give their reservation back."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE dreams SET status = ?, finished_at = ? WHERE id = ?",
                (status, time.time(), dream_id),
            )

    async def count_dreams_since(self, owner_id: int, since: float) -> int:
        """Dreams a user asked for since a time, queued, running or done (not failed/cancelled)."""
        count = await self._scalar(
            f"SELECT COUNT(*) FROM dreams WHERE owner_id = ? AND status IN {_HOLDS} "
            "AND created_at >= ?",
            (owner_id, since),
        )
        return int(count or 0)

    async def last_dream_at(self, owner_id: int) -> float | None:
        """When the user last asked for a dream that holds its cooldown (not failed/cancelled)."""
        return await self._scalar(
            f"SELECT MAX(created_at) FROM dreams WHERE owner_id = ? AND status IN {_HOLDS}",
            (owner_id,),
        )

    async def fail_unfinished(self) -> int:
        """Dreams left queued by a previous run will never finish: mark them failed."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE dreams SET status = 'failed', finished_at = ? WHERE status = 'queued'",
                (time.time(),),
            )
        return cur.rowcount

    async def prune_sources(self, older_than: float) -> int:
        """Forget input images older than a time (the dreams' rows stay, for quotas)."""
        async with self._transaction() as db:
            cur = await db.execute(
                "UPDATE dreams SET source = NULL WHERE source IS NOT NULL AND created_at < ? "
                "AND status != 'queued'",
                (older_than,),
            )
        return cur.rowcount


def _record(row: Any) -> DreamRecord:
    return DreamRecord(
        id=row["id"],
        owner_id=row["owner_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        label=row["label"],
        spec=JobSpec.model_validate_json(row["spec"]),
        source=row["source"],
        status=row["status"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


def _preset(row: Iterable[Any]) -> ServerPreset:
    name, description, spec = tuple(row)
    return ServerPreset(name=name, description=description, spec=JobSpec.model_validate_json(spec))


class _Opener:
    """`Store.open(...)`: awaitable, or an async context manager that closes the store."""

    def __init__(self, cls: type[Store], path: Path) -> None:
        self._cls = cls
        self._path = path
        self._store: Store | None = None

    def __await__(self) -> Generator[Any, None, Store]:
        return self._cls._open(self._path).__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._cls._open(self._path)
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
        return f"<Store.open {str(self._path)!r}>"
