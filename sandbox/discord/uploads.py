"""Read a message body (JSON, or multipart `payload_json` + `files[n]`), streaming each file to
disk in chunks so a 200 MB upload never sits in memory, and enforce the size limits the way
Discord does: per file, and per request (413 / 40005)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .errors import ApiError, invalid_form, too_large

_FILE_FIELD = re.compile(r"^files\[(\d+)\]$|^file(\d*)$")
_CHUNK = 256 * 1024
_FLUSH = 1024 * 1024
_counter = itertools.count(1)


@dataclass
class Upload:
    index: int
    filename: str
    size: int
    content_type: str
    path: Path


@dataclass
class Body:
    json: dict[str, Any]
    files: list[Upload] = field(default_factory=list)

    def discard(self) -> None:
        for f in self.files:
            with contextlib.suppress(OSError):
                f.path.unlink()


def _write(path: Path, data: bytes, mode: str) -> None:
    with path.open(mode) as fh:
        fh.write(data)


async def read_body(request: web.Request, storage: Path, *, per_file: int, per_request: int) -> Body:
    """Parse the body; files land under `storage`. On a limit breach, the rest of the body is read
    and dropped first (the client is still writing) and then 413 is raised."""
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _read_multipart(request, storage, per_file, per_request)
    if not request.can_read_body:
        return Body({})
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
    if not isinstance(data, dict):
        raise invalid_form({"_errors": [{"code": "MODEL_TYPE_CONVERT", "message": "Only dictionaries may be used in a ModelType"}]})
    return Body(data)


async def _read_multipart(request: web.Request, storage: Path, per_file: int, per_request: int) -> Body:
    reader = await request.multipart()
    payload: dict[str, Any] = {}
    files: list[Upload] = []
    total = 0
    breached = False
    while True:
        part = await reader.next()
        if part is None:
            break
        name = part.name or ""
        if name == "payload_json":
            try:
                payload = json.loads(await part.text())
            except ValueError:
                raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            continue
        match = _FILE_FIELD.match(name)
        if not match or breached:
            while await part.read_chunk(_CHUNK):  # drain what we will not keep
                pass
            continue
        index = int(match.group(1) if match.group(1) is not None else (match.group(2) or 0))
        filename = part.filename or f"file{index}"
        ctype = part.headers.get("Content-Type") or ""
        if not ctype or ctype == "application/octet-stream":
            ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        path = storage / f"upload-{next(_counter)}"
        size, buf, mode = 0, bytearray(), "wb"
        while chunk := await part.read_chunk(_CHUNK):
            size += len(chunk)
            total += len(chunk)
            if breached:
                continue
            if size > per_file or total > per_request:
                breached = True
                continue
            buf += chunk
            if len(buf) >= _FLUSH:
                await asyncio.to_thread(_write, path, bytes(buf), mode)
                buf.clear()
                mode = "ab"
        if not breached or buf or mode == "ab":
            await asyncio.to_thread(_write, path, bytes(buf), mode)
        files.append(Upload(index, filename, size, ctype, path))
    body = Body(payload, files)
    if breached:
        body.discard()
        raise too_large()
    return body
