"""Scale-out, end to end: two sharded bots, one PostgreSQL server, dream workers on Ray.

Everything is real: a local Ray cluster (2 CPUs) started here, a PostgreSQL server started by
`pgserver`, discord.py's real client (two `ShardedDreamBot`s, shard 0 and shard 1 of 2, as two
bot processes would run them) against the loopback fake Discord, which routes each server's
events to the shard that holds it. Each bot has its own store connection and its own pool with
one CPU actor on the shared cluster, so the only thing that can make limits hold across the two
bots is the database.

100 members in 20 servers post `!dream` at once, 10 of them a second time in a server on the
other shard; one member may have 1 dream and one server 2 dreams queued or running at a time.
One actor is killed while it dreams. Then: every request has exactly one answer (a dream or a
polite sentence), no member or server was ever over its limit (from the rows' reservation
intervals), the killed job's member got the polite failure and succeeds on a retry, and the
answers, the database and the pools' counters add up.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from fakediscord.fixtures import BotRunner, serving
from fakediscord.server import FakeDiscord
from pgserver import PostgresServer
from PIL import Image

from bot.client import ShardedDreamBot, make_bot
from bot.health import health
from bot.settings import Settings
from bot.store import Store
from dreamcore.pool import DreamPool, PoolConfig

ray = pytest.importorskip("ray", reason="the Ray backend needs `pip install -e '.[ray]'`")

pytestmark = [pytest.mark.timeout(600), pytest.mark.asyncio(loop_scope="module")]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SERVERS, MEMBERS_PER_SERVER, TWICE = 20, 5, 10
PER_MEMBER, PER_SERVER = 1, 2
POLITE_CRASH = "stumbled"


def photo() -> bytes:
    img = Image.open(ASSETS / "chelsea.png").convert("RGB").resize((96, 64))
    out = BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def shard_of(guild_id: str, count: int = 2) -> int:
    return (int(guild_id) >> 22) % count


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest_asyncio.fixture(loop_scope="module")
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with serving(monkeypatch, heartbeat_interval_ms=1000) as server:
        yield server


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return value


def answers(fake: FakeDiscord, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's answers to a message: the dream's file, or one polite sentence.

    Progress messages (queued, dreaming, and the "dreamed in N s" they end as) do not count.
    """
    bot_id = fake.bot_user["id"]
    return [
        m
        for m in fake.messages.values()
        if m["author"]["id"] == bot_id
        and (m.get("message_reference") or {}).get("message_id") == message["id"]
        and (m.get("attachments") or not m["content"].startswith(("⏳", "🌀", "✅")))
    ]


