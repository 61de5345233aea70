"""The loopback Discord works with discord.py's real client: gateway, REST, CDN, interactions."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import time
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from fakediscord import FakeDiscord, payloads
from fakediscord.fixtures import BotRunner, ErrorLogCollector, teardown_failures

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x02\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"{@\xe8\xdd\x00\x00\x00\x0fIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\xa5\xd7\x8e"
    b"\xe2\x00\x00\x00\x00IEND\xaeB`\x82"
)


class EchoButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"echo:(?P<owner>\d+)"
):
    """A persistent button that only its owner may press."""

    def __init__(self, owner: int) -> None:
        super().__init__(discord.ui.Button(label="Again", custom_id=f"echo:{owner}"))
        self.owner = owner

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Button[discord.ui.View],
        match: re.Match[str],
    ) -> EchoButton:
        return cls(int(match["owner"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.user.id != self.owner:
            await interaction.response.send_message("not your button", ephemeral=True)
            return
        await interaction.response.edit_message(content=f"clicked by {interaction.user.name}")


async def ping(ctx: commands.Context[Any]) -> None:
    """Reply "pong" with the message's attachments (read from the CDN) and a button."""
    view = discord.ui.View(timeout=None)
    view.add_item(EchoButton(ctx.author.id))
    files = [
        discord.File(io.BytesIO(await a.read()), filename=f"echo-{a.filename}")
        for a in ctx.message.attachments
    ]
    await ctx.reply("pong", files=files, view=view)


