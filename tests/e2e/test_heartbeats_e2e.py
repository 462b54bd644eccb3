"""The heartbeats `python -m bot health` reads: beaten while the bot runs, gone after a clean stop."""

from __future__ import annotations

import asyncio
import os
import time

from bot.health import health_report


async def wait_until(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_runner_and_gateway_beat_while_running_and_clear_on_stop(harness, monkeypatch):
    await harness.stop()  # the fixture's bot beats every 20 s; start one that beats often
    monkeypatch.setattr("bot.app.GATEWAY_BEAT", 0.1)
    bot = await harness.start()
    db = bot.settings.database_path
    await wait_until(lambda: health_report(db)[0])
    old = time.time() - 3600
    for beat in (bot.runner_heartbeat, bot.gateway_heartbeat):
        os.utime(beat.path, (old, old))
    assert not health_report(db)[0]
    bot.runner.wake()  # a turn of the runner loop beats, as the idle timeout would
    await wait_until(lambda: (bot.runner_heartbeat.age() or 1e9) < 60 and (bot.gateway_heartbeat.age() or 1e9) < 60)
    assert health_report(db, max_age=60)[0]
    await harness.stop()
    healthy, lines = health_report(db)
    assert not healthy and all("not running" in line for line in lines)
