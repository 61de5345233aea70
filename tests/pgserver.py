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
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "postgres_server", "stoppable_postgres_server"]


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
        self.start_again()

    def start_again(self) -> None:
        """Start the server on its data directory and port (after `halt`)."""
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
        with contextlib.suppress(OSError, ValueError):
            self.resume()  # a paused server would not hear pg_ctl
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data directory for `start_again`: a server that is
        down, so connecting is refused. `mode` is pg_ctl's: "fast" ends every session with
        PostgreSQL's admin shutdown, "immediate" just drops them."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pause(self) -> None:
        """SIGSTOP every process of the server: it holds its connections and answers nothing,
        like a server that hangs."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        for pid in [postmaster, *_children(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

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


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a postmaster's backends and helpers)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The field after the parenthesised command name is the state, then the parent.
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(Path(stat).parent.name))
    return found


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _started()


@pytest.fixture
def stoppable_postgres_server() -> Iterator[PostgresServer]:
    """A server of the test's own, which it may pause or stop without troubling other tests."""
    yield from _started()


def _started() -> Iterator[PostgresServer]:
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
