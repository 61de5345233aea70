"""The bot's configuration: read once from the environment (or `.env`) and passed down.

Every setting has a default except the token, so a missing `DISCORD_TOKEN` fails at start with a
message naming it. All other variables take the `DREAMBOT_` prefix; `.env.example` lists them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


def _split_list(value: object) -> object:
    """Let list settings be written as `a,b,c` in the environment (JSON lists work too)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the bot can be told; one instance made by the composition root."""

    model_config = SettingsConfigDict(
        env_prefix="DREAMBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        populate_by_name=True,
        allow_inf_nan=False,  # `inf` seconds of cooldown or time limit is a typo, not a wish
    )

    # --- Discord -----------------------------------------------------------------------------
    discord_token: SecretStr = Field(
        validation_alias=AliasChoices("DISCORD_TOKEN", "discord_token"),
        description="the bot token from the Developer Portal (required, never logged)",
    )
    command_prefix: str = Field("!", min_length=1, max_length=5)
    message_content: bool = Field(
        True,
        description="ask for the privileged Message Content intent; off: mentions, slash and "
        "context menu still work",
    )
    sync_guilds: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="guild ids that `--sync` copies the commands to (instant); empty: global sync",
    )
    owner_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="users allowed to run owner commands (empty: the application's owner)",
    )

    # --- storage -----------------------------------------------------------------------------
    database_path: Path = Path("data/dreambot.sqlite3")
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host/db: share one database between bot "
        "processes (limits hold across them); unset: the SQLite file at database_path",
    )
    source_retention_h: float = Field(
        24.0, ge=0, description="hours a dream's input image is kept for Re-roll/Stronger/Weaker"
    )
    database_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="the most one database call may take (a transaction whole); past it the "
        "member is told the database is not answering",
    )

    # --- the dream pool ----------------------------------------------------------------------
    devices: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="e.g. cuda:0,cuda:1; empty: every GPU found, else CPU"
    )
    workers_per_device: int = Field(1, ge=1, le=16)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the network's arithmetic: auto = bf16 where the hardware has it"
    )
    batch_max: int | None = Field(
        None,
        ge=1,
        le=64,
        description="queued dreams of one size a worker dreams together; unset: 1 on CPU, 8 on GPU",
    )
    cpu_workers: int | None = Field(None, ge=1, le=64)
    torch_threads: int | None = Field(None, ge=1, le=256)
    models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["efficientnet_lite0"])
    max_queue: int = Field(32, ge=1, le=10_000, description="dreams waiting in the whole bot")
    job_timeout_s: float = Field(300.0, gt=0)
    shutdown_grace_s: float = Field(
        20.0, ge=0, description="on SIGTERM, how long running dreams may take to finish"
    )
    worker_memory_gib: float | None = Field(
        3.0, gt=0, description="memory one dream may use above an idle worker; larger: refused"
    )
    pool_start_timeout_s: float = Field(300.0, gt=0)
    ray_address: str | None = Field(
        None,
        description="run the dream workers as Ray actors: 'auto' (the cluster this host is in) "
        "or ray://head:10001; unset: local worker processes",
    )

    # --- several bot processes (README "Running at scale") ---------------------------------
    shard_count: int | None = Field(
        None, ge=1, le=100_000, description="shards of all bot processes together; unset: one"
    )
    shard_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="the shards this process holds, e.g. 0,1 (needs shard_count); empty: all",
    )

    # --- limits ------------------------------------------------------------------------------
    max_jobs_per_user: int = Field(3, ge=1, le=100, description="one running + N-1 queued")
    max_jobs_per_guild: int = Field(10, ge=1, le=10_000)
    cooldown_s: float = Field(10.0, ge=0, description="default per-user cooldown")
    daily_quota: int = Field(50, ge=0, description="finished dreams per user per day; 0: no limit")
    max_image_side: int = Field(
        1024,
        ge=64,
        le=8192,
        description="largest side a dream works at; results keep the photo's size",
    )
    max_zoom_frames: int = Field(48, ge=2, le=600, description="frames of a zoom, at most")
    zoom_frames: int = Field(24, ge=2, le=600, description="frames of a zoom unless asked")
    zoom_side: int = Field(512, ge=64, le=8192, description="largest side of a zoom's frames")
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_input_pixels: int = Field(40_000_000, ge=1024)
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, ge=64 * 1024, description="cap on top of the channel's upload limit"
    )
    download_timeout_s: float = Field(20.0, gt=0)
    history_limit: int = Field(10, ge=0, le=100, description="recent messages searched for images")

    # --- where images may come from (tests point these at the loopback CDN) ------------------
    cdn_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DISCORD_CDN_HOSTS)
    )
    cdn_schemes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["https"])

    # --- chat behaviour ----------------------------------------------------------------------
    progress_interval_s: float = Field(3.0, ge=0, description="at most one edit per interval")
    interaction_ttl_s: float = Field(
        14 * 60.0, ge=0, description="after this, replies go to the channel, not the token"
    )

    # --- running -----------------------------------------------------------------------------
    health_host: str = "127.0.0.1"
    health_enabled: bool = True
    health_port: int = Field(8080, ge=0, le=65535, description="0: any free port")
    log_level: str = "INFO"

    @field_validator(
        "sync_guilds",
        "owner_ids",
        "devices",
        "models",
        "cdn_hosts",
        "cdn_schemes",
        "shard_ids",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cdn_schemes")
    @classmethod
    def _schemes(cls, value: list[str]) -> list[str]:
        value = [s.lower() for s in value]
        if not value or any(s not in ("https", "http") for s in value):
            raise ValueError("cdn_schemes must be https (or http, for a loopback test server)")
        return value

    @field_validator("cdn_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [h.lower() for h in value]

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if not isinstance(logging.getLevelName(value), int):
            raise ValueError(f"unknown log level {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL (unset: the SQLite file)")
        return value

    @model_validator(mode="after")
    def _shards(self) -> Settings:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("DREAMBOT_SHARD_IDS needs DREAMBOT_SHARD_COUNT")
        if self.shard_count is not None:
            if len(set(self.shard_ids)) != len(self.shard_ids):
                raise ValueError("DREAMBOT_SHARD_IDS names a shard twice")
            if any(not 0 <= i < self.shard_count for i in self.shard_ids):
                raise ValueError(
                    f"DREAMBOT_SHARD_IDS go from 0 to {self.shard_count - 1} "
                    f"(DREAMBOT_SHARD_COUNT is {self.shard_count})"
                )
        return self

    @property
    def runner(self) -> str:
        """This process's name in a shared database: its shards ("" when it holds them all)."""
        if self.shard_count is None or not self.shard_ids:
            return ""
        return f"shards {','.join(map(str, sorted(self.shard_ids)))} of {self.shard_count}"

    def holds_guild(self, guild_id: int | None) -> bool:
        """Whether this process's shards receive a server's events (Discord's rule: shard
        (guild_id >> 22) % shard_count; direct messages come on shard 0)."""
        if self.shard_count is None or not self.shard_ids:
            return True
        shard = 0 if guild_id is None else (guild_id >> 22) % self.shard_count
        return shard in self.shard_ids

    def database_target(self) -> Path | str:
        """What `Store.open` is given: the PostgreSQL URL if one is set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path

    @field_validator("discord_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("DISCORD_TOKEN is empty")
        return value
