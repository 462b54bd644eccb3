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
"""

from __future__ import annotations

import asyncio
import atexit
import json
import math
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import av
from aiohttp import web

from sandbox import splatgen
from sandbox.azure_blob import BlobStore
from sandbox.base import SandboxService, json_response

LA = ZoneInfo("America/Los_Angeles")
API = "/api/v1"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
METHODS = ("glomap", "colmap", "vggt", "quest", "generate_lod")
MIN_GAUSSIANS, MAX_GAUSSIANS, DEFAULT_GAUSSIANS = 100_000, 2_000_000, 1_000_000
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 5_000, 40_000, 25_000
PREVIEW_EVERY = 500  # training steps between preview images (the first one appears at this step)
GIB = 1024 ** 3
_GENERIC_500 = "An error occurred while processing the request."
_NO_JOB = "No SceneProcessingJob matches the given query."
_HTML_404 = ('<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
             '  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n')
_HTML_500 = ('<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n'
             '  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n')
#: (path regex, view, allowed methods, DRF view name for OPTIONS)
_ROUTES = (
    (re.compile(rf"^{API}/generate-upload-url/$"), "_upload_url", ("POST",), "Generate Upload Url"),
    (re.compile(rf"^{API}/submit-job/$"), "_submit", ("POST",), "Submit Job"),
    (re.compile(rf"^{API}/jobs/$"), "_list", ("GET", "HEAD"), "Job List Api"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/$"), "_job_view", ("GET", "PUT", "PATCH", "DELETE", "HEAD"),
     "Job Retrieve Update Destroy Api"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/download/(?P<file_type>[^/]+)/$"), "_download",
     ("GET", "HEAD"), "Api Job Download File"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/preview/$"), "_preview", ("GET", "HEAD"), "Api Job Preview Image"),
)


class DrfError(Exception):
    """A DRF-rendered JSON error."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class ServerError(Exception):
    """An unhandled exception in the real server: Django's HTML 500 page."""


class BadBody(Exception):
    """`request.data` could not be parsed (DRF ParseError / UnsupportedMediaType)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Account:
    user: str
    enterprise: bool = True
    credits: int | None = None  # None: plain enterprise plan; int: enterprise per-scene (1 credit a job)


@dataclass
class SceneJob:
    """One SceneProcessingJob plus its RQ job's schedule (times are clock seconds)."""

    job_id: str
    owner: str
    title: str
    public: bool
    allow_as_example: bool
    reconstruction_method: str
    training_max_num_gaussians: int
    training_num_steps: int
    remove_background: bool
    apriltag_size_mm: float | None
    camera_data: Any
    video_blob: str
    uploaded_at: float
    fate: str = "finish"  # finish | fail | stick
    fail_reason: str = ""
    fail_during: str = "processing"  # processing | training
    paid: bool = False
    rq_record: bool = True
    taken_at: float | None = None  # the worker popped it from the queue
    started_at: float | None = None  # RQ status `started`
    training_at: float | None = None  # processing done, the trainer runs (previews from here)
    end_at: float | None = None  # finished, failed or stalled; the worker is free from here
    camera_written_at: float = 0.0
    camera_auto_done: bool = False


def _iso_la(ts: float) -> str:
    return datetime.fromtimestamp(ts, LA).isoformat()


def _django_bool(value: Any) -> bool:
    """BooleanField.to_python at save time: anything else is a Django ValidationError (a 500 here)."""
    if value is None:
        raise ServerError("null value in a NOT NULL column")
    if isinstance(value, bool | int | float) and value in (True, False):
        return bool(value)
    if value in ("t", "True", "1"):
        return True
    if value in ("f", "False", "0"):
        return False
    raise ServerError(f"{value!r} value must be either True or False.")


#: DRF BooleanField's sets (1 == True and 0 == 0.0 == False, so the numbers cover the booleans)
_DRF_TRUE = {"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1", 1}
_DRF_FALSE = {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0", 0}

# -- camera_data: the server's JSON schema, with jsonschema's messages and best_match choice ---------
_VECTOR = ("x", "y", "z")
_CAMERA_KEYS = ("lookAt", "position", "up", "cameraType")


def _jtype(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "string": str}[kind])


