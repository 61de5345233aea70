"""Buttons carry their state in the custom id; messages turn every error into one sentence."""

from __future__ import annotations

import logging
import re

import discord
import pytest

from bot.errors import PoliteError
from bot.messages import polite_error, progress_text, result_embed
from bot.views import CancelButton, DreamActionButton, result_view, running_view
from dreamcore.errors import (
    CorruptImageError,
    ImageTooLargeError,
    JobCancelledError,
    JobTimeoutError,
    OwnerLimitError,
    PoolBusyError,
    UnsupportedImageError,
    WorkerCrashedError,
)
from dreamcore.jobs import JobResult

DREAM = "0123456789ab"
OWNER = 2**63 - 1  # the largest snowflake: the custom id still fits


def custom_ids(view: discord.ui.View) -> list[str]:
    return [item.custom_id for item in view.children]  # type: ignore[attr-defined]


def test_result_buttons_carry_dream_and_owner() -> None:
    ids = custom_ids(result_view(DREAM, OWNER))
    assert ids == [f"dream:{a}:{DREAM}:{OWNER}" for a in ("reroll", "stronger", "weaker")]
    assert all(len(i) <= 100 for i in ids)


def test_buttons_survive_a_restart_because_they_are_rebuilt_from_the_id() -> None:
    view = result_view(DREAM, OWNER)
    assert view.timeout is None and view.is_persistent()
    for custom_id in custom_ids(view):
        match = DreamActionButton.__discord_ui_compiled_template__.fullmatch(custom_id)
        assert match is not None
        assert match["dream"] == DREAM and int(match["owner"]) == OWNER
    cancel = custom_ids(running_view(DREAM, OWNER))[0]
    match = CancelButton.__discord_ui_compiled_template__.fullmatch(cancel)
    assert match is not None and match["dream"] == DREAM


def test_templates_do_not_overlap() -> None:
    cancel = f"dream:cancel:{DREAM}:{OWNER}"
    assert DreamActionButton.__discord_ui_compiled_template__.fullmatch(cancel) is None
    assert (
        CancelButton.__discord_ui_compiled_template__.fullmatch(f"dream:reroll:{DREAM}:1") is None
    )


@pytest.mark.parametrize(
    ("error", "pattern"),
    [
        (PoolBusyError(32), "busy.*try again in a minute"),
        (OwnerLimitError(3), "already have 3"),
        (JobTimeoutError("slow"), "took too long"),
        (JobCancelledError("x"), "cancelled"),
        (WorkerCrashedError("boom"), "try again"),
        (UnsupportedImageError("Not an image: send a JPEG."), "Not an image"),
        (CorruptImageError("The JPEG is damaged."), "damaged"),
        (ImageTooLargeError("Too many pixels."), "Too many pixels"),
        (PoliteError("Just this."), "^Just this.$"),
    ],
)
def test_every_known_error_becomes_one_polite_sentence(error: Exception, pattern: str) -> None:
    text = polite_error(error)
    assert re.search(pattern, text), text
    assert "Traceback" not in text and "\n" not in text


def test_an_unexpected_error_is_logged_but_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        text = polite_error(KeyError("internal detail"))
    assert "internal detail" not in text
    assert any("internal detail" in str(r.exc_info) for r in caplog.records)


def test_progress_goes_from_position_to_percent() -> None:
    assert "position 3" in progress_text(position=3, label="dogs")
    assert "42%" in progress_text(fraction=0.42, label="dogs")
    assert "100%" in progress_text(fraction=1.0)


def test_result_embed_names_preset_model_seed_and_time() -> None:
    result = JobResult(b"x", "png", 10, 10, "dogs", "efficientnet_lite0", 1234, 2.5)
    owner = discord.Object(id=1)
    owner.display_name = "ann"  # type: ignore[attr-defined]
    embed = result_embed("puppies", result, owner)  # type: ignore[arg-type]
    line = embed.description or ""
    for part in ("puppies", "efficientnet_lite0", "1234", "2.5 s"):
        assert part in line
    assert embed.image.url == "attachment://dream-dogs-1234.png"
