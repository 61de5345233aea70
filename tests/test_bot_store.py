"""The SQLite store: a real file, migrated on open, surviving a reopen, quotas from finished dreams."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bot.store import SCHEMA_VERSION, DreamRecord, SchemaError, ServerPreset, Store
from dreamcore.jobs import DreamOverrides, JobSpec

GUILD = 1234


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


async def test_guild_config_changes_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
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


async def test_server_presets_are_stored_as_job_specs(tmp_path: Path) -> None:
    spec = JobSpec(preset="dogs", overrides=DreamOverrides(strength=2.0, steps=3))
    async with Store.open(tmp_path / "bot.sqlite3") as store:
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


async def test_only_finished_dreams_count_for_the_quota(tmp_path: Path) -> None:
    spec = JobSpec(preset="dogs", seed=3)
    async with Store.open(tmp_path / "bot.sqlite3") as store:
        for dream_id, status in (("a" * 12, "done"), ("b" * 12, "failed"), ("c" * 12, "cancelled")):
            await store.add_dream(DreamRecord(dream_id, 7, GUILD, 8, "dogs", spec, b"img"))
            await store.finish_dream(dream_id, status)  # type: ignore[arg-type]
        await store.add_dream(DreamRecord("d" * 12, 7, GUILD, 8, "dogs", spec, b"img"))
        assert await store.count_done_since(7, time.time() - 60) == 1
        assert await store.count_done_since(8, time.time() - 60) == 0
        record = await store.dream("a" * 12)
        assert record is not None and record.spec == spec and record.source == b"img"
        assert record.status == "done"
        assert "img" not in repr(record)


async def test_unfinished_dreams_of_a_previous_run_are_marked_failed(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with Store.open(path) as store:
        await store.add_dream(DreamRecord("e" * 12, 7, None, None, "default", JobSpec()))
    async with Store.open(path) as store:
        assert await store.fail_unfinished() == 1
        record = await store.dream("e" * 12)
        assert record is not None and record.status == "failed"


async def test_old_input_images_are_pruned_but_rows_stay(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.sqlite3") as store:
        old = DreamRecord("f" * 12, 7, None, None, "dogs", JobSpec(), b"x", created_at=1000.0)
        await store.add_dream(old)
        await store.add_dream(DreamRecord("0" * 12, 7, None, None, "dogs", JobSpec(), b"y"))
        assert await store.prune_sources(time.time() - 3600) == 1
        assert (await store.dream("f" * 12)).source is None  # type: ignore[union-attr]
        assert (await store.dream("0" * 12)).source == b"y"  # type: ignore[union-attr]
