"""The vid2scene HTTP API, one method per endpoint, typed answers, errors mapped once.

Every path ends with a slash (Django redirects or breaks slashless POSTs). The Api-Key header is
sent only to vid2scene itself: signed storage URLs (the blob PUT, 302 download targets) get none.
Nothing here retries a paid call (`submit_job`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.net import API_TIMEOUT, Net, classify
from bot.providers.base import (
    AuthFailed,
    InputRejected,
    NotFound,
    OutOfCredits,
    ProviderError,
    Transient,
)
from bot.providers.vid2scene_status import azure_error_code, error_message

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
FILE_KINDS = ("ply", "spz")


@dataclass(frozen=True, slots=True)
class UploadTarget:
    url: str  # signed (SAS) blob URL: never log it
    blob_name: str


@dataclass(frozen=True, slots=True)
class RemoteScene:
    """An entry of `GET /jobs/`: only the id and the title are listed there."""

    job_id: str
    title: str


class BlobRejected(ProviderError):
    """The storage host refused the PUT; `code` is Azure's error code (AuthenticationFailed...)."""

    def __init__(self, public: str, status: int, code: str | None) -> None:
        super().__init__(public)
        self.status, self.code = status, code


def valid_job_id(job_id: str) -> bool:
    """Django routes `<uuid:job_id>`: anything else gets an HTML 404, so check before asking."""
    return bool(_UUID.match(job_id or ""))


