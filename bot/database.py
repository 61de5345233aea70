"""Where the store's SQL runs: a SQLite file (the default) or a PostgreSQL server.

The store writes its SQL once, with `?` placeholders and SQLite's type names; each adapter runs
it on its engine. For PostgreSQL (asyncpg, a small connection pool) the placeholders become
`$1, $2 ...` and the migrations' types their PostgreSQL names (INTEGER -> BIGINT, for Discord's
64-bit ids; REAL -> DOUBLE PRECISION; BLOB -> BYTEA), so both engines get the same schema from
the same migrations.

Writes go through `transaction(*locks)`, which makes a check and the write that depends on it
atomic against every other writer, in this process or another one:
- SQLite: `BEGIN IMMEDIATE` takes the file's write lock before the first read (and one asyncio
  lock serialises this process's tasks on its one connection); the `locks` are not needed.
- PostgreSQL: each name in `locks` is a transaction-scoped advisory lock, taken in the order
  given, so two bots reserving for the same member or server queue behind each other while
  other members go ahead. Callers always name them in the same order (member, then server).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiosqlite

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "Queries",
    "SchemaError",
    "is_postgres_url",
    "open_database",
    "redact_url",
]


class SchemaError(RuntimeError):
    """The database was written by a newer version of the bot."""


class DatabaseUnavailableError(ConnectionError):
    """The database named in the settings cannot be opened (its message names it, redacted)."""


class Queries(Protocol):
    """What the store's SQL runs on: the database itself, or one of its transactions."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...


class Database(ABC):
    """One engine behind the store: reads on their own, writes in `transaction`."""

    name: str  # for logs and repr: a path, or a URL without its password

    @abstractmethod
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def transaction(self, *locks: str) -> contextlib.AbstractAsyncContextManager[Queries]:
        """A write transaction; committed on exit, rolled back on an exception."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def migrate(self, migrations: Sequence[str]) -> None:
        """Apply the migrations past the database's version, each with its version, atomically."""

    @abstractmethod
    async def close(self) -> None: ...


def is_postgres_url(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors: in the user part and in the query
    (`?password=`, which PostgreSQL's URLs accept too)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not even a URL (a bad port, a stray bracket): show none of it
        return "the URL in the settings (unreadable; not shown)"
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _scrubbed(text: str, url: str) -> str:
    """A driver's message with any password from `url` taken out, whatever form it took."""
    secrets: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        secrets += [parts.password or ""]
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


async def open_database(target: Path | str) -> Database:
    """A PostgreSQL URL opens a pool on that server; anything else is a SQLite file path."""
    if is_postgres_url(target):
        return await PostgresDatabase.connect(str(target))
    return await SqliteDatabase.connect(Path(target))


# --- SQLite ------------------------------------------------------------------------------------


class _SqliteQueries:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        async with self._db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._db.execute(sql, tuple(params))
        return cur.rowcount


class SqliteDatabase(Database):
    """One aiosqlite connection (its own thread), WAL journal."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self._queries = _SqliteQueries(db)
        self._write_lock = asyncio.Lock()  # one connection: one transaction at a time
        self.path = path
        self.name = str(path)

    @classmethod
    async def connect(cls, path: Path) -> SqliteDatabase:
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailableError(f"cannot open the SQLite file {path}: {exc}") from None
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        return await self._queries.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._queries.fetchall(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self, *locks: str) -> AsyncIterator[Queries]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._queries
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def migrate(self, migrations: Sequence[str]) -> None:
        version = await self.schema_version()
        _check_version(self.name, version, len(migrations))
        for number in range(version, len(migrations)):
            await self._db.executescript(
                f"BEGIN;\n{migrations[number]}\nPRAGMA user_version = {number + 1};\nCOMMIT;"
            )

    async def close(self) -> None:
        await self._db.close()


# --- PostgreSQL --------------------------------------------------------------------------------

_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_MIGRATE_LOCK = "dreambot:migrate"


@cache
def _postgres_sql(sql: str) -> str:
    """`?` placeholders as `$1, $2 ...` (the store's SQL has no `?` inside string literals)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _postgres_ddl(sql: str) -> str:
    return re.sub(r"\b(INTEGER|REAL|BLOB)\b", lambda m: _TYPES[m.group(1)], sql)


def _rowcount(status: str) -> int:
    """asyncpg answers a statement with its command tag, e.g. "UPDATE 3"."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresQueries:
    def __init__(self, con: Any) -> None:
        self._con = con

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        return await self._con.fetchrow(_postgres_sql(sql), *params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._con.fetch(_postgres_sql(sql), *params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _rowcount(await self._con.execute(_postgres_sql(sql), *params))


class PostgresDatabase(Database):
    """An asyncpg pool; every bot process has its own, all on one server."""

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self._queries = _PostgresQueries(pool)
        self.name = redact_url(url)

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 8) -> PostgresDatabase:
        import asyncpg

        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size)
        except (
            OSError,
            ValueError,  # a URL asyncpg cannot read: a bad port, host or option
            OverflowError,  # a port past 65535
            asyncpg.PostgresError,
            asyncpg.InterfaceError,  # a client option it refuses (e.g. sslmode=bogus)
        ) as exc:
            reason = _scrubbed(str(exc), url) or type(exc).__name__
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}"
            ) from None
        return cls(pool, url)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        return await self._queries.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._queries.fetchall(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self, *locks: str) -> AsyncIterator[Queries]:
        async with self._pool.acquire() as con, con.transaction():
            for name in locks:
                await con.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)
            yield _PostgresQueries(con)

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT to_regclass('schema_version') IS NOT NULL AS present")
        if not row["present"]:
            return 0
        row = await self.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row[0])

    async def migrate(self, migrations: Sequence[str]) -> None:
        # One transaction under one advisory lock: two bots starting at once migrate once.
        async with self.transaction(_MIGRATE_LOCK) as q:
            await q.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await q.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(row[0])
            _check_version(self.name, version, len(migrations))
            for number in range(version, len(migrations)):
                for statement in _statements(_postgres_ddl(migrations[number])):
                    await q.execute(statement)
                await q.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))

    async def close(self) -> None:
        await self._pool.close()


def _statements(script: str) -> list[str]:
    """A migration script's statements (the migrations hold no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _check_version(name: str, version: int, known: int) -> None:
    if version > known:
        raise SchemaError(f"{name} has schema version {version}, this bot knows up to {known}")
