"""Settings: a token without a default, secrets kept out of reprs and logs, lists from env."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.__main__ import describe_settings_error, main, pool_config
from bot.settings import Settings

SECRET = "MTIzNDU2Nzg5.secret-token-value"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings leak in from the machine or a .env file in the working directory."""
    import os

    for name in list(os.environ):
        if name.startswith("DREAMBOT_") or name == "DISCORD_TOKEN":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_missing_token_fails_naming_the_setting() -> None:
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "DISCORD_TOKEN is not set" in describe_settings_error(info.value)


def test_main_exits_with_a_message_when_the_token_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_token_never_appears_in_repr_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    settings = Settings()
    assert settings.discord_token.get_secret_value() == SECRET
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert SECRET not in text


def test_invalid_setting_error_names_it_without_echoing_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_COOLDOWN_S", "soon")
    with pytest.raises(ValidationError) as info:
        Settings()
    text = describe_settings_error(info.value)
    assert "DREAMBOT_COOLDOWN_S" in text
    assert SECRET not in text and "soon" not in text


def test_lists_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_SYNC_GUILDS", "123, 456")
    monkeypatch.setenv("DREAMBOT_CDN_HOSTS", "127.0.0.1")
    monkeypatch.setenv("DREAMBOT_CDN_SCHEMES", '["http"]')
    settings = Settings()
    assert settings.sync_guilds == [123, 456]
    assert settings.cdn_hosts == ["127.0.0.1"]
    assert settings.cdn_schemes == ["http"]


