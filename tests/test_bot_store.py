"""The store on both engines: a real SQLite file and a real PostgreSQL server (`pgserver`).

Migrated on open, surviving a reopen, quotas from finished dreams, and limits that hold when two
connections (two bot processes) reserve at once. Tests about the SQLite file itself stay
SQLite-only; their PostgreSQL twins follow them.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pgserver import PostgresServer

from bot.database import DatabaseTimeoutError, DatabaseUnavailableError, redact_url
from bot.store import (
    SCHEMA_VERSION,
    DreamRecord,
    LimitReached,
    Limits,
    SchemaError,
    ServerPreset,
    Store,
)
from dreamcore.jobs import DreamOverrides, JobSpec

GUILD = 1234


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "bot.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()


async def test_a_new_file_gets_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.sqlite3"
    async with Store.open(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
    assert path.exists()


async def test_an_old_schema_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    from bot import store as store_module

    # A database written by the first version of the bot.
    db = sqlite3.connect(path)
    db.executescript(store_module._MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    db.execute("INSERT INTO guild_config (guild_id, default_preset) VALUES (?, 'dogs')", (GUILD,))
    db.commit()
    db.close()
    async with Store.open(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION
        assert (await store.guild_config(GUILD)).default_preset == "dogs"
    index = sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'dreams_by_owner'"
    )
    assert index.fetchone() is not None


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaError):
        await Store.open(path)


async def test_postgres_migrates_an_old_schema_once_even_when_two_bots_start_at_once(
    postgres_server: PostgresServer,
) -> None:
    """Version 1 written by hand, then two stores open at once: one migrates, both work."""
    import asyncpg

    from bot import database
    from bot import store as store_module

    url = await postgres_server.new_database()
    con = await asyncpg.connect(url)
    try:
        for statement in database._statements(database._postgres_ddl(store_module._MIGRATIONS[0])):
            await con.execute(statement)
        await con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        await con.execute("INSERT INTO schema_version VALUES (1)")
        await con.execute(
            "INSERT INTO guild_config (guild_id, default_preset) VALUES ($1, 'dogs')",
            2**62,  # Discord ids need 64 bits
        )
    finally:
        await con.close()
    first, second = await asyncio.gather(Store.open(url), Store.open(url))
    try:
        assert await first.schema_version() == await second.schema_version() == SCHEMA_VERSION
        assert (await second.guild_config(2**62)).default_preset == "dogs"
    finally:
        await first.close()
        await second.close()
    con = await asyncpg.connect(url)
    try:
        versions = [r[0] for r in await con.fetch("SELECT version FROM schema_version")]
    finally:
        await con.close()
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


async def test_postgres_refuses_a_newer_schema_and_never_shows_a_password(
    postgres_server: PostgresServer,
) -> None:
    import asyncpg

    url = await postgres_server.new_database()
    con = await asyncpg.connect(url)
    try:
        await con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        await con.execute(f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1})")
    finally:
        await con.close()
    with pytest.raises(SchemaError):
        await Store.open(url)
    secret = url.replace("dreambot@", "dreambot:hunter2@")
    assert "hunter2" not in repr(Store.open(secret))
    wrong_port = secret.replace(str(postgres_server.port), str(postgres_server.port + 1))
    with pytest.raises(ConnectionError) as refused:
        await Store.open(wrong_port)
    assert "hunter2" not in str(refused.value) and "127.0.0.1" in str(refused.value)
    # The password in the query (`?password=`, as PostgreSQL allows), and URLs the driver cannot
    # read (they ended in a traceback): one typed error, no password in it.
    port = str(postgres_server.port)
    for bad in (
        f"{url.replace(port, str(postgres_server.port + 1))}?password=hunter2",
        f"{url.replace(port, 'notaport')}?password=hunter2",
        f"{url.replace(port, '99999')}?password=hunter2",
        f"{url}?sslmode=bogus&password=hunter2",
        "postgresql://dreambot:hunter2@[::1/dreambot",
    ):
        with pytest.raises(DatabaseUnavailableError) as refused:
            await Store.open(bad)
        assert "hunter2" not in str(refused.value), refused.value
        assert "hunter2" not in redact_url(bad)


async def test_guild_config_changes_survive_a_reopen(target: str) -> None:
    path = target
    async with Store.open(path) as store:
        assert (await store.guild_config(GUILD)).allowed_channels == frozenset()
        await store.update_guild_config(GUILD, allowed_channels=frozenset({5, 6}), cooldown_s=3.0)
        await store.update_guild_config(GUILD, disabled_presets=frozenset({"fish"}))
    async with Store.open(path) as store:
        config = await store.guild_config(GUILD)
    assert config.allowed_channels == frozenset({5, 6})
    assert config.cooldown_s == 3.0
    assert config.disabled_presets == frozenset({"fish"})
    assert config.allows_channel(5) and not config.allows_channel(7)
    assert config.allows_channel(99, parent_id=6), "a thread counts as its parent channel"


async def test_a_server_open_everywhere_can_keep_dreams_out_of_some_channels(target: str) -> None:
    async with Store.open(target) as store:
        await store.update_guild_config(GUILD, denied_channels=frozenset({7}))
    async with Store.open(target) as store:
        config = await store.guild_config(GUILD)
    assert config.denied_channels == frozenset({7}) and not config.allowed_channels
    assert config.allows_channel(5) and not config.allows_channel(7)
    assert not config.allows_channel(99, parent_id=7), "a thread counts as its parent channel"


async def test_a_removed_preset_leaves_no_default_or_disabled_entry_behind(target: str) -> None:
    """Re-adding a removed preset's name must not silently make it the default again."""
    spec = JobSpec(preset="dogs", overrides=DreamOverrides(strength=2.0))
    async with Store.open(target) as store:
        for name in ("soft", "hard"):
            await store.put_preset(GUILD, ServerPreset(name, name, spec))
        await store.update_guild_config(
            GUILD, default_preset="soft", disabled_presets=frozenset({"hard", "fish"})
        )
        assert await store.remove_preset(GUILD, "soft")
        assert await store.remove_preset(GUILD, "hard")
        assert not await store.remove_preset(GUILD, "hard")
        config = await store.guild_config(GUILD)
    assert config.default_preset is None
    assert config.disabled_presets == frozenset({"fish"})