class EchoBot(commands.Bot):
    """Echoes attachments back through every entry point the dream bot uses."""

    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(
            command_prefix=commands.when_mentioned_or("!"),
            intents=intents,
            help_command=None,
            guild_ready_timeout=0.05,
        )
        self.seen: list[discord.Message] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(EchoButton)
        self.add_command(commands.Command(ping, name="ping"))

        @self.tree.command(name="echo", description="Echo an image")
        async def echo(interaction: discord.Interaction[Any], image: discord.Attachment) -> None:
            await interaction.response.defer(thinking=True)
            data = await image.read()
            file = discord.File(io.BytesIO(data), filename=image.filename)
            await interaction.followup.send("echo", file=file)

        @self.tree.command(name="slow", description="Answer after a while")
        async def slow(interaction: discord.Interaction[Any], seconds: float) -> None:
            await interaction.response.defer(thinking=True)
            await asyncio.sleep(seconds)
            await interaction.followup.send(f"expired={interaction.is_expired()}")

        @self.tree.command(name="mod", description="Moderators only")
        @app_commands.default_permissions(manage_guild=True)
        @app_commands.checks.has_permissions(manage_guild=True)
        async def mod(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.send_message("accepted", ephemeral=True)

        @mod.error
        async def mod_error(
            interaction: discord.Interaction[Any], error: app_commands.AppCommandError
        ) -> None:
            await interaction.response.send_message(f"refused: {error}", ephemeral=True)

        @self.tree.command(name="pick", description="Pick a preset")
        async def pick(interaction: discord.Interaction[Any], preset: str) -> None:
            await interaction.response.send_message(f"picked {preset}")

        @pick.autocomplete("preset")
        async def pick_preset(
            interaction: discord.Interaction[Any], current: str
        ) -> list[app_commands.Choice[str]]:
            names = ["dogs", "dream", "deep"]
            return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

        @self.tree.command(name="steps", description="Walk every webhook message route")
        async def steps(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.send_message("step 1")
            await interaction.edit_original_response(content="step 2")
            extra = await interaction.followup.send("extra", wait=True)
            await extra.edit(content="extra edited")
            original = await interaction.original_response()
            await extra.delete()
            await interaction.followup.send(f"original says {original.content}", ephemeral=True)

        @self.tree.context_menu(name="Echo this image")
        async def echo_menu(
            interaction: discord.Interaction[Any], message: discord.Message
        ) -> None:
            await interaction.response.defer(thinking=True)
            data = await message.attachments[0].read()
            await interaction.followup.send(file=discord.File(io.BytesIO(data), "menu.png"))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before every re-IDENTIFY; not needed against the fake."""

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            self.seen.append(message)
        await self.process_commands(message)


async def _start(bot_runner: BotRunner, **kwargs: Any) -> EchoBot:
    return await bot_runner.start(EchoBot(**kwargs))


async def test_bot_connects_and_sees_the_fake_guild(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await _start(bot_runner)

    guild = bot.get_guild(int(fake_discord.guild.id))
    assert guild is not None and guild.name == fake_discord.guild.name
    assert guild.me.id == int(fake_discord.bot_user["id"])
    assert guild.filesize_limit == payloads.UPLOAD_LIMIT
    assert guild.get_channel(int(fake_discord.channel["id"])) is not None
    assert bot.application_id == int(fake_discord.application_id)
    assert await bot.is_owner(discord.Object(int(fake_discord.owner["id"])))
    identify = await fake_discord.recorder.wait_for_gateway(2)
    assert identify.data["intents"] & payloads.INTENT_MESSAGE_CONTENT
    async with asyncio.timeout(5):  # the first heartbeat is sent at HELLO and ACKed
        while not math.isfinite(bot.latency):
            await asyncio.sleep(0.01)
    assert fake_discord.recorder.find("get_me") and fake_discord.recorder.find("get_application")


async def test_prefix_command_replies_with_the_exact_attachment_bytes(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)
    photo = fake_discord.attachment(PNG, "cat.png")
    assert (photo["width"], photo["height"], photo["content_type"]) == (2, 1, "image/png")

    sent = await fake_discord.post_message("!ping", attachments=[photo])
    reply = await fake_discord.wait_for_reply()

    request = fake_discord.recorder.messages_sent(fake_discord.channel["id"])[0]
    assert [f.data for f in request.files] == [PNG]
    assert reply["content"] == "pong"
    assert reply["message_reference"]["message_id"] == sent["id"]
    assert reply["attachments"][0]["filename"] == "echo-cat.png"
    assert fake_discord.recorder.find("cdn")


async def test_slash_command_defers_then_follows_up_with_a_file(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)
    photo = fake_discord.attachment(PNG, "slash.png")

    interaction = await fake_discord.slash("echo", {"image": photo})
    callback = await fake_discord.recorder.wait_for("interaction_callback")
    followup = await fake_discord.recorder.wait_for("create_followup")

    assert callback.json["type"] == 5
    assert followup.files[0].data == PNG
    original = fake_discord.original_response(interaction)
    assert original["content"] == "echo" and not original["flags"] & 128
    assert original["attachments"][0]["filename"] == "slash.png"


async def test_message_context_menu_reads_the_target_image(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)
    target = await fake_discord.post_message(
        "look at this", attachments=[fake_discord.attachment(PNG)], author=fake_discord.bob
    )

    await fake_discord.context_menu("Echo this image", target)
    followup = await fake_discord.recorder.wait_for("create_followup")

    assert fake_discord.recorder.callbacks()[0].json["type"] == 5
    assert followup.files[0].data == PNG


async def test_member_permissions_reach_app_command_checks(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)

    await fake_discord.slash("mod", user=fake_discord.alice)
    refused = await fake_discord.recorder.wait_for("interaction_callback")
    await fake_discord.slash("mod", user=fake_discord.moderator)
    accepted = await fake_discord.recorder.wait_for("interaction_callback")

    assert refused.content is not None and refused.content.startswith("refused")
    assert accepted.content == "accepted"


async def test_autocomplete_answers_with_choices(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)

    await fake_discord.autocomplete("pick", {"preset": "d"}, focused="preset")
    callback = await fake_discord.recorder.wait_for("interaction_callback")

    assert callback.json["type"] == 8
    assert [c["value"] for c in callback.json["data"]["choices"]] == ["dogs", "dream", "deep"]


async def test_button_reaches_the_dynamic_item_for_owner_and_refuses_others(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)
    await fake_discord.post_message("!ping", author=fake_discord.alice)
    reply = await fake_discord.wait_for_reply()
    (button,) = payloads.custom_ids(reply)

    await fake_discord.click(reply, button, user=fake_discord.bob)
    refusal = await fake_discord.recorder.wait_for("interaction_callback")
    await fake_discord.click(reply, button, user=fake_discord.alice)
    update = await fake_discord.recorder.wait_for("interaction_callback")

    assert refusal.json["type"] == 4 and refusal.json["data"]["flags"] & 64
    assert update.json["type"] == 7
    assert fake_discord.messages[reply["id"]]["content"] == "clicked by alice"


async def test_reply_survives_a_500_and_a_429_and_arrives_exactly_once(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)
    fake_discord.fail_next("create_message", status=500)
    fake_discord.fail_next("create_message", status=429, retry_after=0.05)

    await fake_discord.post_message("!ping", attachments=[fake_discord.attachment(PNG)])
    await fake_discord.wait_for_reply()
    await asyncio.sleep(0.2)

    attempts = fake_discord.recorder.find("create_message", include_failed=True)
    assert [r.status for r in attempts] == [500, 429, 200]
    assert all(r.files[0].data == PNG for r in attempts)
    assert len(fake_discord.recorder.messages_sent()) == 1


@pytest.mark.parametrize("how", ["close 4000", "close 1001", "close 1000", "op 7 reconnect"])
async def test_dropped_gateway_resumes_and_the_bot_keeps_serving(
    fake_discord: FakeDiscord, bot_runner: BotRunner, how: str
) -> None:
    await _start(bot_runner)

    if how.startswith("close"):
        await fake_discord.close_gateway(int(how.split()[1]))
    else:
        await fake_discord.request_reconnect()
    await fake_discord.post_message("!ping")  # may land while disconnected: replayed on RESUME
    await fake_discord.wait_for_reply()

    resume = await fake_discord.recorder.wait_for_gateway(6)
    assert resume.data["seq"] >= 1
    assert (fake_discord.identify_count, fake_discord.resume_count) == (1, 1)
    assert fake_discord.gateway_connections[-1].startswith("/gateway-resume?v=10&encoding=json")


async def test_invalid_session_makes_the_bot_identify_again(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)

    await fake_discord.invalidate_session(resumable=False)
    await fake_discord.wait_connected()
    await fake_discord.post_message("!ping")
    await fake_discord.wait_for_reply()

    assert fake_discord.identify_count == 2


async def test_without_message_content_intent_only_mentions_carry_text(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await _start(bot_runner, message_content=False)
    photo = fake_discord.attachment(PNG)

    await fake_discord.post_message("!ping", attachments=[photo])
    await fake_discord.post_message(f"<@{fake_discord.bot_user['id']}> ping", attachments=[photo])
    reply = await fake_discord.wait_for_reply(with_files=True)

    assert (bot.seen[0].content, bot.seen[0].attachments) == ("", [])
    assert reply["attachments"] and len(fake_discord.recorder.messages_sent()) == 1


async def test_late_acknowledgement_is_refused_like_discord(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    fake_discord.ack_deadline = 0.0
    fake_discord.expect_problem("10062")
    fake_discord.expect_error_log("Ignoring exception in command 'echo'")
    await _start(bot_runner)

    await fake_discord.slash("echo", {"image": fake_discord.attachment(PNG)})
    refused = await fake_discord.recorder.wait_for("interaction_callback", include_failed=True)

    assert (refused.status, refused.response["code"]) == (404, 10062)


async def test_unknown_routes_and_error_logs_fail_the_test(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{fake_discord.api_url}/no/such/route"
        async with session.get(url) as response:
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/json"
    collector = ErrorLogCollector()
    collector.emit(logging.LogRecord("bot", logging.ERROR, __file__, 1, "boom", None, None))

    failures = teardown_failures(fake_discord, collector)

    assert any("unknown route GET /no/such/route" in f for f in failures)
    assert any("boom" in f for f in failures)
    fake_discord.problems.clear()


@pytest.mark.parametrize("content", ["x" * 2001, ""])
async def test_messages_discord_would_refuse_are_problems(
    fake_discord: FakeDiscord, bot_runner: BotRunner, content: str
) -> None:
    bot = await _start(bot_runner)
    fake_discord.expect_problem("50035|50006")
    channel = bot.get_channel(int(fake_discord.channel["id"]))
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as refused:
        await channel.send(content)

    assert refused.value.code in (50035, 50006)


async def test_webhook_message_routes_edit_fetch_and_delete(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    await _start(bot_runner)

    interaction = await fake_discord.slash("steps")
    last = await fake_discord.recorder.wait_for(
        lambda r: r.route == "create_followup" and r.content == "original says step 2"
    )

    assert fake_discord.original_response(interaction)["content"] == "step 2"
    assert last.response["flags"] & 64
    record = fake_discord.interaction(interaction)
    assert [fake_discord.messages.get(m) for m in record.message_ids] == [None, last.response]
    routes = [r.route for r in fake_discord.recorder.requests if r.route != "cdn"][2:]
    assert routes == [
        "interaction_callback",
        "edit_webhook_message",
        "create_followup",
        "edit_webhook_message",
        "get_webhook_message",
        "delete_webhook_message",
        "create_followup",
    ]


async def test_rest_routes_a_bot_uses_answer_like_discord(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    bot = await _start(bot_runner)
    guild_id = int(fake_discord.guild.id)
    older = await fake_discord.post_message("first", attachments=[fake_discord.attachment(PNG)])
    newer = await fake_discord.post_message("second", author=fake_discord.bob)
    channel = await bot.fetch_channel(int(fake_discord.channel["id"]))
    assert isinstance(channel, discord.TextChannel)

    history = [m async for m in channel.history(limit=10)]
    fetched = await channel.fetch_message(int(older["id"]))
    async with channel.typing():
        await fetched.add_reaction("👍")
    member = await (await bot.fetch_guild(guild_id)).fetch_member(int(fake_discord.alice["id"]))
    dm = await member.create_dm()
    synced = await bot.tree.sync()
    bot.tree.copy_global_to(guild=discord.Object(guild_id))
    guild_synced = await bot.tree.sync(guild=discord.Object(guild_id))

    assert [m.id for m in history] == [int(newer["id"]), int(older["id"])]
    assert await fetched.attachments[0].read() == PNG
    assert fake_discord.reactions == [(older["id"], "👍", fake_discord.bot_user["id"])]
    assert member.guild_permissions.send_messages and not member.guild_permissions.manage_guild
    assert dm.recipient is not None and dm.recipient.id == member.id
    assert {c.name for c in synced} == {"echo", "mod", "pick", "slow", "steps", "Echo this image"}
    assert {c.guild_id for c in guild_synced} == {guild_id}
    assert fake_discord.recorder.find("typing")


async def test_an_expired_interaction_token_is_refused(
    fake_discord: FakeDiscord, bot_runner: BotRunner
) -> None:
    fake_discord.expect_error_log("Ignoring exception in command 'slow'")
    await _start(bot_runner)
    born = time.time() - 15 * 60 + 0.3  # the token has 0.3 s left

    await fake_discord.slash("slow", {"seconds": 0.5}, id=payloads.snowflake(at=born))
    refused = await fake_discord.recorder.wait_for("create_followup", include_failed=True)

    assert (refused.status, refused.response["code"]) == (401, 50027)
