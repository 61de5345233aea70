"""Shared test set-up: the tests folder is importable (photos, judge, fakediscord)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest_plugins = [
    "fakediscord.fixtures",  # the loopback Discord: fake_discord, bot_runner
    "pgserver",  # a real PostgreSQL server: postgres_server
]


def pytest_report_header() -> str:
    """Say where the dreams of this run happen: on a GPU machine the tests must run on CUDA."""
    import torch

    from dreamcore.runner import default_device

    dev = default_device()
    name = f" ({torch.cuda.get_device_name()})" if dev == "cuda" else ""
    return f"dream device: {dev}{name}"