async def test_server_presets_are_stored_as_job_specs(target: str) -> None:
    overrides = DreamOverrides(strength=2.0, steps=3, colour="keep", plain_step=0.2)
    spec = JobSpec(preset="dogs", overrides=overrides)
    async with Store.open(target) as store:
        await store.put_preset(GUILD, ServerPreset("puppies", "More dogs", spec), user_id=9)
        await store.put_preset(GUILD + 1, ServerPreset("other", "elsewhere", spec))
        assert [p.name for p in await store.presets(GUILD)] == ["puppies"]
        stored = await store.preset(GUILD, "puppies")
        assert stored is not None and stored.spec == spec
        await store.put_preset(GUILD, ServerPreset("puppies", "Changed", spec))
        assert (await store.preset(GUILD, "puppies")).description == "Changed"  # type: ignore[union-attr]
        assert await store.remove_preset(GUILD, "puppies")
        assert not await store.remove_preset(GUILD, "puppies")
        assert await store.preset(GUILD, "puppies") is None


async def test_failed_and_cancelled_dreams_do_not_count_for_the_quota(target: str) -> None:
    spec = JobSpec(preset="dogs", seed=3)
    async with Store.open(target) as store:
        for dream_id, status in (("a" * 12, "done"), ("b" * 12, "failed"), ("c" * 12, "cancelled")):
            await store.add_dream(DreamRecord(dream_id, 7, GUILD, 8, "dogs", spec, b"img"))
            await store.finish_dream(dream_id, status)  # type: ignore[arg-type]
        await store.add_dream(DreamRecord("d" * 12, 7, GUILD, 8, "dogs", spec, b"img"))
        assert await store.count_dreams_since(7, time.time() - 60) == 2  # done + queued
        assert await store.count_dreams_since(8, time.time() - 60) == 0
        record = await store.dream("a" * 12)
        assert record is not None and record.spec == spec and record.source == b"img"
        assert record.status == "done"
        assert "img" not in repr(record)