class Vid2SceneAPI:
    def __init__(self, base_url: str, api_key: str, net: Net) -> None:
        self.base = base_url.rstrip("/") + "/"
        self._auth = {"Authorization": f"Api-Key {api_key}"}
        self.net = net

    def url(self, path: str) -> str:
        path = path.strip("/")
        return f"{self.base}{path}/" if path else self.base

    # -- plumbing --------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, *, json: Any = None, ok: tuple[int, ...] = (200,),
                    submit: bool = False, url: str | None = None) -> tuple[int, dict[str, str], Any]:
        """One API request; non-`ok` answers become taxonomy errors with a safe message. A GET
        follows redirects (a moved path, a slash appended) unless the redirect is the answer we
        want (`ok` holds a 3xx); other methods never do, so a paid POST is never re-sent."""
        follow = method in ("GET", "HEAD") and not any(300 <= code < 400 for code in ok)
        try:
            status, headers, body = await self.net.json_request(
                method, url or self.url(path), json=json, headers=self._auth, allow_redirects=follow,
                timeout=API_TIMEOUT)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Transient(f"vid2scene did not answer ({type(exc).__name__})") from exc
        if status in ok:
            return status, headers, body
        raise self._error(status, headers, body, submit=submit)

    @staticmethod
    def _error(status: int, headers: dict[str, str], body: Any, *, submit: bool = False) -> ProviderError:
        message = error_message(body, status)
        low = message.lower()
        if "insufficient" in low and "credit" in low:
            return OutOfCredits(message)
        if status == 403 and ("enterprise" in low or "api key" in low or "credentials" in low
                              or "authentication" in low or "revoked" in low):
            return AuthFailed(message)
        if submit and status == 400:
            if "blob not found" in low or "blob too old" in low:
                return BlobGone(message)
            return InputRejected(_submit_words(message))
        return classify(status, message, retry_after=headers.get("Retry-After"))

    # -- upload ------------------------------------------------------------------------------------
    async def upload_target(self, extension: str) -> UploadTarget:
        _, _, body = await self._call("POST", "generate-upload-url", json={"file_extension": extension})
        if not isinstance(body, dict) or not body.get("url") or not body.get("blob_name"):
            raise Transient("vid2scene gave no upload URL")
        return UploadTarget(str(body["url"]), str(body["blob_name"]))

    async def put_blob(self, target: UploadTarget, path: Path, content_type: str) -> None:
        """Azure Put Blob, the file streamed from disk as the body (never read whole)."""
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type}
        try:
            status, _, text = await self.net.upload("PUT", target.url, path, headers=headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Transient(f"the video upload was interrupted ({type(exc).__name__})") from exc
        if status in (200, 201):
            return
        code = azure_error_code(text)
        if status == 413 or code == "RequestBodyTooLarge":
            raise InputRejected("vid2scene's storage refused the video as too large.")
        if status >= 500 or status in (408, 429):
            raise Transient(f"vid2scene's storage had a problem (HTTP {status})")
        raise BlobRejected(f"vid2scene's storage refused the upload ({code or f'HTTP {status}'}).", status, code)

    # -- jobs ----------------------------------------------------------------------------------------
    async def submit_job(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The paid call: exactly one POST, no retry. 5xx/timeouts raise Transient (outcome unknown)."""
        _, _, body = await self._call("POST", "submit-job", json=payload, ok=(200, 201), submit=True)
        if not isinstance(body, dict) or not body.get("job_id"):
            if isinstance(body, dict) and body.get("success") is False:
                raise InputRejected(_submit_words(error_message(body, 400)))
            raise Transient("vid2scene accepted the job but did not say its id")
        return body

    async def job(self, job_id: str) -> dict[str, Any]:
        if not valid_job_id(job_id):
            raise NotFound("No such vid2scene scene.")
        _, _, body = await self._call("GET", f"jobs/{job_id}")
        if not isinstance(body, dict):
            raise Transient("vid2scene sent an unreadable job")
        return body

    async def jobs(self) -> list[RemoteScene]:
        """Every job of this API key. The open-source server answers a bare array; a paginated
        answer (`{"results": [...], "next": url}`, DRF's shape) is read to its last page."""
        scenes, complete = await self.scan_jobs()
        if not complete:
            raise Transient("vid2scene's job list could not be read to the end")
        return scenes

    async def scan_jobs(self, *, max_pages: int = 1000) -> tuple[list[RemoteScene], bool]:
        """(the jobs read, whether the list was read to its end)."""
        scenes: list[RemoteScene] = []
        url: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            _, _, body = await self._call("GET", "jobs", url=url)
            if isinstance(body, list):
                items, nxt = body, None
            elif isinstance(body, dict) and isinstance(body.get("results"), list):
                items, nxt = body["results"], body.get("next")
            else:
                raise Transient("vid2scene sent an unreadable job list")
            scenes += [RemoteScene(str(i.get("job_id")), str(i.get("title") or "")) for i in items
                       if isinstance(i, dict) and i.get("job_id")]
            if not nxt:
                return scenes, True
            nxt = str(aiohttp.client.URL(self.base).join(aiohttp.client.URL(str(nxt))))
            if not nxt.startswith(self.base) or nxt in seen:
                return scenes, False  # a next page elsewhere, or a loop: the list cannot be finished
            seen.add(nxt)
            url = nxt
        return scenes, False

    async def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        if not valid_job_id(job_id):
            raise NotFound("No such vid2scene scene.")
        _, _, body = await self._call("PATCH", f"jobs/{job_id}", json=fields)
        return body if isinstance(body, dict) else {}

    async def delete(self, job_id: str) -> bool:
        """True when deleted now, False when it was already gone."""
        if not valid_job_id(job_id):
            return False
        try:
            await self._call("DELETE", f"jobs/{job_id}", ok=(200, 202, 204))
        except NotFound:
            return False
        return True

    # -- files -----------------------------------------------------------------------------------
    async def signed_link(self, job_id: str, kind: str) -> str:
        """A newly signed storage URL for `ply`, `spz` or `preview` (the 302's Location)."""
        if kind not in (*FILE_KINDS, "preview"):
            raise InputRejected('The file type must be "ply" or "spz".')
        if not valid_job_id(job_id):
            raise NotFound("No such vid2scene scene.")
        path = f"jobs/{job_id}/preview" if kind == "preview" else f"jobs/{job_id}/download/{kind}"
        status, headers, _ = await self._call("GET", path, ok=(301, 302, 303, 307, 308))
        location = headers.get("Location") or headers.get("location")
        if not location:
            raise Transient("vid2scene's download redirect had no target")
        return str(aiohttp.client.URL(self.url(path)).join(aiohttp.client.URL(location)))

    async def fetch(self, job_id: str, kind: str, dest: Path, *, max_bytes: int | None = None) -> int:
        """Stream a result file to disk: ask for a fresh link, fetch it with no credentials; if the
        link expired in between (403 from storage), ask once more."""
        for attempt in (1, 2):
            link = await self.signed_link(job_id, kind)
            try:
                return await self.net.download(link, dest, max_bytes=max_bytes)
            except AuthFailed:
                if attempt == 2:
                    raise Transient(f"vid2scene's {kind} link kept expiring") from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise Transient(f"the {kind} download was interrupted ({type(exc).__name__})") from exc
        raise AssertionError("unreachable")

    async def head_size(self, link: str) -> int | None:
        """The size of a signed file without downloading it (None when the host does not say)."""
        try:
            return await self.net.head_size(link)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None


class BlobGone(InputRejected):
    """submit-job could not use our uploaded blob (missing or older than 60 minutes)."""


def _submit_words(message: str) -> str:
    """submit-job's 400 messages, said for a Discord user."""
    low = message.lower()
    if "exceeds the maximum" in low:
        return f"vid2scene refused the video: {message}"
    if "reconstruction method" in low:
        return f"vid2scene refused the reconstruction method: {message}"
    if "gaussians" in low or "steps" in low or "camera_type" in low or "apriltag" in low:
        return f"vid2scene refused an option: {message}"
    return f"vid2scene refused the job: {message}"

