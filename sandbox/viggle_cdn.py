"""Viggle's CDN stand-in: its own origin, no auth, serving real MP4 renders, masks and thumbnails.

Render outputs are real videos (PyAV opens them) made once per shape and shared, in a thread, so a
test that renders ten times encodes once. URLs may carry an expiry (`?expires=`) to script stale links.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from aiohttp import web

from sandbox.media import make_video

#: (width, height, seconds, fps, hue)
Shape = tuple[int, int, float, int, int]


def output_shape(width: int, height: int, seconds: float, fps: float, hue: int) -> Shape:
    """A render's output keeps the input's aspect but is shrunk (and capped in length by the caller)
    so tests stay fast: at most 160 px on a side, 12 fps, even dimensions for H.264."""
    scale = min(1.0, 160 / max(width, height, 1))
    return (max(16, int(width * scale) // 2 * 2), max(16, int(height * scale) // 2 * 2), round(seconds, 2),
            max(1, min(12, round(fps))), hue)


def _make_mask(path: Path, width: int, height: int, seconds: float, fps: int) -> Path:
    """Grey-scale mask video, white = character (a figure that sways), black = background."""
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(max(1, round(seconds * fps))):
            cx = width / 2 + width / 8 * np.sin(i / 4)
            inside = ((xx - cx) / (width / 5)) ** 2 + ((yy - height / 2) / (height / 2.4)) ** 2 <= 1
            grey = np.where(inside, 255, 0).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(grey[..., None], 3, axis=2), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class ViggleCdn:
    """Files on disk under `root`, addressed by name; `url()` builds a (maybe expiring) link."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time, ttl: float | None = None) -> None:
        self.root, self.clock, self.ttl = root, clock, ttl
        for folder in ("files", "thumbnails"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.base_url = ""
        self._made: dict[tuple[str, Shape], asyncio.Task[Path]] = {}
        #: public name (what a URL carries) -> file; many renders share one encoded file
        self.published: dict[str, Path] = {}

    def url(self, name: str) -> str:
        link = f"{self.base_url}/{name}"
        if self.ttl is not None:
            link += f"?expires={int(self.clock() + self.ttl)}"
        return link

    def publish(self, name: str, path: Path) -> str:
        self.published[name] = path
        return name

    async def video(self, name: str, shape: Shape, *, mask: bool = False) -> str:
        """Publish a real MP4 of this shape under `name` (encoded on first use, in a thread)."""
        key = ("mask" if mask else "render", shape)
        task = self._made.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._made[key] = asyncio.ensure_future(self._encode(*key))
        return self.publish(name, await asyncio.shield(task))

    async def drain(self) -> None:
        """Wait for encodes still running in threads, so the files' folder can be removed safely."""
        await asyncio.gather(*self._made.values(), return_exceptions=True)

    async def _encode(self, kind: str, shape: Shape) -> Path:
        width, height, seconds, fps, hue = shape
        path = self.root / "files" / f"{kind}-{width}x{height}-{seconds:g}s-{fps}fps-h{hue}.mp4"
        if kind == "mask":
            return await asyncio.to_thread(_make_mask, path, width, height, seconds, fps)
        return await asyncio.to_thread(make_video, path, seconds=seconds, width=width, height=height,
                                       fps=fps, hue=hue)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name:.+}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        expires = request.query.get("expires")
        if expires is not None and (not expires.isdigit() or int(expires) < self.clock()):
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired"
                                "</Message></Error>", content_type="application/xml")
        name = request.match_info["name"]
        path = self.published.get(name)
        if path is None or not path.is_file():
            return web.Response(status=404, text="Not Found")
        ctype = "video/mp4" if name.endswith(".mp4") else "image/png"
        return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "public, max-age=86400"})
