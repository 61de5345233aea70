"""End-to-end: discord.py's real HTTP client and gateway against the loopback Discord.

The bot runs as it does in production (its `DreamBot`, its cogs, its store on a real SQLite file)
and dreams with a real one-worker CPU pool, shared by the whole module because a worker takes
seconds to load its model. Photos are ~96 px and dreams at most 64 px, so each takes well under
a second on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from fakediscord import FakeDiscord, RecordedRequest, payloads
from fakediscord.fixtures import BotRunner, serving
from pgserver import PostgresServer
from PIL import Image, ImageChops, ImageStat

from bot.client import DreamBot
from bot.settings import Settings
from bot.store import Store
from dreamcore.pool import DreamPool, PoolConfig

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
EPHEMERAL = 1 << 6
MAX_QUEUE = 6
RESULT_ID = re.compile(r"dream:(reroll|stronger|weaker):([0-9a-f]{12}):(\d+)")


# --- images ------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def _photo_image() -> Image.Image:
    image = Image.open(ROOT / "assets" / "chelsea.png").convert("RGB")
    image.thumbnail((96, 96))
    return image


PHOTO_IMAGE = _photo_image()
PHOTO = _encode(PHOTO_IMAGE)
JPEG = _encode(PHOTO_IMAGE, "JPEG")


def png_bomb(side: int = 30_000) -> bytes:
    """A valid PNG header claiming side×side pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# --- fixtures ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[DreamPool]:
    config = PoolConfig(
        devices=("cpu",),
        cpu_workers=1,
        torch_threads=1,
        max_queue=MAX_QUEUE,
        max_per_owner=3,
        job_timeout_s=60.0,
        cancel_grace_s=10.0,
    )
    async with DreamPool(config) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="module")
async def fake(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeDiscord]:
    """The loopback Discord; the test fails on anything Discord would refuse or any logged error.

    (The same contract as `fakediscord.fixtures.fake_discord`, in this module's event loop.)
    """
    async with serving(monkeypatch, **getattr(request, "param", {})) as server:
        yield server


