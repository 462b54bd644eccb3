"""Users and a killer acting on the crash test's world: users send slash commands through sandbox
Discord and wait for their jobs to end; the killer SIGKILLs the bot at the plan's points and
starts it again. A command whose answer a kill swallowed is looked up in the bot's database
(the job may have been stored) and otherwise sent again, as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.discord.interactions import InteractionFailed
from tests.e2e.crash_checks import READY
from tests.e2e.crash_plan import TAG_PARAM, Lifecycle, Plan
from tests.e2e.crash_world import BotDb, BotProcess, Sandboxes

_JOB_ID = re.compile(r"job `([a-z0-9]+)`")
TERMINAL = ("done", "failed", "cancelled")
#: the paid calls, per stand-in: a kill aimed at the paid window lands while their answer is late
PAID_ROUTES = (("viggle", r"^/api/(characters/preprocess|scenes/preprocess|render)$"),
               ("v2s", r"/submit-job/$"), ("scenario", r"^/v1/generate/custom/"))


def finished_messages(emu) -> int:
    """Result and failure messages posted so far: a job's end as its user sees it."""
    return sum(1 for m in emu.messages() if "· job `" in m.content and (READY.search(m.content)
                                                                        or " failed · job" in m.content))


@dataclass
class Media:
    portrait: Path
    clip: Path


