"""A stand-in for Discord's attachment CDN in provider tests: serves files from a folder by plain
GET, records what was fetched, and can refuse a file's first fetch (a link a provider cannot reach)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mp4": "video/mp4",
          ".mov": "video/quicktime", ".webm": "video/webm"}


class FileHost:
    def __init__(self, root: Path) -> None:
        self.root = self.folder = root
        self.refuse_first: set[str] = set()
        self.gets: list[str] = []
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FileHost:
        app = web.Application()
        app.router.add_get("/attachments/{name}", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.gets.append(name)
        if name in self.refuse_first:
            self.refuse_first.discard(name)
            return web.Response(status=403)
        return web.FileResponse(self.root / name)

    def attachment(self, target: str | Path, data: bytes | None = None, *, query: str = "",
                   content_type: str | None = None) -> dict:
        """The attachment dict a cog stores in job params, for a file in the folder (written
        from `data` when given)."""
        name = Path(target).name
        path = self.root / name
        if data is not None:
            path.write_bytes(data)
        return {"url": f"{self.base}/attachments/{name}{query}", "filename": name, "size": path.stat().st_size,
                "content_type": content_type or _TYPES.get(path.suffix.lower(), "application/octet-stream")}