def _extras(keys: list[str]) -> str:
    verb = "was" if len(keys) == 1 else "were"
    return f"Additional properties are not allowed ({', '.join(repr(k) for k in sorted(keys, key=str))} {verb} unexpected)"


def _object_errors(value: Any, depth: int, props: tuple[str, ...], required: tuple[str, ...], sub) -> list:
    """Errors of an object schema in jsonschema's keyword order: type, properties, required, extras."""
    if not _jtype(value, "object"):
        return [(depth, False, f"{value!r} is not of type 'object'")]
    errors = []
    for key in props:
        if key in value:
            errors += sub(key, value[key])
    errors += [(depth, True, f"{key!r} is a required property") for key in required if key not in value]
    extra = [k for k in value if k not in props]
    if extra:
        errors.append((depth, True, _extras(extra)))
    return errors


def camera_data_error(value: Any) -> str | None:
    """jsonschema's best_match message for `value`, or None when it is valid."""
    def vector(_key: str, vec: Any) -> list:
        return _object_errors(vec, 1, _VECTOR, _VECTOR, lambda k, n: [] if _jtype(n, "number") else
                              [(2, False, f"{n!r} is not of type 'number'")])

    def field(key: str, item: Any) -> list:
        if key != "cameraType":
            return vector(key, item)
        errs = [] if _jtype(item, "string") else [(1, False, f"{item!r} is not of type 'string'")]
        if item not in ("orbital", "drone"):
            errs.append((1, True, f"{item!r} is not one of ['orbital', 'drone']"))
        return errs

    errors = _object_errors(value, 0, _CAMERA_KEYS, ("lookAt", "position", "up"), field)
    if not errors:
        return None
    return max(errors, key=lambda e: (-e[0], not e[1]))[2]


# -- generated files, shared by every sandbox in the process (made once per shape, in a thread) ----
_files_lock = threading.Lock()
_files: dict[tuple[int, int, int], tuple[Path, Path]] = {}
_previews: dict[tuple[int, int], bytes] = {}
_files_dir: list[Path] = []


def _scene_files(n: int, seed: int, version: int) -> tuple[Path, Path]:
    with _files_lock:
        key = (n, seed, version)
        if key not in _files:
            if not _files_dir:
                _files_dir.append(Path(tempfile.mkdtemp(prefix="vid2scene-scenes-")))
                atexit.register(shutil.rmtree, _files_dir[0], True)
            _files[key] = splatgen.write_scene(_files_dir[0], n, seed=seed, spz_version=version)
        return _files[key]


def _preview_bytes(permille: int, seed: int) -> bytes:
    with _files_lock:
        if (permille, seed) not in _previews:
            _previews[(permille, seed)] = splatgen.preview_jpeg(permille / 1000, seed=seed)
        return _previews[(permille, seed)]


def _is_video(path: Path) -> bool:
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except Exception:  # noqa: BLE001 - anything PyAV cannot open is not a video to the worker
        return False


