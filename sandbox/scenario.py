"""A loopback stand-in for the Scenario API (Video to Layers), faithful to shared/contracts/scenario.md.

Three origins, like the real service: the API (`/v1/...`, Basic or Bearer auth, JSON errors
`{"reason", "trace_id"}`), an S3-style part store for presigned multipart uploads
(`sandbox.scenario_s3`) and a CloudFront-style signed CDN for asset files (`sandbox.scenario_cdn`).
Jobs move queued -> warming-up -> in-progress -> finalizing -> success on timers, and a success
carries real VP9+alpha WebM layers. Layer naming (the contract is silent): asset `description` and
`metadata.name` are "background", "person 1", "person 2", ... in `outputIndex` order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.base import SandboxService, json_response
from sandbox.scenario_cdn import SignedCdn
from sandbox.scenario_media import NotAVideo, layer_size, probe_video, render_layers
from sandbox.scenario_records import (
    LAYERS_MODEL_ID,
    TERMINAL,
    AssetRecord,
    JobRecord,
    UploadRecord,
    iso,
    layer_cost,
    layers_model_json,
    new_id,
)
from sandbox.scenario_rules import Rejected, check_layers_inputs, check_upload
from sandbox.scenario_s3 import AssemblyError, PartStore

DEFAULT_HINT = "Describe the objects to separate more specifically, or try a video with clearer subjects."


def layer_name(index: int) -> str:
    return "background" if index == 0 else f"person {index}"


def api_error(status: int, reason: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    """First-party error shape: `reason` first, extra fields, and a trace id."""
    return json_response({"reason": reason, **extra, "trace_id": new_id("tr")}, status, headers)


class ScenarioSandbox(SandboxService):
    name = "scenario"

    def __init__(self, *, api_key: str = "sandbox-scenario-key", api_secret: str = "sandbox-scenario-secret",
                 bearer_token: str | None = "sandbox-scenario-jwt", upload_validate_seconds: float = 0.2,
                 queue_seconds: float = 0.2, warmup_seconds: float = 0.1, run_seconds: float = 0.4,
                 cdn_url_ttl: float = 3600, part_url_ttl: float = 3600, max_parallel_jobs: int = 3,
                 layer_seconds: float = 1.0, layer_fps: int = 12, layers_found: int = 3,
                 cancellable_custom_jobs: bool = False, workdir: Path | str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(**({"clock": clock} if clock else {}))
        self.api_key, self.api_secret, self.bearer_token = api_key, api_secret, bearer_token
        self.upload_validate_seconds, self.queue_seconds = upload_validate_seconds, queue_seconds
        self.warmup_seconds, self.run_seconds = warmup_seconds, run_seconds
        self.cdn_url_ttl, self.part_url_ttl = cdn_url_ttl, part_url_ttl
        self.max_parallel_jobs, self.layers_found = max_parallel_jobs, layers_found
        self.layer_seconds, self.layer_fps = layer_seconds, layer_fps
        self.cancellable_custom_jobs = cancellable_custom_jobs
        self._own_dir = workdir is None
        self.root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="scenario-sandbox-"))
        self.s3 = PartStore(self.root, self.clock)
        self.cdn = SignedCdn(self.clock)
        self.uploads: dict[str, UploadRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.assets: dict[str, AssetRecord] = {}
        self.paid_jobs = 0  # generate calls that created (and billed) a job; dry runs excluded
        self._job_scripts: list[tuple[str, str | None, str | None]] = []
        self._upload_failures: list[str] = []
        #: scripting knobs for the odd corners (see the methods below)
        self.empty_job_pages = 0
        self.omit_upload_entity_id = False
        self._expired_part_uploads = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._job_tasks: dict[str, asyncio.Task[None]] = {}
        self._started = self.clock()

    # -- scripting ------------------------------------------------------------------------------
    def fail_next_job(self, error: str = "No separable objects found", hint: str | None = DEFAULT_HINT) -> None:
        """The next generate call's job runs, then ends in `failure` with metadata.error/hint."""
        self._job_scripts.append(("fail", error, hint))

    def stick_next_job(self) -> None:
        """The next job stays `in-progress` forever (progress stalls at 0.9), like a hung worker."""
        self._job_scripts.append(("stuck", None, None))

    def fail_next_upload(self, message: str = "The file could not be imported") -> None:
        """The next completed upload ends `failed` with this errorMessage, whatever its content."""
        self._upload_failures.append(message)

    def expire_part_urls(self, uploads: int = 1) -> None:
        """The next `uploads` uploads get part URLs that have already expired (S3 answers 403)."""
        self._expired_part_uploads += uploads

    def paginate_with_empty_pages(self, empty: int = 2) -> None:
        """`GET /jobs` serves `empty` empty pages (each with a `nextPaginationToken`) before every
        page of jobs, as the SDK warns a real listing may."""
        self.empty_job_pages = empty

    def import_without_entity_id(self, omit: bool = True) -> None:
        """Imported uploads do not carry `entityId` (the upload's job metadata still records it)."""
        self.omit_upload_entity_id = omit

    def add_other_jobs(self, count: int) -> list[str]:
        """`count` finished layer jobs made just now by other clients of the same project (they
        fill the newest-first job list, as a busy team's would). Not counted in `paid_jobs`."""
        ids = []
        for _ in range(count):
            now = self.clock()
            job = JobRecord(new_id("job"), "custom", now, {"video": new_id("asset"), "separationInstruction": "x",
                                                           "maxLayers": 2, "modelId": LAYERS_MODEL_ID})
            job.set_status("queued", now, 0.0)
            job.set_status("success", now, 1.0)
            self.jobs[job.id] = job
            ids.append(job.id)
        return ids

    def cooldown(self, method: str = "*", path: str = r"^/v1/", seconds: int = 2, times: int | None = 1) -> None:
        """A first-party style 429: `Retry-After` plus `{"reason": "cooldown", "remainingSeconds"}`."""
        self.faults.add(method, path, 429, {"reason": "cooldown", "remainingSeconds": seconds},
                        headers={"Retry-After": str(seconds)}, times=times)

    def env_lines(self) -> dict[str, str]:
        return {"SCENARIO_BASE_URL": self.base_url + "/v1", "SCENARIO_API_KEY": self.api_key,
                "SCENARIO_API_SECRET": self.api_secret, "SCENARIO_ALLOWED_HOSTS": self.storage_hosts()}

    def asset_url(self, asset_id: str) -> str:
        """A freshly signed CDN URL for an asset's file (what `GET /assets/{id}` returns)."""
        asset = self.assets[asset_id]
        return self.cdn.sign(f"{asset.id}{asset.path.suffix}", self.cdn_url_ttl)

    # -- lifecycle ------------------------------------------------------------------------------
    def extra_apps(self) -> dict[str, web.Application]:
        return {"s3": self.s3.build_app(), "cdn": self.cdn.build_app()}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        base = await super().start(host, port)
        self.s3.base_url, self.cdn.base_url = self.urls["s3"], self.urls["cdn"]
        return base

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop()
        if self._own_dir:
            await asyncio.to_thread(shutil.rmtree, self.root, True)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_post("/v1/uploads", self.create_upload)
        r.add_get("/v1/uploads/{id}", self.get_upload)
        r.add_post("/v1/uploads/{id}/action", self.upload_action)
        r.add_post("/v1/generate/custom/{model_id}", self.generate)
        r.add_get("/v1/jobs", self.list_jobs)
        r.add_get("/v1/jobs/{id}", self.get_job)
        r.add_post("/v1/jobs/{id}/action", self.job_action)
        r.add_get("/v1/assets/{id}", self.get_asset)
        r.add_post("/v1/assets/{id}/download", self.download_asset)
        r.add_get("/v1/models/{id}", self.get_model)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{self.api_key}:{self.api_secret}".encode()).decode()
        if not header:
            return api_error(401, "Unauthorized: missing Authorization header (Basic api key/secret or Bearer)")
        if header != basic and not (self.bearer_token and header == f"Bearer {self.bearer_token}"):
            return api_error(401, "Unauthorized: invalid API key or secret")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return api_error(404, f"Route {request.method} {request.path} not found")
        except web.HTTPMethodNotAllowed:
            return api_error(405, f"Method {request.method} not allowed on {request.path}")

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Rejected("The request body is not valid JSON") from exc

    # -- uploads --------------------------------------------------------------------------------
    async def create_upload(self, request: web.Request) -> web.Response:
        try:
            body = await self._json(request)
            spec = check_upload(body if isinstance(body, dict) else {})
        except Rejected as exc:
            return api_error(400, str(exc))
        now, upload_id = self.clock(), new_id("upload")
        parts = []
        signed_at = None
        if self._expired_part_uploads > 0:  # signed long enough ago to have expired already
            self._expired_part_uploads -= 1
            signed_at = now - self.part_url_ttl - 60
        for number in range(1, spec.parts + 1):
            url, expires = self.s3.presign(upload_id, number, self.part_url_ttl, signed_at=signed_at)
            parts.append({"number": number, "url": url, "expires": iso(expires)})
        job = JobRecord(new_id("job"), "upload", now, {"uploadId": upload_id, "fileName": spec.file_name,
                                                       "kind": spec.kind}, status="pending")
        job.set_status("pending", now)
        self.jobs[job.id] = job
        upload = UploadRecord(upload_id, spec.file_name, spec.content_type, spec.file_size, spec.kind, spec.parts,
                              job.id, now, parts, spec.asset_options)
        self.uploads[upload_id] = upload
        self.s3.open_uploads.add(upload_id)
        return json_response({"upload": upload.to_json()})

    async def get_upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["id"])
        if upload is None:
            return api_error(404, "Upload not found")
        data = upload.to_json()
        if self.omit_upload_entity_id:
            data.pop("entityId", None)
        return json_response({"upload": data})

    async def upload_action(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["id"])
        if upload is None:
            return api_error(404, "Upload not found")
        try:
            body = await self._json(request)
        except Rejected as exc:
            return api_error(400, str(exc))
        if not isinstance(body, dict) or body.get("action") != "complete":
            return api_error(400, 'action must be "complete"')
        if upload.status == "pending":  # a repeated complete just reports the current state
            now = self.clock()
            upload.status, upload.updated = "validating", now
            self.s3.open_uploads.discard(upload.id)
            self.jobs[upload.job_id].set_status("in-progress", now, 0.5)
            self._spawn(self._import_upload(upload))
        return json_response({"upload": upload.to_json()})

    async def _import_upload(self, upload: UploadRecord) -> None:
        """Assemble the parts, probe them as a video (both in threads), then import or fail."""
        await asyncio.sleep(self.upload_validate_seconds)
        job = self.jobs[upload.job_id]
        asset_id = new_id("asset")
        dest = self.root / "assets" / f"{asset_id}{Path(upload.file_name).suffix.lower() or '.mp4'}"
        try:
            await asyncio.to_thread(self.s3.assemble, upload.id, upload.parts_count, upload.file_size, dest)
            props = await asyncio.to_thread(probe_video, dest)
            if self._upload_failures:
                raise AssemblyError(self._upload_failures.pop(0))
        except (AssemblyError, NotAVideo) as exc:
            now = self.clock()
            upload.status, upload.updated, upload.error_message = "failed", now, str(exc)
            job.error = str(exc)
            job.set_status("failure", now)
            return
        now = self.clock()
        asset = AssetRecord(asset_id, dest, upload.content_type, props, "uploaded-video", now,
                            metadata={"fileName": upload.file_name, "name": upload.file_name})
        self.assets[asset_id] = asset
        self.cdn.add(asset_id, dest, upload.content_type)
        upload.status, upload.updated, upload.entity_id = "imported", now, asset_id
        job.output, job.asset_ids = {"entityId": asset_id}, [asset_id]
        job.set_status("success", now, 1.0)

    # -- generate + jobs ------------------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if model_id != LAYERS_MODEL_ID:
            return api_error(404, f"Model {model_id} not found")
        try:
            spec = check_layers_inputs(await self._json(request))
            video = self.assets.get(spec.video)
            if video is None or video.kind != "video":
                raise Rejected(f"Input video must be the id of an imported video asset (got {spec.video!r})")
        except Rejected as exc:
            return api_error(400, str(exc))
        cost = layer_cost(spec.max_layers)
        priced = {"creativeUnitsCost": cost, "creativeUnitsDiscount": 0, "costDetails": {"custom-generation": cost}}
        if request.query.get("dryRun") in ("true", "api"):
            return json_response(priced, status=269)
        running = sum(1 for j in self.jobs.values() if j.job_type == "custom" and j.status not in TERMINAL)
        if running >= self.max_parallel_jobs:
            return api_error(429, f"You have reached the limit of {self.max_parallel_jobs} parallel custom jobs "
                             "for your plan; wait for a running job to finish",
                             details={"actionName": "parallel-custom-jobs", "actionLimit": self.max_parallel_jobs})
        now = self.clock()
        job = JobRecord(new_id("job"), "custom", now, {**spec.echo(), "modelId": model_id},
                        run_seconds=self.run_seconds, cu_cost=cost)
        job.set_status("queued", now, 0.0)
        self.jobs[job.id] = job
        self.paid_jobs += 1
        script = self._job_scripts.pop(0) if self._job_scripts else ("ok", None, None)
        self._job_tasks[job.id] = self._spawn(self._run_job(job, video, spec.max_layers, script))
        return json_response({"job": job.to_json(now), **priced})

    async def _run_job(self, job: JobRecord, video: AssetRecord, max_layers: int,
                       script: tuple[str, str | None, str | None]) -> None:
        """Walk the job through its statuses; layers are rendered in a thread while it 'runs'."""
        await asyncio.sleep(self.queue_seconds)
        job.set_status("warming-up", self.clock())
        await asyncio.sleep(self.warmup_seconds)
        job.run_started = self.clock()
        job.set_status("in-progress", job.run_started, 0.05)
        kind, error, hint = script
        render = None
        if kind == "ok":
            width, height = layer_size(video.properties.get("width"), video.properties.get("height"))
            count = max(1, min(max_layers, self.layers_found))
            render = asyncio.ensure_future(asyncio.to_thread(
                render_layers, self.root / "layers" / job.id, count, width=width, height=height,
                fps=self.layer_fps, seconds=self.layer_seconds))
        await asyncio.sleep(self.run_seconds)
        if kind == "stuck":
            await asyncio.Event().wait()
        if kind == "fail":
            job.error, job.hint = error, hint
            job.set_status("failure", self.clock(), job.current_progress(self.clock()))
            return
        job.set_status("finalizing", self.clock(), 0.95)
        try:
            layers = await render  # type: ignore[misc]
        except Exception as exc:  # a broken encoder must not leave the job hanging
            job.error, job.hint = f"Internal error while extracting layers: {exc}", "Retry the generation."
            job.set_status("failure", self.clock())
            return
        now = self.clock()
        for index, (path, props) in enumerate(layers):
            name = layer_name(index)
            asset = AssetRecord(new_id("asset"), path, "video/webm", props, "video2video", now, output_index=index,
                                description=name, metadata={
                                    "name": name, "parentJobId": job.id, "modelId": LAYERS_MODEL_ID,
                                    "parentId": video.id, "rootParentId": video.id, "outputIndex": index})
            self.assets[asset.id] = asset
            self.cdn.add(asset.id, path, "video/webm")
            job.asset_ids.append(asset.id)
        job.set_status("success", now, 1.0)

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return api_error(404, "Job not found")
        return json_response({"job": job.to_json(self.clock())})

    async def list_jobs(self, request: web.Request) -> web.Response:
        """Newest first; filters `status`, `type`/`types`; `pageSize` + `paginationToken` (an offset)."""
        q = request.query
        types = set(filter(None, q.get("types", "").split(","))) | ({q["type"]} if q.get("type") else set())
        jobs = [j for j in sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)
                if (not q.get("status") or j.status == q["status"]) and (not types or j.job_type in types)]
        try:
            size = max(1, min(100, int(q.get("pageSize", 50))))
            offset, _, served = (q.get("paginationToken") or "0").partition(".")
            start, empties = int(offset), int(served or 0)
        except ValueError:
            return api_error(400, "pageSize and paginationToken must be numbers")
        if empties < self.empty_job_pages:  # an empty page that still promises more
            return json_response({"jobs": [], "nextPaginationToken": f"{start}.{empties + 1}"})
        now = self.clock()
        data: dict[str, Any] = {"jobs": [j.to_json(now) for j in jobs[start:start + size]]}
        if start + size < len(jobs):
            data["nextPaginationToken"] = str(start + size)
        return json_response(data)

    async def job_action(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return api_error(404, "Job not found")
        try:
            body = await self._json(request)
        except Rejected as exc:
            return api_error(400, str(exc))
        if not isinstance(body, dict) or body.get("action") != "cancel":
            return api_error(400, 'action must be "cancel"')
        if job.job_type != "inference" and not (job.job_type == "custom" and self.cancellable_custom_jobs):
            return api_error(400, "Only cancel on inference jobs is supported")
        if job.status in TERMINAL:
            return api_error(400, f"Job is already {job.status}")
        runner = self._job_tasks.pop(job.id, None)
        if runner is not None:  # stop its runner; the job record stays
            runner.cancel()
        job.set_status("canceled", self.clock())
        return json_response({"job": job.to_json(self.clock())})

    # -- assets + models ------------------------------------------------------------------------
    async def get_asset(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["id"])
        if asset is None:
            return api_error(404, "Asset not found")
        return json_response({"asset": asset.to_json(self.asset_url(asset.id))})

    async def download_asset(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["id"])
        if asset is None:
            return api_error(404, "Asset not found")
        try:
            body = await self._json(request)
        except Rejected as exc:
            return api_error(400, str(exc))
        target = body.get("targetFormat") if isinstance(body, dict) else None
        stored = asset.path.suffix.lstrip(".").lower()
        if target and target != stored:
            return api_error(400, f"Audio and video assets only accept their stored format ({stored})")
        return json_response({"url": self.asset_url(asset.id), "mimeType": asset.mime_type})

    async def get_model(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != LAYERS_MODEL_ID:
            return api_error(404, f"Model {request.match_info['id']} not found")
        return json_response({"model": layers_model_json(self._started)})
