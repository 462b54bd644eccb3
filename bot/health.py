"""Heartbeats, and `python -m bot health`: is the bot alive, or only its process?

The runner loop and the gateway each touch a small file next to the database (`bot.db-heartbeat-runner`,
`bot.db-heartbeat-gateway`). A file, not a table row: it works while the database is locked, and the
check needs no database connection. The check reads only the files' modification times.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

#: a heartbeat older than this means that part is stuck or disconnected; the runner beats at least
#: every 30 s (its idle wait) and the gateway every GATEWAY_BEAT seconds
MAX_AGE = 120.0
GATEWAY_BEAT = 20.0

#: part -> what it means when its heartbeat is stale
PARTS = {"runner": "the job runner loop is stuck (jobs do not move)",
         "gateway": "the bot is not connected to Discord's gateway (commands go unanswered)"}


@dataclass(frozen=True)
class Heartbeat:
    path: Path | None  # None: an in-memory database (tests), nothing to watch

    def beat(self) -> None:
        """Touch the file: a metadata write, cheap enough for the event loop."""
        if self.path is None:
            return
        try:
            self.path.touch()
        except OSError:  # a full or read-only disk shows up as a stale heartbeat instead
            pass

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the last beat, or None if there never was one (or the bot stopped)."""
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        return max(0.0, (time.time() if now is None else now) - mtime)

    def clear(self) -> None:
        """On a clean stop: the bot is not running, so there is no heartbeat to find."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def heartbeat(database_path: Path | str, part: str) -> Heartbeat:
    path = os.fspath(database_path)
    return Heartbeat(None if path == ":memory:" else Path(f"{path}-heartbeat-{part}"))


def health_report(database_path: Path | str, max_age: float = MAX_AGE) -> tuple[bool, list[str]]:
    """(healthy, one line per part) for `python -m bot health`."""
    now, healthy, lines = time.time(), True, []
    for part, meaning in PARTS.items():
        age = heartbeat(database_path, part).age(now)
        if age is None:
            healthy = False
            lines.append(f"{part}: no heartbeat next to DATABASE_PATH; the bot is not running (or not ready yet)")
        elif age > max_age:
            healthy = False
            lines.append(f"{part}: last heartbeat {age:.0f} s ago (limit {max_age:.0f} s): {meaning}")
        else:
            lines.append(f"{part}: alive ({age:.0f} s ago)")
    return healthy, lines
