"""vid2scene: a video in, a 3D Gaussian splat scene (SPZ + PLY + turntable preview) out.

The flow: spool the Discord attachment to disk, probe it (nothing is spent on a file that is not
a usable video), ask for a signed upload URL, stream the file into the Azure blob PUT, submit the
job once (the paid call, with our job marker in its title), poll, and collect the files through
fresh 302 links fetched without our API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from bot.checkpoints import made_once, recall, remember
from bot.media.probe import MediaError, check_video, probe_video_async, sniff
from bot.models import Artifact, Job, JobState, RemoteStatus, SavedObject
from bot.net import Net, TooLarge
from bot.paths import job_path, safe_suffix
from bot.providers.base import (
    InputRejected,
    NotFound,
    Provider,
    ProviderError,
    ProviderLimits,
    ReconcileUnknown,
    Transient,
    has_exact_marker,
    marked_name,
    parse_timestamp,
)
from bot.providers.vid2scene_api import BlobGone, BlobRejected, RemoteScene, UploadTarget, Vid2SceneAPI
from bot.providers.vid2scene_status import SceneDetails, parse_job, scene_details, strip_marker

log = logging.getLogger(__name__)
MIB = 1 << 20
#: vid2scene's cap for Pro/Enterprise accounts (MAX_VIDEO_FILE_SIZE_PRO)
MAX_VIDEO_BYTES = 1 << 30
#: our own cap: a longer walk-around rarely helps a splat and takes hours to train
MAX_VIDEO_SECONDS = 10 * 60
MIN_VIDEO_SECONDS = 1.0
#: our own floors (vid2scene publishes none): a reconstruction needs many, reasonably sharp views
MIN_VIDEO_SIDE = 100
MIN_VIDEO_FRAMES = 8
VIDEO_FORMATS = frozenset({"mp4", "mov", "webm", "mkv", "avi"})
_SPOOL_SUFFIXES = tuple(f".{f}" for f in sorted(VIDEO_FORMATS))
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".qt"})
_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "mkv": "video/x-matroska",
                  "avi": "video/x-msvideo"}
#: blobs older than 60 minutes are refused at submit; re-upload a little before that
BLOB_MAX_AGE = 50 * 60
RECONSTRUCTION_METHODS = ("glomap", "colmap", "vggt", "quest", "generate_lod")
#: what works from a video: vid2scene's server takes `quest` only with a Quest capture zip and
#: `generate_lod` only with a PLY, so a video job with either fails after it was paid for
VIDEO_METHODS = ("glomap", "colmap", "vggt")
CAMERA_TYPES = ("orbital", "drone")
GAUSSIANS_RANGE = (100_000, 2_000_000)
STEPS_RANGE = (5_000, 40_000)
APRILTAG_RANGE = (1.0, 1000.0)
#: the largest upload limit any Discord server can have (boost tier 3); a bigger PLY is never fetched
DISCORD_MAX_UPLOAD = 100 * MIB
TITLE_MAX = 200
#: allowed difference between our clock and vid2scene's when comparing creation times
RECONCILE_SKEW = timedelta(minutes=5)
_UNSURE = ("{why}, so the bot cannot tell whether vid2scene received this job. It was not submitted again, "
           "to avoid paying twice; it may still have used a credit. Check `/splat list` before running it again.")
OPTION_KEYS = ("public", "reconstruction_method", "training_max_num_gaussians", "training_num_steps",
               "apriltag_size_mm", "remove_background", "camera_type")


def precheck_attachment(filename: str, size: int | None, content_type: str | None) -> str | None:
    """What is wrong with an attachment, judged from what Discord tells us before any download
    (name, size, declared type); None when it is worth spooling and probing."""
    suffix = Path(filename or "").suffix.lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("video/") and ctype != "application/octet-stream":
        return (f"`{_clean_name(filename)}` is not a video (Discord says it is `{ctype}`). "
                "Attach an MP4, MOV, WebM or MKV video that walks around the subject.")
    if suffix not in VIDEO_EXTENSIONS and not ctype.startswith("video/"):
        return (f"`{_clean_name(filename)}` does not look like a video. "
                "Attach an MP4, MOV, WebM or MKV video that walks around the subject.")
    if size is not None and size > MAX_VIDEO_BYTES:
        return (f"The video is {size / MIB:,.0f} MB; vid2scene accepts at most {MAX_VIDEO_BYTES / MIB:,.0f} MB "
                f"(1 GB). Trim it or lower its resolution.")
    if size is not None and size == 0:
        return "The video file is empty."
    return None


def method_refusal(method: str) -> str:
    return (f"The reconstruction method `{_clean_name(method)[:20]}` does not work from a video (vid2scene takes "
            "`quest` only with a Quest capture and `generate_lod` only with a PLY); choose "
            + ", ".join(f"`{m}`" for m in VIDEO_METHODS) + ".")


def _clean_name(name: str) -> str:
    return re.sub(r"[`\n\r]", "", name or "file")[:80]


def scene_filename(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", strip_marker(title).lower()).strip("-")[:40]
    return slug or "scene"


class Vid2SceneProvider(Provider):
    name: ClassVar[str] = "vid2scene"
    display_name: ClassVar[str] = "vid2scene"

    def __init__(self, settings: Any, net: Net) -> None:
        self.settings = settings
        self.net = net
        self.limits = ProviderLimits.from_settings(settings)
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self.api = Vid2SceneAPI(settings.base_url, key, net)

    # -- upload (free) ---------------------------------------------------------------------------
    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        video = job.params.get("video") or {}
        method = job.params.get("reconstruction_method")
        if method is not None and method not in VIDEO_METHODS:
            raise InputRejected(method_refusal(str(method)))
        problem = precheck_attachment(video.get("filename", ""), video.get("size"), video.get("content_type"))
        if problem:
            raise InputRejected(problem)
        spool = job_path(workdir, "input" + safe_suffix(video.get("filename"), _SPOOL_SUFFIXES, ".mp4"))
        try:
            size = await self.net.download(video["url"], spool, max_bytes=MAX_VIDEO_BYTES)
        except TooLarge as exc:
            raise InputRejected(f"The video is too large for vid2scene. {exc.public}") from None
        except NotFound:
            raise InputRejected("Discord no longer has the attached video; please attach it again.") from None
        try:
            info = await probe_video_async(spool)
            check_video(info, max_bytes=MAX_VIDEO_BYTES, max_seconds=MAX_VIDEO_SECONDS,
                        min_seconds=MIN_VIDEO_SECONDS, min_side=MIN_VIDEO_SIDE, min_frames=MIN_VIDEO_FRAMES,
                        formats=VIDEO_FORMATS, service="vid2scene")
        except MediaError as exc:
            raise InputRejected(str(exc)) from None
        extension = info.container if info.container in VIDEO_FORMATS else "mp4"
        blob = await self._upload_file(spool, extension)
        return {"blob_name": blob, "uploaded_at": time.time(), "spool": str(spool), "extension": extension,
                "video_bytes": size, "video_seconds": round(info.duration, 2)}

    async def _upload_file(self, path: Path, extension: str) -> str:
        """Signed URL, then one streamed PUT; an expired signature gets one fresh URL."""
        for attempt in (1, 2):
            target: UploadTarget = await self.api.upload_target(extension)
            try:
                await self.api.put_blob(target, path, _CONTENT_TYPES.get(extension, "video/mp4"))
                return target.blob_name
            except BlobRejected as exc:
                if attempt == 2 or exc.code not in ("AuthenticationFailed", None):
                    raise Transient(exc.public) from None
        raise AssertionError("unreachable")

    # -- submit (paid) ---------------------------------------------------------------------------
    def _payload(self, job: Job, blob_name: str) -> dict[str, Any]:
        params = job.params
        title = (params.get("title") or Path((params.get("video") or {}).get("filename", "")).stem or "scene")
        title = str(title).strip()[:TITLE_MAX]
        payload: dict[str, Any] = {"blob_name": blob_name, "title": marked_name(title, job)}
        for key in OPTION_KEYS:
            if params.get(key) is not None:
                payload[key] = params[key]
        return payload

    async def submit(self, job: Job) -> tuple[str, dict[str, Any]]:
        data = dict(job.provider_data)
        spool = Path(data["spool"]) if data.get("spool") else None
        if time.time() - float(data.get("uploaded_at", 0)) > BLOB_MAX_AGE and spool and spool.exists():
            data["blob_name"] = await self._upload_file(spool, data.get("extension", "mp4"))
            data["uploaded_at"] = time.time()
        try:
            body = await self.api.submit_job(self._payload(job, data["blob_name"]))
        except BlobGone:
            # a 400 proves nothing was created, so one fresh upload and one more submit are safe
            if not (spool and spool.exists()):
                raise InputRejected("The uploaded video expired at vid2scene before the job could start; "
                                    "please run `/splat create` again.") from None
            data["blob_name"] = await self._upload_file(spool, data.get("extension", "mp4"))
            data["uploaded_at"] = time.time()
            body = await self.api.submit_job(self._payload(job, data["blob_name"]))
        first = parse_job(body)
        data.update(title=strip_marker(str(body.get("title") or "")) or job.summary, scene_status=first.raw_status)
        return str(body["job_id"]), {k: v for k, v in data.items() if k in ("blob_name", "uploaded_at", "title",
                                                                             "scene_status")}

    async def reconcile(self, job: Job) -> str | None:
        """The scene an unanswered submit may have made: its title must be in our exact full form
        for this job (see `has_exact_marker`) and it must have been uploaded after the job was
        created. "Not created" only after the whole list was read; otherwise "unknown"."""
        try:
            scenes, complete = await self.api.scan_jobs()
            for scene in scenes:
                if not has_exact_marker(scene.title, job):
                    continue
                uploaded = parse_timestamp((await self.api.job(scene.job_id)).get("uploaded_at"))
                if uploaded is None or uploaded >= job.created_at - RECONCILE_SKEW:
                    return scene.job_id
        except (Transient, NotFound) as exc:
            raise ReconcileUnknown(_UNSURE.format(why="vid2scene's scene list could not be read"),
                                   retry_after=60) from exc
        if not complete:
            raise ReconcileUnknown(_UNSURE.format(why="vid2scene's scene list could not be read to the end"),
                                   retry_after=60)
        return None

    # -- poll ------------------------------------------------------------------------------------
    async def poll(self, job: Job) -> RemoteStatus:
        body = await self.api.job(job.remote_id or "")
        status = parse_job(body)
        if status.raw_status and status.raw_status.lower() == "generating 3d scene" and (
                status.progress != job.progress or not job.preview_url):
            # a fresh signed link to the newest training preview: the status card's thumbnail
            with contextlib.suppress(ProviderError):
                status = dataclasses.replace(status, preview_url=await self.api.signed_link(job.remote_id, "preview"))
        return status

    # -- collect ---------------------------------------------------------------------------------
    async def collect(self, job: Job, status: RemoteStatus, workdir: Path) -> list[Artifact]:
        remote = job.remote_id or ""
        data = status.data or {}
        name = scene_filename(data.get("title") or job.provider_data.get("title") or job.summary)
        artifacts: list[Artifact] = []
        spz = None
        if data.get("has_spz", True):
            spz = job_path(workdir, f"{name}.spz")
            if not spz.exists():  # a collect killed after the download does not fetch it again
                await self.api.fetch(remote, "spz", spz)
            artifacts += await self._fit_spz(spz, name, workdir)
        # our own turntable of the finished scene is the preview; vid2scene's is a training snapshot
        preview = await self._turntable(spz, name, workdir) if spz else None
        preview = preview or await self._preview(remote, workdir)
        if preview is not None:
            artifacts.append(preview)
        if data.get("has_ply"):
            ply = await self._ply(remote, job_path(workdir, f"{name}.ply"))
            if ply is not None:
                artifacts.append(ply)
        if not artifacts:
            raise NotFound("vid2scene finished but has no scene files for this job.")
        return artifacts

    async def _fit_spz(self, spz: Path, name: str, workdir: Path) -> list[Artifact]:
        full = Artifact(spz, spz.name, "the 3D splat (SPZ; open it in a splat viewer)", download_key="spz")
        if spz.stat().st_size <= self.upload_limit:
            return [full]
        try:
            from bot.media.splat import fit_spz_async
        except ImportError:
            return [full]
        from bot.media.spz_fit import describe_fit

        small = job_path(workdir, f"{name}-reduced-for-discord.spz")

        async def fit(tmp: Path) -> None:
            remember(small, {"fit": describe_fit(await fit_spz_async(spz, tmp, self.upload_limit))})

        try:
            await made_once(small, fit)  # once per job, like the other collect steps
        except Exception:  # noqa: BLE001 - the full SPZ still gets its Download button
            return [full]
        fitted = (recall(small) or {}).get("fit")
        if not fitted or not small.exists() or small.stat().st_size > self.upload_limit:
            return [full]
        reduced = Artifact(small, small.name, f"a lighter SPZ that fits Discord: {fitted}")
        return [reduced, full]

    async def _turntable(self, scene: Path, name: str, workdir: Path) -> Artifact | None:
        """A turning view of the scene rendered here (animated WebP, plays inline in Discord)."""
        from bot.media.turntable import TURNTABLE_SUFFIX, make_turntable_async

        dest = job_path(workdir, f"{name}{TURNTABLE_SUFFIX}")
        try:
            await made_once(dest, lambda tmp: make_turntable_async(scene, tmp))  # seconds of CPU: once
        except Exception:  # noqa: BLE001 - vid2scene's own preview image is the fallback
            log.warning("could not render a turntable preview", exc_info=True)
            return None
        return Artifact(dest, dest.name, "a turntable preview of the scene")

    async def _preview(self, remote: str, workdir: Path) -> Artifact | None:
        dest = job_path(workdir, "preview.img")
        try:
            await self.api.fetch(remote, "preview", dest, max_bytes=20 * MIB)
        except ProviderError:
            return None
        kind = await asyncio.to_thread(sniff, dest)
        if kind not in ("jpeg", "png", "webp"):
            return None
        final = dest.with_name(f"preview.{'jpg' if kind == 'jpeg' else kind}")
        dest.replace(final)
        return Artifact(final, final.name, "a preview render of the scene")

    async def _ply(self, remote: str, dest: Path) -> Artifact | None:
        """The full PLY when it could fit some server's limit; else a remote-only artifact, so
        delivery offers its Download button (the 250 MB file is never fetched just to be dropped)."""
        fetch_limit = max(self.upload_limit, DISCORD_MAX_UPLOAD)
        description = "the full-quality scene (PLY)"
        if dest.exists():  # fetched by a collect that was killed later on
            return Artifact(dest, dest.name, description, optional=True, download_key="ply")
        try:
            link = await self.api.signed_link(remote, "ply")
        except NotFound:
            return None
        size = await self.api.head_size(link)
        if size is not None and size > fetch_limit:
            return Artifact(dest, dest.name, description, optional=True, download_key="ply", remote_size=size)
        try:
            await self.api.fetch(remote, "ply", dest, max_bytes=fetch_limit)
        except TooLarge:  # no size was announced; all we know is that it is over the limit
            return Artifact(dest, dest.name, description, optional=True, download_key="ply",
                            remote_size=fetch_limit + 1)
        return Artifact(dest, dest.name, description, optional=True, download_key="ply")

    # -- the rest of the Provider interface ------------------------------------------------------
    async def cancel(self, job: Job) -> None:
        """Deleting an unfinished job stops its worker and refunds the scene credit."""
        if job.remote_id:
            await self.api.delete(job.remote_id)

    async def fresh_link(self, job: Job, key: str) -> str:
        if key not in ("ply", "spz") or not job.remote_id:
            raise NotFound("This result has no download link.")
        return await self.api.signed_link(job.remote_id, key)

    def saved_object(self, job: Job) -> SavedObject | None:
        if not job.remote_id:
            return None
        title = job.provider_data.get("title") or job.params.get("title") or job.summary
        return SavedObject(provider=self.name, kind="scene", remote_id=job.remote_id, owner_id=job.owner_id,
                           guild_id=job.guild_id, name=strip_marker(str(title))[:100],
                           status=str(job.state) if job.state is not JobState.DONE else "done",
                           data={"job_id": job.id, "public": bool(job.params.get("public"))})

    async def check(self) -> str:
        scenes = await self.api.jobs()
        return f"API key accepted; {len(scenes)} scene(s) on this account"

    async def close(self) -> None:
        await self.net.close()

    # -- scene management for /splat (no job involved) -------------------------------------------
    async def scene(self, remote_id: str) -> SceneDetails:
        return scene_details(await self.api.job(remote_id))

    async def scenes(self) -> list[RemoteScene]:
        return await self.api.jobs()

    async def rename(self, remote_id: str, title: str) -> SceneDetails:
        return scene_details(await self.api.update(remote_id, title=title[:255]))

    async def set_public(self, remote_id: str, public: bool) -> SceneDetails:
        return scene_details(await self.api.update(remote_id, public=public))

    async def delete_scene(self, remote_id: str) -> bool:
        return await self.api.delete(remote_id)

    async def link(self, remote_id: str, kind: str) -> str:
        return await self.api.signed_link(remote_id, kind)

    async def link_size(self, link: str) -> int | None:
        return await self.api.head_size(link)

    async def fetch(self, remote_id: str, kind: str, dest: Path, max_bytes: int) -> int:
        return await self.api.fetch(remote_id, kind, dest, max_bytes=max_bytes)