def test_defaults_only_download_from_discords_cdn_over_https(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    settings = Settings()
    assert settings.cdn_schemes == ["https"]
    assert set(settings.cdn_hosts) == {"cdn.discordapp.com", "media.discordapp.net"}


def test_other_schemes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_CDN_SCHEMES", "ftp")
    with pytest.raises(ValidationError):
        Settings()


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / "bot.env"
    env.write_text(f"DISCORD_TOKEN={SECRET}\nDREAMBOT_COMMAND_PREFIX=?\n")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.command_prefix == "?"


def test_pool_config_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_DEVICES", "cpu")
    monkeypatch.setenv("DREAMBOT_MAX_JOBS_PER_USER", "2")
    monkeypatch.setenv("DREAMBOT_MAX_QUEUE", "5")
    monkeypatch.setenv("DREAMBOT_PRECISION", "bf16")
    monkeypatch.setenv("DREAMBOT_BATCH_MAX", "3")
    config = pool_config(Settings())
    assert config.batch_max == 3 and config.batch_size("cuda:0") == 3
    assert pool_config(Settings(batch_max=None)).batch_size("cpu") == 1  # type: ignore[call-arg]
    assert pool_config(Settings(batch_max=None)).batch_size("cuda:0") == 8  # type: ignore[call-arg]
    assert config.devices == ("cpu",)
    assert config.max_per_owner == 2
    assert config.max_queue == 5
    assert config.precision == "bf16"
    monkeypatch.setenv("DREAMBOT_PRECISION", "fp16")
    with pytest.raises(ValidationError):
        Settings()


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        env = "DISCORD_TOKEN" if name == "discord_token" else f"DREAMBOT_{name.upper()}"
        assert f"{env}=" in example, env


def test_log_level_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_LOG_LEVEL", "debug")
    assert Settings().log_level == "DEBUG"
    assert isinstance(logging.getLevelName("DEBUG"), int)
    monkeypatch.setenv("DREAMBOT_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError):
        Settings()


def test_a_database_url_selects_postgresql_and_its_password_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    assert Settings().database_target() == Path("data/dreambot.sqlite3")  # the default
    url = "postgresql://bot:hunter2@db:5432/dreambot"
    monkeypatch.setenv("DREAMBOT_DATABASE_URL", url)
    settings = Settings()
    assert settings.database_target() == url
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    monkeypatch.setenv("DREAMBOT_DATABASE_URL", "mysql://bot:hunter2@db/dreambot")
    with pytest.raises(ValidationError) as info:
        Settings()
    text = describe_settings_error(info.value)
    assert "DREAMBOT_DATABASE_URL" in text and "hunter2" not in text


def test_shard_settings_are_checked_and_name_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    assert Settings().shard_count is None and Settings().runner == ""
    monkeypatch.setenv("DREAMBOT_SHARD_COUNT", "4")
    monkeypatch.setenv("DREAMBOT_SHARD_IDS", "3,1")
    assert Settings().runner == "shards 1,3 of 4"
    held = Settings()  # Discord's rule: a server's shard is (id >> 22) % count; DMs on shard 0
    assert held.holds_guild(1 << 22) and held.holds_guild(3 << 22) and held.holds_guild(7 << 22)
    assert not held.holds_guild(2 << 22) and not held.holds_guild(None)
    for ids in ("4", "1,1"):
        monkeypatch.setenv("DREAMBOT_SHARD_IDS", ids)
        with pytest.raises(ValidationError):
            Settings()
    monkeypatch.delenv("DREAMBOT_SHARD_COUNT")
    monkeypatch.setenv("DREAMBOT_SHARD_IDS", "0")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "DREAMBOT_SHARD_COUNT" in describe_settings_error(info.value)


def test_start_up_failures_name_the_setting_at_fault(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that cannot be opened was reported as "Cannot reach Discord"."""
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    monkeypatch.setenv("DREAMBOT_DATABASE_PATH", "/proc/no-such-dir/dreambot.sqlite3")
    with caplog.at_level(logging.ERROR):
        assert main([]) == 1
    text = caplog.text
    assert "database cannot be opened" in text and "DREAMBOT_DATABASE_PATH" in text, text
    assert "Cannot reach Discord" not in text and SECRET not in text


def test_a_health_port_in_use_fails_the_start_before_the_workers_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The port was found taken only once the workers had loaded their models (seconds)."""
    import socket

    from bot import __main__ as root
    from dreamcore.errors import PoolStartError

    started: list[object] = []

    class Workers:
        """Stands where the dream workers would start; records that they were asked to."""

        def __init__(self, config: object) -> None:
            self.config = config

        async def __aenter__(self) -> Workers:
            started.append(self.config)
            raise PoolStartError("not in this test")

        async def __aexit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(root, "DreamPool", Workers)
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("DREAMBOT_HEALTH_PORT", str(taken.getsockname()[1]))
        with caplog.at_level(logging.ERROR):
            assert main([]) == 1
    assert "DREAMBOT_HEALTH_PORT" in caplog.text, caplog.text
    assert started == [], "the workers were started before the port was checked"


def test_a_missing_env_file_is_an_error_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--env-file", "/no/such/.env"])
    assert exited.value.code == 2
    assert "--env-file: /no/such/.env is not a file" in capsys.readouterr().err


def test_settings_refuse_what_would_break_the_bot_after_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    for name, value in (("COOLDOWN_S", "inf"), ("JOB_TIMEOUT_S", "nan"), ("CPU_WORKERS", "0")):
        monkeypatch.setenv(f"DREAMBOT_{name}", value)
        with pytest.raises(ValidationError) as info:
            Settings()
        assert f"DREAMBOT_{name}:" in describe_settings_error(info.value)
        monkeypatch.delenv(f"DREAMBOT_{name}")
    monkeypatch.setenv("DREAMBOT_SHARD_COUNT", "2")
    monkeypatch.setenv("DREAMBOT_SHARD_IDS", "0,2")
    with pytest.raises(ValidationError) as info:
        Settings()
    text = describe_settings_error(info.value)
    assert "DREAMBOT_SHARD_IDS go from 0 to 1 (DREAMBOT_SHARD_COUNT is 2)" in text
    assert "DREAMBOT_?" not in text and "Value error" not in text
