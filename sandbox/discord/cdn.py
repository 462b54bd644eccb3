"""The attachment CDN: signed, expiring URLs like Discord's
(`/attachments/{channel}/{id}/{name}?ex=<hex expiry>&is=<hex issued>&hm=<hex signature>`),
served from disk with HEAD and Range support; expired or tampered URLs answer 404."""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from .state import StoredFile

GONE = "This content is no longer available."


class Cdn:
    def __init__(self, *, url_ttl: float, application_id: int) -> None:
        self.url_ttl = url_ttl
        self.application_id = application_id
        self.base_url = ""
        self.files: dict[int, StoredFile] = {}
        self.clock_offset = 0.0  # `expire_urls()` moves the CDN's clock past every issued expiry
        self._key = secrets.token_bytes(32)

    def now(self) -> float:
        return time.time() + self.clock_offset

    def add(self, stored: StoredFile) -> StoredFile:
        self.files[stored.id] = stored
        return stored

    def path_of(self, f: StoredFile) -> str:
        name = quote(f.filename)
        if f.ephemeral:
            return f"/ephemeral-attachments/{self.application_id}/{f.id}/{name}"
        return f"/attachments/{f.channel_id}/{f.id}/{name}"

    def _sig(self, fid: int, ex: int, issued: int) -> str:
        return hmac.new(self._key, f"{fid}|{ex:x}|{issued:x}".encode(), hashlib.sha256).hexdigest()

    def url(self, f: StoredFile) -> str:
        """A freshly signed URL (Discord re-signs on every fetch of the message)."""
        issued = int(self.now())
        ex = issued + int(self.url_ttl)
        path = self.path_of(f)
        return f"{self.base_url}{path}?ex={ex:x}&is={issued:x}&hm={self._sig(f.id, ex, issued)}"

    def as_attachment(self, f: StoredFile) -> dict:
        url = self.url(f)
        data = {"id": str(f.id), "filename": f.filename, "size": f.size, "url": url, "proxy_url": url,
                "content_type": f.content_type}
        if f.ephemeral:
            data["ephemeral"] = True
        if f.description:
            data["description"] = f.description
        return data

    def expire_urls(self) -> None:
        self.clock_offset += self.url_ttl + 1

    async def serve(self, request: web.Request) -> web.StreamResponse:
        fid = int(request.match_info["id"])
        f = self.files.get(fid)
        q = request.query
        try:
            ex, issued = int(q["ex"], 16), int(q["is"], 16)
        except (KeyError, ValueError):
            return web.Response(status=404, text=GONE)
        if (f is None or request.match_info["name"] != f.filename
                or not hmac.compare_digest(q.get("hm", ""), self._sig(fid, ex, issued))
                or self.now() > ex or not f.path.exists()):
            return web.Response(status=404, text=GONE)
        ctype = f.content_type or mimetypes.guess_type(f.filename)[0] or "application/octet-stream"
        return web.FileResponse(Path(f.path), headers={"Content-Type": ctype,
                                                      "Cache-Control": "public, max-age=31536000"})

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/attachments/{channel}/{id}/{name}", self.serve),
                web.get("/ephemeral-attachments/{app}/{id}/{name}", self.serve)]
