# ruff: noqa: F811  (the fixtures imported from test_bot_e2e are named as parameters)
"""End-to-end on the loopback Discord: `!dream zoom`, `!dream explore`, `!dream like`, channels.

Same set-up as test_bot_e2e.py (its fixtures and helpers, a real one-worker CPU pool of its own
for this module); tiny photos, few frames and steps, so each dream takes seconds on two cores.
"""

from __future__ import annotations

import io
import re
from typing import Any

import av
import numpy as np
import pytest
from fakediscord import FakeDiscord
from PIL import Image
from test_bot_e2e import (  # noqa: F401  (fixtures are found by name)
    PHOTO,
    PHOTO_IMAGE,
    Harness,
    _encode,
    _pool_idle,
    ask,
    bot,
    button,
    custom_ids,
    dream_result,
    eventually,
    fake,
    harness,
    interaction_result,
    pool,
    replies_to,
    upload_of,
    wait_callback,
    with_files,
)

from bot.client import DreamBot

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

CAT = PHOTO
COFFEE = _encode(Image.open("assets/coffee.png").convert("RGB").resize((96, 64)))


def mp4_frames(data: bytes) -> list[Image.Image]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return [f.to_image() for f in container.decode(stream)]


def grey_difference(first: bytes, second: bytes) -> float:
    """Mean absolute difference of two pictures' grey levels (0-255), at the first's size."""
    a = Image.open(io.BytesIO(first)).convert("L")
    b = Image.open(io.BytesIO(second)).convert("L").resize(a.size)
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


def texts(fake: FakeDiscord, asked: dict[str, Any]) -> list[str]:
    """Every text the bot showed in reply to `asked`, progress edits included."""
    out = []
    for m in replies_to(fake, asked):
        out += [e.json.get("content") or "" for e in fake.recorder.edits(m["id"])]
        out.append(m.get("content") or "")
    return out


async def polite_reply(fake: FakeDiscord, asked: dict[str, Any]) -> str:
    found = await eventually(
        lambda: [
            m
            for m in replies_to(fake, asked)
            if m.get("content") and not m["content"].startswith(("⏳", "🌀"))
        ],
        timeout=60,
        what="a final reply",
    )
    return str(found[-1]["content"])


