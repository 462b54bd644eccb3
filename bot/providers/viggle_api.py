"""The HTTP calls to Viggle's `/api/*` surface, one method each, typed in and out of JSON.

Kept apart from the provider so the paid calls are easy to see: every POST here is sent once and
never retried; GETs are idempotent and retried on passing faults. Render status is polled without
the key (the docs say it needs none), so the key travels as little as possible.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bot.models import Job
from bot.net import STREAM_TIMEOUT, Net, with_retries
from bot.providers.base import (
    NotFound,
    ReconcileUnknown,
    SubmissionUnknown,
    Transient,
    has_exact_marker,
    parse_timestamp,
)
from bot.providers.viggle_wire import envelope_error, error_for, unwrap

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mp4": "video/mp4",
         ".mov": "video/quicktime", ".webm": "video/webm", ".avi": "video/x-msvideo"}


class ViggleApi:
    def __init__(self, net: Net, base_url: str, api_key: str) -> None:
        self.net = net
        self.base = base_url.rstrip("/")
        self._key = api_key

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}

    async def _call(self, method: str, path: str, *, auth: bool = True, timeout: aiohttp.ClientTimeout | None = None,
                    **kwargs: Any) -> Any:
        headers = self._auth() if auth else {"Accept": "application/json"}
        try:
            status, resp_headers, body = await self.net.json_request(method, f"{self.base}{path}", headers=headers,
                                                                     timeout=timeout or aiohttp.ClientTimeout(
                                                                         total=60, sock_connect=15), **kwargs)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Transient(f"Viggle did not answer ({type(exc).__name__}).") from exc
        if status >= 400:
            raise error_for(status, body, resp_headers.get("Retry-After"))
        envelope = envelope_error(body)
        if envelope is not None:  # an error dressed as success: say what it really is
            raise envelope
        return unwrap(body) if body is not None else {}

    async def _get(self, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        return await with_retries(lambda: self._call("GET", path, auth=auth, **kwargs))

    async def _paid_post(self, path: str, fields: dict[str, Any], files: dict[str, Path] | None = None) -> Any:
        """One POST, never retried: multipart when files go with it (streamed from disk)."""
        form = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
        for name, value in fields.items():
            if value is None:
                continue
            form.add_field(name, str(value).lower() if isinstance(value, bool) else str(value))
        with contextlib.ExitStack() as stack:
            for name, file in (files or {}).items():
                fh = stack.enter_context(file.open("rb"))
                form.add_field(name, fh, filename=file.name,
                               content_type=_MIME.get(file.suffix.lower(), "application/octet-stream"))
            timeout = STREAM_TIMEOUT if files else None
            return await self._call("POST", path, data=form, timeout=timeout)

    # -- characters ----------------------------------------------------------------------------
    async def create_character(self, name: str, *, image: Path | None = None, image_url: str | None = None) -> dict:
        return await self._paid_post("/api/characters/preprocess", {"name": name, "image_url": image_url},
                                     {"image": image} if image else None)

    async def get_character(self, character_id: str) -> dict:
        return await self._get(f"/api/characters/{character_id}")

    async def list_characters(self, limit: int = 100, offset: int = 0) -> dict:
        return await self._get("/api/characters", params={"limit": limit, "offset": offset})

    async def delete_character(self, character_id: str) -> None:
        await self._call("DELETE", f"/api/characters/{character_id}")

    # -- scenes --------------------------------------------------------------------------------
    async def create_scene(self, name: str, *, model: str, background_mode: str, video: Path | None = None,
                           video_url: str | None = None) -> dict:
        return await self._paid_post("/api/scenes/preprocess",
                                     {"name": name, "model": model, "background_mode": background_mode,
                                      "video_url": video_url}, {"video": video} if video else None)

    async def import_template(self, template_id: str, name: str | None) -> dict:
        body = {"template_id": template_id, **({"name": name} if name else {})}
        return await self._call("POST", "/api/scenes/import", json=body)

    async def get_scene(self, scene_id: str) -> dict:
        return await self._get(f"/api/scenes/{scene_id}")

    async def list_scenes(self, limit: int = 100, offset: int = 0) -> dict:
        return await self._get("/api/scenes", params={"limit": limit, "offset": offset})

    async def delete_scene(self, scene_id: str) -> None:
        await self._call("DELETE", f"/api/scenes/{scene_id}")

    # -- renders -------------------------------------------------------------------------------
    async def render(self, fields: dict[str, Any], files: dict[str, Path] | None = None) -> dict:
        """The paid render POST. Renders cannot be listed, so an answer we did not get (a 5xx, a
        dropped connection, a timeout) can never be checked later: it is reported at once, in
        plain words, as a submission that may have been charged."""
        if isinstance(fields.get("character_mapping"), dict):
            fields = {**fields, "character_mapping": json.dumps(fields["character_mapping"])}
        try:
            return await self._paid_post("/api/render", fields, files)
        except Transient as exc:
            raise SubmissionUnknown(f"{_render_unknown(exc)} {RENDER_CHECK}") from exc

    async def render_status(self, job_id: str) -> dict:
        """The docs disagree on whether this needs the key (the page says no, its snippet sends
        it); sending it is harmless and keeps working if Viggle starts to require it."""
        return await self._get(f"/api/render/{job_id}")

    async def download_render(self, job_id: str, dest: Path, *, max_bytes: int | None = None) -> int:
        """`GET /api/render/{id}/download` (authenticated): a redirect to a freshly signed CDN
        link, or the MP4 itself. The key goes to Viggle only, never to the CDN the 302 names."""
        return await self.net.download(f"{self.base}/api/render/{job_id}/download", dest, headers=self._auth(),
                                       max_bytes=max_bytes)

    async def cancel_render(self, job_id: str) -> dict:
        return await self._call("DELETE", f"/api/render/{job_id}")

    # -- account -------------------------------------------------------------------------------
    async def credits(self) -> dict:
        return await self._get("/api/credits")


class ListIncomplete(Exception):
    """A list could not be read back to the wanted time: a page of the wrong shape (`unusable`),
    or the page budget spent."""

    def __init__(self, key: str, *, unusable: bool = False) -> None:
        super().__init__(f"the {key} list {'is not a list' if unusable else 'goes on past the pages read'}")
        self.unusable = unusable


async def newest_items(lister, key: str, since: datetime, *, page: int = 100,
                       max_pages: int = 1000) -> AsyncIterator[dict[str, Any]]:
    """The objects of a list endpoint (newest first) created after `since`, page by page.
    Reading stops at the end of the list (an empty page, or `total` reached) or at a page of older
    objects; a list that could not be read to there ends with ListIncomplete. Transient and
    NotFound pass through."""
    offset = 0
    for _ in range(max_pages):
        body = await lister(limit=page, offset=offset)
        items = body.get(key) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ListIncomplete(key, unusable=True)
        older = 0
        for item in items:
            if not isinstance(item, dict):
                continue
            created = parse_timestamp(item.get("created_at"))
            if created is not None and created < since:
                older += 1
                continue
            yield item
        total = body.get("total") if isinstance(body, dict) else None
        offset += len(items)
        # a page shorter than asked is not the end (a server may serve fewer per page): only an
        # empty page, the total, or a page of older objects is
        if not items or (isinstance(total, int) and offset >= total) or older == len(items):
            return
    raise ListIncomplete(key)


def item_id(item: dict[str, Any], key: str) -> str:
    """A listed object's id (`id`, or `character_id` / `scene_id` as create answers name it)."""
    return str(item.get("id") or item.get(f"{key[:-1]}_id"))


