"""Guards batched status against a job list that stops moving (a cached or stale list).

A list entry that says the same unfinished thing for `after` seconds is left out of one batched
answer, so the runner polls that job alone (the job's own read is authoritative); then it is
watched afresh. A live list costs nothing; a frozen one costs one single read per job per
`after` seconds instead of starving the job until its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class ListWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, tuple[Hashable, float]] = {}  # remote id -> (what the list said, since)

    def trust(self, remote_id: str, said: Hashable, after: float) -> bool:
        """Whether to answer from this unfinished list entry (False: poll the job alone once)."""
        now = self.clock()
        self._prune(now, after)
        before = self._seen.get(remote_id)
        if before is not None and before[0] == said and now - before[1] >= after:
            self._seen[remote_id] = (said, now)  # read alone now: the watch starts again
            return False
        if before is None or before[0] != said:
            self._seen[remote_id] = (said, now)
        return True

    def forget(self, remote_id: str) -> None:
        self._seen.pop(remote_id, None)

    def _prune(self, now: float, after: float) -> None:
        """Jobs no longer batched (finished alone, cancelled) are dropped once well past `after`."""
        if len(self._seen) > 256:
            horizon = max(after, 60.0) * 3
            self._seen = {k: v for k, v in self._seen.items() if now - v[1] < horizon}
