"""Contract tests of the Scenario sandbox over real HTTP, plus a fidelity check with the official SDK.

The clock is real time plus an offset the tests can push forward, so URL expiry is instant to test
while jobs still advance on their own timers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from sandbox.media import make_video
from sandbox.scenario import ScenarioSandbox
from sandbox.scenario_records import LAYERS_MODEL_ID
from sandbox.scenario_s3 import MIN_PART_SIZE

MIB = 1024 * 1024
GEN = f"/v1/generate/custom/{LAYERS_MODEL_ID}"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sb(clock: Clock):
    service = ScenarioSandbox(clock=clock, upload_validate_seconds=0.05, queue_seconds=0.15, warmup_seconds=0.1,
                              run_seconds=0.4, cdn_url_ttl=600, part_url_ttl=600, layer_seconds=0.5)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def http(sb: ScenarioSandbox):
    async with aiohttp.ClientSession(headers=auth(sb)) as session:
        yield session


@pytest.fixture
async def clip(tmp_path: Path) -> Path:
    return await asyncio.to_thread(make_video, tmp_path / "clip.mp4", seconds=1.0, width=160, height=120)


def auth(sb: ScenarioSandbox) -> dict[str, str]:
    token = base64.b64encode(f"{sb.api_key}:{sb.api_secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def call(http: aiohttp.ClientSession, sb: ScenarioSandbox, method: str, path: str,
               body: Any = None, **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.request(method, sb.base_url + path, json=body, **kw) as resp:
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, data, resp


async def put_part(url: str, data: bytes, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    """Parts go to the S3 origin with a plain session: no Scenario credentials."""
    async with aiohttp.ClientSession() as plain, plain.put(url, data=data, headers=headers or {}) as resp:
        await resp.read()
        return resp


async def upload(http, sb, data: bytes, *, parts: list[int] | None = None, name: str = "clip.mp4",
                 content_type: str = "video/mp4") -> dict[str, Any]:
    """Create, PUT each slice (sizes from `parts`, default one part), complete, poll to a terminal state."""
    sizes = parts or [len(data)]
    status, body, _ = await call(http, sb, "POST", "/v1/uploads", {
        "fileName": name, "contentType": content_type, "fileSize": len(data), "kind": "video",
        "parts": len(sizes)})
    assert status == 200, body
    up = body["upload"]
    assert up["status"] == "pending" and up["partsCount"] == len(sizes) and up["jobId"].startswith("job_")
    offset = 0
    for part, size in zip(up["parts"], sizes, strict=True):
        resp = await put_part(part["url"], data[offset:offset + size], {"Content-Type": content_type})
        assert resp.status == 200 and resp.headers["ETag"].startswith('"')
        offset += size
    status, body, _ = await call(http, sb, "POST", f"/v1/uploads/{up['id']}/action", {"action": "complete"})
    assert status == 200 and body["upload"]["status"] == "validating"
    return await wait_upload(http, sb, up["id"])


async def wait_upload(http, sb, upload_id: str) -> dict[str, Any]:
    for _ in range(200):
        _, body, _ = await call(http, sb, "GET", f"/v1/uploads/{upload_id}")
        if body["upload"]["status"] in ("imported", "failed"):
            return body["upload"]
        await asyncio.sleep(0.03)
    raise AssertionError("upload never settled")


async def wait_job(http, sb, job_id: str) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    seen: list[tuple[str, float]] = []
    for _ in range(400):
        _, body, _ = await call(http, sb, "GET", f"/v1/jobs/{job_id}")
        job = body["job"]
        seen.append((job["status"], job["progress"]))
        if job["status"] in ("success", "failure", "canceled"):
            return job, seen
        await asyncio.sleep(0.03)
    raise AssertionError("job never settled")


async def imported_video(http, sb, clip: Path) -> str:
    up = await upload(http, sb, await asyncio.to_thread(clip.read_bytes))
    assert up["status"] == "imported", up
    return up["entityId"]


async def start_job(http, sb, video: str, **inputs: Any) -> dict[str, Any]:
    status, body, _ = await call(http, sb, "POST", GEN, {"video": video, "separationInstruction":
                                                         "split the people from the background", **inputs})
    assert status == 200, body
    return body


def has_alpha(path: Path) -> bool:
    """Decode with libvpx-vp9 (the native vp9 decoder drops alpha) and look for transparency."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = av.CodecContext.create("libvpx-vp9", "r")
        for packet in container.demux(stream):
            for frame in ctx.decode(packet) if packet.size else ():
                alpha = frame.to_ndarray(format="rgba")[..., 3]
                return frame.format.name == "yuva420p" and alpha.min() < 128 < alpha.max()
    return False