async def test_unfinished_dreams_of_a_previous_run_are_marked_failed(target: str) -> None:
    path = target
    async with Store.open(path) as store:
        await store.add_dream(DreamRecord("e" * 12, 7, None, None, "default", JobSpec()))
    async with Store.open(path) as store:
        assert await store.fail_unfinished() == 1
        record = await store.dream("e" * 12)
        assert record is not None and record.status == "failed"


async def test_a_dream_saved_at_shutdown_remembers_the_message_that_said_so(target: str) -> None:
    """The next start continues the dream in that message; Discord's ids need 64 bits."""
    async with Store.open(target) as store:
        await store.add_dream(DreamRecord("p" * 12, 7, GUILD, 8, "dogs", JobSpec(), b"x"))
        await store.set_paused_message("p" * 12, 2**62 + 5)
    async with Store.open(target) as store:
        (record,) = await store.unfinished_dreams()
    assert record.paused_message_id == 2**62 + 5


async def test_old_input_images_are_pruned_but_rows_stay(target: str) -> None:
    async with Store.open(target) as store:
        old = DreamRecord("f" * 12, 7, None, None, "dogs", JobSpec(), b"x", created_at=1000.0)
        await store.add_dream(old)
        await store.finish_dream(old.id, "done")
        queued = DreamRecord("1" * 12, 7, None, None, "dogs", JobSpec(), b"z", created_at=1000.0)
        await store.add_dream(queued)  # kept: a restart may still dream it
        await store.add_dream(DreamRecord("0" * 12, 7, None, None, "dogs", JobSpec(), b"y"))
        assert await store.prune_sources(time.time() - 3600) == 1
        assert (await store.dream("f" * 12)).source is None  # type: ignore[union-attr]
        assert (await store.dream("0" * 12)).source == b"y"  # type: ignore[union-attr]
        assert (await store.dream("1" * 12)).source == b"z"  # type: ignore[union-attr]


async def test_a_like_dream_keeps_its_guide_with_its_photo_until_both_are_pruned(
    target: str,
) -> None:
    """Re-roll and resume need the guide too; it is stored apart from the spec's JSON."""
    async with Store.open(target) as store:
        liked = DreamRecord("2" * 12, 7, GUILD, 8, "like", JobSpec(preset="guide", guide=b"g"))
        await store.reserve_dream(replace(liked, spec=JobSpec(preset="guide")), Limits())
        assert (await store.dream(liked.id)).spec.guide is None  # type: ignore[union-attr]
        await store.set_source(liked.id, b"photo", b"g")
        record = await store.dream(liked.id)
        assert record is not None and record.source == b"photo" and record.spec == liked.spec
        assert "b'g'" not in repr(record)
        await store.finish_dream(liked.id, "done")
        assert await store.prune_sources(time.time() + 1) == 1
        record = await store.dream(liked.id)
        assert record is not None and record.source is None and record.spec.guide is None


# --- limits reserved with their check ----------------------------------------------------------


def _asked(index: int, owner: int = 7, guild: int | None = GUILD) -> DreamRecord:
    return DreamRecord(f"{index:012x}", owner, guild, 8, "dogs", JobSpec(preset="dogs"))


async def _burst(stores: list[Store], records: list[DreamRecord], limits: Limits) -> list[str]:
    """Reserve every record at once, alternating between the stores; 'ok' or the limit's kind."""

    async def one(store: Store, record: DreamRecord) -> str:
        try:
            await store.reserve_dream(record, limits)
        except LimitReached as exc:
            return exc.kind
        return "ok"

    return list(
        await asyncio.gather(*(one(stores[i % len(stores)], r) for i, r in enumerate(records)))
    )