@dataclass
class Driver:
    world: Sandboxes
    bot: BotProcess
    db: BotDb
    plan: Plan
    media: Media
    users: list[int]
    channels: list[int]
    job_timeout: float = 90.0
    up: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0
    kill_modes: dict[str, int] = field(default_factory=dict)
    #: times the bot ended without being killed (each is a defect; it is started again)
    own_exits: list[str] = field(default_factory=list)
    _restart: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: commands a live bot did not acknowledge within Discord's 3 s (sent again)
    unacknowledged: int = 0

    # -- the bot's life ---------------------------------------------------------------------------
    async def start_bot(self, tries: int = 3) -> None:
        """Start the bot and wait for its gateway connection. A bot that ends while starting (after
        a kill, say, its database cannot be opened) is noted as a defect and started again."""
        emu = self.world.emu
        for _ in range(tries):
            before = emu.gateway.identifies
            await self.bot.start()
            try:
                await emu.wait_for(lambda b=before: (emu.gateway.identifies > b and emu.connected)
                                   or not self.bot.alive, timeout=60, what="the bot to connect")
            except TimeoutError:
                raise AssertionError(f"the bot did not come up in 60 s:\n{self.bot.tail()}") from None
            if self.bot.alive:
                self.generation += 1
                self.up.set()
                return
            self.own_exits.append(f"ended while starting ({self.bot.exit_text()}):\n{self.bot.tail(15)}")
        raise AssertionError(f"the bot ended {tries} times while starting:\n{self.bot.tail()}")

    async def kill_bot(self, mode: str) -> None:
        self.up.clear()
        if not self.bot.alive:
            self.own_exits.append(f"{self.bot.exit_text()} before its kill:\n{self.bot.tail(15)}")
        await self.bot.kill()
        self.kill_modes[mode] = self.kill_modes.get(mode, 0) + 1
        emu = self.world.emu
        await emu.wait_for(lambda: not emu.connected, timeout=10, what="the gateway to see the kill")

    async def restart(self, mode: str, pause: float) -> None:
        async with self._restart:
            await self.kill_bot(mode)
            await asyncio.sleep(pause)
            await self.start_bot()

    async def watchdog(self, done: asyncio.Event) -> None:
        """A bot that ends by itself is noted (with its last log lines) and started again."""
        while not done.is_set():
            await asyncio.sleep(0.2)
            async with self._restart:
                if self.up.is_set() and not self.bot.alive:
                    self.up.clear()
                    self.own_exits.append(f"{self.bot.exit_text()}:\n{self.bot.tail(15)}")
                    await self.start_bot()

    # -- users -------------------------------------------------------------------------------------
    def _options(self, lc: Lifecycle) -> tuple[str, dict[str, Any]]:
        emu, tag = self.world.emu, lc.tag
        clip = lambda: emu.attachment(self.media.clip, "clip.mp4", "video/mp4")  # noqa: E731
        if lc.kind == "character":
            return "viggle character", {"name": tag, "image": emu.attachment(self.media.portrait, "me.png",
                                                                                "image/png")}
        if lc.kind == "scene":
            return "viggle scene", {"name": tag, "video": clip(), "background_mode": "original"}
        if lc.kind == "render":
            return "viggle render", {"scene": self.plan.base(lc.user, "scene").tag,
                                     "character": self.plan.base(lc.user, "character").tag,
                                     "background_mode": "solid", "bg_color": tag}
        if lc.kind == "splat":
            return "splat create", {"video": clip(), "title": tag}
        return "layers", {"video": clip(), "instruction": tag, "max_layers": 2}

    def _script_failure(self, lc: Lifecycle) -> None:
        """The provider's next job of this kind fails (with users acting at once, it may be
        another user's: the checks judge each job by how it ended, not by the plan)."""
        w = self.world
        if lc.provider == "viggle":
            w.viggle.fail_next(lc.kind)
        elif lc.provider == "vid2scene":
            w.v2s.fail_next_job()
        else:
            w.scenario.fail_next_job()

    async def find_job(self, lc: Lifecycle) -> dict[str, Any] | None:
        for row in await self.db.jobs():
            if row["kind"] == lc.kind and json.loads(row["params"]).get(TAG_PARAM[lc.kind]) == lc.tag:
                return row
        return None

    async def _answer(self, ix, generation: int, timeout: float = 60.0):
        """The user-visible answer, or why there is none: "killed" (a kill took it), "failed"
        ("This interaction failed": not acknowledged in 3 s) or "silent" (acknowledged, never
        answered, while the bot was up)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            try:
                return await ix.wait_reply(timeout=0.5), None
            except InteractionFailed:
                return None, "failed"
            except TimeoutError:
                if self.generation != generation or not self.up.is_set():
                    return None, "killed"
        return None, "silent"

    async def run(self, lc: Lifecycle) -> None:
        emu = self.world.emu
        while lc.job_id is None:
            await self.up.wait()
            generation = self.generation
            if lc.commands == 0 and lc.fail:
                self._script_failure(lc)
            lc.commands += 1
            command, options = self._options(lc)
            ix = await emu.slash(command, user=self.users[lc.user], options=options,
                                 channel_id=self.channels[lc.user])
            reply, why = await self._answer(ix, generation)
            if reply is not None:
                match = _JOB_ID.search(reply.content or "")
                if match is None:
                    lc.refusal = reply.content or "(empty answer)"
                    return
                lc.job_id = match.group(1)
                break
            if why == "silent":
                lc.refusal = "the bot acknowledged the command but never answered, while it was up"
                return
            if why == "failed" and self.generation == generation:
                # a busy machine can make even a live bot miss Discord's 3 s: the user tries again
                # (responsiveness is not this test's subject; the job must still be started once)
                self.unacknowledged += 1
            await self.up.wait()  # was the job stored before the answer was lost?
            row = await self.find_job(lc)
            if row is not None:
                lc.job_id = row["id"]
        await self.wait_terminal(lc)

    async def wait_terminal(self, lc: Lifecycle) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.job_timeout
        while loop.time() < end:
            rows = [r for r in await self.db.jobs() if r["id"] == lc.job_id]
            if rows and rows[0]["state"] in TERMINAL:
                return
            await asyncio.sleep(0.2)

    async def run_user(self, user: int) -> None:
        for lc in self.plan.for_user(user):
            if not lc.setup:
                await self.run(lc)

    # -- the killer --------------------------------------------------------------------------------
    async def _until(self, predicate, done: asyncio.Event, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and not done.is_set():
            if predicate():
                return True
            await asyncio.sleep(0.01)
        return False

    async def _aim_paid(self, done: asyncio.Event) -> bool:
        """Make each provider's next paid answer late (the work is done, the answer not yet
        read), and return once one of them has been asked."""
        services = {"viggle": self.world.viggle, "v2s": self.world.v2s, "scenario": self.world.scenario}
        before = {name: len(services[name].requests_to(rx, "POST")) for name, rx in PAID_ROUTES}
        for name, rx in PAID_ROUTES:
            services[name].faults.add("POST", rx, 200, passthrough=True, delay=0.4)
        try:
            return await self._until(lambda: any(len(services[n].requests_to(rx, "POST")) > before[n]
                                                 for n, rx in PAID_ROUTES), done, 6.0)
        finally:  # the late answer under way keeps its delay; the unused ones go
            for service in services.values():
                service.faults.clear()

    async def _aim_finish(self, done: asyncio.Event) -> bool:
        """Make the bot's channel posts answer late (Discord has the message, the bot not yet its
        id), and return once a result or failure notice is in the channel."""
        emu = self.world.emu
        seen = finished_messages(emu)
        emu.faults.add("POST", r"/channels/\d+/messages$", 200, passthrough=True, delay=0.3, times=None)
        try:
            return await self._until(lambda: finished_messages(emu) > seen, done, 6.0)
        finally:
            emu.faults.clear()  # this test scripts no other Discord faults

    async def _aim_ended(self, done: asyncio.Event, timeout: float = 6.0) -> bool:
        """Return as soon as the bot's database records one more job as ended."""
        async def ended() -> int:
            return sum(1 for row in await self.db.jobs() if row["state"] in TERMINAL)

        seen = await ended()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and not done.is_set():
            if await ended() > seen:
                return True
            await asyncio.sleep(0.005)
        return False

    async def kill_loop(self, done: asyncio.Event) -> None:
        """Kill at each of the plan's points in turn until the users are done."""
        rng = random.Random(self.plan.seed ^ 0x5EED)
        aims = {"paid": self._aim_paid, "finish": self._aim_finish, "ended": self._aim_ended}
        for mode, pause, rest in self.plan.kills:
            await self.up.wait()
            if done.is_set():
                return
            if mode == "random":
                await self._until(lambda: False, done, pause)
            elif await aims[mode](done):
                await asyncio.sleep(pause)
            else:
                mode = "fallback"  # nothing to aim at within the wait: an ordinary kill
            if done.is_set():
                return
            await self.restart(mode, rng.uniform(0.0, 0.3))
            await self._until(lambda: False, done, rest)  # a breather: long steps get to finish

    # -- the whole run ----------------------------------------------------------------------------
    async def setup(self) -> None:
        """Every user's base character and scene, made before any kill (renders need them)."""
        done = asyncio.Event()
        watchdog = asyncio.create_task(self.watchdog(done))
        try:
            await asyncio.gather(*(self.run(lc) for lc in self.plan.lifecycles if lc.setup))
        finally:
            done.set()
            await watchdog

    async def chaos(self) -> None:
        """Every user's lifecycles, while the killer works; the bot is up when it returns."""
        done = asyncio.Event()
        killer = asyncio.create_task(self.kill_loop(done))
        watchdog = asyncio.create_task(self.watchdog(done))
        try:
            await asyncio.gather(*(self.run_user(u) for u in range(self.plan.users)))
        finally:
            done.set()
            with contextlib.suppress(asyncio.CancelledError):
                await killer
                await watchdog
        if not self.bot.alive:  # the killer always starts it again: this one ended by itself
            self.own_exits.append(f"{self.bot.exit_text()}:\n{self.bot.tail(15)}")
            await self.start_bot()
