"""The S3-style part store behind Scenario's presigned multipart upload URLs, on its own origin.

Why a separate origin with S3's manners: the real part URLs point at S3, not at the API, so the bot
must PUT raw bytes without Scenario credentials and meet S3's odd corners here first: XML errors,
expiry computed from `X-Amz-Date + X-Amz-Expires`, a mandatory Content-Length, one auth mechanism
per request, the 5 MiB minimum for every part but the last (checked when the upload is completed).
Parts are streamed to disk in bounded chunks; nothing holds a whole part in memory.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from aiohttp import web

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 ** 3
MAX_PARTS = 10_000
_FLUSH = 1 << 20  # bytes buffered before one write in a thread
_AMZ_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
              "X-Amz-Signature")


class AssemblyError(Exception):
    """The parts cannot form the declared file (what Scenario reports as the upload's errorMessage)."""


def s3_error(status: int, code: str, message: str, **extra: object) -> web.Response:
    """S3's error document: XML, `application/xml`, with a request id."""
    rid = secrets.token_hex(8).upper()
    fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in extra.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
            f"</Message>{fields}<RequestId>{rid}</RequestId><HostId>{secrets.token_urlsafe(24)}</HostId></Error>")
    return web.Response(status=status, body=body.encode(), content_type="application/xml",
                        headers={"x-amz-request-id": rid, "Server": "AmazonS3"})


def _amz_date(ts: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(ts)))


def _parse_amz_date(value: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


class PartStore:
    """Presigns part URLs, receives part PUTs, and assembles completed uploads."""

    def __init__(self, root: Path, clock: Callable[[], float]) -> None:
        self.root = root
        self.clock = clock
        self.base_url = ""
        self.open_uploads: set[str] = set()  # uploads still accepting parts
        self._secret = secrets.token_bytes(32)

    # -- signing ------------------------------------------------------------------------------
    def _signature(self, path: str, query: dict[str, str]) -> str:
        canonical = "PUT\n" + path + "\n" + "&".join(f"{k}={query[k]}" for k in sorted(query)
                                                     if k != "X-Amz-Signature")
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def presign(self, upload_id: str, number: int, ttl: float, *, signed_at: float | None = None) -> tuple[str, float]:
        """A SigV4-looking presigned PUT URL for one part, and when it expires (epoch seconds);
        `signed_at` in the past makes a URL that has already expired."""
        now = self.clock() if signed_at is None else signed_at
        date = _amz_date(now)
        path = f"/_s3/{upload_id}/{number}"
        query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                 "X-Amz-Credential": f"SIMACCESSKEY/{date[:8]}/us-east-1/s3/aws4_request",
                 "X-Amz-Date": date, "X-Amz-Expires": str(int(ttl)), "X-Amz-SignedHeaders": "host"}
        query["X-Amz-Signature"] = self._signature(path, query)
        return f"{self.base_url}{path}?{urlencode(query)}", _parse_amz_date(date) + int(ttl)

    def part_path(self, upload_id: str, number: int) -> Path:
        return self.root / "parts" / upload_id / f"{number:05d}.part"

    # -- HTTP ---------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/_s3/{upload_id}/{number:\\d+}", self.put_part)
        return app

    def _check_auth(self, request: web.Request) -> web.Response | None:
        q = request.query
        if "Authorization" in request.headers and "X-Amz-Signature" in q:
            return s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                            "query parameter, Signature query string parameter or the Authorization header "
                            "should be specified", ArgumentName="Authorization")
        if not any(k in q for k in _AMZ_QUERY):
            return s3_error(403, "AccessDenied", "Access Denied")
        if not all(k in q for k in _AMZ_QUERY):
            return s3_error(400, "AuthorizationQueryParametersError", "Query-string authentication version 4 "
                            "requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                            "X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        signed_at = _parse_amz_date(q["X-Amz-Date"])
        if signed_at is None or not q["X-Amz-Expires"].isdigit():
            return s3_error(400, "AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed.")
        now = self.clock()
        if now > signed_at + int(q["X-Amz-Expires"]):
            return s3_error(403, "AccessDenied", "Request has expired", **{
                "X-Amz-Expires": q["X-Amz-Expires"], "Expires": _iso(signed_at + int(q["X-Amz-Expires"])),
                "ServerTime": _iso(now)})
        expected = self._signature(request.path, {k: v for k, v in q.items()})
        if not hmac.compare_digest(expected, q["X-Amz-Signature"]):
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                            "the signature you provided. Check your key and signing method.")
        return None

    async def put_part(self, request: web.Request) -> web.StreamResponse:
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        upload_id, number = request.match_info["upload_id"], int(request.match_info["number"])
        if upload_id not in self.open_uploads:
            return s3_error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be "
                            "invalid, or the upload may have been aborted or completed.", UploadId=upload_id)
        if request.content_length is None:
            return s3_error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if request.content_length > MAX_PART_SIZE:
            return s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        target = self.part_path(upload_id, number)
        received, md5 = await self._receive(request, target)
        if received != request.content_length:
            return s3_error(400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                            "Content-Length HTTP header")
        return web.Response(status=200, headers={"ETag": f'"{md5}"', "x-amz-request-id": secrets.token_hex(8),
                                                 "Server": "AmazonS3"})

    async def _receive(self, request: web.Request, target: Path) -> tuple[int, str]:
        """Stream the body to `target` (via a temp name), 1 MiB at most in memory."""
        tmp = target.with_suffix(".tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        md5 = hashlib.md5()
        fh = await asyncio.to_thread(tmp.open, "wb")
        received, buf = 0, bytearray()

        def flush(data: bytes) -> None:
            fh.write(data)
            md5.update(data)

        try:
            async for chunk in request.content.iter_chunked(1 << 16):
                buf += chunk
                received += len(chunk)
                if len(buf) >= _FLUSH:
                    data, buf = bytes(buf), bytearray()
                    await asyncio.to_thread(flush, data)
            await asyncio.to_thread(flush, bytes(buf))
        finally:
            await asyncio.to_thread(fh.close)
        if received == request.content_length:
            await asyncio.to_thread(tmp.replace, target)
        else:
            await asyncio.to_thread(tmp.unlink, True)
        return received, md5.hexdigest()

    # -- completion (runs in a thread) ----------------------------------------------------------
    def assemble(self, upload_id: str, parts_count: int, file_size: int, dest: Path) -> int:
        """Concatenate the parts into `dest`, enforcing S3's and Scenario's rules; returns the size."""
        paths = [self.part_path(upload_id, n) for n in range(1, parts_count + 1)]
        missing = [str(n) for n, p in enumerate(paths, 1) if not p.exists()]
        if missing:
            raise AssemblyError(f"Upload incomplete: part(s) {', '.join(missing)} of {parts_count} were never "
                                "uploaded")
        sizes = [p.stat().st_size for p in paths]
        for n, size in enumerate(sizes[:-1], 1):
            if size < MIN_PART_SIZE:
                raise AssemblyError(f"EntityTooSmall: part {n} is {size} bytes; every part but the last must be "
                                    f"at least {MIN_PART_SIZE} bytes")
        if sum(sizes) != file_size:
            raise AssemblyError(f"Uploaded size {sum(sizes)} bytes does not match the declared fileSize "
                                f"{file_size} bytes")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            for p in paths:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, out, _FLUSH)
        shutil.rmtree(paths[0].parent, ignore_errors=True)
        return file_size