async def test_a_burst_from_one_server_gets_exactly_its_limit_across_two_connections(
    target: str,
) -> None:
    """Two connections to one file stand for two bot processes; 30 ask at once, 10 fit."""
    path = target
    async with Store.open(path) as first, Store.open(path) as second:
        records = [_asked(i, owner=100 + i) for i in range(30)]
        outcomes = await _burst([first, second], records, Limits(per_guild=10))
        assert outcomes.count("ok") == 10 and outcomes.count("guild") == 20, outcomes
        # A failed or cancelled dream gives its place back; a done one too (it no longer runs).
        reserved = [r for r, o in zip(records, outcomes, strict=True) if o == "ok"]
        await first.finish_dream(reserved[0].id, "failed")
        await first.finish_dream(reserved[1].id, "cancelled")
        await first.finish_dream(reserved[2].id, "done")
        later = [_asked(100 + i, owner=200 + i) for i in range(5)]
        outcomes = await _burst([second], later, Limits(per_guild=10))
        assert sorted(outcomes) == ["guild"] * 2 + ["ok"] * 3, outcomes


async def test_a_member_burst_across_two_bots_gets_exactly_the_per_member_limit(
    target: str,
) -> None:
    """Two bot processes (two stores) each get half of 12 requests from one member at once."""
    async with Store.open(target) as first, Store.open(target) as second:
        records = [_asked(300 + i, owner=42, guild=GUILD + (i % 3)) for i in range(12)]
        outcomes = await _burst([first, second], records, Limits(per_member=3))
        assert sorted(outcomes) == ["member"] * 9 + ["ok"] * 3, outcomes
        held = [r for r, o in zip(records, outcomes, strict=True) if o == "ok"]
        await second.finish_dream(held[0].id, "done")  # no longer running: its place is free
        again = await _burst([first], [_asked(400, owner=42)], Limits(per_member=3))
        assert again == ["ok"]


async def test_a_restart_fails_only_its_own_unfinished_dreams(target: str) -> None:
    """Two bots share the database; one restarting must not fail what the other is dreaming."""
    async with Store.open(target, runner="shards 0-1") as a, Store.open(target, runner="2-3") as b:
        await a.add_dream(DreamRecord("a1" * 6, 7, GUILD, None, "dogs", JobSpec()))
        await b.add_dream(DreamRecord("b1" * 6, 8, GUILD, None, "dogs", JobSpec()))
    async with Store.open(target, runner="shards 0-1") as a:
        assert [d.id for d in await a.unfinished_dreams()] == ["a1" * 6]
        assert await a.fail_unfinished() == 1
        assert (await a.dream("b1" * 6)).status == "queued"  # type: ignore[union-attr]
        assert (await a.dream("a1" * 6)).status == "failed"  # type: ignore[union-attr]


async def test_dreams_saved_under_another_shard_layout_go_to_the_process_holding_their_server(
    target: str,
) -> None:
    """One unsharded bot stopped with dreams queued; two sharded ones start in its place: each
    picks up the dreams of its own servers (they were left queued for good, holding limits)."""
    async with Store.open(target) as old:
        await old.add_dream(DreamRecord("a1" * 6, 7, 10 << 22, None, "dogs", JobSpec()))
        await old.add_dream(DreamRecord("b1" * 6, 8, 11 << 22, None, "dogs", JobSpec()))
    async with Store.open(target, runner="shards 0 of 2") as even:
        assert await even.unfinished_dreams() == []
        taken = await even.unfinished_dreams(adopt=lambda g: g is None or (g >> 22) % 2 == 0)
        assert [d.id for d in taken] == ["a1" * 6]