# -- auth + faults ----------------------------------------------------------------------------------
async def test_auth_basic_bearer_and_401(sb: ScenarioSandbox):
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"sandbox-scenario-key:nope").decode()}):
            async with s.get(sb.base_url + "/v1/jobs/job_x", headers=headers) as r:
                body = await r.json()
                assert r.status == 401 and "Unauthorized" in body["reason"] and body["trace_id"]
        for headers in (auth(sb), {"Authorization": f"Bearer {sb.bearer_token}"}):
            async with s.get(sb.base_url + "/v1/jobs/job_x", headers=headers) as r:
                assert r.status == 404 and r.content_type == "application/json"
    assert sb.env_lines() == {"SCENARIO_BASE_URL": sb.base_url + "/v1", "SCENARIO_API_KEY": sb.api_key,
                              "SCENARIO_API_SECRET": sb.api_secret,
                              "SCENARIO_ALLOWED_HOSTS": json.dumps([sb.urls["s3"][7:], sb.urls["cdn"][7:]])}


async def test_cooldown_429_and_5xx_faults(sb, http):
    sb.cooldown("GET", r"/v1/models/", seconds=7)
    status, body, resp = await call(http, sb, "GET", f"/v1/models/{LAYERS_MODEL_ID}")
    assert status == 429 and resp.headers["Retry-After"] == "7"
    assert body == {"reason": "cooldown", "remainingSeconds": 7}
    sb.faults.add("GET", r"/v1/models/", 503, {"reason": "Service unavailable"})
    assert (await call(http, sb, "GET", f"/v1/models/{LAYERS_MODEL_ID}"))[0] == 503
    status, body, _ = await call(http, sb, "GET", f"/v1/models/{LAYERS_MODEL_ID}")
    assert status == 200 and [i["name"] for i in body["model"]["inputs"]] == [
        "video", "separationInstruction", "maxLayers"]
    assert (await call(http, sb, "GET", "/v1/models/model_nope"))[0] == 404


# -- uploads ----------------------------------------------------------------------------------------
async def test_real_video_upload_is_imported_as_an_asset(sb, http, clip):
    up = await upload(http, sb, await asyncio.to_thread(clip.read_bytes))
    assert up["status"] == "imported" and up["entityId"].startswith("asset_") and "errorMessage" not in up
    _, body, _ = await call(http, sb, "GET", f"/v1/assets/{up['entityId']}")
    asset = body["asset"]
    assert asset["kind"] == "video" and asset["source"] == "uploaded-video" and asset["mimeType"] == "video/mp4"
    assert asset["properties"]["width"] == 160 and asset["properties"]["height"] == 120
    assert asset["properties"]["size"] == clip.stat().st_size
    _, body, _ = await call(http, sb, "GET", f"/v1/jobs/{up['jobId']}")  # the Blender plugin's way
    assert body["job"]["jobType"] == "upload" and body["job"]["status"] == "success"
    assert body["job"]["metadata"]["output"]["entityId"] == up["entityId"]


