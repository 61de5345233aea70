"""SQLite storage behind typed methods: server settings, server presets and the dreams made.

One file (its path comes from settings) opened through aiosqlite, so the event loop never waits on
the disk. The schema is created and migrated on open, from `PRAGMA user_version`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Iterable
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


def _spec_json(spec: JobSpec) -> str:
    return spec.model_dump_json(exclude={"guide"})


class Store:
    """The bot's database; open with `await Store.open(path)` or `async with Store.open(path)`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

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
        config = replace(await self.guild_config(guild_id), **changes)
        await self._db.execute(
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
        await self._db.commit()
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
        await self._db.execute(
            """
            INSERT INTO guild_presets (guild_id, name, description, spec, updated_by, updated_at)
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
        await self._db.commit()

    async def remove_preset(self, guild_id: int, name: str) -> bool:
        cur = await self._db.execute(
            "DELETE FROM guild_presets WHERE guild_id = ? AND name = ?", (guild_id, name)
        )
        await self._db.commit()
        return cur.rowcount > 0

    # --- dreams ------------------------------------------------------------------------------

    async def add_dream(self, record: DreamRecord) -> None:
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
                record.created_at or time.time(),
                record.finished_at,
            ),
        )
        await self._db.commit()

    async def dream(self, dream_id: str) -> DreamRecord | None:
        async with self._db.execute("SELECT * FROM dreams WHERE id = ?", (dream_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
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

    async def finish_dream(self, dream_id: str, status: DreamStatus) -> None:
        await self._db.execute(
            "UPDATE dreams SET status = ?, finished_at = ? WHERE id = ?",
            (status, time.time(), dream_id),
        )
        await self._db.commit()

    async def count_done_since(self, owner_id: int, since: float) -> int:
        """Finished dreams of a user since a time: failed and cancelled ones do not count."""
        async with self._db.execute(
            "SELECT COUNT(*) FROM dreams WHERE owner_id = ? AND status = 'done' "
            "AND finished_at >= ?",
            (owner_id, since),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def fail_unfinished(self) -> int:
        """Dreams left queued by a previous run will never finish: mark them failed."""
        cur = await self._db.execute(
            "UPDATE dreams SET status = 'failed', finished_at = ? WHERE status = 'queued'",
            (time.time(),),
        )
        await self._db.commit()
        return cur.rowcount

    async def prune_sources(self, older_than: float) -> int:
        """Forget input images older than a time (the dreams' rows stay, for quotas)."""
        cur = await self._db.execute(
            "UPDATE dreams SET source = NULL WHERE source IS NOT NULL AND created_at < ?",
            (older_than,),
        )
        await self._db.commit()
        return cur.rowcount


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
