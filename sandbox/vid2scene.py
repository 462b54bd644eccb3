"""Loopback stand-in for the vid2scene dev API (`/api/v1/`), written from `shared/contracts/vid2scene.md`
and the open-source server it cites, odd corners included:

- Django routing: trailing slashes everywhere; a slashless path that would match with a slash gets
  Django's production (`DEBUG=False`) APPEND_SLASH answer, a 301 to the slashed path for *every*
  method (a client that follows it turns POST into GET and lands on a 405); unknown paths and
  non-UUID job ids (the `<uuid:>` converter is lowercase-only) get Django's HTML 404.
- DRF: auth errors are 403 `{"detail"}` (401 is downgraded), checked before 405s; field errors on
  PATCH/PUT; `Allow` on every response.
- submit-job mirrors the server's own order of checks and Python coercions (`int()`/`float()`
  errors become 400 with Python's message, anything else a generic 500), including the quirk that
  one silently clamped value makes every other settings error disappear.
- Status follows `get_status_string` exactly, by the clock: one worker takes queued jobs in order;
  a stuck job stays `Generating 3D scene` forever while the worker moves on.
- Files live on an Azure-style blob store (`sandbox.azure_blob`) on another origin; downloads are 302s
  to short-lived read SAS URLs. DELETE removes the video and the PLY only, as the server does.

Scripting (Python only, never extra HTTP routes): `fail_next_job`, `stick_next_job`, `revoke_key`,
`add_api_key`, `set_credits`, `age_blob`, `forget_job`, `faults` (base), `jobs`, `env_lines()`.

The pieces: `vid2scene_http` (routing, DRF plumbing), `vid2scene_auth` (keys), `vid2scene_rules`
(what is accepted), `vid2scene_worker` (job lifecycle), `vid2scene_views` (job shape),
`vid2scene_files` (generated results); this module wires them into the service.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.azure_blob import BlobStore
from sandbox.base import SandboxService
from sandbox.vid2scene_auth import Account, Keys
from sandbox.vid2scene_files import preview_bytes, scene_files
from sandbox.vid2scene_http import (
    API,
    BadBody,
    DrfError,
    ServerError,
    drf,
    find_route,
    options_response,
    redirect,
    request_data,
    server_error,
)
from sandbox.vid2scene_rules import (
    DEFAULT_GAUSSIANS,
    DEFAULT_STEPS,
    GIB,
    MAX_GAUSSIANS,
    MAX_STEPS,
    METHODS,
    MIN_GAUSSIANS,
    MIN_STEPS,
    camera_data_error,
    submission,
    update_values,
)
from sandbox.vid2scene_views import LA, job_body, job_list
from sandbox.vid2scene_worker import PREVIEW_EVERY, SceneJob, Worker, is_video, sync_camera

__all__ = [
    "API", "DEFAULT_GAUSSIANS", "DEFAULT_STEPS", "GIB", "LA", "MAX_GAUSSIANS", "MAX_STEPS", "METHODS",
    "MIN_GAUSSIANS", "MIN_STEPS", "PREVIEW_EVERY", "Account", "BadBody", "DrfError", "SceneJob", "ServerError",
    "Vid2SceneSandbox", "camera_data_error",
]

#: methods the server accepts at submit but can only run from another kind of input
_NEEDS_OTHER_INPUT = {"quest": "quest reconstruction needs a Quest capture zip, not a video",
                      "generate_lod": "generate_lod needs a PLY input, not a video"}
_GENERIC_500 = "An error occurred while processing the request."
_NO_JOB = "No SceneProcessingJob matches the given query."


def _worker_knob(name: str) -> property:
    """A timing that lives on the worker but stays readable and settable on the service."""
    return property(lambda self: getattr(self.worker, name), lambda self, value: setattr(self.worker, name, value))


class Vid2SceneSandbox(SandboxService):
    """vid2scene on loopback. Timings are seconds divided by `speed`; TTLs are SAS lifetimes."""

    name = "vid2scene"
    queue_seconds = _worker_knob("queue_seconds")
    pickup_seconds = _worker_knob("pickup_seconds")
    processing_seconds = _worker_knob("processing_seconds")
    training_seconds = _worker_knob("training_seconds")
    stick_fraction = _worker_knob("stick_fraction")

    def __init__(self, *, api_key: str = "sandbox-vid2scene-key", enterprise: bool = True,
                 queue_seconds: float = 0.6, pickup_seconds: float = 0.1, processing_seconds: float = 0.4,
                 training_seconds: float = 1.5, speed: float = 1.0, gaussians: int = 20_000,
                 credits: int | None = None, max_video_bytes: int = GIB, max_free_video_bytes: int = 450 * 1024 ** 2,
                 upload_url_ttl: float = 120 * 60, download_url_ttl: float = 15 * 60,
                 preview_url_ttl: float = 5 * 60, spz_version: int = 3, seed: int = 0, probe_videos: bool = True,
                 stick_fraction: float = 0.4, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.worker = Worker(queue_seconds=queue_seconds / speed, pickup_seconds=pickup_seconds / speed,
                             processing_seconds=processing_seconds / speed,
                             training_seconds=training_seconds / speed, stick_fraction=stick_fraction)
        self.gaussians, self.spz_version, self.seed, self.probe_videos = gaussians, spz_version, seed, probe_videos
        self.max_video_bytes, self.max_free_video_bytes = max_video_bytes, max_free_video_bytes
        self.upload_url_ttl, self.download_url_ttl, self.preview_url_ttl = upload_url_ttl, download_url_ttl, preview_url_ttl
        self.keys = Keys()
        self.keys.add(api_key, "sandbox-user", enterprise=enterprise, credits=credits)
        self.accounts: dict[str, Account] = self.keys.accounts
        self.jobs: dict[str, SceneJob] = {}
        self._fates: list[tuple[str, str, str]] = []
        #: None: `GET /jobs/` is the open-source server's bare array; a number: DRF's paginated shape
        self.list_page_size: int | None = None
        self._redirects: list[list[Any]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self.workdir = Path()
        self.blobs: BlobStore | None = None

    # -- scripting (sandbox-only; none of this is reachable over HTTP) ------------------------------
    @property
    def credits(self) -> int | None:
        return self.accounts["sandbox-user"].credits

    def set_credits(self, credits: int | None) -> None:
        self.accounts["sandbox-user"].credits = credits

    def revoke_key(self, key: str | None = None) -> None:
        self.keys.revoke(key or self.api_key)

    def add_api_key(self, key: str, *, user: str | None = None, enterprise: bool = True,
                    credits: int | None = None) -> None:
        """Another key; with a new `user` it is someone else whose jobs we must not see."""
        self.keys.add(key, user or "sandbox-user", enterprise=enterprise, credits=credits)

    def fail_next_job(self, reason: str = "COLMAP could not register enough images",
                      during: str = "processing") -> None:
        """The next submitted job ends `Failed` (`during` "processing", or "training" after previews)."""
        self._fates.append(("fail", reason, during))

    def stick_next_job(self) -> None:
        """The next job's worker dies after some previews: `Generating 3D scene` forever."""
        self._fates.append(("stick", "worker died", "training"))

    def age_blob(self, blob_name: str, seconds: float) -> None:
        assert self.blobs is not None
        self.blobs.backdate(blob_name, seconds)

    def forget_job(self, job_id: str) -> None:
        """Drop the RQ record (result TTL passed, Redis flushed): status becomes `Not found`."""
        self.jobs[job_id].rq_record = False

    def status_of(self, job_id: str) -> str:
        now = self.clock()
        self.worker.advance(now)
        return self.worker.status(self.jobs[job_id], now)

    def paginate_job_list(self, page_size: int | None = 2) -> None:
        """`GET /jobs/` answers DRF's paginated shape (`count`/`next`/`previous`/`results`)."""
        self.list_page_size = page_size

    def redirect_next(self, method: str = "GET", path: str = r"^/api/v1/", *, times: int = 1,
                      status: int = 301) -> None:
        """The next `times` matching requests are answered with a redirect to the same URL (as a
        proxy that normalises the address does); a client must follow it for GETs only."""
        self._redirects.append([method.upper(), re.compile(path), times, status])

    def env_lines(self) -> dict[str, str]:
        return {"VID2SCENE_BASE_URL": f"{self.base_url}{API}", "VID2SCENE_API_KEY": self.api_key,
                "VID2SCENE_ALLOWED_HOSTS": self.storage_hosts()}

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.workdir = Path(tempfile.mkdtemp(prefix="vid2scene-sandbox-"))
        self.blobs = BlobStore(self.workdir / "storage", self.clock)
        base = await super().start(host, port)
        self.blobs.base_url = self.urls["blob"]
        self._spawn(asyncio.to_thread(scene_files, self.gaussians, self.seed, self.spz_version))
        return base

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()
        if self.workdir != Path():
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    def extra_apps(self) -> dict[str, web.Application]:
        assert self.blobs is not None, "start() the service first"
        return {"blob": self.blobs.build_app()}

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- HTTP plumbing ---------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        for rule in self._redirects:
            method, pattern, left, status = rule
            if method in ("*", request.method) and pattern.search(request.path) and left > 0:
                rule[2] -= 1
                if rule[2] <= 0:
                    self._redirects.remove(rule)
                return web.Response(status=status, headers={"Location": str(request.rel_url)},
                                    content_type="text/html", charset="utf-8")
        found = find_route(request)
        if isinstance(found, web.Response):
            return found
        (_, view, allowed, title), match = found
        allow = ", ".join((*allowed, "OPTIONS"))
        try:
            user = self.keys.authenticate(request.headers.get("Authorization", ""))
            now = self.clock()
            self.worker.advance(now)
            if request.method == "OPTIONS":
                resp: web.StreamResponse = options_response(title)
            elif request.method not in allowed:
                raise DrfError(405, {"detail": f'Method "{request.method}" not allowed.'})
            else:
                resp = await getattr(self, view)(request, user, now, **match.groupdict())
        except DrfError as exc:
            resp = drf(exc.body, exc.status)
        except ServerError:
            resp = server_error()
        resp.headers["Allow"] = allow
        resp.headers["Vary"] = "Accept"
        return resp

    def _own_job(self, account: Account, job_id: str, missing: dict[str, str]) -> SceneJob:
        job = self.jobs.get(job_id)
        if job is None or job.owner != account.user:
            raise DrfError(404, missing)
        return job

    # -- views -----------------------------------------------------------------------------------------
    async def _upload_url(self, request: web.Request, account: Account, now: float) -> web.Response:
        try:
            data = await request_data(request)
            extension = data.get("file_extension")
        except Exception:  # noqa: BLE001 - the view's blanket except
            raise DrfError(500, {"error": "Failed to generate upload URL."}) from None
        assert self.blobs is not None
        blob_name = f"videos/{uuid.uuid4()}.{extension}"
        token = self.blobs.sas_token(blob_name, "cw", self.upload_url_ttl)
        url = f"{self.blobs.account_url}{self.blobs.container}/{blob_name}?{token}"  # unquoted, like the server
        return drf({"url": url, "blob_name": blob_name})

    async def _submit(self, request: web.Request, account: Account, now: float) -> web.Response:
        try:
            job = await self._create_job(request, account, now)
        except ValueError as exc:
            return drf({"success": False, "error_message": str(exc)}, 400)
        except Exception:  # noqa: BLE001 - the real view turns everything else into this 500
            return drf({"success": False, "error_message": _GENERIC_500}, 500)
        return drf(job_body(job, self.worker, now) | {"success": True}, 201)

    async def _create_job(self, request: web.Request, account: Account, now: float) -> SceneJob:
        data = await request_data(request)
        assert self.blobs is not None
        fields = submission(data, credits=account.credits, blobs=self.blobs, now=now,
                            max_video_bytes=self.max_video_bytes, max_free_video_bytes=self.max_free_video_bytes)
        job = SceneJob(job_id=str(uuid.uuid4()), owner=account.user, uploaded_at=now, camera_written_at=now, **fields)
        if self._fates:
            job.fate, job.fail_reason, job.fail_during = self._fates.pop(0)
        if job.reconstruction_method in _NEEDS_OTHER_INPUT and job.fate == "finish":
            # accepted and paid for, then the worker finds a video where it needs a capture or a PLY
            job.fate, job.fail_reason, job.fail_during = "fail", _NEEDS_OTHER_INPUT[job.reconstruction_method], \
                "processing"
        if account.credits is not None:
            account.credits -= 1
            job.paid = True
        self.jobs[job.job_id] = job
        self.worker.queue.append(job)
        if self.probe_videos and job.fate == "finish":
            self._spawn(self._probe(job))
        return job

    async def _probe(self, job: SceneJob) -> None:
        """The worker cannot reconstruct what is not a video: such a job fails while processing."""
        assert self.blobs is not None
        blob = self.blobs.get(job.video_blob)
        if blob is None or await asyncio.to_thread(is_video, blob.path):
            return
        self.worker.reject(job, self.clock())

    async def _list(self, request: web.Request, account: Account, now: float) -> web.Response:
        items = job_list(self.jobs.values(), account.user)
        if self.list_page_size is None:
            return drf(items)
        # DRF's PageNumberPagination, as a deployment with DEFAULT_PAGINATION_CLASS set answers
        size = max(1, self.list_page_size)
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            raise DrfError(404, {"detail": "Invalid page."}) from None
        if (page - 1) * size >= len(items) and page > 1:
            raise DrfError(404, {"detail": "Invalid page."})

        def link(number: int) -> str | None:
            return str(request.url.with_query({"page": str(number)})) if number >= 1 else None

        more = page * size < len(items)
        return drf({"count": len(items), "next": link(page + 1) if more else None,
                    "previous": link(page - 1) if page > 1 else None,
                    "results": items[(page - 1) * size:page * size]})

    async def _job_view(self, request: web.Request, account: Account, now: float, job_id: str) -> web.StreamResponse:
        job = self._own_job(account, job_id, {"detail": _NO_JOB})
        if request.method in ("GET", "HEAD"):
            return drf(job_body(job, self.worker, now))
        if request.method == "DELETE":
            self._delete(job, account, now)
            return web.Response(status=204)
        try:
            data = await request_data(request)
        except BadBody as exc:
            raise DrfError(exc.status, {"detail": exc.detail}) from None
        sync_camera(job, now)
        values = update_values(data, partial=request.method == "PATCH")
        for key, value in values.items():
            setattr(job, key, value)
        if "camera_data" in values:
            job.camera_written_at = now
        return drf(job_body(job, self.worker, now))

    def _delete(self, job: SceneJob, account: Account, now: float) -> None:
        """Refund an unfinished paid job, delete the video and the PLY (not the SPZ), drop the RQ job."""
        assert self.blobs is not None
        if account.credits is not None and job.paid and not self.worker.finished(job, now):
            account.credits += 1
        self.blobs.delete(job.video_blob)
        self.blobs.delete(f"ply_files/{job.job_id}.ply")
        self.worker.drop(job, now)
        del self.jobs[job.job_id]

    async def _download(self, request: web.Request, account: Account, now: float, job_id: str,
                        file_type: str) -> web.StreamResponse:
        job = self._own_job(account, job_id, {"error": "Job not found"})
        if file_type not in ("ply", "spz"):
            raise DrfError(400, {"error": 'Invalid file type. Must be "ply" or "spz"'})
        if not self.worker.finished(job, now):
            raise DrfError(404, {"error": f"{file_type.upper()} file not available for this job"})
        name = await self._publish(job, file_type)
        if name is None:  # deleted meanwhile
            raise DrfError(404, {"error": "Job not found"})
        return self._redirect(name, self.download_url_ttl)

    async def _preview(self, request: web.Request, account: Account, now: float, job_id: str) -> web.StreamResponse:
        job = self._own_job(account, job_id, {"error": "Job not found"})
        step = self.worker.step(job, now)
        if step is None:
            raise DrfError(400, {"error": "No preview available yet"})
        assert self.blobs is not None
        name = f"preview_images/{job.job_id}_{step}_{step // PREVIEW_EVERY}.jpg"
        if self.blobs.get(name) is None:
            permille = math.floor(step / job.training_num_steps * 1000)
            data = await asyncio.to_thread(preview_bytes, permille, self.seed)
            await self.blobs.put_bytes(name, data, "image/jpeg")
        return self._redirect(name, self.preview_url_ttl)

    async def _publish(self, job: SceneJob, kind: str) -> str | None:
        """Store the job's result files on the blob store the first time they are asked for."""
        assert self.blobs is not None
        name = f"{kind}_files/{job.job_id}.{kind}"
        if self.blobs.get(name) is None:
            ply, spz = await asyncio.to_thread(scene_files, self.gaussians, self.seed, self.spz_version)
            if job.job_id not in self.jobs:
                return None
            await self.blobs.put_file(name, ply if kind == "ply" else spz, "application/octet-stream")
        return name

    def _redirect(self, blob_name: str, ttl: float) -> web.Response:
        assert self.blobs is not None
        return redirect(self.blobs.sas_url(blob_name, "r", ttl))
