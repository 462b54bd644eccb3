"""An Azure-Blob-style store on its own origin: service-SAS URLs, Put Blob, Put Block, Put Block List,
Get/Head Blob, and Azure's XML errors (contract `vid2scene.md` §3).

It is what vid2scene hands out (upload URL, 302 download targets), so a client meets the real
storage rules: `x-ms-blob-type: BlockBlob` is mandatory, SAS signatures expire and carry
permissions, errors are XML, not JSON. URLs are path-style like Azurite
(`http://host:port/<account>/<container>/<blob>`); signatures are the real service-SAS HMAC-SHA256,
so the real SDK with `account_key` would sign identically. Bodies stream to disk in chunks; no
blob is ever held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import secrets
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web

SAS_VERSION = "2024-08-04"
_CHUNK = 1 << 20
_SPOOL = 4 << 20
_SERVER = "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"
_MESSAGES = {
    "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of Authorization "
                            "header is formed correctly including the signature.",
    "AuthorizationPermissionMismatch": "This request is not authorized to perform this operation using this "
                                       "permission.",
    "MissingRequiredHeader": "An HTTP header that's mandatory for this request is not specified.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "MissingContentLengthHeader": "The Content-Length header was not specified.",
    "RequestBodyTooLarge": "The request body is too large and exceeds the maximum permissible limit.",
    "BlobNotFound": "The specified blob does not exist.",
    "ResourceNotFound": "The specified resource does not exist.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is invalid.",
    "InvalidBlobOrBlock": "The specified blob or block content is invalid.",
    "InvalidBlockList": "The specified block list is invalid.",
    "InvalidXmlDocument": "XML specified is not syntactically valid.",
    "Md5Mismatch": "The MD5 value specified in the request did not match with the MD5 value calculated by "
                   "the server.",
    "UnsupportedHttpVerb": "The resource doesn't support specified Http Verb.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
}


class BlobError(Exception):
    """An Azure error: status, code, and extra XML elements (HeaderName, AuthenticationErrorDetail...)."""

    def __init__(self, status: int, code: str, **extra: str) -> None:
        super().__init__(code)
        self.status, self.code, self.extra = status, code, extra


@dataclass
class Blob:
    name: str
    path: Path
    size: int
    created: float  # kept across overwrites, like Azure's x-ms-creation-time
    modified: float
    etag: str
    content_type: str = "application/octet-stream"
    md5: str | None = None  # base64, only for single-shot Put Blob (as Azure stores it)
    committed: list[tuple[str, int, int]] = field(default_factory=list)  # (block id, offset, size)


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BlobStore:
    """One storage account with one container, files under `root`. Call `build_app()` for the origin."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time, *, account: str = "devstoreaccount1",
                 container: str = "media", max_put_bytes: int = 5000 * 1024 * 1024,
                 max_block_bytes: int = 4000 * 1024 * 1024, max_blocks: int = 50_000) -> None:
        self.root, self.clock, self.account, self.container = root, clock, account, container
        self.max_put_bytes, self.max_block_bytes, self.max_blocks = max_put_bytes, max_block_bytes, max_blocks
        self.account_key = base64.b64encode(secrets.token_bytes(64)).decode()
        self.blobs: dict[str, Blob] = {}
        self._blocks: dict[str, dict[str, Path]] = {}  # uncommitted, per blob name
        self.base_url = ""
        for folder in ("blobs", "blocks", "spool"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    # -- SAS ---------------------------------------------------------------------------------------
    @property
    def account_url(self) -> str:
        """What `BlobServiceClient.url` would be (ends with a slash)."""
        return f"{self.base_url}/{self.account}/"

    def _string_to_sign(self, name: str, q: dict[str, str]) -> str:
        resource = f"/blob/{self.account}/{self.container}/{name}"
        parts = [q.get("sp", ""), q.get("st", ""), q.get("se", ""), resource, q.get("si", ""), q.get("sip", ""),
                 q.get("spr", ""), q.get("sv", ""), q.get("sr", ""), q.get("snapshot", ""), q.get("ses", ""),
                 q.get("rscc", ""), q.get("rscd", ""), q.get("rsce", ""), q.get("rscl", ""), q.get("rsct", "")]
        return "\n".join(parts)

    def _sign(self, text: str) -> str:
        digest = hmac.new(base64.b64decode(self.account_key), text.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def sas_token(self, name: str, permissions: str, ttl: float) -> str:
        """A blob-scoped service SAS, query order as the Python SDK writes it (se, sp, sv, sr, sig)."""
        q = {"se": _iso(self.clock() + ttl), "sp": permissions, "sv": SAS_VERSION, "sr": "b"}
        q["sig"] = self._sign(self._string_to_sign(name, q))
        return "&".join(f"{k}={quote(v, safe='')}" for k, v in q.items())

    def sas_url(self, name: str, permissions: str, ttl: float) -> str:
        return f"{self.account_url}{self.container}/{quote(name)}?{self.sas_token(name, permissions, ttl)}"

    def _authorize(self, request: web.Request, name: str, needs: str) -> None:
        q = request.query
        if "sig" not in q:
            raise BlobError(404, "ResourceNotFound")  # anonymous access to a private container
        for key in ("sv", "se", "sr", "sp"):
            if not q.get(key):
                raise BlobError(403, "AuthenticationFailed", AuthenticationErrorDetail=f"{key} is mandatory. "
                                "Cannot be empty")
        text = self._string_to_sign(name, dict(q))
        if q.get("sr") != "b" or not hmac.compare_digest(self._sign(text), q["sig"]):
            raise BlobError(403, "AuthenticationFailed",
                            AuthenticationErrorDetail=f"Signature did not match. String to sign used was {text}")
        try:
            expiry = datetime.fromisoformat(q["se"]).timestamp()
        except ValueError:
            raise BlobError(403, "AuthenticationFailed", AuthenticationErrorDetail="se is invalid") from None
        now = self.clock()
        if now > expiry:
            raise BlobError(403, "AuthenticationFailed", AuthenticationErrorDetail=(
                f"Signed expiry time [{_http_date(expiry)}] must be after signed start time [{_http_date(now)}]"))
        granted = q["sp"]
        if needs == "r":
            ok = "r" in granted
        else:  # writes: `w`, or `c` while the blob does not exist yet (create may not overwrite)
            ok = "w" in granted or ("c" in granted and name not in self.blobs)
        if not ok:
            raise BlobError(403, "AuthorizationPermissionMismatch")

    # -- sandbox-side helpers -----------------------------------------------------------------------
    def get(self, name: str) -> Blob | None:
        return self.blobs.get(name)

    def backdate(self, name: str, seconds: float) -> None:
        """Make a blob look `seconds` older (for vid2scene's 60-minute rule)."""
        self.blobs[name].created -= seconds

    async def put_file(self, name: str, source: Path, content_type: str) -> Blob:
        """Store a file made by the sandbox itself (hard link when possible, else a copy in a thread)."""
        dest = self._path(name)
        await asyncio.to_thread(_link_or_copy, source, dest)
        return self._register(name, dest, dest.stat().st_size, content_type, None)

    async def put_bytes(self, name: str, data: bytes, content_type: str) -> Blob:
        dest = self._path(name)
        await asyncio.to_thread(dest.write_bytes, data)
        return self._register(name, dest, len(data), content_type,
                              base64.b64encode(hashlib.md5(data).digest()).decode())

    def delete(self, name: str) -> None:
        blob = self.blobs.pop(name, None)
        if blob is not None:
            blob.path.unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / "blobs" / hashlib.sha1(name.encode()).hexdigest()

    def _register(self, name: str, path: Path, size: int, content_type: str, md5: str | None,
                  committed: list[tuple[str, int, int]] | None = None) -> Blob:
        now = self.clock()
        old = self.blobs.get(name)
        blob = Blob(name, path, size, old.created if old else now, now, f'"0x{uuid.uuid4().hex[:15].upper()}"',
                    content_type, md5, committed or [])
        self.blobs[name] = blob
        return blob

    # -- HTTP --------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_route("*", "/{account}/{container}/{name:.+}", self._dispatch)
        app.router.add_route("*", "/{tail:.*}", self._no_resource)
        return app

    def _headers(self, request: web.Request, **more: str) -> dict[str, str]:
        version = request.headers.get("x-ms-version") or request.query.get("sv") or SAS_VERSION
        return {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": version, "Server": _SERVER, **more}

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BlobError as exc:
            return self._error_response(request, exc)

    def _error_response(self, request: web.Request, exc: BlobError) -> web.Response:
        headers = self._headers(request, **{"x-ms-error-code": exc.code})
        if request.method == "HEAD":  # Azure sends no body for HEAD errors
            return web.Response(status=exc.status, headers=headers)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
        message = f"{_MESSAGES[exc.code]}\nRequestId:{headers['x-ms-request-id']}\nTime:{stamp}"
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in exc.extra.items())
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{exc.code}</Code>'
                f"<Message>{escape(message)}</Message>{extra}</Error>")
        return web.Response(status=exc.status, body=body.encode(), headers={**headers,
                            "Content-Type": "application/xml"})

    async def _no_resource(self, request: web.Request) -> web.StreamResponse:
        raise BlobError(400, "InvalidQueryParameterValue", QueryParameterName="path",
                        Reason="Expected /<account>/<container>/<blob>")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        mi = request.match_info
        if mi["account"] != self.account or mi["container"] != self.container:
            raise BlobError(404, "ResourceNotFound")
        name, comp = mi["name"], request.query.get("comp")
        if request.method == "PUT":
            self._authorize(request, name, "w")
            if comp == "block":
                return await self._put_block(request, name)
            if comp == "blocklist":
                return await self._put_block_list(request, name)
            return await self._put_blob(request, name)
        if request.method in ("GET", "HEAD"):
            self._authorize(request, name, "r")
            return await self._get_blob(request, name)
        raise BlobError(405, "UnsupportedHttpVerb")

    def _declared_length(self, request: web.Request, cap: int) -> int:
        if request.content_length is None:
            raise BlobError(411, "MissingContentLengthHeader")
        if request.content_length > cap:
            raise BlobError(413, "RequestBodyTooLarge", MaxLimit=str(cap))
        return request.content_length

    async def _receive(self, request: web.Request) -> tuple[Path, int, str]:
        """Stream the body to a spool file (buffered writes off the loop); returns path, size, MD5."""
        spool = self.root / "spool" / uuid.uuid4().hex
        md5, size, pending = hashlib.md5(), 0, bytearray()
        fh = await asyncio.to_thread(spool.open, "wb")
        try:
            async for chunk in request.content.iter_chunked(_CHUNK):
                pending += chunk
                size += len(chunk)
                if len(pending) >= _SPOOL:
                    data, pending = bytes(pending), bytearray()
                    await asyncio.to_thread(_sink, fh, md5, data)
            if pending:
                await asyncio.to_thread(_sink, fh, md5, bytes(pending))
        except BaseException:
            await asyncio.to_thread(fh.close)
            spool.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(fh.close)
        digest = base64.b64encode(md5.digest()).decode()
        claimed = request.headers.get("Content-MD5")
        if claimed and claimed != digest:
            spool.unlink(missing_ok=True)
            raise BlobError(400, "Md5Mismatch", UserSpecifiedMd5=claimed, ServerCalculatedMd5=digest)
        return spool, size, digest

    async def _put_blob(self, request: web.Request, name: str) -> web.Response:
        blob_type = request.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise BlobError(400, "MissingRequiredHeader", HeaderName="x-ms-blob-type")
        if blob_type != "BlockBlob":  # page/append blobs are not what vid2scene asks for
            raise BlobError(400, "InvalidHeaderValue", HeaderName="x-ms-blob-type", HeaderValue=blob_type)
        self._declared_length(request, self.max_put_bytes)
        spool, size, digest = await self._receive(request)
        dest = self._path(name)
        await asyncio.to_thread(os.replace, spool, dest)
        content_type = request.headers.get("x-ms-blob-content-type") or request.headers.get(
            "Content-Type", "application/octet-stream")
        self._blocks.pop(name, None)
        blob = self._register(name, dest, size, content_type, digest)
        return web.Response(status=201, headers=self._headers(
            request, ETag=blob.etag, **{"Last-Modified": _http_date(blob.modified), "Content-MD5": digest,
                                        "x-ms-request-server-encrypted": "true"}))

    async def _put_block(self, request: web.Request, name: str) -> web.Response:
        raw = request.query.get("blockid", "")
        try:
            decoded = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not raw or not decoded or len(decoded) > 64:
            raise BlobError(400, "InvalidQueryParameterValue", QueryParameterName="blockid",
                            QueryParameterValue=raw, Reason="Not a valid base64 string.")
        pending = self._blocks.setdefault(name, {})
        if pending and len(base64.b64decode(next(iter(pending)))) != len(decoded):
            raise BlobError(400, "InvalidBlobOrBlock")  # block ids of one blob must have equal length
        if raw not in pending and len(pending) >= self.max_blocks:
            raise BlobError(409, "BlockCountExceedsLimit")
        self._declared_length(request, self.max_block_bytes)
        spool, _, digest = await self._receive(request)
        dest = self.root / "blocks" / f"{hashlib.sha1(name.encode()).hexdigest()}-{decoded.hex()}"
        await asyncio.to_thread(os.replace, spool, dest)
        pending[raw] = dest
        return web.Response(status=201, headers=self._headers(
            request, **{"Content-MD5": digest, "x-ms-request-server-encrypted": "true"}))

    async def _put_block_list(self, request: web.Request, name: str) -> web.Response:
        body = await request.read()
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise BlobError(400, "InvalidXmlDocument") from None
        if root.tag != "BlockList":
            raise BlobError(400, "InvalidXmlDocument")
        pending = self._blocks.get(name, {})
        old = self.blobs.get(name)
        committed = {bid: (off, size) for bid, off, size in (old.committed if old else [])}
        plan: list[tuple[str, Path, int, int]] = []  # (id, source file, offset, size)
        for item in root:
            bid = (item.text or "").strip()
            source: tuple[Path, int, int] | None = None
            if item.tag in ("Latest", "Uncommitted") and bid in pending:
                path = pending[bid]
                source = (path, 0, path.stat().st_size)
            if source is None and item.tag in ("Latest", "Committed") and bid in committed and old:
                source = (old.path, *committed[bid])
            if source is None:
                raise BlobError(400, "InvalidBlockList")
            plan.append((bid, *source))
        dest = self._path(name)
        layout = await asyncio.to_thread(_assemble, plan, self.root / "spool" / uuid.uuid4().hex, dest)
        for path in pending.values():
            path.unlink(missing_ok=True)
        self._blocks.pop(name, None)
        content_type = request.headers.get("x-ms-blob-content-type", "application/octet-stream")
        blob = self._register(name, dest, sum(s for _, _, s in layout), content_type,
                              request.headers.get("x-ms-blob-content-md5"), layout)
        return web.Response(status=201, headers=self._headers(
            request, ETag=blob.etag, **{"Last-Modified": _http_date(blob.modified),
                                        "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                                        "x-ms-request-server-encrypted": "true"}))

    async def _get_blob(self, request: web.Request, name: str) -> web.StreamResponse:
        blob = self.blobs.get(name)
        if blob is None:
            raise BlobError(404, "BlobNotFound")
        start, end = 0, blob.size - 1
        status = 200
        spec = request.headers.get("x-ms-range") or request.headers.get("Range")
        if spec and spec.startswith("bytes="):
            lo, _, hi = spec[6:].partition("-")
            try:
                start = int(lo) if lo else max(0, blob.size - int(hi))
                end = min(int(hi), blob.size - 1) if hi and lo else blob.size - 1
            except ValueError:
                start, end = 0, blob.size - 1
            else:
                if start >= blob.size:
                    raise BlobError(416, "InvalidRange")
                status = 206
        headers = self._headers(request, **{
            "Content-Type": blob.content_type, "ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
            "Accept-Ranges": "bytes", "x-ms-blob-type": "BlockBlob", "x-ms-server-encrypted": "true",
            "x-ms-creation-time": _http_date(blob.created), "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available"})
        if blob.md5 and status == 200:
            headers["Content-MD5"] = blob.md5
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = end - start + 1
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        fh = await asyncio.to_thread(blob.path.open, "rb")
        try:
            await asyncio.to_thread(fh.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await resp.write(chunk)
        finally:
            await asyncio.to_thread(fh.close)
        await resp.write_eof()
        return resp


def _sink(fh, md5, data: bytes) -> None:
    md5.update(data)
    fh.write(data)


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _assemble(plan: list[tuple[str, Path, int, int]], tmp: Path, dest: Path) -> list[tuple[str, int, int]]:
    """Concatenate block sources into a new blob file; returns the committed layout."""
    layout, offset = [], 0
    with tmp.open("wb") as out:
        for bid, path, start, size in plan:
            with path.open("rb") as src:
                src.seek(start)
                left = size
                while left > 0:
                    chunk = src.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
            layout.append((bid, offset, size))
            offset += size
    os.replace(tmp, dest)
    return layout
