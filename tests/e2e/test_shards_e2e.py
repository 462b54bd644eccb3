"""SHARD_COUNT / SHARD_IDS: `python -m bot run`'s bot identifies to the gateway as the shards it
was given (the sandbox gateway records each session's shard), counts itself connected only while
they are, and answers commands as an unsharded bot does. With two guilds on different shards and
two bots (SHARD_IDS [0] and [1] of 2) on one database, the sandbox Discord routes each guild to its
shard as Discord does: each bot answers only its own guild's commands, never sees the other's
events, and every job's result is posted once, in the channel it was asked in."""

from __future__ import annotations

import asyncio
import contextlib

import discord

from bot.app import ShardedVideoBot, gateway_bot
from bot.config import Settings
from sandbox.discord.gateway import shard_of
from tests.e2e.helpers import job_id_of, result_messages, wait_result
from tests.support.echo import EchoProvider
from tests.support.policy import sandbox_net


async def test_a_process_identifies_as_its_shards_and_runs_commands(emu, remote, tmp_path):
    gid = emu.add_guild("third", shard=(2, 3))  # the default guild may fall on any shard
    alice = emu.add_user("alice", guild_id=gid)
    settings = Settings(discord_token=emu.bot_token, database_path=tmp_path / "bot.db", spool_dir=tmp_path / "spool",
                        status_edit_seconds=1.0, cooldowns={"*": 0}, shard_count=3, shard_ids=[2])
    bot = gateway_bot(settings, providers={"echo": EchoProvider(remote, sandbox_net(emu))},
                      extensions=("cogs.jobs", "tests.support.echo_cog"), guild_ready_timeout=0.05,
                      chunk_guilds_at_startup=False)
    assert isinstance(bot, ShardedVideoBot)
    task = asyncio.create_task(bot.start(emu.bot_token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        assert [s.shard for s in emu.gateway.sessions.values()] == [[2, 3]]
        assert list(bot.shards) == [2] and bot.gateway_alive()
        assert bot.get_guild(gid) is not None
        guild = discord.Object(gid)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        ix = await emu.slash("echo", user=alice, options={"text": "sharded"}, channel_id=emu.general_channel(gid))
        job_id = job_id_of((await ix.wait_reply()).content)
        assert (await wait_result(emu, job_id, timeout=20)).attachments
    finally:
        await bot.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert not bot.gateway_alive()


async def _start(bot, token: str) -> asyncio.Task:
    task = asyncio.create_task(bot.start(token))
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({ready, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # surfaces a login error
    assert ready in done, "bot did not become ready"
    return task


async def test_two_processes_split_the_guilds_and_each_answers_its_own(emu, remote, tmp_path):
    guilds = {0: emu.add_guild("zero", shard=(0, 2)), 1: emu.add_guild("one", shard=(1, 2))}
    people = {shard: emu.add_user(f"user{shard}", guild_id=gid) for shard, gid in guilds.items()}
    bots, tasks, received = {}, {}, {0: [], 1: []}
    try:
        for shard in (0, 1):
            settings = Settings(discord_token=emu.bot_token, database_path=tmp_path / "bot.db",
                                spool_dir=tmp_path / f"spool{shard}", worker_id=f"shard{shard}",
                                status_edit_seconds=1.0, runner_idle_seconds=0.5, cooldowns={"*": 0},
                                shard_count=2, shard_ids=[shard])
            bot = gateway_bot(settings, providers={"echo": EchoProvider(remote, sandbox_net(emu))},
                              extensions=("cogs.jobs", "tests.support.echo_cog"), guild_ready_timeout=0.05,
                              chunk_guilds_at_startup=False)
            bot.add_listener(_recorder(received[shard]), "on_interaction")
            bots[shard] = bot
            tasks[shard] = await _start(bot, emu.bot_token)
        await bots[0].tree.sync()  # global commands: one registration serves every guild
        for shard, bot in bots.items():  # each bot holds its shard's guild only
            assert bot.get_guild(guilds[shard]) is not None and bot.get_guild(guilds[1 - shard]) is None

        asked = {}
        for shard, gid in guilds.items():
            channel = emu.general_channel(gid)
            ix = await emu.slash("echo", user=people[shard], options={"text": f"hello {shard}"}, channel_id=channel)
            job_id = job_id_of((await ix.wait_reply()).content)
            asked[shard] = (ix, job_id, channel)
        for shard, (ix, job_id, channel) in asked.items():
            # the gateway sent it to that shard's session alone, and that bot alone received it
            assert [emu.gateway.sessions[s].shard for s in ix.sessions] == [[shard, 2]]
            assert received[shard] == [ix.id]
            result = await wait_result(emu, job_id, timeout=20)
            assert result.channel_id == channel and result.attachments
            await _settled(bots[0].store, job_id)
        await asyncio.sleep(0.3)  # a second delivery, if any, would land now
        for _, job_id, channel in asked.values():
            assert [m.channel_id for m in result_messages(emu, job_id)] == [channel]

        # no event of a guild ever reached the other shard's session
        sessions = {s.shard[0]: s for s in emu.gateway.sessions.values()}
        for shard, session in sessions.items():
            guild_events = [(e, g) for e, g in session.received if g is not None]
            assert guild_events and all(shard_of(g, 2) == shard for _, g in guild_events), guild_events
            assert guilds[shard] in session.got("MESSAGE_CREATE") and guilds[1 - shard] not in session.got("MESSAGE_CREATE")
    finally:
        for shard, bot in bots.items():
            await bot.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(tasks[shard], 10)


def _recorder(into: list[int]):
    async def on_interaction(interaction: discord.Interaction) -> None:
        into.append(interaction.id)

    return on_interaction


async def _settled(store, job_id: str, timeout: float = 10) -> None:
    """Wait until the job has ended and owes no more delivery."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        job = await store.get_job(job_id)
        if job is not None and job.state.is_terminal and not job.finish_pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not settle")
