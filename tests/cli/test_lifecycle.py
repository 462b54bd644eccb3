"""Start and stop as an operator (or Docker) does: "ready" only once connected, a health check that
follows the heartbeats, and no temp folder left after SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from bot.health import health_report, heartbeat
from tests.cli.conftest import base_env, operator_folder, run_cli


async def start(args: list[str], *, cwd, tmpdir, module: str = "bot"):
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, cwd=cwd, env=base_env(tmpdir),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def wait_for_line(proc, text: str, timeout: float = 60) -> list[str]:
    seen = []

    async def read() -> None:
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"exited before {text!r}:\n{''.join(seen)}")
            seen.append(line)
            if text in line:
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def stop(proc, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_run_is_ready_when_connected_healthy_while_up_and_leaves_nothing(tmp_path, sandbox_lines, fresh_tmp,
                                                                               sig):
    folder = operator_folder(tmp_path / "op", sandbox_lines)
    proc = await start([], cwd=folder, tmpdir=fresh_tmp)
    try:
        seen = await wait_for_line(proc, "ready:")
        assert any("connected to Gateway" in line for line in seen[:-1])  # ready comes after the gateway
        assert "runner running" in seen[-1]
        health = await run_cli("health", cwd=folder)
        assert health.code == 0, health
        assert "runner: alive" in health.out and "gateway: alive" in health.out
    finally:
        code, out = await stop(proc, sig)
    assert code == 0, out
    assert "Traceback" not in out and "stopped;" in out
    assert os.listdir(fresh_tmp) == []
    after = await run_cli("health", cwd=folder)
    assert after.code == 1 and "not running" in after.err


def test_a_stale_heartbeat_is_unhealthy_and_says_which(tmp_path):
    db = tmp_path / "bot.db"
    for part in ("runner", "gateway"):
        heartbeat(db, part).beat()
    old = time.time() - 600
    os.utime(heartbeat(db, "gateway").path, (old, old))
    healthy, lines = health_report(db, max_age=120)
    assert not healthy
    assert lines[0].startswith("runner: alive")
    assert lines[1].startswith("gateway: last heartbeat 600 s ago") and "not connected" in lines[1]
    assert health_report(db, max_age=900)[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_sandbox_leaves_no_temp_folder(tmp_path, fresh_tmp, sig):
    lines = tmp_path / "sandbox.env"  # what compose.yaml hands the bot
    proc = await start(["--env-file", str(lines)], cwd=tmp_path, tmpdir=fresh_tmp, module="sandbox")
    try:
        await wait_for_line(proc, "Console")  # the last line: the env file is written by then
        assert os.listdir(fresh_tmp)  # it does use the temp folder while running
        written = dict(line.split("=", 1) for line in lines.read_text().splitlines())
        assert {"DISCORD_TOKEN", "DISCORD_API_URL", "VIGGLE_API_KEY"} <= written.keys()
    finally:
        code, out = await stop(proc, sig)
    assert "Traceback" not in out
    assert os.listdir(fresh_tmp) == []
    assert not lines.exists()


async def test_the_demo_ignores_a_broken_env_and_leaves_nothing_when_stopped(tmp_path, fresh_tmp):
    folder = operator_folder(tmp_path / "op", {"LOG_LEVEL": "chatty", "UPLOAD_LIMIT_MB": "lots",
                                               "VIGGLE_BASE_URL": "not a url"})
    proc = await start(["demo", "--out", str(tmp_path / "out")], cwd=folder, tmpdir=fresh_tmp)
    try:
        await wait_for_line(proc, "sandbox up, bot ready")
        assert os.listdir(fresh_tmp)
    finally:
        code, out = await stop(proc, signal.SIGTERM)
    assert code == 130, out
    assert "Traceback" not in out  # a command being answered at that moment finishes first
    assert os.listdir(fresh_tmp) == []