async def find_by_marker(lister, key: str, job: Job, *, page: int = 100, max_pages: int = 1000,
                         skew: timedelta = timedelta(minutes=5)) -> str | None:
    """Page through a list endpoint (newest first) for the object this job made: its name in
    our exact full form (`has_exact_marker`), created after the job was. None only when the scan
    reached objects older than the job or the end of the list; a list that could not be read to
    there is "unknown" (ReconcileUnknown)."""
    try:
        async for item in newest_items(lister, key, job.created_at - skew, page=page, max_pages=max_pages):
            if has_exact_marker(str(item.get("name", "")), job):
                return item_id(item, key)
        return None
    except (ListIncomplete, Transient, NotFound) as exc:
        raise ReconcileUnknown(_UNSURE, retry_after=60) from exc


#: how a user can see whether a render they were not told about was charged
RENDER_CHECK = ("It may have been charged: check `/viggle credits` (or your renders on viggle.ai) before "
                "running it again.")


def _render_unknown(exc: Transient) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 500:
        return f"Viggle answered with a server error (HTTP {status}) when starting the render."
    return "Viggle did not answer when the render was started."


_UNSURE = ("The bot could not finish checking at Viggle whether this job was received (its list could not "
           "be read to the end), so it was not submitted again, to avoid paying twice. It may have been "
           "charged: check `/viggle credits` before running it again.")
