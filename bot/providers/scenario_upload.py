"""Getting a video into Scenario: the multipart upload (videos of any size must use it).

Scenario hands out presigned S3 part URLs, so S3's rules apply: every part but the last at least
5 MiB, at most 10,000 parts. Parts are streamed from the spool file slice by slice (never whole in
memory) and sent WITHOUT our Scenario credentials (they go to the storage host, not the API).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.net import Net, with_retries
from bot.providers.base import InputRejected, NotFound, ProviderError, Transient
from bot.providers.scenario_api import ScenarioAPI, safe_message

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PART_TARGET = 8 * MIB
S3_MIN_PART = 5 * MIB
S3_MAX_PARTS = 10_000
PARALLEL_PARTS = 3
CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}
#: upload states that mean "still processing" (complete/validated are not yet imported)
_PROCESSING = {"pending", "validating", "validated", "complete"}


@dataclass(frozen=True, slots=True)
class PartPlan:
    part_size: int
    count: int

    def slice(self, number: int, total: int) -> tuple[int, int]:
        """(offset, length) of 1-based part `number` in a file of `total` bytes."""
        offset = (number - 1) * self.part_size
        return offset, min(self.part_size, total - offset)


def plan_parts(size: int, target: int = PART_TARGET) -> PartPlan:
    """About `target` bytes per part; larger parts (whole MiB) when that would exceed 10,000."""
    if size <= 0:
        raise ValueError("cannot upload an empty file")
    target = max(target, S3_MIN_PART)
    if math.ceil(size / target) > S3_MAX_PARTS:
        target = math.ceil(size / S3_MAX_PARTS / MIB) * MIB
    return PartPlan(target, math.ceil(size / target))


class PartUrlExpired(ProviderError):
    """The storage refused a presigned part URL (expired or revoked): only a new upload, with
    freshly signed URLs, can go on. Nothing to do with our API credentials."""


async def _put_part(net: Net, url: str, path: Path, offset: int, length: int, content_type: str) -> None:
    async def once() -> None:
        try:
            status, _headers, text = await net.upload("PUT", url, path, offset=offset, length=length,
                                                      headers={"Content-Type": content_type})
        except aiohttp.ClientError as exc:
            raise Transient(f"uploading a part failed ({type(exc).__name__})") from exc
        if status in (200, 201, 204):
            return
        if status in (400, 401, 403) and _expired_or_denied(status, text):
            raise PartUrlExpired(f"the storage refused an upload link (HTTP {status})")
        if status >= 500 or status in (408, 429):
            raise Transient(f"the storage failed on a part (HTTP {status})")
        raise InputRejected(f"Scenario's storage refused the video (HTTP {status}).")

    await with_retries(once)


def _expired_or_denied(status: int, text: str) -> bool:
    """S3 says `AccessDenied` / `Request has expired` / a bad signature for a stale presigned URL."""
    if status in (401, 403):
        return True
    low = (text or "").lower()
    return "expired" in low or "signature" in low or "accessdenied" in low


async def _send_parts(api: ScenarioAPI, net: Net, path: Path, *, file_name: str, content_type: str,
                      size: int, plan: PartPlan) -> dict:
    """One multipart upload: ask for part URLs, PUT every part, complete it; returns the Upload."""
    upload = await api.create_upload(file_name=file_name, content_type=content_type, size=size, parts=plan.count)
    upload_id = upload.get("id")
    parts = sorted(upload.get("parts") or [], key=lambda p: int(p.get("number", 0)))
    if not upload_id or len(parts) != plan.count:
        raise Transient(f"Scenario answered the upload request unexpectedly ({len(parts)} part URLs "
                        f"for {plan.count} parts).")
    gate = asyncio.Semaphore(PARALLEL_PARTS)

    async def send(part: dict) -> None:
        offset, length = plan.slice(int(part["number"]), size)
        async with gate:
            await _put_part(net, part["url"], path, offset, length, content_type)

    await asyncio.gather(*(send(p) for p in parts))
    return await api.complete_upload(upload_id) or upload


async def upload_video(api: ScenarioAPI, net: Net, path: Path, *, file_name: str, kind: str,
                       poll_every: float = 2.0, import_timeout: float = 300.0,
                       restarts: int = 2) -> dict[str, str]:
    """Upload the spooled video; returns {"asset_id", "upload_id", "owner_id"} once Scenario
    imported it. An expired part URL starts a new upload with fresh URLs (up to `restarts` times).

    Raises InputRejected with Scenario's own words when it refuses the file."""
    size = path.stat().st_size
    content_type = CONTENT_TYPES.get(kind, "video/mp4")
    plan = plan_parts(size)
    for attempt in range(restarts + 1):
        try:
            upload = await _send_parts(api, net, path, file_name=file_name, content_type=content_type,
                                       size=size, plan=plan)
            break
        except PartUrlExpired:
            if attempt == restarts:
                raise Transient("Scenario's upload links kept expiring before the video was sent; "
                                "the bot will try the upload again.") from None
            log.info("scenario upload: a part URL expired; starting again with fresh URLs")
    upload_id = str(upload.get("id"))
    owner = upload.get("ownerId")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + import_timeout
    while True:
        status = upload.get("status")
        entity = upload.get("entityId")
        if not entity and status in ("imported", "complete") and upload.get("jobId"):
            # imported without saying which asset: the upload's own job records it
            entity = await _entity_from_job(api, str(upload["jobId"]))
        if entity and status != "failed":  # the TS SDK also stops as soon as entityId is set
            return {"asset_id": str(entity), "upload_id": upload_id, **({"owner_id": owner} if owner else {})}
        if status == "failed":
            reason = safe_message({"reason": upload.get("errorMessage")}, 0) if upload.get("errorMessage") \
                else "no reason given"
            raise InputRejected(f"Scenario could not import the video: {reason}")
        if status not in _PROCESSING and status is not None and status != "imported":
            log.warning("upload %s: unknown status %r, still waiting", upload_id, status)
        if loop.time() > deadline:
            raise Transient(f"Scenario did not finish importing the video within {import_timeout:.0f} s.")
        await asyncio.sleep(poll_every)
        upload = await api.get_upload(upload_id)


async def _entity_from_job(api: ScenarioAPI, job_id: str) -> str | None:
    """The asset id an upload's job recorded (`metadata.output.entityId`, or its one assetId)."""
    try:
        job = await api.get_job(job_id)
    except (NotFound, Transient):
        return None
    meta = job.get("metadata") or {}
    entity = (meta.get("output") or {}).get("entityId")
    if not entity and len(meta.get("assetIds") or []) == 1:
        entity = meta["assetIds"][0]
    return str(entity) if entity else None
