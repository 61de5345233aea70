"""A real PostgreSQL server for the tests, started in a temporary directory on a loopback port.

`initdb` + `pg_ctl` from Debian's `postgresql` package (or any on PATH). PostgreSQL refuses to
run as root, so as root the data directory belongs to the `postgres` user and the server runs
as that user. Trust authentication on 127.0.0.1 only; every test gets a database of its own.
The `postgres_server` fixture skips (saying why) only when no server can be started at all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "postgres_server"]


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server; `url(db)` for a database on it, `new_database()` for a fresh empty one."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="dreambot-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "dreambot"
        self._run_as: dict[str, str] = {}
        if os.geteuid() == 0:
            self._run_as = {"user": "postgres", "group": "postgres"}
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, **self._run_as
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {proc.stderr.strip() or proc.stdout}")

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import asyncpg

        name = f"test_{uuid.uuid4().hex[:12]}"
        con = await asyncpg.connect(self.url())
        try:
            await con.execute(f'CREATE DATABASE "{name}"')
        finally:
            await con.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no pg_ctl; `.ci/run` installs it)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        reason = f"PostgreSQL could not be started: {exc}"
        print(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.stop()