class Vid2SceneSandbox(SandboxService):
    """vid2scene on loopback. Timings are seconds divided by `speed`; TTLs are SAS lifetimes."""

    name = "vid2scene"

    def __init__(self, *, api_key: str = "sandbox-vid2scene-key", enterprise: bool = True,
                 queue_seconds: float = 0.6, pickup_seconds: float = 0.1, processing_seconds: float = 0.4,
                 training_seconds: float = 1.5, speed: float = 1.0, gaussians: int = 20_000,
                 credits: int | None = None, max_video_bytes: int = GIB, max_free_video_bytes: int = 450 * 1024 ** 2,
                 upload_url_ttl: float = 120 * 60, download_url_ttl: float = 15 * 60,
                 preview_url_ttl: float = 5 * 60, spz_version: int = 3, seed: int = 0, probe_videos: bool = True,
                 stick_fraction: float = 0.4, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.api_key = api_key
        self.queue_seconds, self.pickup_seconds = queue_seconds / speed, pickup_seconds / speed
        self.processing_seconds, self.training_seconds = processing_seconds / speed, training_seconds / speed
        self.gaussians, self.spz_version, self.seed, self.probe_videos = gaussians, spz_version, seed, probe_videos
        self.max_video_bytes, self.max_free_video_bytes = max_video_bytes, max_free_video_bytes
        self.upload_url_ttl, self.download_url_ttl, self.preview_url_ttl = upload_url_ttl, download_url_ttl, preview_url_ttl
        self.stick_fraction = stick_fraction
        self.accounts: dict[str, Account] = {"sandbox-user": Account("sandbox-user", enterprise, credits)}
        self._keys: dict[str, str] = {api_key: "sandbox-user"}
        self._revoked: set[str] = set()
        self.jobs: dict[str, SceneJob] = {}
        self._queue: list[SceneJob] = []
        self._running: SceneJob | None = None
        self._free_at = 0.0
        self._fates: list[tuple[str, str, str]] = []
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
        self._revoked.add(key or self.api_key)

    def add_api_key(self, key: str, *, user: str | None = None, enterprise: bool = True,
                    credits: int | None = None) -> None:
        """Another key; with a new `user` it is someone else whose jobs we must not see."""
        user = user or "sandbox-user"
        self.accounts.setdefault(user, Account(user, enterprise, credits))
        self._keys[key] = user

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
        self._advance(now)
        return self._status(self.jobs[job_id], now)

    def env_lines(self) -> dict[str, str]:
        return {"VID2SCENE_BASE_URL": f"{self.base_url}{API}", "VID2SCENE_API_KEY": self.api_key}

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.workdir = Path(tempfile.mkdtemp(prefix="vid2scene-sandbox-"))
        self.blobs = BlobStore(self.workdir / "storage", self.clock)
        base = await super().start(host, port)
        self.blobs.base_url = self.urls["blob"]
        self._spawn(asyncio.to_thread(_scene_files, self.gaussians, self.seed, self.spz_version))
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

    # -- the worker, by the clock ---------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        """Let the single worker take queued jobs, in order, up to `now`."""
        while True:
            if self._running is not None:
                if self._running.end_at is not None and self._running.end_at > now:
                    return
                self._free_at, self._running = self._running.end_at or now, None
            if not self._queue:
                return
            job = self._queue[0]
            taken = max(self._free_at, job.uploaded_at + self.queue_seconds)
            if taken > now:
                return
            self._queue.pop(0)
            self._schedule(job, taken)
            self._running = job

    def _schedule(self, job: SceneJob, taken: float) -> None:
        job.taken_at, job.started_at = taken, taken + self.pickup_seconds
        job.training_at = job.started_at + self.processing_seconds
        if job.fate == "fail" and job.fail_during == "processing":
            job.training_at, job.end_at = None, job.started_at + self.processing_seconds
        elif job.fate == "fail":
            job.end_at = job.training_at + self.training_seconds * 0.5
        elif job.fate == "stick":
            job.end_at = job.training_at + self.training_seconds * self.stick_fraction
        else:
            job.end_at = job.training_at + self.training_seconds

    def _finished(self, job: SceneJob, now: float) -> bool:
        return job.fate == "finish" and job.end_at is not None and now >= job.end_at

    def _step(self, job: SceneJob, now: float) -> int | None:
        """Training step of the newest preview image, None before the first one."""
        if job.training_at is None or now < job.training_at:
            return None
        assert job.end_at is not None
        steps = job.training_num_steps
        if self._finished(job, now):
            return steps // PREVIEW_EVERY * PREVIEW_EVERY
        frac = (min(now, job.end_at) - job.training_at) / max(self.training_seconds, 1e-9)
        step = int(frac * steps) // PREVIEW_EVERY * PREVIEW_EVERY
        return min(step, steps) if step >= PREVIEW_EVERY else None

    def _status(self, job: SceneJob, now: float) -> str:
        """`utils.get_status_string`: files, failed, preview, queued (position), started, raw RQ word."""
        if self._finished(job, now):
            return "Finished"
        if job.rq_record and job.fate == "fail" and job.end_at is not None and now >= job.end_at:
            return "Failed"
        if self._step(job, now) is not None:
            return "Generating 3D scene"
        if not job.rq_record:
            return "Not found"
        if job.taken_at is None:
            return f"Queued - position: {self._queue.index(job) + 1}"
        if job.started_at is not None and now < job.started_at:
            return "Queued"  # popped by the worker, not yet marked started: no position
        return "Processing video"

    def _percent(self, job: SceneJob, now: float) -> float | int | None:
        if self._finished(job, now):
            return 100
        step = self._step(job, now)
        return None if step is None else min(step / job.training_num_steps * 100, 100)

    def _sync_camera(self, job: SceneJob, now: float) -> None:
        """The trainer writes an auto camera when processing ends (keeping cameraType)."""
        if job.camera_auto_done or job.training_at is None or now < job.training_at:
            return
        job.camera_auto_done = True
        if job.camera_written_at > job.training_at:
            return
        kind = job.camera_data.get("cameraType") if isinstance(job.camera_data, dict) else None
        auto: dict[str, Any] = {"lookAt": {"x": 0.0, "y": 0.0, "z": 0.0}, "position": {"x": 0.0, "y": -1.1, "z": -3.2},
                                "up": {"x": 0.0, "y": -1.0, "z": 0.0}}
        job.camera_data = auto | ({"cameraType": kind} if kind else {})

    def _job_body(self, job: SceneJob, now: float) -> dict[str, Any]:
        self._sync_camera(job, now)
        done = self._finished(job, now)
        return {"job_id": job.job_id, "title": job.title, "status": self._status(job, now),
                "percent_complete": self._percent(job, now), "uploaded_at": _iso_la(job.uploaded_at),
                "public": job.public, "reconstruction_method": job.reconstruction_method,
                "training_max_num_gaussians": job.training_max_num_gaussians,
                "training_num_steps": job.training_num_steps, "remove_background": job.remove_background,
                "has_ply": done, "has_spz": done, "camera_data": job.camera_data}

    # -- HTTP plumbing ---------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        found = next(((r, m) for r in _ROUTES if (m := r[0].match(path))), None)
        if found is None:
            if not path.endswith("/") and any(r[0].match(path + "/") for r in _ROUTES):
                target = path + "/" + (f"?{request.query_string}" if request.query_string else "")
                return web.Response(status=301, headers={"Location": target}, content_type="text/html",
                                    charset="utf-8")
            return web.Response(status=404, text=_HTML_404, content_type="text/html", charset="utf-8")
        (_, view, allowed, title), match = found
        allow = ", ".join((*allowed, "OPTIONS"))
        try:
            user = self._authenticate(request)
            now = self.clock()
            self._advance(now)
            if request.method == "OPTIONS":
                resp: web.StreamResponse = self._drf({"name": title, "description": "",
                                                     "renders": ["application/json", "text/html"],
                                                     "parses": ["application/json", "application/x-www-form-urlencoded",
                                                                "multipart/form-data"]})
            elif request.method not in allowed:
                raise DrfError(405, {"detail": f'Method "{request.method}" not allowed.'})
            else:
                resp = await getattr(self, view)(request, user, now, **match.groupdict())
        except DrfError as exc:
            resp = self._drf(exc.body, exc.status)
        except ServerError:
            resp = web.Response(status=500, text=_HTML_500, content_type="text/html", charset="utf-8")
        resp.headers["Allow"] = allow
        resp.headers["Vary"] = "Accept"
        return resp

    @staticmethod
    def _drf(body: Any, status: int = 200) -> web.Response:
        return json_response(body, status)

    def _authenticate(self, request: web.Request) -> Account:
        """UserAPIKeyAuthentication then APIKeyEnterpriseOnly, with DRF's messages (403s)."""
        header = request.headers.get("Authorization", "")
        key = header[8:] if header.startswith("Api-Key ") else ""
        if not key:
            raise DrfError(403, {"detail": "Authentication credentials were not provided."})
        if key in self._revoked:
            raise DrfError(403, {"detail": "API key revoked"})
        if key not in self._keys:
            raise DrfError(403, {"detail": "Invalid API key"})
        account = self.accounts[self._keys[key]]
        if not account.enterprise:
            raise DrfError(403, {"detail": "Enterprise API key required."})
        return account

    @staticmethod
    async def _data(request: web.Request) -> Any:
        """DRF's `request.data`: JSON, form or multipart; empty body is `{}`."""
        ctype = request.content_type
        if ctype == "multipart/form-data":
            return dict(await request.post())
        raw = await request.read()
        if not raw:
            return {}
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise BadBody(400, f"JSON parse error - {exc}") from None
        if ctype == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        raise BadBody(415, f'Unsupported media type "{request.headers.get("Content-Type", "")}" in request.')

    def _own_job(self, account: Account, job_id: str) -> SceneJob:
        job = self.jobs.get(job_id)
        if job is None or job.owner != account.user:
            raise DrfError(404, {"detail": _NO_JOB})
        return job

    # -- views -----------------------------------------------------------------------------------------
    async def _upload_url(self, request: web.Request, account: Account, now: float) -> web.Response:
        try:
            data = await self._data(request)
            extension = data.get("file_extension")
        except Exception:  # noqa: BLE001 - the view's blanket except
            raise DrfError(500, {"error": "Failed to generate upload URL."}) from None
        assert self.blobs is not None
        blob_name = f"videos/{uuid.uuid4()}.{extension}"
        token = self.blobs.sas_token(blob_name, "cw", self.upload_url_ttl)
        url = f"{self.blobs.account_url}{self.blobs.container}/{blob_name}?{token}"  # unquoted, like the server
        return self._drf({"url": url, "blob_name": blob_name})

    async def _submit(self, request: web.Request, account: Account, now: float) -> web.Response:
        try:
            job = await self._create_job(request, account, now)
        except ValueError as exc:
            return self._drf({"success": False, "error_message": str(exc)}, 400)
        except Exception:  # noqa: BLE001 - the real view turns everything else into this 500
            return self._drf({"success": False, "error_message": _GENERIC_500}, 500)
        return self._drf(self._job_body(job, now) | {"success": True}, 201)

    async def _create_job(self, request: web.Request, account: Account, now: float) -> SceneJob:
        """`dev_api.submit_job` + `job_creation.create_processing_job`, check for check."""
        data = await self._data(request)
        title, public, blob_name = data.get("title"), data.get("public", False), data.get("blob_name")
        allow_as_example = data.get("allow_as_example", False)
        method = data.get("reconstruction_method", "glomap")
        remove_background = data.get("remove_background", False)
        gaussians, steps = data.get("training_max_num_gaussians"), data.get("training_num_steps")
        gaussians = int(gaussians) if gaussians is not None else None
        steps = int(steps) if steps is not None else None
        apriltag = data.get("apriltag_size_mm")
        apriltag = float(apriltag) if apriltag else None
        camera_type = data.get("camera_type")
        if camera_type and camera_type not in ["orbital", "drone"]:
            raise ValueError('Invalid camera_type. Must be "orbital" or "drone".')
        if not blob_name:
            raise ValueError("No blob_name provided.")
        if not re.match(r"^videos/[a-f0-9\-]{36}\.[a-z0-9]+$", blob_name):
            raise ValueError("Invalid blob_name format.")
        method = method or "glomap"
        premium = account.credits is None or account.credits >= 1
        if method == "generate_lod":
            cap = 6 * GIB
        else:
            cap = self.max_video_bytes if premium else self.max_free_video_bytes
        self._validate_blob(blob_name, cap, now)
        if method not in METHODS:
            raise ValueError(f"Invalid reconstruction method. Must be one of: {', '.join(METHODS)}")
        if account.credits is not None and account.credits < 1:
            raise ValueError("Insufficient API credits to process scene.")
        gaussians, steps = self._settings(gaussians, steps, apriltag)
        title_text = str(title) if title else blob_name.split("/")[-1]
        if len(title_text) > 255:
            raise ServerError("value too long for type character varying(255)")
        job = SceneJob(
            job_id=str(uuid.uuid4()), owner=account.user, title=title_text, public=_django_bool(public),
            allow_as_example=_django_bool(allow_as_example), reconstruction_method=method,
            training_max_num_gaussians=gaussians or DEFAULT_GAUSSIANS, training_num_steps=steps or DEFAULT_STEPS,
            remove_background=_django_bool(remove_background), apriltag_size_mm=apriltag,
            camera_data=({"lookAt": {"x": 0.0, "y": 0.0, "z": 0.0}, "position": {"x": 0.0, "y": 0.0, "z": -3.0},
                          "up": {"x": 0.0, "y": 1.0, "z": 0.0}, "cameraType": camera_type} if camera_type else None),
            video_blob=blob_name, uploaded_at=now, camera_written_at=now)
        if self._fates:
            job.fate, job.fail_reason, job.fail_during = self._fates.pop(0)
        if account.credits is not None:
            account.credits -= 1
            job.paid = True
        self.jobs[job.job_id] = job
        self._queue.append(job)
        if self.probe_videos and job.fate == "finish":
            self._spawn(self._probe(job))
        return job

    def _validate_blob(self, blob_name: str, cap: int, now: float) -> None:
        assert self.blobs is not None
        blob = self.blobs.get(blob_name)
        if blob is None:
            raise ValueError("Blob not found. Please verify the upload.")
        if cap and blob.size > cap:
            raise ValueError(f"File size ({blob.size / GIB:.2f} GB) exceeds the maximum allowed limit "
                             f"({cap / GIB:.2f} GB).")
        if now - blob.created > 60 * 60:
            raise ValueError("Blob too old. Please upload a new video.")

    @staticmethod
    def _settings(gaussians: int | None, steps: int | None, apriltag: float | None) -> tuple[int | None, int | None]:
        """`validate_user_settings` for an enterprise user: any clamp silently wins over every error."""
        errors, adjusted = [], {}
        if gaussians is not None:
            if gaussians < MIN_GAUSSIANS:
                errors.append(f"Number of gaussians must be at least {MIN_GAUSSIANS:,}")
            elif gaussians > MAX_GAUSSIANS:
                adjusted["g"] = MAX_GAUSSIANS
                errors.append(f"Number of gaussians cannot exceed {MAX_GAUSSIANS:,}")
        if steps is not None:
            if steps < MIN_STEPS:
                errors.append(f"Number of training steps must be at least {MIN_STEPS:,}")
            elif steps > MAX_STEPS:
                adjusted["s"] = MAX_STEPS
                errors.append(f"Number of training steps cannot exceed {MAX_STEPS:,}")
        if apriltag is not None and (apriltag < 1.0 or apriltag > 1000.0):
            errors.append("AprilTag size must be between 1mm and 1000mm.")
        if errors and not adjusted:
            raise ValueError("; ".join(errors))
        return adjusted.get("g", gaussians), adjusted.get("s", steps)

    async def _probe(self, job: SceneJob) -> None:
        """The worker cannot reconstruct what is not a video: such a job fails while processing."""
        assert self.blobs is not None
        blob = self.blobs.get(job.video_blob)
        if blob is None or await asyncio.to_thread(_is_video, blob.path):
            return
        if job.training_at is None or self.clock() < job.training_at:
            job.fate, job.fail_reason, job.fail_during = "fail", "not a readable video", "processing"
            if job.started_at is not None:
                job.training_at, job.end_at = None, job.started_at + self.processing_seconds

    async def _list(self, request: web.Request, account: Account, now: float) -> web.Response:
        return self._drf([{"job_id": j.job_id, "title": j.title} for j in self.jobs.values() if j.owner == account.user])

    async def _job_view(self, request: web.Request, account: Account, now: float, job_id: str) -> web.StreamResponse:
        job = self._own_job(account, job_id)
        if request.method in ("GET", "HEAD"):
            return self._drf(self._job_body(job, now))
        if request.method == "DELETE":
            self._delete(job, account, now)
            return web.Response(status=204)
        try:
            data = await self._data(request)
        except BadBody as exc:
            raise DrfError(exc.status, {"detail": exc.detail}) from None
        self._sync_camera(job, now)
        self._update(job, data, partial=request.method == "PATCH", now=now)
        return self._drf(self._job_body(job, now))

    def _update(self, job: SceneJob, data: Any, *, partial: bool, now: float) -> None:
        """JobDetailSerializer: title, public, camera_data writable; everything else ignored."""
        if not isinstance(data, dict):
            raise DrfError(400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got "
                                                      f"{type(data).__name__}."]})
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        if "title" in data:
            title = data["title"]
            if title is None:
                errors["title"] = ["This field may not be null."]
            elif isinstance(title, bool) or not isinstance(title, str | int | float):
                errors["title"] = ["Not a valid string."]
            elif str(title).strip() == "":
                errors["title"] = ["This field may not be blank."]
            elif len(str(title).strip()) > 255:
                errors["title"] = ["Ensure this field has no more than 255 characters."]
            else:
                values["title"] = str(title).strip()
        elif not partial:
            errors["title"] = ["This field is required."]
        if "public" in data:
            public = data["public"]
            try:
                truth = True if public in _DRF_TRUE else False if public in _DRF_FALSE else None
            except TypeError:
                truth = None
            if public is None:
                errors["public"] = ["This field may not be null."]
            elif truth is None:
                errors["public"] = ["Must be a valid boolean."]
            else:
                values["public"] = truth
        if "camera_data" in data:
            camera = data["camera_data"]
            if isinstance(camera, str):
                try:  # the server reads `e.message` off a JSONDecodeError: AttributeError, a 500
                    camera = json.loads(camera)
                except ValueError:
                    raise ServerError("JSONDecodeError has no attribute 'message'") from None
            elif camera is not None and not isinstance(camera, dict | list):
                raise ServerError("the JSON object must be str, bytes or bytearray")
            problem = None if camera is None else camera_data_error(camera)
            if problem:
                errors["camera_data"] = [f"Invalid camera_data: {problem}"]
            else:
                values["camera_data"] = camera
        if errors:
            raise DrfError(400, errors)
        for key, value in values.items():
            setattr(job, key, value)
        if "camera_data" in values:
            job.camera_written_at = now

    def _delete(self, job: SceneJob, account: Account, now: float) -> None:
        """Refund an unfinished paid job, delete the video and the PLY (not the SPZ), drop the RQ job."""
        assert self.blobs is not None
        if account.credits is not None and job.paid and not self._finished(job, now):
            account.credits += 1
        self.blobs.delete(job.video_blob)
        self.blobs.delete(f"ply_files/{job.job_id}.ply")
        if job in self._queue:
            self._queue.remove(job)
        if self._running is job:
            self._running, self._free_at = None, now  # the worker aborts it
        del self.jobs[job.job_id]

    async def _download(self, request: web.Request, account: Account, now: float, job_id: str,
                        file_type: str) -> web.StreamResponse:
        job = self.jobs.get(job_id)
        if job is None or job.owner != account.user:
            raise DrfError(404, {"error": "Job not found"})
        if file_type not in ("ply", "spz"):
            raise DrfError(400, {"error": 'Invalid file type. Must be "ply" or "spz"'})
        if not self._finished(job, now):
            raise DrfError(404, {"error": f"{file_type.upper()} file not available for this job"})
        name = await self._publish(job, file_type)
        if name is None:  # deleted meanwhile
            raise DrfError(404, {"error": "Job not found"})
        return self._redirect(name, self.download_url_ttl)

    async def _preview(self, request: web.Request, account: Account, now: float, job_id: str) -> web.StreamResponse:
        job = self.jobs.get(job_id)
        if job is None or job.owner != account.user:
            raise DrfError(404, {"error": "Job not found"})
        step = self._step(job, now)
        if step is None:
            raise DrfError(400, {"error": "No preview available yet"})
        assert self.blobs is not None
        name = f"preview_images/{job.job_id}_{step}_{step // PREVIEW_EVERY}.jpg"
        if self.blobs.get(name) is None:
            permille = math.floor(step / job.training_num_steps * 1000)
            data = await asyncio.to_thread(_preview_bytes, permille, self.seed)
            await self.blobs.put_bytes(name, data, "image/jpeg")
        return self._redirect(name, self.preview_url_ttl)

    async def _publish(self, job: SceneJob, kind: str) -> str | None:
        """Store the job's result files on the blob store the first time they are asked for."""
        assert self.blobs is not None
        name = f"{kind}_files/{job.job_id}.{kind}"
        if self.blobs.get(name) is None:
            ply, spz = await asyncio.to_thread(_scene_files, self.gaussians, self.seed, self.spz_version)
            if job.job_id not in self.jobs:
                return None
            await self.blobs.put_file(name, ply if kind == "ply" else spz, "application/octet-stream")
        return name

    def _redirect(self, blob_name: str, ttl: float) -> web.Response:
        assert self.blobs is not None
        location = self.blobs.sas_url(blob_name, "r", ttl)
        return web.Response(status=302, headers={"Location": location}, content_type="text/html", charset="utf-8")
