"""A store that is "busy" on demand (a remote PostgreSQL, a pool held by the runner): calls made
meanwhile wait until it is free. For tests of what users see when the store is slow."""

from __future__ import annotations

import asyncio
import inspect


class BusyStore:
    """Holds every store call made while busy until it is free again."""

    def __init__(self, store) -> None:
        self.free = asyncio.Event()
        self.free.set()
        self.held = 0
        for name in dir(store):
            method = getattr(store, name)
            if not name.startswith("_") and inspect.iscoroutinefunction(method):
                setattr(store, name, self._wrap(method))

    def _wrap(self, method):
        async def held(*args, **kwargs):
            if not self.free.is_set():
                self.held += 1
                await self.free.wait()
            return await method(*args, **kwargs)
        return held

    def busy_for(self, seconds: float) -> None:
        self.free.clear()
        asyncio.get_running_loop().call_later(seconds, self.free.set)