async def test_a_burst_from_one_member_holds_the_cooldown_and_the_quota(target: str) -> None:
    async with Store.open(target) as store:
        outcomes = await _burst([store], [_asked(i) for i in range(5)], Limits(cooldown_s=10))
        assert sorted(outcomes) == ["cooldown"] * 4 + ["ok"], outcomes

        quota = Limits(daily_quota=2)
        outcomes = await _burst([store], [_asked(10 + i, owner=8) for i in range(6)], quota)
        assert sorted(outcomes) == ["ok"] * 2 + ["quota"] * 4, outcomes


async def test_a_failed_or_cancelled_dream_gives_back_its_cooldown_and_quota(target: str) -> None:
    limits = Limits(cooldown_s=60, daily_quota=1)
    async with Store.open(target) as store:
        await store.reserve_dream(_asked(1), limits)
        with pytest.raises(LimitReached) as refused:
            await store.reserve_dream(_asked(2), limits)
        assert refused.value.kind == "cooldown" and 59 < refused.value.wait_s <= 60
        await store.finish_dream(_asked(1).id, "failed")
        await store.reserve_dream(_asked(3), limits)
        await store.finish_dream(_asked(3).id, "cancelled")
        await store.reserve_dream(_asked(4), limits)
        await store.finish_dream(_asked(4).id, "done")
        with pytest.raises(LimitReached) as refused:  # past the cooldown
            await store.reserve_dream(_asked(5), limits, clock=lambda: time.time() + 120)
        assert refused.value.kind == "quota"
        await store.reserve_dream(_asked(6), limits, clock=lambda: time.time() + 25 * 3600)


async def test_a_reservation_that_waits_for_the_lock_is_stamped_when_it_gets_it(
    target: str,
) -> None:
    """Its time starts once it holds the lock, so it never seems to overlap the one it waited for."""
    async with Store.open(target) as first, Store.open(target) as second:
        async with first._db.transaction(f"guild:{GUILD}", "member:7"):
            stamped_early = replace(_asked(1), created_at=time.time())  # ignored: asked, not held
            waiting = asyncio.create_task(second.reserve_dream(stamped_early, Limits(per_guild=1)))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            released = time.time()
        await waiting
        record = await second.dream(_asked(1).id)
        assert record is not None and record.created_at >= released


# --- a database that hangs ---------------------------------------------------------------------

LIMIT_S = 1.0


async def _answered_within(limit_s: float, call: Any) -> float:
    """How long `call` took to raise DatabaseTimeoutError; it must not take much past the limit
    (and the test's own bound keeps a hang from hanging the suite)."""
    began = time.monotonic()
    with pytest.raises(DatabaseTimeoutError, match="did not answer"):
        await asyncio.wait_for(call, timeout=limit_s + 4)
    took = time.monotonic() - began
    assert took < limit_s + 0.5, f"answered in {took:.2f} s, past the {limit_s} s limit"
    return took


async def test_a_stopped_postgres_fails_each_call_within_the_limit_and_serves_again_after(
    stoppable_postgres_server: PostgresServer,
) -> None:
    """A stopped server answers nothing; asyncpg alone would wait for ever (and cancelling its
    query waits for the server to answer the cancel). Each call gets the typed error at the
    limit, holds no lock or connection, and the same store works once the server is back."""
    server = stoppable_postgres_server
    url = await server.new_database()
    async with Store.open(url, timeout_s=LIMIT_S) as store, Store.open(url) as other:
        await store.update_guild_config(GUILD, cooldown_s=3.0)
        server.pause()
        try:
            await _answered_within(LIMIT_S, store.guild_config(GUILD))  # a read
            await _answered_within(LIMIT_S, store.update_guild_config(GUILD, cooldown_s=4.0))
            await _answered_within(LIMIT_S, store.reserve_dream(_asked(1), Limits(per_member=1)))
            # More calls at once than the pool has connections: each still answered in time.
            many = [store.presets(GUILD) for _ in range(12)]
            await _answered_within(LIMIT_S, asyncio.gather(*many))
        finally:
            server.resume()
        assert (await store.guild_config(GUILD)).cooldown_s == 3.0, "the write was rolled back"
        # The reservation that timed out holds no advisory lock and left no row: the member's
        # one place is free, from this process and from another one.
        await asyncio.wait_for(other.reserve_dream(_asked(2), Limits(per_member=1)), 5)
        assert await store.dream(_asked(1).id) is None
        with pytest.raises(LimitReached):
            await store.reserve_dream(_asked(3), Limits(per_member=1))


