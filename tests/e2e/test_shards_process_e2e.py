"""Two real gateway processes (`python -m bot run` with SHARD_COUNT=2 and SHARD_IDS [0] and [1])
on one SQLite database: the sandbox Discord routes each guild to the process holding its shard,
that process answers the command, and the Viggle job's result is posted once in that guild."""

from __future__ import annotations

import asyncio
import time

import pytest

from sandbox.discord.gateway import shard_of
from sandbox.media import image_bytes
from tests.e2e.bot_process import Proc
from tests.e2e.crash_world import Sandboxes
from tests.e2e.helpers import job_id_of, result_messages


@pytest.mark.timeout(90)
async def test_two_gateway_processes_each_answer_the_guild_on_their_shard(tmp_path):
    started = time.monotonic()
    portrait = tmp_path / "me.png"
    portrait.write_bytes(image_bytes(96, 96, label="S"))
    world = await Sandboxes.start()
    emu = world.emu
    guilds = {0: emu.add_guild("zero", shard=(0, 2)), 1: emu.add_guild("one", shard=(1, 2))}
    people = {shard: emu.add_user(f"user{shard}", guild_id=gid) for shard, gid in guilds.items()}
    procs: list[Proc] = []
    try:
        def proc(name: str, args: list[str], **extra: str) -> Proc:
            (tmp_path / name).mkdir()
            env = world.bot_env(tmp_path / name) | {"DATABASE_PATH": str(tmp_path / "bot.db"),
                                                    "RUNNER_IDLE_SECONDS": "0.5"} | extra
            env.pop("DISCORD_DEV_GUILD_ID")  # global commands: one registration for every guild
            p = Proc(name, args, env, tmp_path)
            procs.append(p)
            return p

        sync = await proc("sync", ["sync"]).start()
        assert await asyncio.wait_for(sync.proc.wait(), 60) == 0, sync.tail()
        for shard in (0, 1):
            await proc(f"shard{shard}", ["run"], SHARD_COUNT="2", SHARD_IDS=f"[{shard}]",
                       WORKER_ID=f"shard{shard}").start()
        await emu.wait_for(lambda: sum(s.open for s in emu.gateway.sessions.values()) == 2
                           or not all(p.alive for p in procs[1:]), timeout=60, what="both shards to connect")
        assert all(p.alive for p in procs[1:]), "\n".join(p.tail() for p in procs)
        assert sorted(s.shard for s in emu.gateway.sessions.values()) == [[0, 2], [1, 2]]

        asked = {}
        for shard, gid in guilds.items():
            channel = emu.general_channel(gid)
            ix = await emu.slash("viggle character", user=people[shard], channel_id=channel,
                                 options={"name": f"hero{shard}",
                                          "image": emu.attachment(portrait, "me.png", "image/png")})
            asked[shard] = (ix, job_id_of((await ix.wait_reply(timeout=15)).content), channel)
        for shard, (ix, job_id, channel) in asked.items():
            assert [emu.gateway.sessions[s].shard for s in ix.sessions] == [[shard, 2]]
            found = await emu.wait_for(lambda j=job_id: result_messages(emu, j), timeout=30,
                                       what=f"the result of {job_id}")
            assert found[0].channel_id == channel
        await asyncio.sleep(1.0)  # a second result message, if any, would show up now
        for _, job_id, channel in asked.values():
            assert [m.channel_id for m in result_messages(emu, job_id)] == [channel]
        for session in emu.gateway.sessions.values():
            guild_events = [g for _, g in session.received if g is not None]
            assert guild_events and all(shard_of(g, 2) == session.shard[0] for g in guild_events)
        assert len(world.viggle.characters) == 2  # one paid submission per command
        print(f"\nshard processes test: {time.monotonic() - started:.1f} s")
    finally:
        for p in procs:
            await p.stop()
        await world.stop()
