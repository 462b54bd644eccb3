"""A CloudFront-style signed CDN for Scenario asset files, on its own origin.

Why: asset `url`s are signed and expire, so the bot must re-fetch the asset (or call
`/assets/{id}/download`) right before downloading. This origin serves files only with a valid,
unexpired `Expires`/`Key-Pair-Id`/`Signature` query and answers CloudFront's XML 403 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

KEY_PAIR_ID = "SIM"


def cloudfront_error(status: int, code: str, message: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, body=body.encode(), content_type="text/xml",
                        headers={"Server": "CloudFront", "X-Cache": "Error from cloudfront"})


class SignedCdn:
    """Registers files by asset id and hands out signed URLs with a TTL."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.base_url = ""
        self.files: dict[str, tuple[Path, str]] = {}  # "<assetId>.<ext>" -> (path, mime type)
        self._secret = secrets.token_bytes(32)

    def add(self, asset_id: str, path: Path, mime_type: str) -> str:
        name = f"{asset_id}{path.suffix}"
        self.files[name] = (path, mime_type)
        return name

    def _signature(self, path: str, expires: int) -> str:
        raw = hmac.new(self._secret, f"{path}|{expires}".encode(), hashlib.sha256).digest()
        # CloudFront's URL-safe base64 alphabet: + -> -, = -> _, / -> ~
        return base64.b64encode(raw).decode().replace("+", "-").replace("=", "_").replace("/", "~")

    def sign(self, name: str, ttl: float) -> str:
        path = f"/_cdn/{name}"
        expires = int(self.clock() + ttl)
        query = {"Expires": str(expires), "Key-Pair-Id": KEY_PAIR_ID, "Signature": self._signature(path, expires)}
        return f"{self.base_url}{path}?{urlencode(query)}"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_cdn/{name}", self.serve)  # GET also answers HEAD
        return app

    async def serve(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if "Key-Pair-Id" not in q:
            return cloudfront_error(403, "MissingKey", "Missing Key-Pair-Id query parameter or cookie value")
        if "Signature" not in q or not q.get("Expires", "").isdigit():
            return cloudfront_error(403, "AccessDenied", "Access denied")
        expires = int(q["Expires"])
        valid = q["Key-Pair-Id"] == KEY_PAIR_ID and hmac.compare_digest(
            self._signature(request.path, expires), q["Signature"])
        if not valid or self.clock() >= expires:
            return cloudfront_error(403, "AccessDenied", "Access denied")
        entry = self.files.get(request.match_info["name"])
        if entry is None:
            return cloudfront_error(404, "NoSuchKey", "The specified key does not exist.")
        path, mime = entry
        return web.FileResponse(path, headers={"Content-Type": mime, "X-Cache": "Miss from cloudfront",
                                               "Cache-Control": "private, max-age=86400"})