async def test_upload_part_rules_and_failures(sb, http):
    def create(**over):
        return call(http, sb, "POST", "/v1/uploads", {"fileName": "a.mp4", "contentType": "video/mp4",
                                                      "kind": "video", "fileSize": 100, "parts": 1, **over})
    for over, words in [({"fileSize": 5 * MIB, "parts": 2}, "at least"), ({"parts": 10_001}, "10000"),
                        ({"fileName": ""}, "fileName"), ({"contentType": "image/png"}, "contentType"),
                        ({"kind": "banana"}, "kind"), ({"parts": 0}, "parts")]:
        status, body, _ = await create(**over)
        assert status == 400 and words in body["reason"], (over, body)
    # two parts of synthetic bytes: S3 accepts them, Scenario then fails the non-video
    junk = bytes(range(256)) * ((MIN_PART_SIZE + 4096) // 256)
    up = await upload(http, sb, junk, parts=[MIN_PART_SIZE, len(junk) - MIN_PART_SIZE])
    assert up["status"] == "failed" and "could not be read as a video" in up["errorMessage"]
    _, body, _ = await call(http, sb, "GET", f"/v1/jobs/{up['jobId']}")
    assert body["job"]["status"] == "failure" and body["job"]["metadata"]["error"] == up["errorMessage"]
    # a first part under 5 MiB is only caught at completion, like S3's EntityTooSmall
    up = await upload(http, sb, junk, parts=[4096, len(junk) - 4096])
    assert up["status"] == "failed" and "EntityTooSmall" in up["errorMessage"]


async def test_part_urls_expire_and_speak_s3(sb, http, clock, clip):
    data = await asyncio.to_thread(clip.read_bytes)
    _, body, _ = await call(http, sb, "POST", "/v1/uploads", {"fileName": "c.mp4", "contentType": "video/mp4",
                                                              "fileSize": len(data), "kind": "video", "parts": 1})
    up = body["upload"]
    url = up["parts"][0]["url"]
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url and url.startswith(sb.urls["s3"])
    resp = await put_part(url, data, {"Authorization": auth(sb)["Authorization"]})
    assert resp.status == 400  # S3 refuses two auth mechanisms: never send Scenario's header to S3
    assert (await put_part(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), data)).status == 403

    async def chunked():
        yield data

    async with aiohttp.ClientSession() as plain, plain.put(url, data=chunked()) as r:
        assert r.status == 411 and "MissingContentLength" in await r.text()  # S3 wants Content-Length
    clock.offset += 601
    async with aiohttp.ClientSession() as plain, plain.put(url, data=data) as r:
        text = await r.text()
        assert r.status == 403 and r.content_type == "application/xml"
        assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in text
    # completing without the part fails the upload with a clear message
    await call(http, sb, "POST", f"/v1/uploads/{up['id']}/action", {"action": "complete"})
    done = await wait_upload(http, sb, up["id"])
    assert done["status"] == "failed" and "part(s) 1" in done["errorMessage"]


async def test_fail_next_upload(sb, http, clip):
    sb.fail_next_upload("Video is too long for this plan")
    up = await upload(http, sb, await asyncio.to_thread(clip.read_bytes))
    assert up["status"] == "failed" and up["errorMessage"] == "Video is too long for this plan"


# -- generate ---------------------------------------------------------------------------------------
async def test_generate_validation_dry_run_and_concurrency(sb, http, clip):
    video = await imported_video(http, sb, clip)
    base = {"video": video, "separationInstruction": "people vs background"}
    cases = [({"separationInstruction": "x"}, "video"), ({**base, "video": "asset_nope"}, "imported video"),
             ({**base, "separationInstruction": "  "}, "separationInstruction"),
             ({**base, "maxLayers": 0}, "maxLayers"), ({**base, "maxLayers": 11}, "maxLayers"),
             ({**base, "maxLayers": "3"}, "maxLayers"), ({**base, "max_layers": 3}, "Unknown input")]
    for body, words in cases:
        status, data, _ = await call(http, sb, "POST", GEN, body)
        assert status == 400 and words in data["reason"] and data["trace_id"], (body, data)
    assert (await call(http, sb, "POST", "/v1/generate/custom/model_nope", base))[0] == 404
    status, data, _ = await call(http, sb, "POST", GEN, base, params={"dryRun": "true"})
    assert status == 269 and data["creativeUnitsCost"] > 0 and "job" not in data
    assert sb.paid_jobs == 0 and not [j for j in sb.jobs.values() if j.job_type == "custom"]
    sb.max_parallel_jobs = 1
    first = await start_job(http, sb, video)
    assert first["job"]["status"] == "queued" and first["creativeUnitsCost"] > 0
    status, data, _ = await call(http, sb, "POST", GEN, base)
    assert status == 429 and data["details"] == {"actionName": "parallel-custom-jobs", "actionLimit": 1}
    assert sb.paid_jobs == 1
    status, data, _ = await call(http, sb, "POST", f"/v1/jobs/{first['job']['jobId']}/action", {"action": "cancel"})
    assert status == 400 and "inference" in data["reason"]


