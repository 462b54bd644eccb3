"""Wake-ups across processes on PostgreSQL: LISTEN on the channel the store NOTIFYs.

A write that makes a job claimable sooner (a new job, a cancel request, a refresh, a lease given
back) sends a NOTIFY in its own transaction (bot/store_pg.py), so it arrives only once committed.
A runner keeps one dedicated connection listening and wakes on each notification instead of
waiting out its idle time. Notifications sent while that connection is down are lost, so after
every (re)connect the runner is woken once to look for itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from bot.redact import mask

log = logging.getLogger(__name__)

#: the one channel; its payload is a provider name, never user text
DUE_CHANNEL = "video_bot_due"
#: how the listening connection shows in pg_stat_activity
APPLICATION_NAME = "video-bot due listener"


class DueListener:
    """One LISTENing connection for one runner: `start()`, then `await close()`."""

    def __init__(self, url: str, wake: Callable[[], None], *, first_retry: float = 0.5, max_retry: float = 30.0,
                 check_every: float = 30.0, stable_after: float = 10.0) -> None:
        self.url = url
        self.wake = wake
        self.first_retry, self.max_retry, self.check_every = first_retry, max_retry, check_every
        #: a connection that lasted this long counts as working: the backoff starts over after it
        #: (one dropped at once, again and again, backs off instead of reconnecting in a loop)
        self.stable_after = stable_after
        #: how many times it has (re)connected; set while listening
        self.connects = 0
        #: failed or short-lived connections in a row
        self.failures = 0
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="due-listener")

    async def close(self) -> None:
        """Stop listening and close the connection (nothing is left running)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # our caller is being cancelled too
                    raise

    def retry_delay(self) -> float:
        """The wait before the next attempt: doubling with each failure in a row, capped."""
        return min(self.max_retry, self.first_retry * 2 ** max(0, self.failures - 1))

    async def _run(self) -> None:
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.url, timeout=10,
                                             server_settings={"application_name": APPLICATION_NAME})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(DUE_CHANNEL, self._notified)
                self.connects += 1
                self.listening.set()
                self.wake()  # what was sent while nobody listened is lost: look once
                since = asyncio.get_running_loop().time()
                await self._watch(conn, lost)
                if asyncio.get_running_loop().time() - since >= self.stable_after:
                    self.failures = 0  # it had been working: a fresh loss is retried quickly
                log.warning("lost the connection that listens for new jobs; listening again shortly")
            except Exception as exc:  # refused, timed out, terminated: never fatal to the runner
                log.warning("cannot listen for new jobs on PostgreSQL (%s: %s); trying again shortly",
                            type(exc).__name__, mask(str(exc)))
            finally:
                self.listening.clear()
                if conn is not None:
                    await _drop(conn)
            self.failures += 1
            await asyncio.sleep(self.retry_delay() * random.uniform(0.5, 1.0))  # workers do not retry in step

    async def _watch(self, conn: Any, lost: asyncio.Event) -> None:
        """Return when the connection is lost; a quiet connection is checked now and then, since a
        dead network path shows nothing until something is sent."""
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), timeout=self.check_every)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=10)

    def _notified(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.wake()


async def _drop(conn: Any) -> None:
    """Close a listening connection, politely if it still answers."""
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=2)
    except Exception:
        conn.terminate()
