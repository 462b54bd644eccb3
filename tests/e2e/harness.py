"""Start the real VideoBot against the sandbox Discord, stop it, start another on the same database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import discord

from bot.app import VideoBot
from bot.config import Settings
from sandbox.discord import DiscordEmulator


class QuickBot(VideoBot):
    """The product bot with test-friendly gateway timings (no 5 s re-identify sleep)."""

    async def before_identify_hook(self, shard_id, *, initial=False):  # noqa: D401
        return None


class BotHarness:
    def __init__(self, emu: DiscordEmulator, tmp: Path, providers_factory, *,
                 extensions: Sequence[str] = ("cogs.jobs", "tests.support.echo_cog"), **settings) -> None:
        self.emu = emu
        self.tmp = tmp
        self.providers_factory = providers_factory
        self.extensions = tuple(extensions)
        # cooldowns off unless a test turns them on: tests run commands faster than any person
        self.settings_overrides = {"database_path": tmp / "bot.db", "spool_dir": tmp / "spool",
                                   "status_edit_seconds": 1.0, "cooldowns": {"*": 0},
                                   **settings}
        self.bot: VideoBot | None = None
        self._task: asyncio.Task | None = None
        self.synced = False

    def settings(self) -> Settings:
        return Settings(discord_token=self.emu.bot_token, **self.settings_overrides)

    async def start(self) -> VideoBot:
        bot = QuickBot(self.settings(), providers=self.providers_factory(), extensions=self.extensions,
                       guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
        self._task = asyncio.create_task(bot.start(self.emu.bot_token))
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({ready, self._task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # surfaces the login error
        assert ready in done, "bot did not become ready"
        if not self.synced:
            guild = discord.Object(self.emu.guild_id)
            bot.tree.copy_global_to(guild=guild)
            await bot.tree.sync(guild=guild)
            self.synced = True
        self.bot = bot
        return bot

    async def stop(self) -> None:
        """A graceful shutdown, as on SIGTERM."""
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        self.bot = self._task = None

    async def crash(self) -> None:
        """Die without any shutdown work: tasks cancelled, nothing flushed beyond what was committed."""
        bot = self.bot
        if bot is None:
            return
        bot.runner._stopping = True
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(("job-", "job-runner"))]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bot.runner._loop_task = None
        bot.runner._inflight.clear()
        await self.stop()

    async def restart(self) -> VideoBot:
        await self.stop()
        return await self.start()