async def test_job_progresses_to_layers_with_alpha(sb, http, clip, tmp_path):
    video = await imported_video(http, sb, clip)
    started = await start_job(http, sb, video, maxLayers=2)
    job, seen = await wait_job(http, sb, started["job"]["jobId"])
    order = ["queued", "warming-up", "in-progress", "finalizing", "success"]
    statuses = list(dict.fromkeys(s for s, _ in seen))
    assert [s for s in order if s in statuses] == statuses and {"queued", "in-progress", "success"} <= set(statuses)
    assert [h["status"] for h in job["statusHistory"]] == order
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 1
    assert len({p for s, p in seen if s == "in-progress"}) > 1  # rises while running
    assert job["jobType"] == "custom" and job["metadata"]["input"]["maxLayers"] == 2
    assert len(job["metadata"]["assetIds"]) == 2 and job["billing"]["cuCost"] == started["creativeUnitsCost"]
    assets = [(await call(http, sb, "GET", f"/v1/assets/{a}"))[1]["asset"] for a in job["metadata"]["assetIds"]]
    assert [a["outputIndex"] for a in assets] == [0, 1]
    assert [a["description"] for a in assets] == ["background", "person 1"]
    for asset in assets:
        assert asset["mimeType"] == "video/webm" and asset["kind"] == "video" and asset["status"] == "success"
        assert {"size", "width", "height", "duration", "frameRate"} <= set(asset["properties"])
        assert "Key-Pair-Id=SIM" in asset["url"] and asset["url"].startswith(sb.urls["cdn"] + "/_cdn/")
    async with aiohttp.ClientSession() as plain, plain.get(assets[0]["url"]) as r:
        assert r.status == 200 and r.content_type == "video/webm"
        target = tmp_path / "layer0.webm"
        await asyncio.to_thread(target.write_bytes, await r.read())
    assert target.stat().st_size == assets[0]["properties"]["size"]
    assert await asyncio.to_thread(has_alpha, target)


async def test_failed_job_carries_error_and_hint(sb, http, clip):
    video = await imported_video(http, sb, clip)
    sb.fail_next_job("No separable objects found", "Name the objects to separate")
    job, _ = await wait_job(http, sb, (await start_job(http, sb, video))["job"]["jobId"])
    assert job["status"] == "failure" and "assetIds" not in job["metadata"]
    assert job["metadata"]["error"] == "No separable objects found"
    assert job["metadata"]["hint"] == "Name the objects to separate"
    _, listed, _ = await call(http, sb, "GET", "/v1/jobs", params={"status": "failure", "type": "custom"})
    assert [j["jobId"] for j in listed["jobs"]] == [job["jobId"]]


async def test_cdn_urls_expire_and_refetch_gives_a_fresh_one(sb, http, clip, clock):
    video = await imported_video(http, sb, clip)
    url = (await call(http, sb, "GET", f"/v1/assets/{video}"))[1]["asset"]["url"]
    clock.offset += 601
    async with aiohttp.ClientSession() as plain:
        async with plain.get(url) as r:
            assert r.status == 403 and "<Code>AccessDenied</Code>" in await r.text()
        fresh = (await call(http, sb, "GET", f"/v1/assets/{video}"))[1]["asset"]["url"]
        _, dl, _ = await call(http, sb, "POST", f"/v1/assets/{video}/download", {})
        for good in (fresh, dl["url"]):
            async with plain.get(good) as r:
                assert r.status == 200 and len(await r.read()) == clip.stat().st_size
        async with plain.get(url.split("?")[0]) as r:
            assert r.status == 403


async def test_custom_job_cancel_when_enabled(sb, http, clip):
    sb.cancellable_custom_jobs = True
    video = await imported_video(http, sb, clip)
    job_id = (await start_job(http, sb, video))["job"]["jobId"]
    status, body, _ = await call(http, sb, "POST", f"/v1/jobs/{job_id}/action", {"action": "cancel"})
    assert status == 200 and body["job"]["status"] == "canceled"
    await asyncio.sleep(0.3)
    assert sb.jobs[job_id].status == "canceled"


