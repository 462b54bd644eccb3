"""The operator's path, as an operator walks it: `python -m bot` run as a subprocess in a fresh
folder holding `.env.example` copied as it is, against the sandbox served over loopback."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.__main__ import SERVICES
from sandbox.discord import DiscordEmulator

REPO = Path(__file__).resolve().parents[2]
#: names the bot reads; cleared from the inherited environment so only the test's values count
BOT_VARIABLES = ("DISCORD_", "DATABASE_PATH", "SPOOL_DIR", "UPLOAD_LIMIT_MB", "MAX_", "STATUS_EDIT", "LOG_LEVEL",
                 "VIGGLE_", "VID2SCENE_", "SCENARIO_")


@dataclass
class Result:
    code: int
    out: str
    err: str


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(tmpdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BOT_VARIABLES)}
    env["PYTHONUNBUFFERED"] = "1"
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def operator_folder(path: Path, lines: dict[str, str]) -> Path:
    """`cp .env.example .env`, then fill in the given names (as an operator edits the file)."""
    path.mkdir(parents=True, exist_ok=True)
    text = (REPO / ".env.example").read_text()
    out, pending = [], dict(lines)
    for line in text.splitlines():
        name = line.split("=", 1)[0].lstrip("# ").strip()
        if "=" in line and name in pending:
            line = f"{name}={pending.pop(name)}"
        out.append(line)
    out += [f"{k}={v}" for k, v in pending.items()]
    (path / ".env").write_text("\n".join(out) + "\n")
    return path


async def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, cwd=cwd,
                                                env=base_env() | (env or {}),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def sandbox_lines():
    """Sandbox Discord and every provider stand-in, and the lines `python -m sandbox` prints."""
    emu = DiscordEmulator()
    await emu.start()
    ws = emu.base_url.replace("http://", "ws://", 1)
    lines = {"DISCORD_TOKEN": emu.bot_token, "DISCORD_API_URL": f"{emu.base_url}/api/v10",
             "DISCORD_GATEWAY_URL": f"{ws}/gateway", "DISCORD_DEV_GUILD_ID": str(emu.guild_id)}
    services = []
    for module, cls in SERVICES:
        service = getattr(importlib.import_module(module), cls)()
        await service.start()
        services.append(service)
        lines.update(service.env_lines())
    yield lines
    for service in services:
        await service.stop()
    await emu.stop()


@pytest.fixture
def fresh_tmp(tmp_path) -> Path:
    """An empty TMPDIR for a child process, to prove it leaves nothing behind."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
