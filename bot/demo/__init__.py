"""`python -m bot demo`: the sandbox (Discord and every provider stand-in) plus the real bot, a
scripted user playing one story per provider, and a transcript in `demo-out/`. No credentials.

The only place in `bot/` that imports `sandbox/`: the demo is a trial mode, not the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

from bot.app import VideoBot
from bot.config import ScenarioSettings, Settings, Vid2SceneSettings, ViggleSettings, isolated_settings
from bot.demo.transcript import write_transcript
from bot.logs import setup_logging

#: story modules; each has SECTION (settings section), make_sandbox() and async play(ctx)
STORIES = ("bot.demo.story_splat", "bot.demo.story_viggle", "bot.demo.story_layers")
_SECTIONS = {"viggle": ViggleSettings, "vid2scene": Vid2SceneSettings, "scenario": ScenarioSettings}
_JOB_ID = re.compile(r"job `([a-z0-9]+)`")


class DemoBot(VideoBot):
    async def before_identify_hook(self, shard_id, *, initial=False):
        return None


@dataclass
class DemoContext:
    """What a story needs: the emulator, the scripted user, a scratch folder, the bot."""

    emu: Any
    user: int
    workdir: Path
    bot: VideoBot
    notes: list[str] = field(default_factory=list)

    async def run(self, command: str, timeout: float = 120.0, **options: Any) -> str:
        """Send a slash command as the user; return the job id it started (or raise with its reply)."""
        ix = await self.emu.slash(command, user=self.user, options=options)
        reply = await ix.wait_reply(timeout=10)
        match = _JOB_ID.search(reply.content or "")
        if not match:
            raise RuntimeError(f"/{command} did not start a job: {reply.content!r}")
        return match.group(1)

    async def wait_done(self, job_id: str, timeout: float = 120.0):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            job = await self.bot.store.get_job(job_id)
            # over, and its status card already says so (edits may wait on Discord's rate limit)
            if job is not None and job.state.is_terminal and (job.status_fingerprint or "").startswith(job.state):
                return job
            await asyncio.sleep(0.2)
        raise TimeoutError(f"job {job_id} did not finish in {timeout:.0f} s")


def _section_settings(name: str, env: dict[str, str] | None) -> Any:
    """A provider section from a sandbox's env lines, with quick polling; off when no sandbox."""
    cls = _SECTIONS[name]
    if env is None:
        return cls(api_key=None)
    prefix = f"{name.upper()}_"
    values = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)}
    return cls(**values, poll_min_seconds=0.3, poll_max_seconds=1.0)


async def run_demo(out: str | Path = "demo-out") -> int:
    from sandbox.discord import DiscordEmulator

    setup_logging("WARNING")
    started = time.perf_counter()
    out = Path(out)
    stories = [importlib.import_module(m) for m in STORIES if importlib.util.find_spec(m) is not None]
    emu = DiscordEmulator()
    sandboxes, envs = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="videobot-demo-"))
    bot = bot_task = None
    failures = 0
    try:  # everything inside, so Ctrl-C or SIGTERM at any point leaves no temp folder behind
        await emu.start()
        emu.point_discord_py()
        alice = emu.add_user("alice")
        for story in stories:
            sandbox = story.make_sandbox()
            sandboxes.append(sandbox)
            await sandbox.start()
            envs[story.SECTION] = sandbox.env_lines()
        with isolated_settings():  # the operator's .env and environment are for the real bot
            settings = Settings(discord_token=emu.bot_token, database_path=scratch / "demo.db",
                                spool_dir=scratch / "spool", status_edit_seconds=0.5,
                                discord_api_url=f"{emu.base_url}/api/v10",
                                **{name: _section_settings(name, envs.get(name)) for name in _SECTIONS})
        bot = DemoBot(settings, guild_ready_timeout=0.05, chunk_guilds_at_startup=False)
        bot_task = asyncio.create_task(bot.start(emu.bot_token))
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        guild = discord.Object(emu.guild_id)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        print(f"sandbox up, bot ready in {time.perf_counter() - started:.1f} s; "
              f"providers: {', '.join(bot.providers) or 'none'}", flush=True)
        ctx = DemoContext(emu, alice, scratch / "inputs", bot)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        for story in stories:
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(story.play(ctx), 180)
                print(f"  {story.SECTION:<10} story done in {time.perf_counter() - t0:.1f} s")
            except Exception as exc:
                failures += 1
                print(f"  {story.SECTION:<10} story FAILED: {type(exc).__name__}: {exc}")
                logging.getLogger(__name__).exception("story %s failed", story.SECTION)
        ix = await emu.slash("jobs list", user=alice, options={})
        await ix.wait_reply(timeout=10)
        names = {alice: "alice", emu.bot_user_id: "VideoBot"}
        page = write_transcript(out, emu, names, "VideoBot demo")
        print(f"transcript: {page} and {out / 'transcript.txt'}")
    finally:
        if bot is not None:
            await bot.close()
        if bot_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(bot_task, 10)
        for sandbox in sandboxes:
            with contextlib.suppress(Exception):
                await sandbox.stop()
        emu.unpatch()
        await emu.stop()
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    print(f"demo finished in {time.perf_counter() - started:.1f} s with {failures} failed stories")
    return 1 if failures else 0
