"""Shared HTTP plumbing for providers: one aiohttp session, streaming to and from disk, retries
for idempotent calls only, per-provider request pacing, and status codes folded into the error
taxonomy. A paid POST is never retried here: callers pass `idempotent=False`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver

from bot.outbound import OutboundPolicy, PolicyResolver, Refused, trace_config
from bot.providers.base import (
    AuthFailed,
    InputRejected,
    NotFound,
    OutOfCredits,
    ProviderError,
    RateLimited,
    Transient,
)
from bot.streams import BLOCK, FileSink, file_blocks, read_blocks

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 1 << 16
#: the most of one API answer (JSON or text) the bot reads; a provider's answer is never this big
API_BODY_CAP = 16 * 1024 * 1024
#: redirect hops followed by hand, each one checked by the outbound policy
MAX_REDIRECTS = 4
#: the largest download when the caller names no limit
DEFAULT_DOWNLOAD_CAP = 2 * 1024 * 1024 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)

#: no total timeout for streams (a large file takes as long as it takes), but a stalled socket fails
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
API_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=15)


class TooLarge(InputRejected):
    """A download went past the size the caller allowed."""


class AnswerTooLarge(ProviderError):
    """An API answer went past API_BODY_CAP: the bot stopped reading it. Not final (a passing fault
    upstream, retried with backoff as an attempt), and its words are shown as they are."""


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes | None:
    """At most `cap` bytes of a body, read in chunks; None when there is more (never read whole)."""
    parts: list[bytes] = []
    size = 0
    while True:
        block = await content.read(min(CHUNK, cap + 1 - size))
        if not block:
            return b"".join(parts)
        size += len(block)
        if size > cap:
            return None
        parts.append(block)


async def stream_to_file(content: aiohttp.StreamReader, path: Path, max_bytes: int) -> int:
    """Copy a body to `path`, stopping at max_bytes + 1 (the byte that proves it is too large)."""
    written = 0
    with path.open("wb") as fh:
        async with FileSink(fh) as sink:
            async for block in read_blocks(content, BLOCK):
                written += len(block)
                if written > max_bytes:
                    raise TooLarge(f"The file is larger than the {max_bytes / 1048576:.0f} MiB limit.")
                await sink.write(block)
    return written


def _same_origin(a: aiohttp.client.URL, b: aiohttp.client.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def parse_retry_after(value: str | None, default: float = 5.0) -> float:
    """Retry-After is seconds or an HTTP date; anything unreadable becomes `default`."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def classify(status: int, message: str, *, retry_after: str | None = None, hint: str | None = None) -> ProviderError:
    """The taxonomy error for a non-2xx answer; `message` must already be safe to show."""
    if status == 429:
        return RateLimited(parse_retry_after(retry_after))
    if status in (401, 403):
        return AuthFailed(message)
    if status == 402:
        return OutOfCredits(message)
    if status in (404, 410):
        return NotFound(message)
    if status in (408, 409, 425) or status >= 500:
        return Transient(message or f"HTTP {status}")
    return InputRejected(message or f"The request was refused (HTTP {status}).", hint=hint)


class Pace:
    """At most `rate` requests per second to one provider (a token bucket of `burst`)."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)

    async def __aexit__(self, *exc: object) -> None:
        return None


async def with_retries(call: Callable[[], Awaitable[T]], *, attempts: int = 3, first_delay: float = 0.5) -> T:
    """Retry an idempotent call on Transient errors and dropped connections, with backoff."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except (TimeoutError, Transient, aiohttp.ClientConnectionError) as exc:
            if attempt == attempts:
                if isinstance(exc, Transient):
                    raise
                raise Transient(f"connection problem ({type(exc).__name__})") from exc
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def file_chunks(path: Path, offset: int = 0, length: int | None = None,
                      chunk: int = BLOCK) -> AsyncIterator[bytes]:
    """Yield a file's bytes (or a slice) in chunks, reading in a thread: uploads never hold the
    file in memory and never block the loop on disk reads."""
    async for data in file_blocks(path, offset, length, chunk):
        yield data


