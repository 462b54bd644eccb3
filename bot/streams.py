"""Copying between HTTP bodies and files at disk-and-socket speed, with flat memory.

A thread hop per 64 KiB made the relay CPU-bound at half of curl's speed; these helpers move
1 MiB blocks and overlap the two sides: while one block is written to (or read from) the disk in
a worker thread, the event loop is already receiving (or sending) the next. At most two blocks
are alive at a time, whatever the file size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import aiohttp

BLOCK = 1 << 20


async def read_blocks(content: aiohttp.StreamReader, size: int = BLOCK) -> AsyncIterator[bytes]:
    """The body in blocks of about `size` bytes, gathered from whatever the socket delivers."""
    pieces: list[bytes] = []
    held = 0
    while piece := await content.readany():
        pieces.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pieces)
            pieces.clear()
            held = 0
    if pieces:
        yield b"".join(pieces)


class FileSink:
    """Writes blocks to an open file in a worker thread, one write in flight at a time."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pending: asyncio.Future | None = None

    async def write(self, block: bytes) -> None:
        if self._pending is not None:
            await self._pending
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._fh.write, block))

    async def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def __aenter__(self) -> FileSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pending is not None:  # never leave a write running on a file about to be closed
            pending, self._pending = self._pending, None
            await asyncio.gather(pending, return_exceptions=exc[0] is not None)


async def file_blocks(path: Path, offset: int = 0, length: int | None = None,
                      size: int = BLOCK) -> AsyncIterator[bytes]:
    """A file's bytes (or a slice) in blocks, the next block read ahead in a thread while the
    current one is being sent."""
    remaining = path.stat().st_size - offset if length is None else length
    with path.open("rb") as fh:
        await asyncio.to_thread(fh.seek, offset)
        ahead: asyncio.Future | None = None
        try:
            if remaining > 0:
                ahead = asyncio.ensure_future(asyncio.to_thread(fh.read, min(size, remaining)))
            while ahead is not None:
                data = await ahead
                ahead = None
                if not data:
                    break
                remaining -= len(data)
                if remaining > 0:
                    ahead = asyncio.ensure_future(asyncio.to_thread(fh.read, min(size, remaining)))
                yield data
        finally:
            if ahead is not None:  # the consumer stopped early: let the read finish before closing
                await asyncio.gather(ahead, return_exceptions=True)
