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

from bot.net import Net, classify, with_retries
from bot.providers.base import InputRejected, Transient
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


async def _put_part(net: Net, url: str, path: Path, offset: int, length: int, content_type: str) -> None:
    async def once() -> None:
        try:
            status, _headers, text = await net.upload("PUT", url, path, offset=offset, length=length,
                                                      headers={"Content-Type": content_type})
        except aiohttp.ClientError as exc:
            raise Transient(f"uploading a part failed ({type(exc).__name__})") from exc
        if status not in (200, 201, 204):
            # 403 = the presigned URL expired or was refused: a fresh upload is needed, so surface it
            raise classify(status, f"the storage refused a part (HTTP {status})") if status < 500 \
                else Transient(f"the storage failed on a part (HTTP {status})")

    await with_retries(once)


async def upload_video(api: ScenarioAPI, net: Net, path: Path, *, file_name: str, kind: str,
                       poll_every: float = 2.0, import_timeout: float = 300.0) -> dict[str, str]:
    """Upload the spooled video; returns {"asset_id", "upload_id"} once Scenario imported it.

    Raises InputRejected with Scenario's own words when it refuses the file."""
    size = path.stat().st_size
    content_type = CONTENT_TYPES.get(kind, "video/mp4")
    plan = plan_parts(size)
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
    upload = await api.complete_upload(upload_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + import_timeout
    while True:
        status = upload.get("status")
        if upload.get("entityId") and status != "failed":  # the TS SDK also stops as soon as entityId is set
            return {"asset_id": upload["entityId"], "upload_id": upload_id}
        if status == "failed":
            reason = safe_message({"reason": upload.get("errorMessage")}, 0) if upload.get("errorMessage") \
                else "no reason given"
            raise InputRejected(f"Scenario could not import the video: {reason}")
        if status not in _PROCESSING and status is not None:
            log.warning("upload %s: unknown status %r, still waiting", upload_id, status)
        if loop.time() > deadline:
            raise Transient(f"Scenario did not finish importing the video within {import_timeout:.0f} s.")
        await asyncio.sleep(poll_every)
        upload = await api.get_upload(upload_id)