async def test_zoom_replies_with_an_mp4_of_its_frames_and_a_reroll(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    # The first frame dreams 3 octaves x 100 steps of the tiny photo (about a second), long
    # enough for progress edits (0.2 s apart) that count frames: 1 octave x 2 steps ended before
    # any edit was due once the CPU path got faster (CI, stop 9).
    asked = await ask(fake, "!dream zoom edges frames=4 steps=100 octaves=3 seed=3")
    result = await dream_result(fake, asked, timeout=90)
    frames = mp4_frames(upload_of(fake, result))
    assert len(frames) == 4
    assert result["attachments"][0]["filename"].endswith(".mp4")
    line = result["embeds"][0]["description"]
    assert "zoom edges" in line and "4 frames" in line and "seed `3`" in line, line
    assert any("frames" in t and "/4" in t for t in texts(fake, asked)), "progress counts frames"
    assert button(result, "reroll")

    again = await fake.click(result, button(result, "reroll"), user=fake.alice)
    followup = await interaction_result(fake, again, timeout=90)
    assert len(mp4_frames(followup.files[0].data)) == 4
    assert "seed `3`" not in followup.json["embeds"][0]["description"]


async def test_zoom_is_refused_politely_past_the_frame_cap_and_the_quota(
    fake: FakeDiscord, harness: Harness
) -> None:
    await harness.start(max_zoom_frames=30, daily_quota=5)
    too_long = await ask(fake, "!dream zoom frames=31")
    assert "from 2 to 30" in await polite_reply(fake, too_long)
    # 30 frames of 4 steps: the first frame and 116 more steps, 1 + 6 = 7 dreams of the 5 left.
    costly = await ask(fake, "!dream zoom frames=30")
    text = await polite_reply(fake, costly)
    assert "counts as 7 dreams" in text and "5 left" in text, text
    bad = await ask(fake, "!dream zoom format=avi")
    assert "`mp4`, `gif` or `webp`" in await polite_reply(fake, bad)

    capped = await fake.slash("dream-config set", {"zoom_frames": 3}, user=fake.moderator)
    answer = await fake.recorder.wait_for(
        lambda r: (
            r.route == "interaction_callback" and r.params.get("interaction_id") == capped["id"]
        )
    )
    assert "Zoom frames: at most 3" in answer.json["data"]["content"]
    four = await ask(fake, "!dream zoom frames=4")
    assert "from 2 to 3 here" in await polite_reply(fake, four)
    assert not with_files(
        replies_to(fake, too_long) + replies_to(fake, costly) + replies_to(fake, four)
    )


def _frames_done(content: str, frames: int) -> int | None:
    """The k of "frames k/<frames>" in a progress message, or None."""
    found = re.search(rf"frames (\d+)/{frames}\b", content)
    return int(found.group(1)) if found else None


async def test_a_zoom_cancelled_halfway_stops_between_frames(
    fake: FakeDiscord, harness: Harness
) -> None:
    bot = await harness.start(max_zoom_frames=400)
    done_before = bot.pool.stats().done
    asked = await ask(fake, "!dream zoom edges frames=400 steps=2 octaves=1")
    # A few frames in, well before the end: any of frames 3-100 (progress edits are throttled,
    # so not every frame is shown). The wait is generous: on loaded cores the first frames
    # once took over 90 s; how long they take is not what this test measures.
    progress = await eventually(
        lambda: [m for m in replies_to(fake, asked)
                 if (k := _frames_done(m["content"], 400)) is not None and 3 <= k <= 100],
        timeout=300,
        what="a few frames of the zoom",
    )  # fmt: skip
    click = await fake.click(progress[0], custom_ids(progress[0])[0], user=fake.alice)
    assert (await fake.recorder.wait_for(lambda r: r.route == "interaction_callback"
            and r.params.get("interaction_id") == click["id"])).json["type"] == 7  # fmt: skip
    await eventually(
        lambda: "cancelled" in fake.messages[progress[0]["id"]]["content"],
        what="the progress message to say cancelled",
    )
    await _pool_idle(bot.pool)
    assert not with_files(replies_to(fake, asked)), "a cancelled zoom sends no video"
    assert bot.pool.stats().done == done_before


async def test_a_zoom_over_the_upload_budget_shrinks_to_fit(
    fake: FakeDiscord, harness: Harness
) -> None:
    """A 64 KiB budget (the least the bot allows) and a GIF of 12 frames of 128 px."""
    await harness.start(max_upload_bytes=72 * 1024, max_image_side=128)
    asked = await ask(fake, "!dream zoom edges frames=12 format=gif steps=3 octaves=1 size=128")
    result = await dream_result(fake, asked, timeout=120)
    data = upload_of(fake, result)
    assert len(data) <= 64 * 1024
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 12
        assert gif.width < 128, "shrunk to fit"


async def test_explore_replies_with_one_labelled_sheet(fake: FakeDiscord, bot: DreamBot) -> None:
    # 2 octaves x 3 steps: long enough for a progress edit between cells (one step of one
    # octave ended in 0.4 s once the CPU path got faster, before any edit was due).
    asked = await ask(fake, "!dream explore top=blocks.4 steps=3 octaves=2 seed=2")
    result = await dream_result(fake, asked, timeout=120)
    sheet = Image.open(io.BytesIO(upload_of(fake, result)))
    # 1 photo + 7 layers + 6 class presets + 4 top channels = 18 cells of 64 x 43, 5 columns
    assert sheet.width > 4 * 64 and sheet.height > 3 * 43, sheet.size
    assert "explore" in result["embeds"][0]["description"]
    assert any("cells" in t and "/17" in t for t in texts(fake, asked)), texts(fake, asked)
    assert button(result, "reroll")

    wrong = await ask(fake, "!dream explore top=blocks.44")
    assert "Did you mean 'blocks.4'" in await polite_reply(fake, wrong)


async def test_explore_cells_stay_small_on_a_server_with_a_large_cap(
    fake: FakeDiscord, harness: Harness
) -> None:
    """A 512 px cap must not make 14 cells of 512 px (14 stills' work) for one dream of quota."""
    await harness.start(max_image_side=512)
    photo = _encode(Image.open("assets/coffee.png").convert("RGB").resize((400, 300)))
    asked = await ask(fake, "!dream explore steps=1 octaves=1 seed=2", data=photo, filename="c.png")
    sheet = Image.open(io.BytesIO(upload_of(fake, await dream_result(fake, asked, timeout=180))))
    # 1 photo + 7 layers + 6 class presets = 14 cells in 4 columns, 4 px apart: 256 px cells
    # make it 1044 px wide; cells at the cap (the photo's 400 px) made it 1620.
    assert sheet.width <= 4 * (256 + 4) + 4, sheet.size


async def test_like_grows_the_second_photo_into_the_first(fake: FakeDiscord, bot: DreamBot) -> None:
    two = await fake.post_message(
        "!dream like seed=5",
        author=fake.alice,
        attachments=[fake.attachment(COFFEE, "coffee.png"), fake.attachment(CAT, "cat.png")],
    )
    liked = await dream_result(fake, two, timeout=60)
    assert "like default" in liked["embeds"][0]["description"]
    plain = await ask(fake, "!dream seed=5", data=COFFEE, filename="coffee.png")
    dreamed = await dream_result(fake, plain, timeout=60)
    assert grey_difference(upload_of(fake, liked), upload_of(fake, dreamed)) > 4, (
        "the guide objective, not the default one, made it"
    )

    # Re-roll keeps the guide (stored beside the photo): a new seed, still a `like` dream
    rerolled = await fake.click(liked, button(liked, "reroll"), user=fake.alice)
    again = await interaction_result(fake, rerolled, timeout=60)
    line = again.json["embeds"][0]["description"]
    assert "like default" in line and "seed `5`" not in line, line
    seed = re.search(r"seed `(\d+)`", line)[1]  # type: ignore[index]
    plain = await ask(fake, f"!dream seed={seed}", data=COFFEE, filename="coffee.png")
    dreamed = await dream_result(fake, plain, timeout=60)
    assert grey_difference(again.files[0].data, upload_of(fake, dreamed)) > 4, (
        "the re-roll was guided too"
    )

    # a reply to the photo with the guide attached
    photo = await ask(fake, "my coffee", data=COFFEE, filename="coffee.png", author=fake.bob)
    reply = await fake.post_message(
        "!dream like",
        author=fake.alice,
        reply_to=photo,
        attachments=[fake.attachment(CAT, "c.png")],
    )
    await dream_result(fake, reply, timeout=60)

    one = await ask(fake, "!dream like")
    assert "needs two pictures" in await polite_reply(fake, one)
    broken = await fake.post_message(
        "!dream like",
        author=fake.alice,
        attachments=[fake.attachment(COFFEE, "a.png"), fake.attachment(b"x" * 300, "b.png",
                                                                        width=64, height=64)],
    )  # fmt: skip
    assert "guide picture" in await polite_reply(fake, broken)


async def test_a_file_beside_the_photo_is_passed_over_or_named_not_blamed_on_the_member(
    fake: FakeDiscord, bot: DreamBot
) -> None:
    """A text file attached before the photo made `!dream` refuse the text file though a photo
    was there; `!dream like` with a photo and a PDF answered "needs two pictures"."""
    notes = fake.attachment(b"shopping list\n", "a.txt")
    both = await fake.post_message(
        "!dream seed=1", author=fake.alice, attachments=[notes, fake.attachment(PHOTO, "p.png")]
    )
    await dream_result(fake, both, timeout=60)
    pdf = fake.attachment(b"%PDF-1.4\n%%EOF\n", "doc.pdf")
    like = await fake.post_message(
        "!dream like", author=fake.alice, attachments=[fake.attachment(PHOTO, "p.png"), pdf]
    )
    answers = await eventually(
        lambda: [m for m in replies_to(fake, like) if "doc.pdf" in m["content"]],
        what="the answer naming the PDF",
    )
    assert "isn't an image" in answers[0]["content"], answers[0]["content"]


async def test_slash_dream_with_a_guide_and_a_channel(fake: FakeDiscord, bot: DreamBot) -> None:
    interaction = await fake.slash(
        "dream",
        {"image": fake.attachment(COFFEE, "coffee.png"), "guide": fake.attachment(CAT, "cat.png")},
    )
    followup = await interaction_result(fake, interaction, timeout=60)
    assert "like default" in followup.json["embeds"][0]["description"]

    picked = await ask(fake, "!dream channel=blocks.4:7 steps=2")
    await dream_result(fake, picked, timeout=60)
    wrong = await ask(fake, "!dream channel=blocks.4:500")
    assert "has 112 channels, numbered 0 to 111" in await polite_reply(fake, wrong)


async def test_slash_zoom_and_explore(fake: FakeDiscord, bot: DreamBot) -> None:
    zoom = await fake.slash(
        "dream-zoom",
        {"image": fake.attachment(PHOTO, "p.png"), "frames": 2, "format": "webp", "between": 2},
    )
    followup = await interaction_result(fake, zoom, timeout=90)
    with Image.open(io.BytesIO(followup.files[0].data)) as webp:
        assert webp.format == "WEBP" and webp.n_frames == 4, "2 dreamed, 2 in between"
    assert PHOTO_IMAGE.size


# --- moderators' settings, as members meet them -------------------------------------------------


async def _moderate(fake: FakeDiscord, name: str, options: dict[str, Any]) -> str:
    answer = await wait_callback(fake, await fake.slash(name, options, user=fake.moderator))
    return str(answer.json["data"]["content"])


async def test_server_settings_hold_for_presets_and_buttons_made_before_them(
    fake: FakeDiscord, harness: Harness
) -> None:
    """A moderator's preset above the server's cap dreams at the cap (it once refused every
    member with "`size` must be ... here"); buttons of an earlier dream meet the settings as they
    are now (a disabled preset, a lowered cap); the line under a result names its strength."""
    bot = await harness.start(max_image_side=128)
    added = await _moderate(
        fake, "preset add", {"name": "big", "base": "dogs", "size": 512, "steps": 1, "octaves": 1}
    )
    assert "above this server's largest side; it dreams at 128 px" in added
    await dream_result(fake, await ask(fake, "!dream big"))  # an image, not a refusal
    too_big = await ask(fake, "!dream big size=512")  # the member's own size is still checked
    assert "between 32 and 128 here" in await polite_reply(fake, too_big)

    result = await dream_result(fake, await ask(fake, "!dream dogs steps=1 octaves=1 seed=3"))
    stronger = await fake.click(result, button(result, "stronger"), user=fake.alice)
    line = (await interaction_result(fake, stronger)).json["embeds"][0]["description"]
    assert line.startswith("**dogs** · strength ") and "seed `3`" in line, line

    await _moderate(fake, "dream-config presets", {"action": "disable", "name": "dogs"})
    refused = await fake.click(result, button(result, "reroll"), user=fake.alice)
    answer = await wait_callback(fake, refused)
    assert "`dogs` is turned off on this server" in answer.json["data"]["content"]

    await _moderate(fake, "dream-config presets", {"action": "enable", "name": "dogs"})
    await _moderate(fake, "dream-config set", {"max_image_side": 64})
    again = await fake.click(result, button(result, "reroll"), user=fake.alice)
    followup = await interaction_result(fake, again)
    dream_id = button(followup.json, "reroll").split(":")[2]
    record = await bot.store.dream(dream_id)
    assert record is not None and record.spec.overrides.max_size == 64


async def test_disallow_keeps_dreams_out_of_a_channel_on_an_open_server(
    fake: FakeDiscord, harness: Harness
) -> None:
    """`disallow` on a server open to every channel used to change nothing (it only took a
    channel off an empty allowed list): now the channel is kept out and the rest stay open."""
    art = fake.add_channel(fake.guild, "art")
    await harness.start()
    shown = await _moderate(fake, "dream-config channel", {"action": "disallow"})
    assert "every channel but <#" in shown
    here = await ask(fake, "!dream steps=1 octaves=1")
    assert "don't happen in this channel" in await polite_reply(fake, here)
    there = await fake.post_message(
        "!dream steps=1 octaves=1",
        author=fake.alice,
        channel=art,
        attachments=[fake.attachment(PHOTO, "photo.png")],
    )
    await dream_result(fake, there)
    # Allowing a channel by name (a resolved channel option) narrows the server to it.
    allowed = await _moderate(fake, "dream-config channel", {"action": "allow", "channel": art})
    assert f"Channels: <#{art['id']}>" in allowed
    await _moderate(fake, "dream-config channel", {"action": "everywhere"})
    await dream_result(fake, await ask(fake, "!dream steps=1 octaves=1"))
