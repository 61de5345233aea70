"""Shared test set-up: the tests folder is importable (photos, judge, fakediscord)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = [
    "fakediscord.fixtures",  # the loopback Discord: fake_discord, bot_runner
    "pgserver",  # a real PostgreSQL server: postgres_server
]