@dataclass
class Harness:
    """Builds bots around the fake, the shared pool and one SQLite file; restarts them."""

    fake: FakeDiscord
    pool: DreamPool
    db_path: Path
    runner: BotRunner
    session: aiohttp.ClientSession
    stores: list[Store] = field(default_factory=list)
    bot: DreamBot | None = None

    def settings(self, **changes: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.fake.token,
            "database_path": self.db_path,
            "cdn_hosts": ["127.0.0.1"],
            "cdn_schemes": ["http"],
            "progress_interval_s": 0.2,
            "cooldown_s": 0.0,
            "daily_quota": 0,
            "max_image_side": 64,
            "max_jobs_per_user": 3,
            "shutdown_grace_s": 5.0,
            "health_enabled": False,
            "models": ["efficientnet_lite0"],
            **changes,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    async def start(self, *, sync_commands: bool = False, **changes: Any) -> DreamBot:
        settings = self.settings(**changes)
        store = await Store.open(settings.database_target(), timeout_s=settings.database_timeout_s)
        self.stores.append(store)
        bot = DreamBot(
            settings=settings,
            store=store,
            pool=self.pool,
            session=self.session,
            sync_commands=sync_commands,
            guild_ready_timeout=0.1,
        )
        self.bot = await self.runner.start(bot)
        return bot

    async def restart(self, **changes: Any) -> DreamBot:
        """Stop the bot (as a process exit would) and start a new one on the same file."""
        assert self.bot is not None
        await self.runner.stop(self.bot)
        await self.stores.pop().close()
        return await self.start(**changes)

    async def close(self) -> list[BaseException]:
        errors = await self.runner.stop_all()
        for store in self.stores:
            await store.close()
        return errors


@pytest_asyncio.fixture(loop_scope="module")
async def harness(fake: FakeDiscord, pool: DreamPool, tmp_path: Path) -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as session:
        h = Harness(fake, pool, tmp_path / "bot.sqlite3", BotRunner(fake), session)
        try:
            yield h
        finally:
            errors = await h.close()
    await _pool_idle(pool)
    if errors:
        pytest.fail(f"a bot's connect() failed: {errors!r}", pytrace=False)


async def _pool_idle(pool: DreamPool, timeout: float = 20.0) -> None:
    """Leave the shared pool empty for the next test."""
    async with asyncio.timeout(timeout):
        while (stats := pool.stats()).queued or stats.running or stats.idle < stats.workers:
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module")
async def bot(harness: Harness) -> DreamBot:
    return await harness.start()


# --- helpers -----------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll until `check()` is truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def replies_to(fake: FakeDiscord, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages that reply to `message`, in order, as the fake stores them now."""
    bot_id = fake.bot_user["id"]
    return [
        m
        for m in fake.messages.values()
        if m["author"]["id"] == bot_id
        and (m.get("message_reference") or {}).get("message_id") == message["id"]
    ]


def with_files(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("attachments")]


def upload_of(fake: FakeDiscord, message: dict[str, Any]) -> bytes:
    """The bytes of the file the bot uploaded with a message."""
    for request in fake.recorder.requests:
        response = request.response if isinstance(request.response, dict) else {}
        if request.ok and request.files and response.get("id") == message["id"]:
            return request.files[0].data
    raise AssertionError(f"no upload for message {message['id']}")


def custom_ids(message: dict[str, Any]) -> list[str]:
    return payloads.custom_ids(message)


def button(message: dict[str, Any], action: str) -> str:
    return next(c for c in custom_ids(message) if c.startswith(f"dream:{action}:"))


def assert_dreamed(data: bytes, source: Image.Image = PHOTO_IMAGE) -> Image.Image:
    """A PNG or JPEG that Pillow reads, with the input's aspect ratio, and not the input."""
    image = Image.open(io.BytesIO(data))
    assert image.format in ("PNG", "JPEG")
    image.load()
    ratio_in = source.width / source.height
    ratio_out = image.width / image.height
    assert abs(ratio_in - ratio_out) / ratio_in < 0.05, (source.size, image.size)
    resized = source.resize(image.size).convert("RGB")
    difference = ImageStat.Stat(ImageChops.difference(resized, image.convert("RGB"))).mean
    assert sum(difference) / 3 > 2.0, f"the dream looks like its input ({difference})"
    return image


def seed_of(message: dict[str, Any]) -> int:
    found = re.search(r"seed `(\d+)`", message["embeds"][0]["description"])
    assert found, message["embeds"]
    return int(found[1])


async def ask(
    fake: FakeDiscord,
    content: str,
    *,
    data: bytes | None = PHOTO,
    filename: str = "photo.png",
    author: dict[str, Any] | None = None,
    **attachment: Any,
) -> dict[str, Any]:
    """A member posts `content`, with an attached file unless `data` is None."""
    files = [fake.attachment(data, filename, **attachment)] if data is not None else []
    return await fake.post_message(content, author=author or fake.alice, attachments=files)


async def dream_result(
    fake: FakeDiscord, message: dict[str, Any], *, timeout: float = 30.0
) -> dict[str, Any]:
    found = await eventually(
        lambda: with_files(replies_to(fake, message)), timeout=timeout, what="the dreamed image"
    )
    return found[0]


async def interaction_result(
    fake: FakeDiscord, interaction: dict[str, Any], *, timeout: float = 30.0
) -> RecordedRequest:
    """The followup that carries the interaction's image."""
    token = interaction["token"]
    return await fake.recorder.wait_for(
        lambda r: r.route == "create_followup" and r.params.get("token") == token and bool(r.files),
        timeout=timeout,
    )


def callback_types(fake: FakeDiscord, interaction: dict[str, Any]) -> list[int]:
    return [r.json["type"] for r in fake.recorder.callbacks(interaction["id"])]


async def wait_callback(fake: FakeDiscord, interaction: dict[str, Any]) -> RecordedRequest:
    return await fake.recorder.wait_for(
        lambda r: (
            r.route == "interaction_callback"
            and r.params.get("interaction_id") == str(interaction["id"])
        ),
        timeout=10,
    )


def content_of(request: RecordedRequest) -> str:
    return request.content or ""


def edited_to(fake: FakeDiscord, message_id: str) -> list[str]:
    """Every content a message was edited to, in order."""
    return [content_of(r) for r in fake.recorder.edits(message_id)]


# --- dreams ------------------------------------------------------------------------------------


async def test_prefix_dream_acks_shows_progress_and_replies_with_the_dream(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    asked = await ask(fake, "!dream dogs")
    result = await dream_result(fake, asked)

    assert_dreamed(upload_of(fake, result))
    line = result["embeds"][0]["description"]
    for part in ("dogs", "efficientnet_lite0", "seed", " s"):
        assert part in line, line
    ids = custom_ids(result)
    assert [RESULT_ID.fullmatch(i)[1] for i in ids] == ["reroll", "stronger", "weaker"]  # type: ignore[index]
    assert all(i.endswith(f":{fake.alice['id']}") for i in ids)

    progress = [m for m in replies_to(fake, asked) if m is not result]
    assert len(progress) == 1, "one progress message per dream"
    first = next(r for r in fake.recorder.messages_sent() if r.response["id"] == progress[0]["id"])
    assert "Queued" in content_of(first), "acknowledged with the queue position"
    assert any(c.startswith("dream:cancel:") for c in custom_ids(first.json))
    edits = fake.recorder.edits(progress[0]["id"])
    assert edits and edits[-1].json["content"].startswith("✅"), [e.json for e in edits]
    assert custom_ids(progress[0]) == [], "the Cancel button goes when the dream is done"


async def test_slash_dream_defers_then_follows_up_with_the_image(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    photo = fake.attachment(PHOTO, "photo.png")
    interaction = await fake.slash("dream", {"image": photo, "preset": "cats", "seed": 42})
    followup = await interaction_result(fake, interaction)

    assert callback_types(fake, interaction) == [5], "deferred, nothing else"
    assert_dreamed(followup.files[0].data)
    assert "seed `42`" in followup.json["embeds"][0]["description"]
    original = fake.original_response(interaction)
    assert original["content"].startswith("✅"), "the thinking message became the progress"


async def test_context_menu_dreams_the_target_message(fake: FakeDiscord, bot: DreamBot) -> None:
    target = await ask(fake, "look at my cat", author=fake.bob)
    interaction = await fake.context_menu("Dream this image", target, user=fake.alice)
    followup = await interaction_result(fake, interaction)
    assert callback_types(fake, interaction) == [5]
    assert_dreamed(followup.files[0].data)


async def test_reroll_by_the_owner_gives_a_new_seed_and_others_are_refused(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    asked = await ask(fake, "!dream dogs seed=7")
    result = await dream_result(fake, asked)
    assert seed_of(result) == 7

    stranger = await fake.click(result, button(result, "reroll"), user=fake.bob)
    refusal = await wait_callback(fake, stranger)
    assert refusal.json["type"] == 4
    assert refusal.json["data"]["flags"] & EPHEMERAL
    assert "belong to" in refusal.json["data"]["content"]

    owner = await fake.click(result, button(result, "reroll"), user=fake.alice)
    followup = await interaction_result(fake, owner)
    assert callback_types(fake, owner) == [5]
    assert_dreamed(followup.files[0].data)
    new_seed = int(re.search(r"seed `(\d+)`", followup.json["embeds"][0]["description"])[1])  # type: ignore[index]
    assert new_seed != 7

    stronger = await fake.click(result, button(result, "stronger"), user=fake.alice)
    followup = await interaction_result(fake, stronger)
    assert "seed `7`" in followup.json["embeds"][0]["description"], "stronger keeps the seed"


async def test_cancel_stops_a_running_dream(fake: FakeDiscord, harness: Harness) -> None:
    bot = await harness.start(max_image_side=128)
    done_before = bot.pool.stats().done
    asked = await ask(fake, "!dream dogs steps=100 octaves=4 size=128")
    progress = await eventually(
        lambda: [
            m for m in replies_to(fake, asked) if m["content"].startswith("🌀") and custom_ids(m)
        ],
        what="the dream to start running",
    )
    click = await fake.click(progress[0], custom_ids(progress[0])[0], user=fake.alice)
    assert (await wait_callback(fake, click)).json["type"] == 7
    await eventually(
        lambda: "cancelled" in fake.messages[progress[0]["id"]]["content"],
        what="the progress message to say cancelled",
    )
    await _pool_idle(bot.pool)
    assert not with_files(replies_to(fake, asked)), "a cancelled dream sends no image"
    assert bot.pool.stats().done == done_before


async def test_image_comes_from_the_replied_to_message_or_recent_history(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    photo_post = await ask(fake, "here", author=fake.bob)
    reply = await fake.post_message("!dream", author=fake.alice, reply_to=photo_post)
    assert_dreamed(upload_of(fake, await dream_result(fake, reply)))

    plain = await fake.post_message("!dream eyes", author=fake.bob)
    assert_dreamed(upload_of(fake, await dream_result(fake, plain)))


async def test_no_image_anywhere_gets_a_reply_saying_how_to_attach_one(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    quiet = fake.add_channel(fake.guild, "quiet")
    asked = await fake.post_message("!dream dogs", channel=quiet)
    reply = await fake.wait_for_reply(quiet)
    assert "attach" in reply["content"]
    assert reply["message_reference"]["message_id"] == asked["id"]


async def test_unknown_preset_or_option_gets_one_sentence_naming_the_valid_ones(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    asked = await ask(fake, "!dream dgos")
    reply = await fake.wait_for_reply()
    assert "Did you mean `dogs`" in reply["content"]
    asked = await ask(fake, "!dream dogs strength=9")
    reply = await fake.wait_for_reply()
    assert "between 0.1 and 4.0" in reply["content"]
    interaction = await fake.slash("dream", {"preset": "catz"})
    answer = await wait_callback(fake, interaction)
    assert answer.json["data"]["flags"] & EPHEMERAL
    assert "Did you mean `cats`" in answer.json["data"]["content"]
    assert len(replies_to(fake, asked)) == 1


async def test_a_name_too_long_to_echo_or_full_of_backticks_still_gets_a_clean_reply(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    """A 1990-character preset name was echoed whole: Discord refused the reply (over 2000
    characters, 400 50035) and the member got nothing, in chat and in /dream. Backticks in a
    name ended the code span it was shown in. The fake Discord refuses what Discord would."""
    asked = await ask(fake, "!dream " + "a" * 1990)
    reply = await fake.wait_for_reply()
    assert reply["message_reference"]["message_id"] == asked["id"]
    assert "There is no preset `aaaa" in reply["content"] and "a…`" in reply["content"]
    assert len(reply["content"]) < 400
    interaction = await fake.slash("dream", {"preset": "b" * 2500})
    answer = await wait_callback(fake, interaction)
    assert "There is no preset `bbbb" in answer.json["data"]["content"]
    await ask(fake, "!dream `x`y")
    reply = await fake.wait_for_reply()
    assert "There is no preset `ˋxˋy` here." in reply["content"]


async def test_a_result_after_the_token_expired_goes_to_the_channel(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    # Made 14.5 minutes ago: still answerable, but past the bot's 14-minute trust in the token.
    old = payloads.snowflake(at=time.time() - 14.5 * 60)
    photo = fake.attachment(PHOTO, "photo.png")
    interaction = await fake.slash("dream", {"image": photo}, id=old)
    reply = await fake.wait_for_reply(with_files=True, timeout=30)

    assert f"<@{fake.alice['id']}>" in reply["content"]
    assert_dreamed(upload_of(fake, reply))
    assert callback_types(fake, interaction) == [5]
    assert not fake.recorder.followups(interaction["token"])


# --- buttons and restarts ----------------------------------------------------------------------


async def test_buttons_still_work_after_a_restart(fake: FakeDiscord, harness: Harness) -> None:
    await harness.start()
    asked = await ask(fake, "!dream default seed=3")
    result = await dream_result(fake, asked)
    await harness.restart()

    click = await fake.click(result, button(result, "weaker"), user=fake.alice)
    followup = await interaction_result(fake, click)
    assert_dreamed(followup.files[0].data)
    assert "seed `3`" in followup.json["embeds"][0]["description"]


# --- moderators --------------------------------------------------------------------------------


async def test_moderator_commands_need_manage_server_and_survive_a_restart(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start()
    add = {"name": "puppies", "base": "dogs", "description": "Many dogs", "strength": 2.5,
           "colour": "keep", "plain": 0.2, "anchor": 0.0}  # fmt: skip

    refused = await fake.slash("preset add", add, user=fake.alice)
    answer = await wait_callback(fake, refused)
    assert answer.json["data"]["flags"] & EPHEMERAL
    assert "Manage Server" in answer.json["data"]["content"]
    # default_permissions is only a hint: a member whose permissions say no is refused too.
    sneaky = await fake.slash("dream-config set", {"cooldown": 0.0}, user=fake.bob, permissions=0)
    assert "Manage Server" in (await wait_callback(fake, sneaky)).json["data"]["content"]

    accepted = await fake.slash("preset add", add, user=fake.moderator)
    assert "Added **puppies**" in (await wait_callback(fake, accepted)).json["data"]["content"]
    configured = await fake.slash(
        "dream-config set", {"default_preset": "puppies", "cooldown": 5.0}, user=fake.moderator
    )
    assert "Cooldown: 5 s" in (await wait_callback(fake, configured)).json["data"]["content"]
    disabled = await fake.slash(
        "dream-config presets", {"action": "disable", "name": "fish"}, user=fake.moderator
    )
    assert "fish" in (await wait_callback(fake, disabled)).json["data"]["content"]

    await harness.restart()

    listed = await fake.slash("preset list", user=fake.moderator)
    text = (await wait_callback(fake, listed)).json["data"]["content"]
    assert "puppies" in text and "strength=2.5" in text
    assert "colour=keep" in text and "plain_step=0.2" in text and "anchor=0.0" in text
    shown = await fake.slash("dream-config show", user=fake.moderator)
    text = (await wait_callback(fake, shown)).json["data"]["content"]
    assert "Default preset: `puppies`" in text and "Cooldown: 5 s" in text
    await fake.post_message("!presets", author=fake.alice)
    embed = (await fake.wait_for_reply())["embeds"][0]
    assert "**puppies** (default) — Many dogs" in embed["description"]
    assert "**fish**" not in embed["description"]

    asked = await ask(fake, "!dream")  # the server's default: its own preset
    result = await dream_result(fake, asked)
    assert result["embeds"][0]["description"].startswith("**puppies**")

    again = await fake.slash("preset add", add, user=fake.moderator)
    assert "exists already" in (await wait_callback(fake, again)).json["data"]["content"]
    removed = await fake.slash("preset remove", {"name": "puppies"}, user=fake.moderator)
    text = (await wait_callback(fake, removed)).json["data"]["content"]
    assert "Removed `puppies`" in text and "the default is now `default`" in text, text
    # A preset added again under the name is not the default by surprise.
    readded = await fake.slash("preset add", add, user=fake.moderator)
    assert "Added **puppies**" in (await wait_callback(fake, readded)).json["data"]["content"]
    shown = await fake.slash("dream-config show", user=fake.moderator)
    assert "Default preset: `default`" in (await wait_callback(fake, shown)).json["data"]["content"]


# --- bad input ---------------------------------------------------------------------------------


async def test_bad_inputs_get_one_polite_reply_each_and_the_bot_keeps_serving(
    fake: FakeDiscord, harness: Harness
) -> None:
    # Four requests of one member at once: the per-member limit (held in the store from the
    # reservation on, downloads included) must not be what answers them.
    await harness.start(max_attachment_bytes=1024 * 1024, max_jobs_per_user=4)
    text_as_png = await ask(
        fake, "!dream", data=b"just some text\n" * 40, filename="cat.png", width=96, height=64
    )
    truncated = await ask(fake, "!dream", data=JPEG[: len(JPEG) // 2], filename="cut.jpg")
    oversized = await ask(fake, "!dream", size=50 * 1024 * 1024)
    bomb = await ask(fake, "!dream", data=png_bomb(), filename="bomb.png", width=96, height=64)
    expected = {
        "text": (text_as_png, "not an image|can't read|JPEG, PNG"),
        "truncated": (truncated, "damaged|truncated|incomplete|corrupt"),
        "oversized": (oversized, "50.0 MiB"),
        "bomb": (bomb, "pixels|too large"),
    }
    for name, (asked, pattern) in expected.items():
        answers = await eventually(
            lambda a=asked: [
                m for m in replies_to(fake, a) if not m["content"].startswith(("⏳", "🌀"))
            ],
            what=f"the answer to the {name} file",
        )
        assert len(answers) == 1, (name, answers)
        text = answers[0]["content"]
        assert re.search(pattern, text, re.IGNORECASE), (name, text)
        assert "Traceback" not in text and "\n" not in text
        assert not answers[0].get("attachments")
    cdn = [r.path for r in fake.recorder.requests if r.route == "cdn"]
    oversized_path = oversized["attachments"][0]["url"].split("?")[0].split(str(fake.port))[1]
    assert oversized_path not in cdn, "refused by its size before any download"

    asked = await ask(fake, "!dream dogs")
    assert_dreamed(upload_of(fake, await dream_result(fake, asked)))


# --- a flaky Discord ---------------------------------------------------------------------------


async def test_the_reply_arrives_through_a_429_and_a_500(fake: FakeDiscord, bot: DreamBot) -> None:
    def result_upload(request: RecordedRequest) -> bool:
        return request.route == "create_message" and bool(request.files)

    fake.fail_next(result_upload, status=429, retry_after=0.05)
    fake.fail_next(result_upload, status=500)
    asked = await ask(fake, "!dream dogs")
    assert_dreamed(upload_of(fake, await dream_result(fake, asked)))
    statuses = [r.status for r in fake.recorder.find(result_upload, include_failed=True)]
    assert statuses == [429, 500, 200]
    assert len(with_files(replies_to(fake, asked))) == 1


async def test_the_bot_resumes_after_the_gateway_closes(fake: FakeDiscord, bot: DreamBot) -> None:
    await fake.close_gateway(4000)
    await fake.wait_connected()
    await eventually(lambda: fake.resume_count >= 1, what="a RESUME")
    asked = await ask(fake, "!dream dogs")
    assert_dreamed(upload_of(fake, await dream_result(fake, asked)))


# --- many people at once -----------------------------------------------------------------------


async def test_thirty_people_at_once_each_get_exactly_one_final_answer(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(max_jobs_per_guild=100)
    people = [fake.add_user(f"user{i}") for i in range(30)]
    for person in people:
        fake.add_member(fake.guild, person)
    asked = await asyncio.gather(*(ask(fake, "!dream dogs", author=p) for p in people))

    def finals(message: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            m for m in replies_to(fake, message) if m.get("attachments") or "busy" in m["content"]
        ]

    await eventually(lambda: all(finals(m) for m in asked), timeout=60, what="30 answers")
    await _pool_idle(harness.pool)
    await asyncio.sleep(0.5)  # nothing more may come
    counts = [len(finals(m)) for m in asked]
    assert counts == [1] * 30, counts
    dreamed = sum(bool(with_files(replies_to(fake, m))) for m in asked)
    assert 1 + MAX_QUEUE <= dreamed < 30, dreamed
    for message in asked:
        for reply in replies_to(fake, message):
            assert reply["content"].startswith(("✅", "I'm busy")) or reply.get("attachments")


# --- limits ------------------------------------------------------------------------------------


async def test_cooldown_and_quota_where_failed_dreams_do_not_count(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(daily_quota=1, cooldown_s=60.0)
    broken = await ask(fake, "!dream", data=JPEG[:300], filename="cut.jpg", width=96, height=64)
    await eventually(
        lambda: any(m["content"].startswith("⚠️") for m in replies_to(fake, broken)),
        what="the failure",
    )
    asked = await ask(fake, "!dream dogs")  # no cooldown, no quota spent by the failure
    await dream_result(fake, asked)

    again = await ask(fake, "!dream dogs")
    reply = await eventually(lambda: replies_to(fake, again), what="the cooldown reply")
    assert "dream again in" in reply[0]["content"]

    info = await fake.slash("dream-info")
    text = (await wait_callback(fake, info)).json["data"]["content"]
    assert "quota 0 left today" in text and "cooldown" in text

    harness.bot.dreams.clock = lambda: time.time() + 61  # type: ignore[union-attr]  # a minute on
    last = await ask(fake, "!dream dogs")
    reply = await eventually(lambda: replies_to(fake, last), what="the quota reply")
    assert "for today" in reply[0]["content"]


def answer_of(fake: FakeDiscord, message: dict[str, Any]) -> str | None:
    """'dream', or the limit a request ran into, once the bot has answered it."""
    for reply in replies_to(fake, message):
        if reply.get("attachments"):
            return "dream"
        for phrase, kind in (
            ("dream again in", "cooldown"),
            ("for today", "quota"),
            ("many dreams in progress", "guild"),
        ):
            if phrase in reply["content"]:
                return kind
    return None


async def burst_answers(fake: FakeDiscord, asked: list[dict[str, Any]]) -> list[str]:
    await eventually(lambda: all(answer_of(fake, m) for m in asked), timeout=60, what="answers")
    return sorted(answer_of(fake, m) or "" for m in asked)


async def test_a_burst_from_one_server_gets_exactly_its_limit(
    fake: FakeDiscord, harness: Harness
) -> None:
    """Eight members at once on a server allowed three dreams at a time: three dream."""
    await harness.start(max_jobs_per_guild=3)
    people = [fake.add_user(f"burst{i}") for i in range(8)]
    for person in people:
        fake.add_member(fake.guild, person)
    asked = await asyncio.gather(
        *(ask(fake, "!dream dogs steps=60 octaves=2", author=p) for p in people)
    )
    assert await burst_answers(fake, asked) == ["dream"] * 3 + ["guild"] * 5


async def test_two_requests_at_once_hold_the_cooldown_and_the_quota(
    fake: FakeDiscord, harness: Harness
) -> None:
    bot = await harness.start(cooldown_s=10.0)
    asked = await asyncio.gather(*(ask(fake, "!dream dogs") for _ in range(2)))
    assert await burst_answers(fake, asked) == ["cooldown", "dream"]

    bot = await harness.restart(daily_quota=1)
    bot.dreams.clock = lambda: time.time() + 3600  # past the cooldown, same day
    asked = await asyncio.gather(*(ask(fake, "!dream dogs", author=fake.bob) for _ in range(3)))
    assert await burst_answers(fake, asked) == ["dream", "quota", "quota"]
    assert "your 1 dream for today" in str(fake.messages), "singular"


async def test_buttons_pressed_at_once_go_through_the_same_limits(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(cooldown_s=30.0)
    result = await dream_result(fake, await ask(fake, "!dream dogs"))
    harness.bot.dreams.clock = lambda: time.time() + 31  # type: ignore[union-attr]
    clicks = await asyncio.gather(
        *(fake.click(result, button(result, a), user=fake.alice) for a in ("reroll", "stronger"))
    )

    def said(interaction: dict[str, Any]) -> str | None:
        token = interaction["token"]
        for r in fake.recorder.requests:
            if r.params.get("token") == token or r.params.get("interaction_id") == str(
                interaction["id"]
            ):
                if r.files:
                    return "dream"
                body = r.json or {}
                text = body.get("content") or (body.get("data") or {}).get("content") or ""
                if "dream again in" in text:
                    return "cooldown"
        return None

    await eventually(lambda: all(said(c) for c in clicks), what="both buttons answered")
    assert sorted(said(c) or "" for c in clicks) == ["cooldown", "dream"]


# --- restarts ----------------------------------------------------------------------------------


async def test_a_restart_with_dreams_running_and_queued_answers_each_exactly_once(
    fake: FakeDiscord, harness: Harness
) -> None:
    """The running dream finishes within the grace period; the queued ones are stored, the
    members told they will continue, and the next start (same database) dreams them."""
    await harness.start(max_image_side=96, shutdown_grace_s=60.0)
    people = [fake.add_user(f"restart{i}") for i in range(4)]
    for person in people:
        fake.add_member(fake.guild, person)
    asked = [await ask(fake, "!dream dogs steps=40 octaves=2", author=person) for person in people]
    await eventually(
        lambda: any(m["content"].startswith("🌀") for m in replies_to(fake, asked[0])),
        what="the first dream to run",
    )
    await harness.restart(max_image_side=96)

    def images_for(person: dict[str, Any], message: dict[str, Any]) -> list[dict[str, Any]]:
        mention = f"<@{person['id']}>"
        return [
            m
            for m in with_files(list(fake.messages.values()))
            if m["author"]["id"] == fake.bot_user["id"]
            and (m in replies_to(fake, message) or m["content"].startswith(mention))
        ]

    await eventually(
        lambda: all(images_for(p, m) for p, m in zip(people, asked, strict=True)),
        timeout=90,
        what="every dream, after the restart",
    )
    await _pool_idle(harness.pool)
    await asyncio.sleep(0.5)  # nothing more may come
    assert [len(images_for(p, m)) for p, m in zip(people, asked, strict=True)] == [1] * 4
    assert with_files(replies_to(fake, asked[0])), "the running one finished before the stop"
    for message in asked[1:]:
        said = [text for m in replies_to(fake, message) for text in edited_to(fake, m["id"])]
        assert any("will continue" in text for text in said), said
    assert harness.bot is not None
    assert await harness.bot.store.unfinished_dreams() == []


async def test_a_dream_saved_at_a_restart_continues_in_the_message_that_said_so(
    fake: FakeDiscord, harness: Harness
) -> None:
    """ "...saved and will continue when I'm back" stayed so after the dream came back as a new
    message; now the dream goes on in that message (prefix and slash alike), which ends
    pointing to the result, and no other progress message is posted."""
    await harness.start(max_image_side=96, shutdown_grace_s=60.0)
    carol = fake.add_user("carol")
    fake.add_member(fake.guild, carol)
    running = await ask(fake, "!dream dogs steps=40 octaves=2")
    await eventually(
        lambda: any(m["content"].startswith("🌀") for m in replies_to(fake, running)),
        what="the first dream to run",
    )
    queued = await ask(fake, "!dream dogs", author=fake.bob)  # one worker: these two wait
    slash = await fake.slash("dream", {"image": fake.attachment(PHOTO, "p.png")}, user=carol)
    await eventually(lambda: replies_to(fake, queued), what="the prefix dream to be queued")
    await eventually(
        lambda: fake.original_response(slash)["content"].startswith("⏳"),
        what="the slash dream to be queued",
    )
    saved = {
        fake.bob["id"]: replies_to(fake, queued)[0]["id"],
        carol["id"]: fake.original_response(slash)["id"],
    }
    await harness.restart(max_image_side=96)

    def result_for(user_id: str) -> dict[str, Any] | None:
        return next(
            (
                m
                for m in with_files(list(fake.messages.values()))
                if m["content"].startswith(f"<@{user_id}>")
            ),
            None,
        )

    await eventually(
        lambda: all(result_for(u) for u in saved), timeout=90, what="both dreams, resumed"
    )
    await _pool_idle(harness.pool)
    await asyncio.sleep(0.5)  # nothing more may come
    bot_id = fake.bot_user["id"]
    for user_id, message_id in saved.items():
        said = edited_to(fake, message_id)
        assert any("will continue" in text for text in said), said
        result = result_for(user_id)
        assert result is not None
        message = fake.messages[message_id]
        assert "continued after my restart" in message["content"], said
        assert message["content"].endswith(f"/{result['channel_id']}/{result['id']}"), said
        assert custom_ids(message) == [], "the Cancel button goes when the dream is done"
        progress = [
            m["id"]
            for m in fake.messages.values()
            if m["author"]["id"] == bot_id
            and not m.get("attachments")
            and f"<@{user_id}>" in m["content"]
        ]
        assert progress == [message_id], "no new progress message: the saved one went on"


async def test_a_saved_message_deleted_before_the_restart_is_replaced_by_a_new_one(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(max_image_side=96, shutdown_grace_s=60.0)
    running = await ask(fake, "!dream dogs steps=40 octaves=2")
    await eventually(
        lambda: any(m["content"].startswith("🌀") for m in replies_to(fake, running)),
        what="the first dream to run",
    )
    queued = await ask(fake, "!dream dogs", author=fake.bob)
    await eventually(lambda: replies_to(fake, queued), what="the second to be queued")
    saved = replies_to(fake, queued)[0]["id"]
    assert harness.bot is not None
    await harness.runner.stop(harness.bot)
    await harness.stores.pop().close()
    fake.forget_message(saved)  # a moderator tidied the channel while the bot was away
    await harness.start(max_image_side=96)
    mention = f"<@{fake.bob['id']}>"

    def from_bot(with_file: bool) -> list[dict[str, Any]]:
        return [
            m
            for m in fake.messages.values()
            if m["author"]["id"] == fake.bot_user["id"]
            and m["content"].startswith(mention)
            and bool(m.get("attachments")) == with_file
        ]

    await eventually(lambda: from_bot(True), timeout=90, what="the resumed dream")
    (progress,) = await eventually(
        lambda: [m for m in from_bot(False) if "continued after my restart" in m["content"]],
        what="a new progress message pointing to the result",
    )
    assert progress["id"] != saved


async def test_a_queued_dream_without_its_stored_photo_is_dropped_and_the_member_told(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(max_image_side=96, source_retention_h=0, shutdown_grace_s=60.0)
    first = await ask(fake, "!dream dogs steps=40 octaves=2")
    await eventually(
        lambda: any(m["content"].startswith("🌀") for m in replies_to(fake, first)),
        what="the first dream to run",
    )
    second = await ask(fake, "!dream dogs", author=fake.bob)  # queued behind it: one worker
    await eventually(lambda: replies_to(fake, second), what="the second to be queued")
    await harness.restart(max_image_side=96, source_retention_h=0)
    await dream_result(fake, first)
    said = await eventually(
        lambda: [m for m in replies_to(fake, second) if "ask again" in m["content"]],
        what="the dropped dream's sentence",
    )
    assert len(said) == 1 and not with_files(replies_to(fake, second))


# --- without the Message Content intent -------------------------------------------------------


async def test_without_message_content_it_warns_once_and_serves_mentions_and_slash(
    fake: FakeDiscord, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot"):
        await harness.start(message_content=False)
    warnings = [r for r in caplog.records if "Message Content intent is off" in r.getMessage()]
    assert len(warnings) == 1

    ignored = await ask(fake, "!dream dogs")  # Discord strips its text and attachments
    mention = await ask(fake, f"<@{fake.bot_user['id']}> dream dogs")
    assert_dreamed(upload_of(fake, await dream_result(fake, mention)))
    interaction = await fake.slash("dream", {"image": fake.attachment(PHOTO, "p.png")})
    await interaction_result(fake, interaction)
    assert replies_to(fake, ignored) == []


# --- help, presets, info -----------------------------------------------------------------------


async def test_help_presets_and_info(fake: FakeDiscord, bot: DreamBot) -> None:
    await fake.post_message("!help")
    help_embed = (await fake.wait_for_reply())["embeds"][0]
    assert "!dream dogs" in help_embed["description"]

    listed = await fake.slash("presets")
    answer = (await wait_callback(fake, listed)).json
    assert answer["data"]["flags"] & EPHEMERAL
    description = answer["data"]["embeds"][0]["description"]
    assert "**dogs**" in description and "guide" not in description

    info = await fake.slash("dream-info")
    text = (await wait_callback(fake, info)).json["data"]["content"]
    assert "Queue: 0 waiting" in text and "quota unlimited" in text

    choices = await fake.autocomplete("dream", {"preset": "do"}, focused="preset")
    answer = (await wait_callback(fake, choices)).json
    assert [c["value"] for c in answer["data"]["choices"]] == ["dogs"]


# --- the composition root ----------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_worker_settings(fake: FakeDiscord, port: int, **database: Any) -> Settings:
    """What `run` needs against the fake Discord: one CPU worker, health on `port`."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_token=fake.token,
        devices=["cpu"],
        cpu_workers=1,
        torch_threads=1,
        health_port=port,
        cdn_hosts=["127.0.0.1"],
        cdn_schemes=["http"],
        **database,
    )


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def _until_healthy(
    session: aiohttp.ClientSession, url: str, task: asyncio.Task[None], timeout: float = 60
) -> dict[str, Any]:
    """Poll `/healthz` until it says 200 (the bot in `task` must not end first); its body."""
    async with asyncio.timeout(timeout):
        while True:
            assert not task.done(), task
            with contextlib.suppress(aiohttp.ClientError):
                status, body = await _health(session, url)
                if status == 200:
                    return body
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("fake", [{"enabled_privileged_intents": 0}], indirect=True)
async def test_run_serves_health_and_goes_on_without_a_refused_intent(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.__main__ import run

    port = _free_port()
    settings = _one_worker_settings(fake, port, database_path=tmp_path / "bot.sqlite3")
    url = f"http://127.0.0.1:{port}/healthz"
    task = asyncio.create_task(run(settings))
    try:
        async with aiohttp.ClientSession() as session:
            body = await _until_healthy(session, url, task)
        assert body["gateway"] is True and body["pool"] is True and body["database"] is True
        assert body["latency_s"] is not None and body["workers"] == 1
        identifies = [f.data["intents"] for f in fake.recorder.gateway if f.op == 2]
        assert len(identifies) == 2, "refused with the intent, then accepted without it"
        assert identifies[0] & payloads.INTENT_MESSAGE_CONTENT
        assert not identifies[1] & payloads.INTENT_MESSAGE_CONTENT
        assert any("refused the Message Content intent" in r.getMessage() for r in caplog.records)
        assert not fake.message_content_intent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (tmp_path / "bot.sqlite3").exists()


async def test_health_is_503_while_the_database_hangs_or_is_down(
    fake: FakeDiscord,
    tmp_path: Path,
    stoppable_postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every member's command needs the database: the bot said it was healthy while PostgreSQL
    was down and members got "Something went wrong on my side". A server that hangs gets its
    answer within Docker's 5 s too. The log says once that the database stopped answering and
    once that it is back (not at every check), without the URL's password."""
    from bot.__main__ import run

    server = stoppable_postgres_server
    port = _free_port()
    password = "s3cret-Pa55"  # the server trusts loopback: any password opens it
    url = (await server.new_database()).replace("dreambot@", f"dreambot:{password}@")
    settings = _one_worker_settings(fake, port, database_url=url, database_timeout_s=1.0)
    health = f"http://127.0.0.1:{port}/healthz"

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records if r.name == "bot.health")

    caplog.set_level(logging.INFO, logger="bot.health")
    task = asyncio.create_task(run(settings))
    try:
        async with aiohttp.ClientSession() as session:
            assert (await _until_healthy(session, health, task))["database"] is True
            server.pause()
            for _ in range(3):
                began = time.monotonic()
                status, body = await _health(session, health)
                assert time.monotonic() - began < 5.0, "a hung database hung the health check"
                assert (status, body["database"], body["gateway"]) == (503, False, True), body
            server.resume()
            assert (await _until_healthy(session, health, task, timeout=20))["database"] is True
            assert (said("did not answer"), said("answers again")) == (1, 1)
            server.stop()
            for _ in range(2):
                status, body = await _health(session, health)
                assert (status, body["database"], body["pool"]) == (503, False, True), body
            assert said("did not answer") == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert all(password not in r.getMessage() for r in caplog.records)


async def test_one_person_gets_a_polite_limit_past_their_running_and_queued_dreams(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    asked = await asyncio.gather(*(ask(fake, "!dream dogs steps=60 octaves=2") for _ in range(5)))

    def answer(message: dict[str, Any]) -> str | None:
        for reply in replies_to(fake, message):
            if reply.get("attachments"):
                return "dream"
            if "already have" in reply["content"]:
                return "limit"
        return None

    await eventually(lambda: all(answer(m) for m in asked), timeout=60, what="five answers")
    answers = sorted(answer(m) or "" for m in asked)
    assert answers == ["dream"] * 3 + ["limit"] * 2, answers


async def test_commands_are_synced_only_on_purpose(fake: FakeDiscord, harness: Harness) -> None:
    def synced() -> list[RecordedRequest]:
        return fake.recorder.find(lambda r: r.method == "PUT" and "/commands" in r.path)

    await harness.start()
    assert synced() == [], "no sync on a normal start"
    await fake.post_message("!sync here", author=fake.alice)
    await fake.post_message("!sync here", author=fake.owner)
    reply = await fake.wait_for_reply()
    assert reply["content"].startswith("Synced")
    assert [r.route for r in synced()] == ["bulk_guild_commands"], "only the owner's request"
    names = {c["name"] for c in synced()[0].json}
    expected = {"dream", "Dream this image", "presets", "help", "dream-info", "preset"}
    assert expected | {"dream-config"} <= names

    await harness.restart(sync_guilds=[int(fake.guild.id)], sync_commands=True)
    await eventually(lambda: len(synced()) == 2, what="the --sync at start")


async def test_the_token_is_never_logged(
    fake: FakeDiscord, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await harness.start()
        asked = await ask(fake, "!dream dogs octaves=1 steps=2")
        await dream_result(fake, asked)
        assert harness.bot.http.token == fake.token  # type: ignore[union-attr]
    assert caplog.records
    for record in caplog.records:
        assert fake.token not in record.getMessage()
    assert fake.token not in repr(harness.bot) and fake.token not in repr(harness.bot.settings)  # type: ignore[union-attr]


async def test_a_health_port_in_use_is_named_not_blamed_on_discord() -> None:
    import socket

    from bot.health import HealthServer, HealthServerError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = HealthServer(host="127.0.0.1", port=port)
        with pytest.raises(HealthServerError, match="DREAMBOT_HEALTH_PORT"):
            await health.start()
        await health.stop()  # nothing left open to stop
