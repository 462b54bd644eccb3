"""The crash test's world: sandbox Discord and the three provider stand-ins served by the test
process, and the real bot (`python -m bot`) as its own OS process, so a kill is a real SIGKILL:
no `finally`, no flush, only what was committed survives."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.discord import DiscordEmulator
from sandbox.scenario import ScenarioSandbox
from sandbox.vid2scene import Vid2SceneSandbox
from sandbox.viggle import ViggleSandbox

REPO = Path(__file__).resolve().parents[2]
#: the bot's own settings that keep a lifecycle to a few seconds (what an operator could set too)
#: (users here send their next command as soon as the last job ends, so no per-user cooldowns)
QUICK_BOT = {"STATUS_EDIT_SECONDS": "0.25", "MAX_JOBS_PER_USER": "3", "MAX_JOBS_PER_GUILD": "50",
             "LOG_LEVEL": "INFO", "COOLDOWNS": '{"*": 0}'}
QUICK_PROVIDER = {"POLL_MIN_SECONDS": "0.1", "POLL_MAX_SECONDS": "0.4", "RECONCILE_SETTLE_SECONDS": "1"}
_OURS = ("DISCORD_", "VIGGLE_", "VID2SCENE_", "SCENARIO_", "DATABASE_", "SPOOL_", "STATUS_", "MAX_", "LOG_",
         "UPLOAD_", "COOLDOWNS")


@dataclass
class Sandboxes:
    emu: DiscordEmulator
    viggle: ViggleSandbox
    v2s: Vid2SceneSandbox
    scenario: ScenarioSandbox

    @classmethod
    async def start(cls) -> Sandboxes:
        emu = DiscordEmulator(ack_deadline=3.0)
        await emu.start()
        # Discord's per-channel limits still apply, in short windows (as the other e2e tests do)
        for bucket in ("message_create", "message_edit"):
            emu.rate_limits.set(bucket, limit=5, per=0.5)
        viggle = ViggleSandbox(credits=100_000, character_seconds=0.3, scene_seconds=0.3, render_seconds=0.8)
        v2s = Vid2SceneSandbox(queue_seconds=0.2, pickup_seconds=0.05, processing_seconds=0.2,
                               training_seconds=0.6)
        scenario = ScenarioSandbox(upload_validate_seconds=0.1, queue_seconds=0.1, warmup_seconds=0.1,
                                   run_seconds=0.4, layers_found=2, layer_seconds=0.5, max_parallel_jobs=20)
        for service in (viggle, v2s, scenario):
            await service.start()
        return cls(emu, viggle, v2s, scenario)

    async def stop(self) -> None:
        for service in (self.scenario, self.v2s, self.viggle):
            with contextlib.suppress(Exception):
                await service.stop()
        await self.emu.stop()

    def bot_env(self, workdir: Path) -> dict[str, str]:
        """What `python -m sandbox` prints, plus where the bot keeps its state and quick timings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
        emu = self.emu
        env.update(DISCORD_TOKEN=emu.bot_token, DISCORD_API_URL=f"{emu.base_url}/api/v10",
                   DISCORD_GATEWAY_URL=emu.gateway_url, DISCORD_DEV_GUILD_ID=str(emu.guild_id),
                   DATABASE_PATH=str(workdir / "bot.db"), SPOOL_DIR=str(workdir / "spool"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1", **QUICK_BOT)
        for service in (self.viggle, self.v2s, self.scenario):
            env.update(service.env_lines())
        for prefix in ("VIGGLE_", "VID2SCENE_", "SCENARIO_"):
            env.update({prefix + k: v for k, v in QUICK_PROVIDER.items()})
        return env


@dataclass
class BotProcess:
    """`python -m bot` in a child process; every incarnation logs to its own file."""

    env: dict[str, str]
    workdir: Path
    proc: asyncio.subprocess.Process | None = None
    incarnations: int = 0
    kills: int = 0
    logs: list[Path] = field(default_factory=list)

    async def run_once(self, *args: str, timeout: float = 30) -> int:
        """A one-shot command (`sync`), waited for."""
        log = self.workdir / f"bot-{'-'.join(args)}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=self.env,
                                                        cwd=self.workdir, stdout=out, stderr=out)
            return await asyncio.wait_for(proc.wait(), timeout)

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None, "the bot is already running"
        self.incarnations += 1
        log = self.workdir / f"bot-{self.incarnations:03d}.log"
        self.logs.append(log)
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", env=self.env,
                                                             cwd=self.workdir, stdout=out, stderr=out)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: the process gets no chance to do anything."""
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.kills += 1
            await self.proc.wait()

    async def stop(self, timeout: float = 20) -> None:
        """SIGTERM, as `docker stop` does; SIGKILL if it does not end in time."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()

    def exit_text(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def tail(self, lines: int = 40) -> str:
        if not self.logs:
            return ""
        text = self.logs[-1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class BotDb:
    """The bot's SQLite file read as an outside observer would (read-only; the bot may be dead)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args)]
        except sqlite3.OperationalError as exc:  # no table yet: the first start is still migrating
            if "no such table" in str(exc):
                return []
            raise
        finally:
            con.close()

    async def jobs(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._query, "SELECT * FROM jobs ORDER BY created_at")

    async def saved_objects(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._query, "SELECT * FROM saved_objects")