_FROZEN_CLIENT = """
import asyncio, os, signal, sys
from bot.database import open_database

async def main():
    db = await open_database(sys.argv[1], timeout_s=float(sys.argv[2]))
    async with db.transaction("member:7"):
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # a bot frozen (or cut off) mid-transaction

asyncio.run(main())
"""


async def test_a_bot_frozen_mid_transaction_holds_its_locks_no_longer_than_the_limit(
    postgres_server: PostgresServer,
) -> None:
    """Another bot process stops while it holds a member's lock (its host freezes, or the
    network to it drops everything): the server cuts that session off after its limit, so the
    member's next dream is not refused (or waited on) for ever."""
    url = await postgres_server.new_database()
    async with Store.open(url, timeout_s=LIMIT_S) as store:
        frozen = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _FROZEN_CLIENT,
            url,
            str(LIMIT_S),
            cwd=Path(__file__).resolve().parent.parent,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert frozen.stdout is not None
            assert await asyncio.wait_for(frozen.stdout.readline(), 30) == b"locked\n"
            began = time.monotonic()
            while True:  # refused at the limit while the frozen one holds the lock, then served
                try:
                    await asyncio.wait_for(
                        store.reserve_dream(_asked(1), Limits(per_member=1)), LIMIT_S + 4
                    )
                    break
                except DatabaseTimeoutError:
                    assert time.monotonic() - began < 4 * LIMIT_S, "the lock is still held"
            assert time.monotonic() - began < 4 * LIMIT_S
        finally:
            frozen.kill()
            await frozen.wait()


async def test_a_sqlite_file_locked_by_another_process_fails_within_the_limit(
    tmp_path: Path,
) -> None:
    """Another process holds the file's write lock (a long transaction, a backup): a write
    waits at most the limit (SQLite's own busy timeout was 5 s, then "database is locked" as a
    bug's traceback), reads go on meanwhile (WAL), and writes work again once it lets go."""
    path = tmp_path / "bot.sqlite3"
    async with Store.open(path, timeout_s=LIMIT_S) as store:
        await store.update_guild_config(GUILD, cooldown_s=3.0)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            await _answered_within(LIMIT_S, store.update_guild_config(GUILD, cooldown_s=4.0))
            # Two writes of this process at once: the second waits for the first, within the
            # same limit (not one limit after the other).
            both = [store.reserve_dream(_asked(i), Limits()) for i in (1, 2)]
            await _answered_within(LIMIT_S, asyncio.gather(*both))
            assert (await store.guild_config(GUILD)).cooldown_s == 3.0
        finally:
            other.rollback()
            other.close()
        await store.update_guild_config(GUILD, cooldown_s=5.0)
        assert (await store.guild_config(GUILD)).cooldown_s == 5.0
        await store.reserve_dream(_asked(3), Limits())


# --- a database that is down -------------------------------------------------------------------


