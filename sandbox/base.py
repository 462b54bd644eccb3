"""What every loopback stand-in shares: serving on 127.0.0.1, a request log, and scripted faults.

A service subclasses `SandboxService`, builds its routes in `build_app()` and may serve extra
apps on other ports (a storage host that must look like a different origin) via `extra_apps()`.
Tests script it with `service.faults.add(...)` and read `service.requests`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    """One request as the service saw it; bodies are not kept (videos are large), only sizes."""

    app: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class Fault:
    """Answer matching requests with `status`/`body`/`headers` instead of the real handler,
    `times` times (None = forever). `delay` seconds are slept first (a hang when large)."""

    method: str
    path: re.Pattern[str]
    status: int = 500
    body: bytes | str | Mapping[str, Any] | list[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int | None = 1
    delay: float = 0.0
    passthrough: bool = False  # run the real handler first, then answer after the delay (a late answer)
    #: run the real handler, then answer its JSON as `rewrite(json)` says (a provider answering
    #: hostile values: URLs at internal hosts, ids with `../`, texts quoting a key)
    rewrite: Callable[[Any], Any] | None = None
    #: answer `status` with a JSON body of this many bytes, streamed (an endless status page)
    stream_bytes: int | None = None

    def matches(self, request: web.Request) -> bool:
        return (self.method in ("*", request.method)) and bool(self.path.search(request.path))


class FaultPlan:
    """Scripted failures, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        method: str,
        path: str,
        status: int = 500,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        passthrough: bool = False,
        rewrite: Callable[[Any], Any] | None = None,
        stream_bytes: int | None = None,
    ) -> Fault:
        fault = Fault(method.upper(), re.compile(path), status, body, dict(headers or {}), times, delay,
                      passthrough, rewrite, stream_bytes)
        self._faults.append(fault)
        return fault

    def rate_limit(self, method: str, path: str, retry_after: float = 1, *, times: int | None = 1,
                   body: Any = None) -> Fault:
        return self.add(method, path, 429, body if body is not None else {"error": "Too many requests"},
                        headers={"Retry-After": f"{retry_after:g}"}, times=times)

    def clear(self) -> None:
        self._faults.clear()

    def take(self, request: web.Request) -> Fault | None:
        for fault in self._faults:
            if fault.matches(request):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON with exactly `application/json` (discord.py and some SDKs compare the header)."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        headers=headers)


async def rewritten(response: web.StreamResponse, rewrite: Callable[[Any], Any]) -> web.StreamResponse:
    """The real handler's JSON answer, passed through `rewrite` (same status and headers)."""
    body = getattr(response, "body", None)
    data = json.loads(body) if isinstance(body, bytes | bytearray) and body else None
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return json_response(rewrite(data), response.status, headers)


async def streamed_json(request: web.Request, fault: Fault) -> web.StreamResponse:
    """`{"data": "xxxx…"}` of `fault.stream_bytes` bytes, written in chunks with no Content-Length,
    so neither side needs it whole in memory. Stops quietly when the client hangs up."""
    response = web.StreamResponse(status=fault.status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    total = fault.stream_bytes or 0
    chunk = b"x" * (1 << 16)
    try:
        await response.write(b'{"data": "')
        sent = 12
        while sent < total:
            piece = chunk[:min(len(chunk), total - sent)]
            await response.write(piece)
            sent += len(piece)
        await response.write(b'"}')
        await response.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return response


def fault_response(fault: Fault) -> web.StreamResponse:
    body = fault.body
    if isinstance(body, Mapping | list):
        return json_response(body, fault.status, fault.headers)
    if isinstance(body, str):
        body = body.encode()
    return web.Response(body=body or b"", status=fault.status, headers=fault.headers)


class SandboxService:
    """Base of every stand-in: start/stop on loopback, record requests, apply faults."""

    name = "sandbox"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.faults = FaultPlan()
        self._runners: list[web.AppRunner] = []
        self.base_url = ""
        self.urls: dict[str, str] = {}

    # -- to override -------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        raise NotImplementedError

    def extra_apps(self) -> dict[str, web.Application]:
        """Other origins this service needs (e.g. "blob" for a storage host), each on its own port."""
        return {}

    # -- machinery ---------------------------------------------------------------------------
    def _middleware(self, app_name: str):
        @web.middleware
        async def record_and_fault(request: web.Request, handler):
            self.requests.append(RecordedRequest(app_name, request.method, request.path, dict(request.query),
                                                 dict(request.headers), self.clock()))
            fault = self.faults.take(request)
            if fault is None:
                return await handler(request)
            if fault.rewrite is not None:
                return await rewritten(await handler(request), fault.rewrite)
            if fault.stream_bytes is not None:
                return await streamed_json(request, fault)
            if fault.passthrough:  # the work is done; only the answer is late (or never read)
                response = await handler(request)
                await asyncio.sleep(fault.delay)
                return response
            if fault.delay:
                await asyncio.sleep(fault.delay)
            return fault_response(fault)

        return record_and_fault

    async def _serve(self, name: str, app: web.Application, host: str, port: int) -> str:
        app.middlewares.insert(0, self._middleware(name))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        sockets = site._server.sockets  # type: ignore[union-attr]
        bound = sockets[0].getsockname()[1]
        return f"http://{host}:{bound}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the API (and any extra origins); returns the API's base URL."""
        for name, app in self.extra_apps().items():
            self.urls[name] = await self._serve(name, app, host, 0)
        self.urls["api"] = self.base_url = await self._serve("api", self.build_app(), host, port)
        return self.base_url

    def storage_hosts(self) -> str:
        """The extra origins as a bot's `*_ALLOWED_HOSTS` value (a JSON list of host:port): the
        sandbox serves its storage/CDN on loopback, which a bot reaches only when told so."""
        return json.dumps([url.split("://", 1)[1] for name, url in self.urls.items() if name != "api"])

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def requests_to(self, path_pattern: str, method: str | None = None) -> list[RecordedRequest]:
        rx = re.compile(path_pattern)
        return [r for r in self.requests if rx.search(r.path) and (method is None or r.method == method)]
