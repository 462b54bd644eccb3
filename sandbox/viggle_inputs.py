"""Reading what a Viggle client sends: form fields, uploaded files and URLs fetched server-side.

Files (uploads and fetched URLs alike) are streamed to disk, never held whole in memory, and
checked for real: images decoded with Pillow, videos probed with PyAV, both in a thread.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
from aiohttp import web
from PIL import Image

from sandbox.viggle_errors import ViggleError

_FLUSH = 1 << 20
_MAX_FIELD = 1 << 20
#: images (character portraits) are small; the docs give no limit, so this is a guard only
IMAGE_CAP = 20 * 1024 * 1024
#: PyAV format names of the containers Viggle accepts (MP4/MOV, WebM, AVI)
VIDEO_FORMATS = {"mov": "mov", "mp4": "mp4", "matroska": "webm", "webm": "webm", "avi": "avi"}


@dataclass
class Upload:
    """A file part spooled to disk; `oversize` when it went past the cap (the rest was drained)."""

    path: Path
    size: int
    filename: str
    oversize: bool = False


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def cleanup(self) -> None:
        for upload in self.files.values():
            upload.path.unlink(missing_ok=True)


@dataclass
class VideoInfo:
    container: str
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    size: int


class _Spool:
    """Buffered writes to a temp file, each flush in a thread so the loop never waits on disk."""

    def __init__(self, workdir: Path, suffix: str, cap: int) -> None:
        fd, name = tempfile.mkstemp(dir=workdir, suffix=suffix)
        os.close(fd)
        self.path, self.cap, self.size, self.oversize = Path(name), cap, 0, False
        self._buf = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            self.oversize = True
            self._buf.clear()
            return
        self._buf += chunk
        if len(self._buf) >= _FLUSH:
            await self.flush()

    async def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            await asyncio.to_thread(_append, self.path, data)


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


async def read_form(request: web.Request, workdir: Path, caps: dict[str, int], default_cap: int) -> Form:
    """multipart/form-data (files spooled, each field under its own size cap) or
    application/x-www-form-urlencoded (ID-only renders)."""
    form = Form()
    ctype = request.content_type
    if ctype == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                continue
            if part.filename is not None:
                cap = caps.get(part.name, default_cap)
                spool = _Spool(workdir, Path(part.filename).suffix[:8], cap)
                while chunk := await part.read_chunk(256 * 1024):
                    await spool.write(chunk)
                await spool.flush()
                form.files[part.name] = Upload(spool.path, spool.size, part.filename, spool.oversize)
            else:
                form.fields[part.name] = (await part.read(decode=True))[:_MAX_FIELD].decode("utf-8", "replace")
    elif ctype == "application/x-www-form-urlencoded":
        for key, value in (await request.post()).items():
            if isinstance(value, str):
                form.fields[key] = value
    elif request.can_read_body:
        raise ViggleError("CS-UORC01-002", "Send multipart/form-data or application/x-www-form-urlencoded")
    return form


async def fetch_url(session: aiohttp.ClientSession, url: str, workdir: Path, cap: int) -> Upload | None:
    """Fetch a client-given URL (a Discord CDN link, say) to disk; None if it does not answer 200."""
    if not url.startswith(("http://", "https://")):
        return None
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return None
            spool = _Spool(workdir, Path(resp.url.path).suffix[:8], cap)
            async for chunk in resp.content.iter_chunked(256 * 1024):
                await spool.write(chunk)
            await spool.flush()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return Upload(spool.path, spool.size, Path(resp.url.path).name, spool.oversize)


def _thumbnail(src: Path, dest: Path | None) -> bool:
    try:
        with Image.open(src) as img:
            if img.format not in ("PNG", "JPEG"):
                return False
            img.load()
            if dest is None:
                return True
            thumb = img.convert("RGB")
            thumb.thumbnail((256, 256))
            dest.parent.mkdir(parents=True, exist_ok=True)
            thumb.save(dest, format="PNG")
            return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


async def check_image(upload: Upload | None, thumb: Path | None = None) -> None:
    """Raise CS-ORIV-001 unless `upload` is a real PNG/JPEG; writes a PNG thumbnail if asked."""
    if upload is None or upload.oversize or not await asyncio.to_thread(_thumbnail, upload.path, thumb):
        raise ViggleError("CS-ORIV-001")


def _probe(path: Path) -> VideoInfo | None:
    try:
        with av.open(str(path)) as container:
            fmt = container.format.name
            stream = next(iter(container.streams.video), None)
            if stream is None:
                return None
            duration = (float(container.duration) / av.time_base if container.duration
                        else float((stream.duration or 0) * (stream.time_base or Fraction(0))))
            rate = stream.average_rate or stream.guessed_rate or 0
            fps = float(rate)
            frames = stream.frames or round(duration * fps)
            return VideoInfo(fmt, duration, fps, frames, stream.codec_context.width,
                             stream.codec_context.height, path.stat().st_size)
    except (av.FFmpegError, OSError, ValueError, StopIteration):
        return None


async def probe_video(upload: Upload | None, *, max_seconds: float, max_bytes: int, max_side: int) -> VideoInfo:
    """Viggle's upload limits, in the order a client would hit them (CS-ORIV-002..007)."""
    if upload is None:
        raise ViggleError("CS-ORIV-002")
    if upload.oversize or upload.size > max_bytes:
        raise ViggleError("CS-ORIV-005", f"Video file too large ({upload.size} bytes; limit {max_bytes})")
    info = await asyncio.to_thread(_probe, upload.path)
    if info is None:
        raise ViggleError("CS-ORIV-007")
    if not any(name in VIDEO_FORMATS for name in info.container.split(",")):
        raise ViggleError("CS-ORIV-003", f"Video format not supported ({info.container}); use MP4, MOV, WebM or AVI")
    if info.duration <= 0:
        raise ViggleError("CS-ORIV-007")
    if info.duration > max_seconds:
        raise ViggleError("CS-ORIV-004", f"Video exceeds maximum duration ({info.duration:.1f}s > {max_seconds:g}s)")
    if max(info.width, info.height) > max_side:
        raise ViggleError("CS-ORIV-006",
                          f"Video resolution too high ({info.width}x{info.height}; limit {max_side}x{max_side})")
    return info
