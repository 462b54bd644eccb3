"""A loopback web service a hostile provider points the bot at: it counts every hit, serves
files it is given, and answers redirects it is told to. A test asserts on `hits`."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

SECRET = b"INTERNAL-SECRET-FROM-A-LOOPBACK-SERVICE"


class Trap:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Trap:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if request.path in self.redirects:
            raise web.HTTPFound(self.redirects[request.path])
        body = self.files.get(request.path, SECRET)
        return web.Response(body=body, content_type="application/octet-stream")