# -- fidelity: the official SDK parses every response into its models ------------------------------
async def test_official_sdk_round_trip_strict(sb, clip):
    from scenario_sdk import (
        APIResponseValidationError,
        AsyncScenario,
        DefaultAioHttpClient,
        RateLimitError,
        Scenario,
    )

    data = await asyncio.to_thread(clip.read_bytes)
    client = Scenario(api_key=sb.api_key, api_secret=sb.api_secret, base_url=sb.base_url + "/v1",
                      max_retries=0, timeout=10, _strict_response_validation=True)

    created = await asyncio.to_thread(client.uploads.create, file_name="clip.mp4", content_type="video/mp4",
                                      file_size=len(data), kind="video", parts=1)
    assert created.upload.status == "pending" and created.upload.parts_count == 1
    resp = await put_part(created.upload.parts[0].url, data, {"Content-Type": "video/mp4"})
    assert resp.status == 200
    done = await asyncio.to_thread(client.uploads.trigger_action, created.upload.id, action="complete")
    assert done.upload.status == "validating"
    for _ in range(100):
        got = await asyncio.to_thread(client.uploads.retrieve, created.upload.id)
        if got.upload.status == "imported":
            break
        await asyncio.sleep(0.03)
    asset_id = got.upload.entity_id
    assert asset_id and sb.requests_to("/v1/uploads")[0].headers["Authorization"].startswith("Basic ")

    model = await asyncio.to_thread(client.models.retrieve, LAYERS_MODEL_ID)
    assert [i.name for i in model.model.inputs] == ["video", "separationInstruction", "maxLayers"]
    run = await asyncio.to_thread(client.generate.run_model, LAYERS_MODEL_ID, body={
        "video": asset_id, "separationInstruction": "people from background", "maxLayers": 6})
    assert run.job.status == "queued" and run.creative_units_cost and run.job.job_type == "custom"
    for _ in range(200):
        job = (await asyncio.to_thread(client.jobs.retrieve, run.job.job_id)).job
        if job.status in ("success", "failure"):
            break
        await asyncio.sleep(0.03)
    assert job.status == "success" and len(job.metadata.asset_ids) == 3 and job.billing.cu_cost > 0
    layers = [(await asyncio.to_thread(client.assets.retrieve, a)).asset for a in job.metadata.asset_ids]
    assert [(a.output_index, a.mime_type) for a in layers] == [(i, "video/webm") for i in range(3)]
    assert layers[0].properties.width and layers[0].url.startswith(sb.urls["cdn"])
    link = await asyncio.to_thread(client.assets.download.request, layers[0].id)
    assert link.url.startswith(sb.urls["cdn"]) and link.mime_type == "video/webm"
    page = await asyncio.to_thread(client.jobs.list, type="custom")
    assert [j.job_id for j in page.jobs] == [run.job.job_id]

    # the SDK's error taxonomy sees our error bodies; dryRun parses leniently (no job in a 269)
    lenient = Scenario(api_key=sb.api_key, api_secret=sb.api_secret, base_url=sb.base_url + "/v1", max_retries=0)
    estimate = await asyncio.to_thread(lenient.generate.run_model, LAYERS_MODEL_ID, dry_run="true",
                                       body={"video": asset_id, "separationInstruction": "x"})
    assert estimate.creative_units_cost == 50
    sb.cooldown("GET", r"/v1/jobs/", seconds=1)
    with pytest.raises(RateLimitError) as err:
        await asyncio.to_thread(client.jobs.retrieve, run.job.job_id)
    assert err.value.body["reason"] == "cooldown"
    sb.faults.add("GET", r"/v1/jobs/", 200, {"job": {"jobId": "job_x", "status": "done"}})
    with pytest.raises(APIResponseValidationError):  # strict mode really checks shapes
        await asyncio.to_thread(client.jobs.retrieve, run.job.job_id)

    async with AsyncScenario(api_key=sb.api_key, api_secret=sb.api_secret, base_url=sb.base_url + "/v1",
                             max_retries=0, http_client=DefaultAioHttpClient(),
                             _strict_response_validation=True) as aclient:
        again = await aclient.jobs.retrieve(run.job.job_id)
        assert again.job.metadata.asset_ids == job.metadata.asset_ids