class Net:
    """The process's HTTP client for providers (Discord traffic goes through discord.py). Every
    request passes the outbound policy (bot/outbound.py): without one, any public host."""

    def __init__(self, session: aiohttp.ClientSession | None = None, *,
                 policy: OutboundPolicy | None = None, resolver: AbstractResolver | None = None) -> None:
        self._session = session
        self._owns = session is None
        self.policy = policy or OutboundPolicy()
        self._resolver = resolver  # the DNS under the policy's filter (tests give a lying one)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy, self._resolver))
            self._session = aiohttp.ClientSession(timeout=API_TIMEOUT, headers={"User-Agent": "videobot/0.1"},
                                                  connector=connector, trace_configs=[trace_config(self.policy)])
            self._owns = True
        return self._session

    async def close(self) -> None:
        if self._owns and self._session is not None and not self._session.closed:
            await self._session.close()

    def _next_hop(self, resp: aiohttp.ClientResponse, hops: int) -> aiohttp.client.URL:
        """Where a redirect points, checked like the first URL; a few hops at most."""
        if hops >= MAX_REDIRECTS:
            raise Refused(f"Too many redirects (more than {MAX_REDIRECTS}).")
        location = resp.headers.get("Location")
        if not location:
            raise Transient(f"a redirect (HTTP {resp.status}) without a target")
        target = resp.url.join(aiohttp.client.URL(location))
        self.policy.check_url(str(target))
        return target

    async def download(self, url: str, dest: Path, *, headers: dict[str, str] | None = None,
                       max_bytes: int | None = None, follow_redirects: bool = True) -> int:
        """Stream `url` to `dest` (written to a .part file, renamed when complete); returns bytes.

        Redirects are followed by hand, each hop checked by the policy, so no header of ours
        reaches another host. Reading stops at max_bytes + 1."""
        cap = DEFAULT_DOWNLOAD_CAP if max_bytes is None else max_bytes
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        target, hops = aiohttp.client.URL(url), 0
        self.policy.check_url(url)
        while True:
            async with self.session.get(target, headers=headers, allow_redirects=False,
                                        timeout=STREAM_TIMEOUT) as resp:
                if resp.status in _REDIRECTS and follow_redirects:
                    target, hops, headers = self._next_hop(resp, hops), hops + 1, None
                    continue
                if resp.status != 200:
                    raise classify(resp.status, f"download failed (HTTP {resp.status})",
                                   retry_after=resp.headers.get("Retry-After"))
                declared = resp.content_length
                if declared is not None and declared > cap:
                    raise TooLarge(f"The file is {declared / 1048576:.1f} MiB; the limit is "
                                   f"{cap / 1048576:.0f} MiB.")
                try:
                    written = await stream_to_file(resp.content, partial, cap)
                except BaseException:
                    partial.unlink(missing_ok=True)
                    raise
                partial.replace(dest)
                return written

    async def head_size(self, url: str) -> int | None:
        """A file's declared size without downloading it (None when the host does not say or
        answers otherwise); redirects are followed by hand like downloads."""
        self.policy.check_url(url)
        target = aiohttp.client.URL(url)
        try:
            for hops in range(MAX_REDIRECTS + 1):
                async with self.session.head(target, allow_redirects=False, timeout=API_TIMEOUT) as resp:
                    if resp.status in _REDIRECTS:
                        target = self._next_hop(resp, hops)
                        continue
                    return int(resp.content_length) if resp.status == 200 and resp.content_length is not None \
                        else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return None

    async def upload(self, method: str, url: str, path: Path, *, headers: dict[str, str] | None = None,
                     offset: int = 0, length: int | None = None) -> tuple[int, dict[str, str], str]:
        """Send a file (or a slice of it) as a raw body, streamed; returns (status, headers, text)."""
        self.policy.check_url(url)
        size = path.stat().st_size - offset if length is None else length
        all_headers = {"Content-Length": str(size), **(headers or {})}
        async with self.session.request(method, url, data=file_chunks(path, offset, size), headers=all_headers,
                                        timeout=STREAM_TIMEOUT, allow_redirects=False) as resp:
            return resp.status, dict(resp.headers), await _capped_text(resp)

    async def json_request(self, method: str, url: str, *, allow_redirects: bool = True,
                           **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        """One request; returns (status, headers, parsed JSON or text). No retries; raises only
        when the policy refuses a URL or the answer is over API_BODY_CAP. GET redirects are
        followed by hand (checked hop by hop, our headers kept only on the same origin)."""
        self.policy.check_url(url)
        target, first, hops = aiohttp.client.URL(url), aiohttp.client.URL(url), 0
        while True:
            async with self.session.request(method, target, allow_redirects=False, **kwargs) as resp:
                if allow_redirects and resp.status in _REDIRECTS and method in ("GET", "HEAD"):
                    target, hops = self._next_hop(resp, hops), hops + 1
                    if not _same_origin(target, first):
                        kwargs.pop("headers", None)
                    continue
                text = await _capped_text(resp)
                try:
                    body: Any = json.loads(text) if text else None
                except ValueError:
                    body = text
                return resp.status, dict(resp.headers), body


async def _capped_text(resp: aiohttp.ClientResponse) -> str:
    raw = await read_capped(resp.content, API_BODY_CAP)
    if raw is None:
        raise AnswerTooLarge(f"{resp.url.host} answered with more than {API_BODY_CAP // 1048576} MiB; "
                             "the bot stopped reading it.")
    try:
        return raw.decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return raw.decode("utf-8", errors="replace")
