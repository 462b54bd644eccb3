"""A bot process for end-to-end tests that run `python -m bot` for real (workers, shards)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path


class Proc:
    """`python -m bot ...` as a child process logging to a file of its own."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name, self.args, self.env, self.workdir = name, args, env, workdir
        self.log = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Proc:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *self.args, env=self.env,
                                                             cwd=self.workdir, stdout=out, stderr=out)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        os.kill(self.proc.pid, signum)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name}:\n" + "\n".join(text[-lines:])
