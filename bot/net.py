"""Shared HTTP plumbing for providers: one aiohttp session, streaming to and from disk, retries
for idempotent calls only, per-provider request pacing, and status codes folded into the error
taxonomy. A paid POST is never retried here: callers pass `idempotent=False`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

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
CHUNK = BLOCK

#: no total timeout for streams (a large file takes as long as it takes), but a stalled socket fails
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)
API_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=15)


class TooLarge(InputRejected):
    """A download went past the size the caller allowed."""


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
                      chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """Yield a file's bytes (or a slice) in chunks, reading in a thread: uploads never hold the
    file in memory and never block the loop on disk reads."""
    async for data in file_blocks(path, offset, length, chunk):
        yield data


class Net:
    """The process's HTTP client for providers (Discord traffic goes through discord.py)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=API_TIMEOUT, headers={"User-Agent": "videobot/0.1"})
            self._owns = True
        return self._session

    async def close(self) -> None:
        if self._owns and self._session is not None and not self._session.closed:
            await self._session.close()

    async def download(self, url: str, dest: Path, *, headers: dict[str, str] | None = None,
                       max_bytes: int | None = None, follow_redirects: bool = True) -> int:
        """Stream `url` to `dest` (written to a .part file, renamed when complete); returns bytes.

        Redirects are followed by hand so no header of ours reaches another host."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        hops = 0
        while True:
            async with self.session.get(url, headers=headers, allow_redirects=False,
                                        timeout=STREAM_TIMEOUT) as resp:
                if resp.status in (301, 302, 303, 307, 308) and follow_redirects and hops < 5:
                    url = str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))
                    headers, hops = None, hops + 1
                    continue
                if resp.status != 200:
                    raise classify(resp.status, f"download failed (HTTP {resp.status})",
                                   retry_after=resp.headers.get("Retry-After"))
                declared = resp.content_length
                if max_bytes is not None and declared is not None and declared > max_bytes:
                    raise TooLarge(f"The file is {declared / 1048576:.1f} MiB; the limit is "
                                   f"{max_bytes / 1048576:.0f} MiB.")
                written = 0
                with partial.open("wb") as fh:
                    async with FileSink(fh) as sink:
                        async for block in read_blocks(resp.content, CHUNK):
                            written += len(block)
                            if max_bytes is not None and written > max_bytes:
                                raise TooLarge(f"The file is larger than the {max_bytes / 1048576:.0f} MiB limit.")
                            await sink.write(block)
                partial.replace(dest)
                return written

    async def upload(self, method: str, url: str, path: Path, *, headers: dict[str, str] | None = None,
                     offset: int = 0, length: int | None = None) -> tuple[int, dict[str, str], str]:
        """Send a file (or a slice of it) as a raw body, streamed; returns (status, headers, text)."""
        size = path.stat().st_size - offset if length is None else length
        all_headers = {"Content-Length": str(size), **(headers or {})}
        async with self.session.request(method, url, data=file_chunks(path, offset, size), headers=all_headers,
                                        timeout=STREAM_TIMEOUT) as resp:
            return resp.status, dict(resp.headers), await resp.text()

    async def json_request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        """One request; returns (status, headers, parsed JSON or text). No retries, no raising."""
        async with self.session.request(method, url, **kwargs) as resp:
            text = await resp.text()
            try:
                body: Any = await resp.json(content_type=None) if text else None
            except ValueError:
                body = text
            return resp.status, dict(resp.headers), body
