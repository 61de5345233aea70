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

Every call (a read, or a whole transaction from waiting for its connection to its commit) has a
time limit, `timeout_s`; past it the call raises `DatabaseTimeoutError` and leaves nothing held:
- PostgreSQL: at the limit the connection is closed, without a word to the server. asyncpg's own
  way out (cancelling the query, or `command_timeout`) sends the server a cancel request and
  keeps the connection until it is answered, so on a server that hangs (stopped, or behind a
  network that drops everything) the call would hang too, or take twice the limit. The server
  rolls the transaction back (and frees its advisory locks) when it reads the closed socket; a
  client that vanishes mid-transaction without closing it (a frozen bot, a cut network) is cut
  off by the server itself after the limit (`idle_in_transaction_session_timeout`, set in each
  write transaction), so no lock is held for longer than that. A COMMIT sent just before the
  limit may still be applied when a hung server wakes: such a write is in doubt, as any write is
  whose answer never came.
- SQLite: the only wait is for the file's write lock (another process's transaction) and for
  this process's other writes; both are bounded by what is left of the limit (SQLite's busy
  timeout), and "database is locked" at the limit is the same `DatabaseTimeoutError`.

A database that is down rather than hung fails a call at once with `DatabaseUnavailableError`
(a one-line message naming the database, redacted), never the driver's own error; a bug (bad
SQL, a broken constraint) keeps its own error, so it still shows as one:
- PostgreSQL: a connection that cannot be opened (refused, unreachable, "the database system is
  starting up / shutting down", a login the server now refuses), and any driver error on a
  connection that the server closed under the call (stopped or restarted: admin shutdown, a
  crash, a dropped network). asyncpg's pool opens new connections in place of the dead ones on
  the next calls, so the same pool serves again once the server is back.
- SQLite: the file's storage failing ("disk I/O error", "unable to open database file", "database
  or disk is full", "attempt to write a readonly database"); the next call tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiosqlite

__all__ = [
    "DATABASE_TIMEOUT_S",
    "Database",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "Queries",
    "SchemaError",
    "is_postgres_url",
    "open_database",
    "redact_url",
]


class SchemaError(RuntimeError):
    """The database was written by a newer version of the bot."""


log = logging.getLogger(__name__)
_T = TypeVar("_T")

DATABASE_TIMEOUT_S = 10.0  # the settings' default (DREAMBOT_DATABASE_TIMEOUT_S)


class DatabaseUnavailableError(ConnectionError):
    """The database named in the settings cannot be opened (its message names it, redacted)."""


class DatabaseTimeoutError(DatabaseUnavailableError, TimeoutError):
    """A database call got no answer within its time limit (the database hangs, or is locked by
    another process); nothing it began is left held. Its message names the database, redacted."""


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
    timeout_s: float  # the time limit of every call, transactions whole

    def scrubbed(self, text: str) -> str:
        """A driver's message fit for a log: without the password of the database's URL."""
        return text

    def _timed_out(self, limit_s: float | None = None) -> DatabaseTimeoutError:
        limit = self.timeout_s if limit_s is None else limit_s
        return DatabaseTimeoutError(f"{self.name} did not answer within {limit:g} s")

    def _unavailable(self, exc: BaseException, what: str = "") -> DatabaseUnavailableError:
        """The driver's error that says the database is down, as one scrubbed line; `what`
        says what failed ("cannot connect"), before the driver's own words."""
        reason = " ".join(self.scrubbed(str(exc)).split())
        words = ": ".join(filter(None, [what, reason]))
        return DatabaseUnavailableError(
            f"{self.name} is unavailable: {words} ({type(exc).__name__})"
            if words
            else f"{self.name} is unavailable ({type(exc).__name__})"
        )

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


async def open_database(target: Path | str, *, timeout_s: float = DATABASE_TIMEOUT_S) -> Database:
    """A PostgreSQL URL opens a pool on that server; anything else is a SQLite file path.
    `timeout_s`: the time limit of each call on it."""
    if is_postgres_url(target):
        return await PostgresDatabase.connect(str(target), timeout_s=timeout_s)
    return await SqliteDatabase.connect(Path(target), timeout_s=timeout_s)


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

    def __init__(
        self, db: aiosqlite.Connection, path: Path, timeout_s: float = DATABASE_TIMEOUT_S
    ) -> None:
        self._db = db
        self._queries = _SqliteQueries(db)
        self._write_lock = asyncio.Lock()  # one connection: one transaction at a time
        self.path = path
        self.name = str(path)
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, path: Path, *, timeout_s: float = DATABASE_TIMEOUT_S) -> SqliteDatabase:
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            # `timeout`: SQLite's busy timeout, how long a statement waits for another
            # process's lock on the file (`transaction` lowers it to what is left of the limit).
            db = await aiosqlite.connect(path, timeout=timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseUnavailableError(f"cannot open the SQLite file {path}: {exc}") from None
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await db.close()
            raise
        return cls(db, path, timeout_s)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        return await self._read(self._queries.fetchone(sql, params))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._read(self._queries.fetchall(sql, params))

    async def _read(self, query: Awaitable[_T]) -> _T:
        """A read within the time limit. It waits only behind this connection's other
        statements (WAL: never for a writer); abandoned at the limit, it still runs, harmlessly,
        on aiosqlite's thread."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await query
        except TimeoutError:
            raise self._timed_out() from None
        except sqlite3.OperationalError as exc:
            self._check_storage(exc)
            raise

    @contextlib.asynccontextmanager
    async def transaction(self, *locks: str) -> AsyncIterator[Queries]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._write_lock.acquire()
        except TimeoutError:
            raise self._timed_out() from None
        try:
            await self._begin(deadline - loop.time())
            try:
                try:
                    yield self._queries
                except BaseException:
                    await self._db.rollback()
                    raise
                await self._db.commit()
            except sqlite3.OperationalError as exc:
                self._check_storage(exc)
                raise
        finally:
            self._write_lock.release()

    def _check_storage(self, exc: sqlite3.OperationalError) -> None:
        """The file's storage failing is the database being unavailable (raised as that);
        anything else stays SQLite's own error (a bug), for the caller to raise."""
        if _storage_failed(exc):
            raise self._unavailable(exc) from None

    async def _begin(self, left_s: float) -> None:
        """`BEGIN IMMEDIATE`, waiting at most `left_s` for another process's write lock.

        Not abandoned when the caller is cancelled: the statement runs on in aiosqlite's thread
        and could open a transaction nobody would end; it is waited for (the busy timeout bounds
        it) and rolled back.
        """
        begin = asyncio.ensure_future(self._begin_immediate(max(1, int(left_s * 1000))))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await begin
                await self._db.rollback()
            raise
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                raise self._timed_out() from None
            self._check_storage(exc)
            raise

    async def _begin_immediate(self, busy_ms: int) -> None:
        await self._db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        await self._db.execute("BEGIN IMMEDIATE")

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


def _locked(exc: sqlite3.OperationalError) -> bool:
    """SQLite's answer when its busy timeout ran out: SQLITE_BUSY ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code & 0xFF) == sqlite3.SQLITE_BUSY if code is not None else "locked" in str(exc)


_STORAGE_FAILED = {
    sqlite3.SQLITE_IOERR,  # "disk I/O error": the disk went away, or failed
    sqlite3.SQLITE_CANTOPEN,  # "unable to open database file" (its journal, or the file itself)
    sqlite3.SQLITE_FULL,  # "database or disk is full"
    sqlite3.SQLITE_READONLY,  # "attempt to write a readonly database" (remounted read-only)
}


def _storage_failed(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _STORAGE_FAILED


# --- PostgreSQL --------------------------------------------------------------------------------

_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_MIGRATE_LOCK = "dreambot:migrate"
_MIGRATE_LIMIT_S = 300.0


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

    def __init__(self, pool: Any, url: str, timeout_s: float = DATABASE_TIMEOUT_S) -> None:
        self._pool = pool
        self._url = url  # only to scrub its password out of drivers' messages
        self.name = redact_url(url)
        self.timeout_s = timeout_s

    @classmethod
    async def connect(
        cls, url: str, *, max_size: int = 8, timeout_s: float = DATABASE_TIMEOUT_S
    ) -> PostgresDatabase:
        import asyncpg

        try:
            # One connection at once (a bad URL or a server that is down fails the start), no
            # floor kept after: with one, asyncpg logs a traceback every retry while the server
            # is down, and the health check already says so once.
            pool = await asyncpg.create_pool(url, init_size=1, min_size=0, max_size=max_size)
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
        return cls(pool, url, timeout_s)

    def scrubbed(self, text: str) -> str:
        return _scrubbed(text, self._url)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        async with self._connection() as con:
            return await _PostgresQueries(con).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._connection() as con:
            return await _PostgresQueries(con).fetchall(sql, params)

    def transaction(self, *locks: str) -> contextlib.AbstractAsyncContextManager[Queries]:
        return self._transaction(locks, self.timeout_s)

    @contextlib.asynccontextmanager
    async def _transaction(self, locks: Sequence[str], limit_s: float) -> AsyncIterator[Queries]:
        async with self._connection(limit_s) as con, con.transaction():
            # A client that stops answering mid-transaction (frozen, or cut off) is cut off by
            # the server after the limit, freeing its locks for every other bot.
            await con.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', $1, true)",
                str(max(1, int(limit_s * 1000))),
            )
            for name in locks:
                await con.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)
            yield _PostgresQueries(con)

    @contextlib.asynccontextmanager
    async def _connection(self, limit_s: float | None = None) -> AsyncIterator[Any]:
        """A pooled connection for one call, closed (hung up on) if the call passes its limit
        (`timeout_s` unless given).

        Nothing is cancelled: at the limit the socket is closed, so whatever awaits the server
        (a query, a lock, the commit, the pool's reset on release) fails at once; the call then
        raises `DatabaseTimeoutError`, and the pool opens a new connection when it needs one.
        """
        import asyncpg

        loop = asyncio.get_running_loop()
        limit_s = self.timeout_s if limit_s is None else limit_s
        deadline = loop.time() + limit_s
        try:
            # Waiting for a free connection, or for a new one to be opened, is cancelled
            # cleanly: nothing has been asked of the server yet.
            con = await self._pool.acquire(timeout=limit_s)
        except TimeoutError:
            raise self._timed_out(limit_s) from None
        except (OSError, asyncpg.PostgresError) as exc:
            # No new connection: refused, unreachable, the server starting up or shutting
            # down, a login it refuses. Not a query of ours, so never a bug in one.
            raise self._unavailable(exc, "cannot connect") from None
        hung_up = False

        def hang_up() -> None:
            nonlocal hung_up
            hung_up = True
            con.terminate()

        timer = loop.call_at(deadline, hang_up)
        try:
            try:
                yield con
            except Exception as exc:
                if hung_up:
                    raise self._timed_out(limit_s) from None
                if _went_away(exc, con):
                    raise self._unavailable(exc, "the connection closed") from None
                raise
            finally:
                # Still under the limit: a reset that hangs (or the wait for a cancel request,
                # if the caller was cancelled mid-query) ends when the timer hangs up.
                try:
                    await self._pool.release(con)
                except Exception as exc:  # the connection is gone; the pool replaces it
                    log.debug("A connection to %s closed on release: %r", self.name, exc)
        finally:
            timer.cancel()

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT to_regclass('schema_version') IS NOT NULL AS present")
        if not row["present"]:
            return 0
        row = await self.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row[0])

    async def migrate(self, migrations: Sequence[str]) -> None:
        # One transaction under one advisory lock: two bots starting at once migrate once. An
        # index built on a large table may take longer than an ordinary call may.
        async with self._transaction([_MIGRATE_LOCK], max(self.timeout_s, _MIGRATE_LIMIT_S)) as q:
            await q.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await q.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            version = int(row[0])
            _check_version(self.name, version, len(migrations))
            for number in range(version, len(migrations)):
                for statement in _statements(_postgres_ddl(migrations[number])):
                    await q.execute(statement)
                await q.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))

    async def close(self) -> None:
        try:  # a hung server would hold a graceful close for ever
            async with asyncio.timeout(self.timeout_s):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()


def _went_away(exc: Exception, con: Any) -> bool:
    """Whether a call failed because the server closed its connection under it (stopped,
    restarted, crashed; the network dropped): a driver's error on a connection now closed.
    A bad statement leaves the connection open, so its error stays a bug's.

    A server that ends an idle session sends a FATAL error out of turn before it closes the
    socket; asyncpg, reading it while idle, is left out of step, and a query sent on that
    connection fails with an InternalClientError ("another operation (2) is in progress").
    """
    import asyncpg

    if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    driver = (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
    )
    return isinstance(exc, driver) and _closed(con)


def _closed(con: Any) -> bool:
    import asyncpg

    try:
        return bool(con.is_closed())
    except asyncpg.InterfaceError:  # the pool took the connection back: because it closed
        return True


def _statements(script: str) -> list[str]:
    """A migration script's statements (the migrations hold no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _check_version(name: str, version: int, known: int) -> None:
    if version > known:
        raise SchemaError(f"{name} has schema version {version}, this bot knows up to {known}")
