"""How a user's file reaches Viggle: as a URL Viggle fetches itself (no second copy through the
bot), or spooled to disk, checked, and uploaded in the paid request.

Viggle fetches `image_url`/`video_url` server-side, so a Discord CDN link is handed over directly
when Viggle can reach it (a public host, not about to expire). Otherwise, or when Viggle says it
could not read the link, the bot streams the attachment to disk and uploads it.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.media.probe import MediaError, check_video, probe_image_async, probe_video_async
from bot.net import Net
from bot.paths import job_path, safe_suffix
from bot.providers.base import AuthFailed, InputRejected, NotFound

MIB = 1024 * 1024
MAX_VIDEO_BYTES = 500 * MIB
MAX_IMAGE_BYTES = 30 * MIB
MAX_VIDEO_SECONDS = 300
MAX_SIDE = 4096
#: our own floors (Viggle publishes only maxima): a person must be visible and moving
MIN_VIDEO_SIDE = 64
MIN_VIDEO_FRAMES = 4
MIN_IMAGE_SIDE = 64
VIDEO_FORMATS = ("mp4", "mov", "webm", "avi")
IMAGE_FORMATS = ("PNG", "JPEG")
#: a Discord link must stay valid this long for Viggle to fetch it from its queue
MIN_LINK_LIFE = 15 * 60


def _private_host(host: str | None) -> bool:
    if not host:
        return True
    if host == "localhost" or host.endswith((".local", ".internal", ".localhost")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


def viggle_can_fetch(url: str, viggle_base: str, now: float | None = None) -> bool:
    """Whether Viggle (at `viggle_base`) can plausibly fetch `url` itself. A loopback/private
    link is reachable only by a Viggle on a private network too (the sandbox); Discord's signed
    links carry their expiry as `ex=<hex unix time>`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    if _private_host(parts.hostname) and not _private_host(urlsplit(viggle_base).hostname):
        return False
    expiry = parse_qs(parts.query).get("ex")
    if expiry:
        try:
            if int(expiry[0], 16) - (now or time.time()) < MIN_LINK_LIFE:
                return False
        except ValueError:
            return False
    return True


def plan_input(attachment: dict[str, Any] | None, user_url: str | None, viggle_base: str) -> dict[str, Any]:
    """Where one input comes from: {"url": ...} for Viggle to fetch, or {"spool": attachment}."""
    if attachment:
        if viggle_can_fetch(attachment["url"], viggle_base):
            return {"url": attachment["url"], "attachment": attachment}
        return {"spool": attachment}
    if user_url:
        return {"url": user_url}
    raise InputRejected("Attach a file or give a link to one.")


async def spool(net: Net, attachment: dict[str, Any], dest_dir: Path, kind: str) -> Path:
    """Stream a Discord attachment to disk and check it against Viggle's limits before paying."""
    allowed = tuple(f".{f}" for f in VIDEO_FORMATS) if kind == "video" else (".png", ".jpg", ".jpeg")
    suffix = safe_suffix(attachment.get("filename"), allowed, ".mp4" if kind == "video" else ".png")
    dest = job_path(dest_dir, f"{kind}{suffix}")
    cap = MAX_VIDEO_BYTES if kind == "video" else MAX_IMAGE_BYTES
    try:
        await net.download(attachment["url"], dest, max_bytes=cap)
    except (AuthFailed, NotFound):  # Discord's link expired or the file was deleted: not our Viggle key
        raise InputRejected("The attachment is no longer available on Discord; please send it again.") from None
    try:
        if kind == "video":
            info = await probe_video_async(dest)
            check_video(info, max_bytes=MAX_VIDEO_BYTES, max_seconds=MAX_VIDEO_SECONDS, max_side=MAX_SIDE,
                        min_side=MIN_VIDEO_SIDE, min_frames=MIN_VIDEO_FRAMES, formats=VIDEO_FORMATS,
                        service="Viggle")
        else:
            image = await probe_image_async(dest)
            if image.format not in IMAGE_FORMATS:
                raise MediaError(f"The image is {image.format}; Viggle accepts PNG or JPG.")
            if min(image.width, image.height) < MIN_IMAGE_SIDE:
                raise MediaError(f"The image is only {image.width}×{image.height}; Viggle needs at least "
                                 f"{MIN_IMAGE_SIDE} px on the shorter side to see the character.")
    except MediaError as exc:
        raise InputRejected(str(exc)) from exc
    if kind == "image" and dest.suffix not in (".png", ".jpg", ".jpeg"):
        fixed = dest.with_suffix(".png" if image.format == "PNG" else ".jpg")
        dest.replace(fixed)
        dest = fixed
    return dest
