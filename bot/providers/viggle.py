"""Viggle: characters (from a picture), scenes (from a clip or a template), and renders that put
characters into scenes, or an image straight onto a driving video ("mix").

One provider, five job kinds. Character/scene/template jobs wait until the object is `ready` and
announce it with its thumbnail; the user keeps it (a SavedObject) for `/viggle render`.
Render/mix jobs poll the public status endpoint and post the MP4 (plus the mask video of a
transparent render), or the CDN link when it is too large. Paid POSTs are sent once, never retried.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from bot.config import ViggleSettings
from bot.media.probe import probe_video_async
from bot.media.transcode import first_frame_jpeg_async
from bot.models import Artifact, Job, RemoteStatus, SavedObject
from bot.net import Net, TooLarge
from bot.paths import job_path
from bot.plain import plain
from bot.providers.base import (
    AuthFailed,
    InputRejected,
    NotFound,
    Provider,
    ProviderLimits,
    SubmissionUnknown,
    Transient,
    job_marker,
    marked_name,
)
from bot.providers.viggle_api import (
    RENDER_CHECK,
    ListIncomplete,
    ViggleApi,
    find_by_marker,
    item_id,
    newest_items,
)
from bot.providers.viggle_inputs import plan_input, spool
from bot.providers.viggle_wire import (
    OBJECT_PHASES,
    ObjectInfo,
    credit_balance,
    error_code,
    object_info,
    object_status,
    render_status,
    safe_text,
)

log = logging.getLogger(__name__)

OBJECT_KINDS = ("character", "scene", "template")
#: the list that tells each object kind's status
_LIST_OF = {"character": "characters", "scene": "scenes", "template": "scenes"}
RENDER_KINDS = ("render", "mix")
DEFAULT_MODEL = "V4_Preview"
#: the largest upload any Discord server takes: a bigger result is only ever linked
DISCORD_MAX_UPLOAD = 100 * 1024 * 1024
#: fetch a clip again just for its first frame only when it is this small
THUMB_SOURCE_BYTES = 50 * 1024 * 1024
#: Viggle answers these when it could not fetch a link we gave it: then we upload the file instead
_FETCH_FAILED = {"CS-ORIV-001", "CS-ORIV-002", "CS-ORIV-007"}
#: which attachment params each kind reads, and the form field names they become
_INPUTS: dict[str, list[tuple[str, str, str]]] = {
    # (param name, media kind, Viggle field stem)
    "character": [("image", "image", "image")],
    "scene": [("video", "video", "video")],
    "mix": [("image", "image", "ref_image"), ("video", "video", "driving_video")],
}


class ViggleProvider(Provider):
    name: ClassVar[str] = "viggle"
    display_name: ClassVar[str] = "Viggle"

    def __init__(self, settings: ViggleSettings, net: Net) -> None:
        self.settings = settings
        self.net = net
        self.limits = ProviderLimits.from_settings(settings)
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        self.api = ViggleApi(net, settings.base_url, key)
        self._unlisted_until: dict[str, float] = {}  # list -> monotonic time it may be asked again

    # -- upload: decide URL or file, spool only when Viggle cannot fetch the link ---------------
    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for param, media, _field in _INPUTS.get(job.kind, []):
            plan = plan_input(job.params.get(param), job.params.get(f"{param}_url"), self.settings.base_url)
            if "url" in plan and "attachment" not in plan:  # a user's link: Viggle would fetch it for us
                await self.net.policy.check_user_url_resolved(plan["url"])
            if "spool" in plan:
                plan = {"path": str(await spool(self.net, plan["spool"], workdir, media)),
                        "attachment": plan["spool"]}
            inputs[param] = plan
        data: dict[str, Any] = {"inputs": inputs, "workdir": str(workdir)}
        if job.kind == "mix":
            seconds = await self._clip_seconds(inputs.get("video") or {}, workdir)
            if seconds is not None:  # Viggle bills the output's seconds: the price, before paying
                data["quote"] = round(seconds * (2 if job.params.get("fast") else 1), 2)
        return data

    async def _clip_seconds(self, plan: dict[str, Any], workdir: Path) -> float | None:
        """How long a mix's driving clip is. A Discord attachment that Viggle fetches itself is
        still read here (streamed to the spool, checked against Viggle's limits) so the render is
        priced, and a clip Viggle would refuse is refused, before anything is paid; a user's own
        link stays unread (None: priced after the render)."""
        if plan.get("path"):
            path = Path(plan["path"])
        elif plan.get("attachment"):
            path = await spool(self.net, plan["attachment"], workdir / "measured", "video")
        else:
            return None
        return (await probe_video_async(path)).duration

    # -- submit: the paid call ----------------------------------------------------------------
    async def submit(self, job: Job) -> tuple[str, dict[str, Any]]:
        inputs = dict(job.provider_data.get("inputs", {}))
        try:
            return await self._submit(job, inputs)
        except InputRejected as exc:
            # Viggle could not read a Discord link we handed it: upload the file and ask once more
            # (a 400 means nothing was created or charged)
            if error_code(exc) not in _FETCH_FAILED:
                raise
            fallback = [p for p, plan in inputs.items() if "url" in plan and plan.get("attachment")]
            if not fallback:
                if any("url" in plan for plan in inputs.values()):
                    raise InputRejected(f"{exc.public}\nViggle fetches links itself: make sure the link is "
                                        "public and points straight at the file.", hint=exc.hint) from exc
                raise
            log.info("job %s: Viggle could not fetch the attachment link; uploading the file", job.id)
            workdir = Path(job.provider_data.get("workdir") or ".")
            media = {p: m for p, m, _ in _INPUTS.get(job.kind, [])}
            for param in fallback:
                path = await spool(self.net, inputs[param]["attachment"], workdir, media[param])
                inputs[param] = {"path": str(path), "attachment": inputs[param]["attachment"]}
            remote_id, data = await self._submit(job, inputs)
            return remote_id, {**data, "inputs": inputs}

    async def _submit(self, job: Job, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        p = job.params
        label = p.get("name") or (f"Template {p['template_id'][:8]}" if job.kind == "template" else job.kind)
        marked = marked_name(label, job)
        if job.kind == "character":
            src = inputs["image"]
            body = await self.api.create_character(marked, image=_path(src), image_url=src.get("url"))
            return _id(body, "character_id"), {"status": body.get("status", "pending")}
        if job.kind == "scene":
            src = inputs["video"]
            body = await self.api.create_scene(marked, model=p.get("model") or DEFAULT_MODEL,
                                               background_mode=p.get("background_mode") or "original",
                                               video=_path(src), video_url=src.get("url"))
            return _id(body, "scene_id"), {"status": body.get("status", "pending"),
                                           "model": p.get("model") or DEFAULT_MODEL}
        if job.kind == "template":
            body = await self.api.import_template(p["template_id"], marked)
            return _id(body, "scene_id"), {"status": body.get("status", "pending"),
                                           "segments": _segments(body.get("segments")),
                                           "model": body.get("model") or DEFAULT_MODEL}
        if job.kind in RENDER_KINDS:
            fields, files = self._render_fields(job, inputs)
            body = await self.api.render(fields, files or None)
            try:
                remote_id = _id(body, "job_id")
            except Transient:  # renders cannot be looked up later: say so now, never start it again
                raise SubmissionUnknown(f"Viggle accepted the render but did not say its id. {RENDER_CHECK}") \
                    from None
            return remote_id, {"mode": body.get("mode"), "status": body.get("status", "queued")}
        raise InputRejected(f"Unknown Viggle job kind {job.kind!r}.")

    def _render_fields(self, job: Job, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
        p = job.params
        mode = p.get("background_mode") or "original"
        fields: dict[str, Any] = {"background_mode": mode, "fast": bool(p.get("fast"))}
        if mode == "solid" and p.get("bg_color"):
            fields["bg_color"] = p["bg_color"]
        files: dict[str, Path] = {}
        if job.kind == "mix":
            fields["model"] = p.get("model") or DEFAULT_MODEL
            for param, _media, stem in _INPUTS["mix"]:
                src = inputs[param]
                if src.get("path"):
                    files[stem] = Path(src["path"])
                else:
                    fields[f"{stem}_url"] = src["url"]
            return fields, files
        fields["scene_id"] = p["scene_id"]
        if p.get("mapping"):
            fields["character_mapping"] = dict(p["mapping"])
        else:
            fields["character_id"] = p["character_id"]
        return fields, files

    async def reconcile(self, job: Job) -> str | None:
        """Characters and scenes can be listed and carry our marker in their name; renders cannot
        be listed at all (and Viggle's `/api` offers no idempotency key), so their outcome is
        unknown: the user is told plainly that it may have been charged and how to check."""
        if job.kind == "character":
            return await find_by_marker(self.api.list_characters, "characters", job)
        if job.kind in ("scene", "template"):
            return await find_by_marker(self.api.list_scenes, "scenes", job)
        raise SubmissionUnknown("The bot was interrupted while starting this render, and Viggle offers no way "
                                f"to look a render up afterwards, so it was not started again. {RENDER_CHECK}")

    # -- poll / collect -----------------------------------------------------------------------
    async def poll(self, job: Job) -> RemoteStatus:
        assert job.remote_id
        if job.kind == "character":
            return object_status(await self.api.get_character(job.remote_id), "character")
        if job.kind in ("scene", "template"):
            return object_status(await self.api.get_scene(job.remote_id), "scene")
        return render_status(await self.api.render_status(job.remote_id))

    batch_status = True
    #: pages of a character or scene list one status scan may read before leaving the rest to `poll`
    batch_max_pages = 3
    #: how long a list found missing (404), or without statuses, is not asked again (only
    #: third-party code documents these lists: they may not exist on every account or version)
    unlisted_seconds = 3600.0

    def can_batch(self, job: Job) -> bool:
        """Characters and scenes can be listed (status included); renders cannot."""
        key = _LIST_OF.get(job.kind)
        return key is not None and time.monotonic() >= self._unlisted_until.get(key, 0.0)

    def _unlisted(self, key: str, why: str) -> None:
        self._unlisted_until[key] = time.monotonic() + self.unlisted_seconds
        log.warning("Viggle: the %s list cannot tell status (%s); %s are polled one by one for the next "
                    "%.0f min", key, why, key, self.unlisted_seconds / 60)

    async def poll_many(self, jobs: Sequence[Job]) -> dict[str, RemoteStatus]:
        """One scan of the character list and one of the scene list, newest first, back to the
        oldest of these jobs, answer them all. A listed object without a status it knows, a scan cut short
        (a busy account) or a list that fails leaves its jobs to `poll`."""
        answers: dict[str, RemoteStatus] = {}
        for key, what, lister in (("characters", "character", self.api.list_characters),
                                  ("scenes", "scene", self.api.list_scenes)):
            wanted = {j.remote_id: j for j in jobs if j.remote_id and _LIST_OF.get(j.kind) == key and self.can_batch(j)}
            if wanted:
                answers |= await self._scan_list(key, what, lister, wanted)
        return answers

    async def _scan_list(self, key: str, what: str, lister, wanted: dict[str, Job]) -> dict[str, RemoteStatus]:
        """The statuses one list tells of `wanted` (remote id -> job); switches the list off when
        it proves missing or status-less."""
        answers: dict[str, RemoteStatus] = {}
        since = min(j.created_at for j in wanted.values()) - timedelta(minutes=5)
        listed = with_status = 0
        try:
            async with contextlib.aclosing(newest_items(lister, key, since, max_pages=self.batch_max_pages)) as items:
                async for item in items:
                    listed += 1
                    with_status += bool(item.get("status"))
                    job = wanted.pop(item_id(item, key), None)
                    if job is not None and str(item.get("status")).lower() in OBJECT_PHASES:
                        status = await self._listed_status(job, item, what)
                        if status is not None:
                            answers[job.id] = status
                    if not wanted:
                        break
        except NotFound:
            self._unlisted(key, "not found")
        except ListIncomplete as exc:
            if exc.unusable:
                self._unlisted(key, "not a list")
            else:
                log.info("Viggle: %s; polling the jobs it did not reach one by one", exc)
        except Transient as exc:
            log.info("Viggle: the %s list could not be read (%s); polling those jobs one by one", key, exc)
        if listed >= 3 and not with_status:  # (one new object may not have its status yet)
            self._unlisted(key, "its objects carry no status")
        return answers

    async def _listed_status(self, job: Job, item: dict[str, Any], what: str) -> RemoteStatus | None:
        """A listed object's status; one the list says is finished is read whole (the list's shape
        is not published, and a saved scene needs its segments). An object that cannot be read
        (404) is left out (None): its own poll handles that, and the list stays in use."""
        status = object_status(item, what)
        if not status.phase.is_terminal:
            return status
        try:
            return await self.poll(job)
        except NotFound:
            log.info("job %s: Viggle lists %s %s as finished but it cannot be read; polling it alone",
                     job.id, what, job.remote_id)
            return None

    async def collect(self, job: Job, status: RemoteStatus, workdir: Path) -> list[Artifact]:
        data = status.data or {}
        if job.kind in OBJECT_KINDS:
            return [await self._object_card(job, data, workdir)]
        cdn = data.get("cdn_url")
        if not cdn:
            fresh = render_status(await self.api.render_status(job.remote_id or ""))
            data = fresh.data
            cdn = data.get("cdn_url")
        if not cdn:
            raise Transient("Viggle reported the render complete but gave no video link yet.")
        video = await self._video(job, "cdn_url", cdn, job_path(workdir, f"viggle-{job.id}.mp4"),
                                  "the rendered video")
        artifacts = [video]
        mask = data.get("mask_cdn_url")
        if mask:
            artifacts.append(await self._video(job, "mask_cdn_url", mask,
                                               job_path(workdir, f"viggle-{job.id}-mask.mp4"),
                                               "the mask video (white = character)"))
        frame = await self._frame(job, video.path, workdir)
        return artifacts + ([frame] if frame else [])

    async def measured_cost(self, job: Job, artifacts: list[Artifact]) -> float | None:
        """Viggle bills a render 1 credit per second of output (2 with fast) and does not say what
        it charged, so the rendered video's length gives the charge."""
        if job.kind not in RENDER_KINDS or not artifacts:
            return None
        try:
            info = await probe_video_async(artifacts[0].path)
        except Exception as exc:  # never fail a paid result over its price
            log.info("job %s: could not measure the render: %s", job.id, exc)
            return None
        return round(info.duration * (2 if job.params.get("fast") else 1), 2)

    async def _frame(self, job: Job, video: Path, workdir: Path) -> Artifact | None:
        """A still of the render: the result card shows it (a card cannot play a video)."""
        try:
            still = await first_frame_jpeg_async(video, job_path(workdir, f"viggle-{job.id}-frame.jpg"), max_side=640)
        except Exception as exc:  # a preview is a nicety: never fail a paid result over it
            log.info("job %s: no frame for the card: %s", job.id, exc)
            return None
        return Artifact(path=still, filename=still.name, description="a frame of the video", optional=True)

    async def _video(self, job: Job, key: str, url: str, dest: Path, description: str) -> Artifact:
        """A render file, downloaded only when some server could take it (otherwise posted as its
        link alone). A CDN link that is refused (403) or gone (expired) is not our key's fault: ask
        Viggle for a fresh link (poll again; for the video itself, the authenticated download
        endpoint) before giving up, and then only for now (Transient)."""
        cap = max(self.upload_limit, DISCORD_MAX_UPLOAD)
        try:
            return await self._fetch_capped(url, dest, description, cap)
        except (AuthFailed, NotFound) as exc:
            log.info("job %s: Viggle's %s was refused (%s); asking for a fresh one", job.id, key, exc)
        fresh = render_status(await self.api.render_status(job.remote_id or "")).data.get(key)
        if fresh and fresh != url:
            try:
                return await self._fetch_capped(fresh, dest, description, cap)
            except (AuthFailed, NotFound) as exc:
                log.info("job %s: the fresh %s was refused too (%s)", job.id, key, exc)
        if key == "cdn_url":
            try:
                await self.api.download_render(job.remote_id or "", dest)
                return Artifact(path=dest, filename=dest.name, description=description, link=fresh or url)
            except (AuthFailed, NotFound) as exc:
                log.info("job %s: Viggle's download endpoint refused too (%s)", job.id, exc)
        raise Transient("Viggle's download link for the finished render was refused (it may have expired); "
                        "the bot will ask for a new one.")

    async def _fetch_capped(self, url: str, dest: Path, description: str, cap: int) -> Artifact:
        size = await self.net.head_size(url)
        if size is not None and size > cap:
            return Artifact(path=dest, filename=dest.name, description=description, link=url, remote_size=size)
        try:
            await self.net.download(url, dest, max_bytes=cap)
        except TooLarge:  # no size was announced; all we know is that it is over the cap
            return Artifact(path=dest, filename=dest.name, description=description, link=url, remote_size=cap + 1)
        return Artifact(path=dest, filename=dest.name, description=description, link=url)

    async def _object_card(self, job: Job, data: dict[str, Any], workdir: Path) -> Artifact:
        """The saved character/scene, announced with its thumbnail (or a short card without one)."""
        what = "character" if job.kind == "character" else "scene"
        name = _display_name(job, data)
        text = f"{what.title()} “{plain(name)}” is ready"
        segments = _segments(data.get("segments")) or job.provider_data.get("segments") or []
        if what == "scene":
            model = data.get("model") or job.provider_data.get("model") or DEFAULT_MODEL
            text += f", {model}"
            if data.get("duration_seconds"):
                text += f", {float(data['duration_seconds']):.1f} s"
            if segments:
                text += f", {len(segments)} people"
        text += f"; pick “{plain(name)}” as `{what}` in `/viggle render`, or use the button on the card."
        thumb = data.get("thumbnail_url")
        if isinstance(thumb, str) and thumb.startswith(("http://", "https://")):
            suffix = ".jpg" if thumb.split("?")[0].lower().endswith((".jpg", ".jpeg")) else ".png"
            dest = job_path(workdir, f"{what}-{job.id}{suffix}")
            try:
                await self.net.download(thumb, dest, max_bytes=10 * 1024 * 1024)
                return Artifact(path=dest, filename=f"{what}-thumbnail{suffix}", description=text, optional=True)
            except (InputRejected, NotFound) as exc:
                log.info("job %s: thumbnail not available: %s", job.id, exc)
        if what == "scene":
            still = await self._scene_still(job, workdir)
            if still is not None:
                return Artifact(path=still, filename="scene-thumbnail.jpg", description=text, optional=True)
        dest = job_path(workdir, f"{what}.txt")
        dest.write_text(f"{text}\n", encoding="utf-8")
        return Artifact(path=dest, filename=f"{what}.txt", description=text)

    async def _scene_still(self, job: Job, workdir: Path) -> Path | None:
        """Viggle gives scenes no thumbnail: take the clip's first frame, from the spooled copy or,
        for a modest attachment Viggle fetched itself, a fresh download of it."""
        source = (job.provider_data.get("inputs") or {}).get("video") or {}
        clip = Path(source["path"]) if source.get("path") else None
        attachment = source.get("attachment") or {}
        try:
            if (clip is None or not clip.is_file()) and attachment.get("url") \
                    and int(attachment.get("size") or 0) <= THUMB_SOURCE_BYTES:
                clip = job_path(workdir, "scene-source.mp4")
                await self.net.download(attachment["url"], clip, max_bytes=THUMB_SOURCE_BYTES)
            if clip is None or not clip.is_file():
                return None
            return await first_frame_jpeg_async(clip, job_path(workdir, "scene-thumbnail.jpg"), max_side=320)
        except Exception as exc:  # a thumbnail is a nicety: never fail the job over it
            log.info("job %s: no scene thumbnail: %s", job.id, exc)
            return None

    # -- cancel, saved objects, account -------------------------------------------------------
    async def cancel(self, job: Job) -> None:
        """Renders are cancelled with a refund; an unfinished character or scene is deleted."""
        if not job.remote_id:
            return
        if job.kind in RENDER_KINDS:
            await self.api.cancel_render(job.remote_id)
        elif job.kind == "character":
            await self.api.delete_character(job.remote_id)
        else:
            await self.api.delete_scene(job.remote_id)

    def saved_object(self, job: Job) -> SavedObject | None:
        if job.kind not in OBJECT_KINDS or not job.remote_id:
            return None
        final = job.provider_data.get("_status") or {}
        kind = "character" if job.kind == "character" else "scene"
        status = final.get("status") or job.provider_data.get("status") or "pending"
        data: dict[str, Any] = {"status": status, "thumbnail_url": final.get("thumbnail_url")}
        if kind == "scene":
            data.update(model=final.get("model") or job.provider_data.get("model") or DEFAULT_MODEL,
                        segments=_segments(final.get("segments")) or job.provider_data.get("segments") or [],
                        duration=final.get("duration_seconds"),
                        background_mode=job.params.get("background_mode"))
        return SavedObject(provider=self.name, kind=kind, remote_id=job.remote_id, owner_id=job.owner_id,
                           guild_id=job.guild_id, name=_display_name(job, final), status=status,
                           data=data)

    async def get_scene(self, scene_id: str) -> ObjectInfo:
        """A scene as Viggle sees it now (for checks at command time)."""
        return object_info(await self.api.get_scene(scene_id))

    async def get_character(self, character_id: str) -> ObjectInfo:
        return object_info(await self.api.get_character(character_id))

    async def credits(self) -> float | None:
        """The account's balance, or None when Viggle does not say."""
        return credit_balance(await self.api.credits())

    async def check(self) -> str:
        balance = await self.credits()
        return f"key accepted; {balance:g} credits" if balance is not None else "key accepted"

    async def close(self) -> None:
        await self.net.close()


def _display_name(job: Job, final: dict[str, Any]) -> str:
    """The user's name for the object, without the marker we add for reconciling."""
    name = job.params.get("name") or str(final.get("name") or "").replace(job_marker(job), "").strip()
    return name or job.params.get("template_id") or job.remote_id or job.id


def _path(src: dict[str, Any]) -> Path | None:
    return Path(src["path"]) if src.get("path") else None


def _id(body: Any, key: str) -> str:
    if isinstance(body, dict):
        for name in (key, "id", "job_id"):
            if body.get(name):
                return str(body[name])
    raise Transient("Viggle accepted the request but its answer had no id.")


def _segments(value: Any) -> list[str]:
    """Segment uuids of a multi-person scene, whatever the list holds (objects or strings)."""
    out: list[str] = []
    for item in value or []:
        uuid = item.get("uuid") or item.get("id") if isinstance(item, dict) else item
        if isinstance(uuid, str) and uuid:
            out.append(uuid)
    return out


__all__ = ["ViggleProvider", "safe_text"]