async def _unavailable_at_once(call: Any, name: str) -> DatabaseUnavailableError:
    """`call` raises DatabaseUnavailableError (not the driver's own error, and not a timeout)
    well within the limit, saying which database in one line, without a password."""
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as failed:
        await asyncio.wait_for(call, timeout=LIMIT_S + 4)
    took = time.monotonic() - began
    assert not isinstance(failed.value, DatabaseTimeoutError), failed.value
    assert took < LIMIT_S / 2, f"failed in {took:.2f} s: it waited, as if the server hung"
    text = str(failed.value)
    assert text.startswith(f"{name} is unavailable") and "\n" not in text, text
    return failed.value


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_a_postgres_that_is_down_fails_each_call_at_once_and_serves_again_once_back(
    stoppable_postgres_server: PostgresServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is stopped ("fast": it ends every session with an admin shutdown;
    "immediate": it just drops them), so the pool's connections are dead and new ones are
    refused. A transaction under way, a read and a write each raise DatabaseUnavailableError
    at once, not asyncpg's ConnectionDoesNotExistError or a ConnectionRefusedError (a bug's
    traceback, and "Something went wrong" for the member). Started again on the same port and
    data, the same store serves again: the pool replaced its dead connections. A bad statement
    is still a bug's own error. The pool keeps no floor of connections, so asyncpg does not log
    a traceback every few seconds while the server is down (the health check says it once)."""
    server = stoppable_postgres_server
    url = await server.new_database()
    name = redact_url(url)
    caplog.set_level(logging.WARNING, logger="asyncpg")
    async with Store.open(url, timeout_s=LIMIT_S) as store:
        await store.update_guild_config(GUILD, cooldown_s=3.0)
        # The test server commits without waiting for its disk: what is committed is written
        # out first, so an immediate stop loses none of it.
        await store._db.fetchone("CHECKPOINT")
        try:

            async def cut_off_mid_transaction() -> None:
                async with store._db.transaction(f"member:{7}") as q:
                    await q.execute(
                        "UPDATE guild_config SET cooldown_s = 9 WHERE guild_id = ?", (GUILD,)
                    )
                    server.halt(mode)
                    await q.fetchone("SELECT 1")

            await _unavailable_at_once(cut_off_mid_transaction(), name)
            for _ in range(2):  # each kind of call, on a dead pooled connection or a new one
                await _unavailable_at_once(store.guild_config(GUILD), name)
                await _unavailable_at_once(store.update_guild_config(GUILD, cooldown_s=4.0), name)
                await _unavailable_at_once(
                    store.reserve_dream(_asked(1), Limits(per_member=1)), name
                )
            refused = await _unavailable_at_once(store.ping(), name)
            assert "Connect call failed" in str(refused), refused
            assert not [r for r in caplog.records if r.name.startswith("asyncpg")], caplog.text
        finally:
            server.start_again()
        assert (await store.guild_config(GUILD)).cooldown_s == 3.0, "nothing was written"
        await store.reserve_dream(_asked(2), Limits(per_member=1))
        assert await store.dream(_asked(1).id) is None
        with pytest.raises(LimitReached):
            await store.reserve_dream(_asked(3), Limits(per_member=1))
        import asyncpg

        with pytest.raises(asyncpg.PostgresSyntaxError):
            await store._db.fetchone("SELEKT 1")


async def test_a_sqlite_file_whose_disk_is_full_is_unavailable_and_writes_again_after(
    tmp_path: Path,
) -> None:
    """SQLite's "database or disk is full" (SQLITE_FULL, here by capping the file's pages, as
    a full disk would) is the database being unavailable, not a bug's traceback; reads go on,
    and writes work again once there is room. Other SQLite errors stay bugs."""
    path = tmp_path / "bot.sqlite3"
    async with Store.open(path, timeout_s=LIMIT_S) as store:
        await store.update_guild_config(GUILD, cooldown_s=3.0)
        pages = (await store._db.fetchone("PRAGMA page_count"))[0]
        await store._db.fetchone(f"PRAGMA max_page_count = {pages}")
        big = replace(_asked(1), source=b"\x89PNG" + bytes(200_000))
        failed = await _unavailable_at_once(store.reserve_dream(big, Limits()), str(path))
        assert "full" in str(failed), failed
        assert (await store.guild_config(GUILD)).cooldown_s == 3.0
        assert await store.dream(big.id) is None
        await store._db.fetchone("PRAGMA max_page_count = 1073741823")
        await store.reserve_dream(big, Limits())
        assert (await store.dream(big.id)) is not None
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store._db.fetchone("SELECT * FROM no_such_table")