def most_at_once(rows: list[asyncpg.Record]) -> int:
    """The most reservations that overlapped in time (each from asked to finished)."""
    edges = sorted(
        [(r["created_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows],
        key=lambda e: (e[0], e[1]),  # a release at the same instant comes first
    )
    held = peak = 0
    for _, step in edges:
        held += step
        peak = max(peak, held)
    return peak


async def test_two_sharded_bots_on_postgres_and_ray_answer_a_burst_within_limits(
    fake: FakeDiscord, cluster: Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # -- the world: 20 servers over both shards, 5 members each ---------------------------------
    guilds, channels, members = [], {}, {}
    while len(guilds) < SERVERS or len({shard_of(g.id) for g in guilds}) < 2:
        guild = fake.add_guild(f"server {len(guilds)}")
        channels[guild.id] = fake.add_channel(guild, "dreams")
        members[guild.id] = []
        for i in range(MEMBERS_PER_SERVER):
            user = fake.add_user(f"m{len(guilds)}-{i}")
            fake.add_member(guild, user)
            members[guild.id].append(user)
        guilds.append(guild)
        await asyncio.sleep(0.003)  # the next id in another millisecond: spread over shards
    on = {s: [g for g in guilds if shard_of(g.id) == s] for s in (0, 1)}
    assert on[0] and on[1]
    # 10 members also join a server on the other shard, where they will post too.
    twice = []
    for k in range(TWICE):
        home = on[k % 2][k % len(on[k % 2])]
        away = on[1 - k % 2][k % len(on[1 - k % 2])]
        user = members[home.id][k % MEMBERS_PER_SERVER]
        fake.add_member(away, user)
        twice.append((user, away))

    url = await postgres_server.new_database()
    image = photo()
    bots, pools, stores = [], [], []
    async with aiohttp.ClientSession() as session:
        runner = BotRunner(fake)
        try:
            for shard in (0, 1):
                settings = Settings(
                    _env_file=None,  # type: ignore[call-arg]
                    discord_token=fake.token,
                    database_url=url,
                    shard_count=2,
                    shard_ids=[shard],
                    ray_address="auto",
                    cpu_workers=1,
                    torch_threads=1,
                    max_queue=64,
                    max_jobs_per_user=PER_MEMBER,
                    max_jobs_per_guild=PER_SERVER,
                    cooldown_s=0.0,
                    daily_quota=0,
                    max_image_side=64,
                    cdn_hosts=["127.0.0.1"],
                    cdn_schemes=["http"],
                    progress_interval_s=1.0,
                    health_enabled=False,
                    source_retention_h=0,
                )
                store = await Store.open(settings.database_target(), runner=settings.runner)
                stores.append(store)
                pool = DreamPool(
                    PoolConfig(
                        ray_address="auto",
                        cpu_workers=1,
                        torch_threads=1,
                        max_queue=64,
                        max_per_owner=PER_MEMBER,
                        job_timeout_s=120.0,
                        start_timeout_s=240.0,
                    )
                )
                await pool.start()
                pools.append(pool)
                bot = make_bot(
                    settings, store=store, pool=pool, session=session, guild_ready_timeout=0.1
                )
                assert isinstance(bot, ShardedDreamBot)
                bots.append(await runner.start(bot, timeout=60))

            # -- each bot holds exactly its shard's servers, and says so when asked -----------
            for shard, bot in enumerate(bots):
                held = {gid for gid in fake.guilds if shard_of(gid) == shard}
                assert {str(g.id) for g in bot.guilds} == held
            _, details = await eventually(
                lambda: (r := health(bots[1], pools[1], database=True))[0] and r,
                20,
                "shard 1 healthy",
            )
            assert list(details["shards"]) == ["1"] and details["shards"]["1"]["connected"]
            assert list(health(bots[0], pools[0], database=True)[1]["shards"]) == ["0"]

            # -- the burst ---------------------------------------------------------------------
            posts: list[tuple[dict[str, Any], dict[str, Any], str]] = []

            async def post(user: dict[str, Any], guild_id: str) -> None:
                channel = channels[guild_id]
                attachment = fake.attachment(image, "photo.png", channel=channel)
                message = await fake.post_message(
                    "!dream", author=user, channel=channel, attachments=[attachment]
                )
                posts.append((message, user, guild_id))

            requests = [(u, g.id) for g in guilds for u in members[g.id]]
            requests += [(u, g.id) for u, g in twice]
            killed_pid: list[int] = []

            async def kill_one_actor() -> None:
                await eventually(lambda: pools[0].stats().running, 60, "a dream running")
                pid = pools[0].worker_pids()[0]
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed_pid.append(pid)

            await asyncio.gather(*(post(u, g) for u, g in requests), kill_one_actor())
            assert len(posts) == len(requests) == len(guilds) * MEMBERS_PER_SERVER + TWICE

            # -- every request: exactly one answer --------------------------------------------
            await eventually(
                lambda: all(answers(fake, m) for m, _, _ in posts), 300, "an answer to every post"
            )
            await asyncio.sleep(1.0)  # a second answer, if one were coming, would be here now
            final = {m["id"]: answers(fake, m) for m, _, _ in posts}
            assert all(len(a) == 1 for a in final.values()), [
                a for a in final.values() if len(a) != 1
            ]
            kinds = collections.Counter()
            crashed = []
            for message, user, guild_id in posts:
                reply = final[message["id"]][0]
                if reply.get("attachments"):
                    kinds["dream"] += 1
                elif POLITE_CRASH in reply["content"]:
                    kinds["crash"] += 1
                    crashed.append((user, guild_id))
                elif "already have" in reply["content"]:
                    kinds["member limit"] += 1
                elif "many dreams in progress" in reply["content"]:
                    kinds["server limit"] += 1
                else:
                    kinds[f"other: {reply['content']}"] += 1
            assert kinds["crash"] == 1, kinds
            assert set(kinds) <= {"dream", "crash", "member limit", "server limit"}, kinds
            assert kinds["dream"] >= SERVERS and kinds["server limit"] >= 1, kinds

            # -- limits held across both bots, from the database's own records ----------------
            con = await asyncpg.connect(url)
            try:
                rows = await con.fetch("SELECT * FROM dreams")
            finally:
                await con.close()
            assert len(rows) == kinds["dream"] + kinds["crash"]  # refusals reserve nothing
            assert all(r["status"] in ("done", "failed") for r in rows)
            assert sum(r["status"] == "done" for r in rows) == kinds["dream"]
            assert {r["runner"] for r in rows} == {"shards 0 of 2", "shards 1 of 2"}
            by_member, by_server = collections.defaultdict(list), collections.defaultdict(list)
            for r in rows:
                by_member[r["owner_id"]].append(r)
                by_server[r["guild_id"]].append(r)
            assert max(most_at_once(rs) for rs in by_member.values()) <= PER_MEMBER
            assert max(most_at_once(rs) for rs in by_server.values()) <= PER_SERVER
            # The members who posted in two shards at once got at most one of the two through.
            assert kinds["member limit"] >= 1, kinds

            # -- the pools' counters add up; the killed actor was replaced ---------------------
            stats = [p.stats() for p in pools]
            assert sum(s.done for s in stats) == kinds["dream"]
            assert sum(s.failed for s in stats) == kinds["crash"] == 1
            assert stats[0].restarts == 1 and stats[1].restarts == 0
            await eventually(lambda: pools[0].ready, 120, "a replacement actor")
            assert pools[0].worker_pids()[0] not in (None, killed_pid[0])

            # -- the member whose dream was lost tries again, and gets it ---------------------
            user, guild_id = crashed[0]
            channel = channels[guild_id]
            retry = await fake.post_message(
                "!dream",
                author=user,
                channel=channel,
                attachments=[fake.attachment(image, "photo.png", channel=channel)],
            )
            reply = await eventually(lambda: answers(fake, retry), 120, "the retry's answer")
            assert reply[0].get("attachments"), reply[0]["content"]
        finally:
            errors = await runner.stop_all()
            for pool in pools:
                await pool.close()
            for store in stores:
                await store.close()
    assert not errors
