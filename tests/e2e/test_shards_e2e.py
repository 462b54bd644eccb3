"""SHARD_COUNT / SHARD_IDS: `python -m bot run`'s bot identifies to the gateway as the shards it
was given (the sandbox gateway records each session's shard), counts itself connected only while
they are, and answers commands as an unsharded bot does. The sandbox Discord does not route guilds
to shards (it sends every event to its newest session), so splitting guilds is not tested here."""

from __future__ import annotations

import asyncio
import contextlib

import discord

from bot.app import ShardedVideoBot, gateway_bot
from bot.config import Settings
from tests.e2e.helpers import run_echo, wait_result
from tests.support.echo import EchoProvider
from tests.support.policy import sandbox_net


async def test_a_process_identifies_as_its_shards_and_runs_commands(emu, remote, users, tmp_path):
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
        guild = discord.Object(emu.guild_id)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        job_id = await run_echo(emu, users["alice"], "sharded")
        assert (await wait_result(emu, job_id, timeout=20)).attachments
    finally:
        await bot.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert not bot.gateway_alive()
