"""Loopback stand-in for the Viggle API (`/api/...` on apis.viggle.ai), written from
`shared/contracts/viggle.md`, odd corners included: three error envelopes, an optional `{"data": ...}`
wrapper on character/scene reads, unauthenticated render status, `template_id`/`template_uuid`.

Inputs are checked for real (URLs fetched server-side, videos probed with PyAV), jobs move through
their documented states on asyncio timers, and the CDN (its own origin) serves real MP4 files.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.base import SandboxService, json_response
from sandbox.viggle_cdn import ViggleCdn, output_shape
from sandbox.viggle_errors import CODES, STYLES, ViggleError, error_response, not_found
from sandbox.viggle_inputs import (
    IMAGE_CAP,
    Form,
    Upload,
    VideoInfo,
    check_image,
    fetch_url,
    probe_video,
    read_form,
)
from sandbox.viggle_records import (
    BACKGROUND_MODES,
    MODELS,
    TEMPLATES,
    Character,
    Ledger,
    RenderJob,
    Scene,
    iso,
    new_uuid,
    short_id,
)
from sandbox.viggle_render import RenderPlan, plan_render

#: (status, checkpoint, progress_pct) a render passes through before `complete`
_STAGES = (("processing", "ref_done", 15), ("processing", "dri_done", 35), ("rendering", "bg_done", 55),
           ("rendering", "bg_done", 75), ("merging", "render_done", 90))


class ViggleSandbox(SandboxService):
    """Viggle on loopback. Script it with `fail_next`, `stick_next_render`, `set_credits`, `faults`."""

    name = "viggle"

    def __init__(self, *, api_key: str = "sk-sandbox-viggle", credits: float = 100.0,
                 character_seconds: float = 0.5, scene_seconds: float = 0.5, render_seconds: float = 1.5,
                 wrap_data: bool = False, error_style: str = "nested", fast_available: bool = True,
                 max_video_seconds: float = 300.0, max_video_bytes: int = 500 * 1024 * 1024,
                 max_video_side: int = 4096, max_output_seconds: float = 2.0,
                 scene_credits_per_second: float = 0.0, cdn_url_ttl: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        if error_style not in STYLES:
            raise ValueError(f"error_style must be one of {STYLES}")
        self.api_key, self.wrap_data, self.error_style = api_key, wrap_data, error_style
        self.character_seconds, self.scene_seconds = character_seconds, scene_seconds
        self.render_seconds, self.fast_available = render_seconds, fast_available
        self.max_video_seconds, self.max_video_bytes = max_video_seconds, max_video_bytes
        self.max_video_side, self.max_output_seconds = max_video_side, max_output_seconds
        self.scene_credits_per_second, self.cdn_url_ttl = scene_credits_per_second, cdn_url_ttl
        self.ledger = Ledger(float(credits), clock)
        self.characters: dict[str, Character] = {}
        self.scenes: dict[str, Scene] = {}
        self.jobs: dict[str, RenderJob] = {}
        self._failures: dict[str, list[tuple[str, str]]] = {"render": [], "character": [], "scene": []}
        self._stick = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.workdir = Path()
        self.cdn: ViggleCdn | None = None

    # -- scripting -----------------------------------------------------------------------------
    @property
    def credits(self) -> float:
        return self.ledger.balance

    def set_credits(self, amount: float) -> None:
        self.ledger.set(amount)

    def fail_next(self, kind: str, code: str = "CS-UORC01-009",
                  message: str = "Processing failed, please try again") -> None:
        """The next created render/character/scene ends `failed` with this code and message (refunded)."""
        self._failures[kind].append((code, message))

    def stick_next_render(self) -> None:
        """The next render reaches `processing` and stays there (until cancelled): a hung upstream job."""
        self._stick += 1

    def refuse_cdn(self, times: int = 1, path: str = r"^/renders/") -> None:
        """The next `times` CDN downloads are refused with 403 AccessDenied, as an expired or
        revoked signed link is (the file stays there: a fresh link or the download endpoint works)."""
        self.faults.add("GET", path, 403, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied"
                        "</Code><Message>Request has expired</Message></Error>",
                        headers={"Content-Type": "application/xml"}, times=times)

    def error_in_200(self, method: str, path: str, code: str = "CS-UORC01-008", *, times: int = 1,
                     style: str | None = None) -> None:
        """The next matching request gets Viggle's error envelope with HTTP 200 (older snippets
        test `result.get("error_code")` on a 200); nothing is created or charged."""
        status, message, action = CODES.get(code, (400, "Request failed", None))
        style = style or self.error_style
        if style == "flat":
            body: dict[str, Any] = {"error_code": code, "message": message}
        elif style == "string":
            body = {"detail": message}
        else:
            body = {"detail": {"error_code": code, "message": message, "action": action}}
        self.faults.add(method, path, 200, body, times=times)

    def env_lines(self) -> dict[str, str]:
        return {"VIGGLE_BASE_URL": self.base_url, "VIGGLE_API_KEY": self.api_key,
                "VIGGLE_ALLOWED_HOSTS": self.storage_hosts()}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.workdir = Path(tempfile.mkdtemp(prefix="viggle-sandbox-"))
        (self.workdir / "spool").mkdir()
        self.cdn = ViggleCdn(self.workdir / "cdn", self.clock, self.cdn_url_ttl)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        base = await super().start(host, port)
        self.cdn.base_url = self.urls["cdn"]
        return base

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self.cdn is not None:
            await self.cdn.drain()
        if self._session is not None:
            await self._session.close()
        await super().stop()
        if self.workdir != Path():
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    def extra_apps(self) -> dict[str, web.Application]:
        assert self.cdn is not None, "start() the service first"
        return {"cdn": self.cdn.build_app()}

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=self.max_video_bytes + (1 << 20))
        r = app.router
        r.add_post("/api/characters/preprocess", self._create_character)
        r.add_get("/api/characters", self._list_characters)
        r.add_get("/api/characters/{id}", self._get_character)
        r.add_delete("/api/characters/{id}", self._delete_character)
        r.add_post("/api/scenes/preprocess", self._create_scene)
        r.add_post("/api/scenes/import", self._import_scene)
        r.add_get("/api/scenes", self._list_scenes)
        r.add_get("/api/scenes/{id}", self._get_scene)
        r.add_delete("/api/scenes/{id}", self._delete_scene)
        r.add_post("/api/render", self._create_render)
        r.add_get("/api/render/{job_id}", self._get_render)
        r.add_delete("/api/render/{job_id}", self._cancel_render)
        r.add_get("/api/render/{job_id}/download", self._download)
        r.add_get("/api/credits", self._get_credits)
        return app

    # -- shared helpers (also used by viggle_render) ----------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ViggleError as exc:
            return error_response(exc, self.error_style)

    def _auth(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ViggleError("CS-UORC01-006")
        if token.strip() != self.api_key:
            raise ViggleError("CS-UORC01-007")

    async def fetch(self, url: str, cap: int = IMAGE_CAP) -> Upload | None:
        assert self._session is not None
        return await fetch_url(self._session, url, self.workdir / "spool", cap)

    async def probe(self, upload: Upload | None) -> VideoInfo:
        return await probe_video(upload, max_seconds=self.max_video_seconds, max_bytes=self.max_video_bytes,
                                 max_side=self.max_video_side)

    async def _form(self, request: web.Request) -> Form:
        caps = {"video": self.max_video_bytes, "driving_video": self.max_video_bytes}
        try:
            return await read_form(request, self.workdir / "spool", caps, IMAGE_CAP)
        except (ValueError, AssertionError, aiohttp.ClientPayloadError) as exc:
            raise ViggleError("CS-UORC01-002", f"Malformed form body: {exc}") from exc

    def _spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run a job's timeline in the background; stop() cancels whatever is still running."""
        task = asyncio.ensure_future(coro)
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)

    def _take_failure(self, kind: str) -> tuple[str, str] | None:
        return self._failures[kind].pop(0) if self._failures[kind] else None

    def _read(self, body: dict[str, Any]) -> web.Response:
        return json_response({"data": body} if self.wrap_data else body)

    @staticmethod
    def _page(request: web.Request) -> tuple[int, int]:
        try:
            limit, offset = int(request.query.get("limit", 20)), int(request.query.get("offset", 0))
        except ValueError as exc:
            raise ViggleError("CS-UORC01-002", "limit and offset must be integers") from exc
        if not (1 <= limit <= 100 and offset >= 0):
            raise ViggleError("CS-UORC01-002", "limit must be 1-100 and offset >= 0")
        return limit, offset

    # -- characters ----------------------------------------------------------------------------
    async def _create_character(self, request: web.Request) -> web.Response:
        self._auth(request)
        form = await self._form(request)
        try:
            upload = form.files.get("image")
            if upload is None and form.text("image_url"):
                upload = await self.fetch(form.text("image_url") or "")
            if upload is None and not form.text("image_url"):
                raise ViggleError("CS-ORIV-001", "Reference image is required (PNG/JPG): send image or image_url")
            char = Character(new_uuid(), form.text("name") or Path(upload.filename if upload else "").stem
                             or "Character", self.clock())
            await check_image(upload, self._thumb_path(char.id))
            try:
                self.ledger.charge(1)
            except ViggleError:
                self._thumb_path(char.id).unlink(missing_ok=True)
                raise
        finally:
            form.cleanup()
        self.characters[char.id] = char
        self._spawn(char.id, self._run_character(char, self._take_failure("character")))
        return json_response({"character_id": char.id, "job_id": char.job_id, "status": char.status,
                              "enqueued_at": iso(char.created_at)})

    def _thumb_path(self, character_id: str) -> Path:
        return self.workdir / "cdn" / "thumbnails" / f"{character_id}.png"

    async def _run_character(self, char: Character, failure: tuple[str, str] | None) -> None:
        await asyncio.sleep(self.character_seconds / 2)
        char.status = "processing"
        await asyncio.sleep(self.character_seconds / 2)
        if failure:
            char.error, char.error_message, char.credits_used = failure[0], failure[1], 0
            self.ledger.refund(1)
        elif self.cdn is not None:
            self.cdn.publish(f"thumbnails/{char.id}.png", self._thumb_path(char.id))
        char.status, char.completed_at = ("failed" if failure else "ready"), self.clock()

    def _character_json(self, char: Character) -> dict[str, Any]:
        thumb = self.cdn.url(f"thumbnails/{char.id}.png") if self.cdn and char.status == "ready" else None
        return char.to_json(thumb)

    async def _get_character(self, request: web.Request) -> web.Response:
        self._auth(request)
        char = self.characters.get(request.match_info["id"])
        return self._read(self._character_json(char)) if char else not_found("Character")

    async def _list_characters(self, request: web.Request) -> web.Response:
        self._auth(request)
        limit, offset = self._page(request)
        chars = sorted(self.characters.values(), key=lambda c: c.created_at, reverse=True)
        return json_response({"characters": [self._character_json(c) for c in chars[offset:offset + limit]],
                              "total": len(chars)})

    async def _delete_character(self, request: web.Request) -> web.Response:
        self._auth(request)
        char = self.characters.pop(request.match_info["id"], None)
        if char is None:
            return not_found("Character")
        if task := self._tasks.get(char.id):
            task.cancel()
        self._thumb_path(char.id).unlink(missing_ok=True)
        return json_response({"id": char.id, "deleted": True})

    # -- scenes --------------------------------------------------------------------------------
    async def _create_scene(self, request: web.Request) -> web.Response:
        self._auth(request)
        form = await self._form(request)
        try:
            name, model = form.text("name"), form.text("model") or MODELS[0]
            if not name:
                raise ViggleError("CS-UORC01-002", "name is required")
            if model not in MODELS:
                raise ViggleError("CS-UORC01-002", f"model must be one of {', '.join(MODELS)}, got {model!r}")
            mode = BACKGROUND_MODES.get((form.text("background_mode") or "original").lower())
            if mode is None:
                raise ViggleError("CS-ORIV-011", f"Invalid background mode {form.text('background_mode')!r}")
            upload = form.files.get("video")
            if upload is None and form.text("video_url"):
                upload = await self.fetch(form.text("video_url") or "", self.max_video_bytes)
                if upload is None:
                    raise ViggleError("CS-ORIV-007", "Could not read video file: video_url did not answer 200")
            info = await self.probe(upload)
        finally:
            form.cleanup()
        cost = round(info.duration * self.scene_credits_per_second, 2)
        self.ledger.charge(cost)
        scene = Scene(new_uuid(), name, self.clock(), model, mode, info.duration, info.fps, info.frames,
                      info.width, info.height, credits_used=cost)
        self._add_scene(scene, cost)
        return json_response({"scene_id": scene.id, "job_id": scene.job_id, "status": scene.status,
                              "enqueued_at": iso(scene.created_at)})

    def _add_scene(self, scene: Scene, cost: float) -> None:
        self.scenes[scene.id] = scene
        self._spawn(scene.id, self._run_scene(scene, cost, self._take_failure("scene")))

    async def _run_scene(self, scene: Scene, cost: float, failure: tuple[str, str] | None) -> None:
        await asyncio.sleep(self.scene_seconds)
        if failure:
            scene.error_message, scene.credits_used = failure[1], 0
            self.ledger.refund(cost)
        scene.status, scene.completed_at = ("failed" if failure else "ready"), self.clock()

    async def _import_scene(self, request: web.Request) -> web.Response:
        self._auth(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError) as exc:
            raise ViggleError("CS-UORC01-002", "Send a JSON body with template_id") from exc
        if not isinstance(body, dict):
            raise ViggleError("CS-UORC01-002", "Send a JSON object with template_id")
        wanted = body.get("template_id") or body.get("template_uuid")
        if not wanted:
            raise ViggleError("CS-UORC01-002", "template_id is required")
        template = next((t for t in TEMPLATES if t.id == wanted), None)
        if template is None:
            raise ViggleError("CS-UORC01-002", f"Template not found: {wanted}")
        scene = Scene(new_uuid(), str(body.get("name") or template.name), self.clock(), MODELS[0], "original",
                      template.duration, template.fps, round(template.duration * template.fps), template.width,
                      template.height, segments=[{"uuid": s, "type": "human"} for s in template.segments])
        self._add_scene(scene, 0)
        return json_response({"id": scene.id, "status": scene.status, "credits_reserved": template.credits_reserved,
                              "segments": scene.segments})

    async def _get_scene(self, request: web.Request) -> web.Response:
        self._auth(request)
        scene = self.scenes.get(request.match_info["id"])
        return self._read(scene.to_json()) if scene else not_found("Scene")

    async def _list_scenes(self, request: web.Request) -> web.Response:
        self._auth(request)
        limit, offset = self._page(request)
        scenes = sorted(self.scenes.values(), key=lambda s: s.created_at, reverse=True)
        return json_response({"scenes": [s.to_json() for s in scenes[offset:offset + limit]], "total": len(scenes)})

    async def _delete_scene(self, request: web.Request) -> web.Response:
        self._auth(request)
        scene = self.scenes.pop(request.match_info["id"], None)
        if scene is None:
            return not_found("Scene")
        if task := self._tasks.get(scene.id):
            task.cancel()
        return json_response({"id": scene.id, "deleted": True})

    # -- renders -------------------------------------------------------------------------------
    async def _create_render(self, request: web.Request) -> web.Response:
        self._auth(request)
        form = await self._form(request)
        try:
            plan = await plan_render(self, form)
        finally:
            form.cleanup()
        cost = round(plan.duration * (2 if plan.fast else 1), 2)
        self.ledger.charge(cost)
        job_id = short_id("job", new_uuid())
        job = RenderJob(job_id, plan.mode, plan.model, plan.background_mode, plan.bg_color, plan.duration,
                        plan.width, plan.height, plan.fps, cost, self.clock(), character_ids=plan.character_ids,
                        scene_id=plan.scene_id)
        self.jobs[job_id] = job
        stuck, self._stick = self._stick > 0, max(0, self._stick - 1)
        self._spawn(job_id, self._run_render(job, plan, self._take_failure("render"), stuck))
        return json_response({"job_id": job_id, "status": job.status, "mode": job.mode,
                              "enqueued_at": iso(job.created_at)})

    async def _run_render(self, job: RenderJob, plan: RenderPlan, failure: tuple[str, str] | None,
                          stuck: bool) -> None:
        step = self.render_seconds * (0.5 if plan.fast else 1) / (len(_STAGES) + 1)
        for status, checkpoint, pct in _STAGES:
            await asyncio.sleep(step)
            job.status, job.checkpoint, job.progress_pct = status, checkpoint, pct
            if stuck:
                await asyncio.Event().wait()
            if failure and checkpoint == "dri_done":
                job.status, job.error_code, job.error_message = "failed", failure[0], failure[1]
                job.completed_at = self.clock()
                self.ledger.refund(job.cost)
                return
        assert self.cdn is not None
        shape = output_shape(job.width, job.height, min(job.duration, self.max_output_seconds), job.fps,
                             sum(job.bg_color) % 256 if job.bg_color else 0)
        job.cdn_name = await self.cdn.video(f"renders/{job.job_id}.mp4", shape)
        if job.background_mode == "transparent":
            job.mask_name = await self.cdn.video(f"renders/{job.job_id}_mask.mp4", shape, mask=True)
        await asyncio.sleep(step)
        job.status, job.progress_pct, job.completed_at = "complete", 100, self.clock()

    def _render_urls(self, job: RenderJob) -> tuple[str | None, str | None]:
        if job.status != "complete" or self.cdn is None:
            return None, None
        return (self.cdn.url(job.cdn_name or ""), self.cdn.url(job.mask_name) if job.mask_name else None)

    async def _get_render(self, request: web.Request) -> web.Response:
        """No auth needed (the status page says so); a Bearer header, right or wrong, is ignored."""
        job = self.jobs.get(request.match_info["job_id"])
        return json_response(job.to_json(*self._render_urls(job))) if job else not_found("Job")

    async def _cancel_render(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return not_found("Job")
        if job.terminal:
            raise ViggleError("CS-UORC01-002", f"Job {job.job_id} is already {job.status}")
        if task := self._tasks.get(job.job_id):
            task.cancel()
        job.status, job.completed_at = "cancelled", self.clock()
        self.ledger.refund(job.cost)
        return json_response({"job_id": job.job_id, "status": job.status, "credits_refunded": job.cost})

    async def _download(self, request: web.Request) -> web.Response:
        self._auth(request)
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return not_found("Job")
        cdn_url, _ = self._render_urls(job)
        if cdn_url is None:
            raise ViggleError("CS-UORC01-002", f"Job {job.job_id} is not complete (status: {job.status})")
        raise web.HTTPFound(cdn_url)

    async def _get_credits(self, request: web.Request) -> web.Response:
        self._auth(request)
        return json_response({"balance": self.ledger.balance, "updated_at": iso(self.ledger.updated_at)})
