"""Contract tests for the vid2scene sandbox and its Azure-style blob store, over real HTTP.

Each test asserts what a client of the real service would see (status, body shape, headers, files),
as `shared/contracts/vid2scene.md` and `splat-formats.md` describe them. Most tests drive the job
state machine with a fake clock so they are exact and fast; one watches a job live.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import gzip
import hashlib
import io
import re
import struct
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import zstandard
from PIL import Image

from sandbox import splatgen
from sandbox.media import make_large_file, make_video
from sandbox.vid2scene import Vid2SceneSandbox

UUID_RX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LA_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?-0[78]:00$")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def svc(clock):
    service = Vid2SceneSandbox(clock=clock, gaussians=2000)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v2s") / "clip.mp4", seconds=0.5, width=64, height=48)


def auth(svc: Vid2SceneSandbox, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key or svc.api_key}"}


def api(svc: Vid2SceneSandbox, path: str) -> str:
    return f"{svc.env_lines()['VID2SCENE_BASE_URL']}/{path}"


async def upload(svc, http, data: bytes, ext: str = "mp4") -> str:
    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": ext}, headers=auth(svc)) as r:
        assert r.status == 200
        target = await r.json()
    async with http.put(target["url"], data=data, headers={"x-ms-blob-type": "BlockBlob"}) as r:
        assert r.status == 201, await r.text()
    return target["blob_name"]


async def submit(svc, http, **fields):
    async with http.post(api(svc, "submit-job/"), json=fields, headers=auth(svc)) as r:
        return r.status, await r.json()


async def get_job(svc, http, job_id: str) -> dict:
    async with http.get(api(svc, f"jobs/{job_id}/"), headers=auth(svc)) as r:
        assert r.status == 200
        return await r.json()


def azure_code(text: str) -> str:
    match = re.search(r"<Code>(\w+)</Code>", text)
    return match.group(1) if match else ""


# -- auth and routing ---------------------------------------------------------------------------------
async def test_auth_failures_are_403_detail(svc, http):
    svc.add_api_key("basic-key", user="hobbyist", enterprise=False)
    svc.add_api_key("old-key")
    svc.revoke_key("old-key")
    cases = [({}, "Authentication credentials were not provided."),
             ({"Authorization": "Bearer sandbox-vid2scene-key"}, "Authentication credentials were not provided."),
             (auth(svc, "nope"), "Invalid API key"), (auth(svc, "old-key"), "API key revoked"),
             (auth(svc, "basic-key"), "Enterprise API key required.")]
    for headers, detail in cases:
        async with http.get(api(svc, "jobs/"), headers=headers) as r:
            assert (r.status, await r.json()) == (403, {"detail": detail})
    async with http.post(api(svc, "jobs/")) as r:  # auth is checked before the method
        assert r.status == 403
    async with http.post(api(svc, "jobs/"), headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (405, {"detail": 'Method "POST" not allowed.'})
        assert "GET" in r.headers["Allow"]


async def test_django_routing_corners(svc, http):
    async with http.get(api(svc, "jobs"), headers=auth(svc), allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/api/v1/jobs/"
    async with http.post(api(svc, "submit-job"), json={}, headers=auth(svc), allow_redirects=False) as r:
        assert r.status == 301 and r.headers["Location"] == "/api/v1/submit-job/"
    async with http.post(api(svc, "submit-job"), json={}, headers=auth(svc)) as r:  # followed: POST became GET
        assert (r.status, await r.json()) == (405, {"detail": 'Method "GET" not allowed.'})
    for bad in ("jobs/not-a-uuid/", "jobs/123E4567-E89B-42D3-A456-426614174000/", "nothing-here/"):
        async with http.get(api(svc, bad), headers=auth(svc)) as r:
            assert r.status == 404 and r.content_type == "text/html" and "<h1>Not Found</h1>" in await r.text()
    async with http.get(api(svc, "jobs/123e4567-e89b-42d3-a456-426614174000/"), headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (404, {"detail": "No SceneProcessingJob matches the given query."})


# -- blob store ----------------------------------------------------------------------------------------
async def test_upload_url_and_put_blob(svc, http, video):
    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": "mp4"}, headers=auth(svc)) as r:
        assert r.status == 200
        target = await r.json()
    assert re.fullmatch(r"videos/[0-9a-f-]{36}\.mp4", target["blob_name"])
    parts = urlsplit(target["url"])
    assert f"{parts.scheme}://{parts.netloc}" == svc.urls["blob"] != svc.urls["api"]
    assert parts.path.endswith(f"/{target['blob_name']}")
    query = parse_qs(parts.query)
    assert query["sp"] == ["cw"] and query["sr"] == ["b"] and query["sv"] and query["sig"]
    expiry = calendar.timegm(time.strptime(query["se"][0], "%Y-%m-%dT%H:%M:%SZ"))
    assert 119 * 60 < expiry - svc.clock() <= 120 * 60
    data = video.read_bytes()
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "video/mp4"}
    async with http.put(target["url"], data=data, headers=headers) as r:
        assert r.status == 201 and await r.read() == b""
        assert r.headers["Content-MD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert r.headers["x-ms-request-server-encrypted"] == "true"
        for name in ("ETag", "Last-Modified", "x-ms-request-id", "x-ms-version", "Date"):
            assert r.headers.get(name), name
    blob = svc.blobs.get(target["blob_name"])
    assert blob.size == len(data) and blob.created == svc.clock()


async def test_put_without_blob_type_is_xml_400(svc, http):
    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": "mp4"}, headers=auth(svc)) as r:
        url = (await r.json())["url"]
    async with http.put(url, data=b"abc") as r:
        text = await r.text()
        assert r.status == 400 and r.content_type == "application/xml"
        assert text.startswith('<?xml version="1.0" encoding="utf-8"?><Error><Code>MissingRequiredHeader</Code>')
        assert "<HeaderName>x-ms-blob-type</HeaderName>" in text and "RequestId:" in text


async def test_sas_signature_expiry_and_permission(svc, http, clock):
    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": "mp4"}, headers=auth(svc)) as r:
        url = (await r.json())["url"]
    bb = {"x-ms-blob-type": "BlockBlob"}
    tampered = re.sub(r"sp=cw", "sp=rcw", url)
    async with http.put(tampered, data=b"x", headers=bb) as r:
        assert r.status == 403 and azure_code(await r.text()) == "AuthenticationFailed"
    async with http.get(url) as r:  # a write SAS cannot read
        assert r.status == 403 and azure_code(await r.text()) == "AuthorizationPermissionMismatch"
    clock.advance(121 * 60)
    async with http.put(url, data=b"x", headers=bb) as r:
        text = await r.text()
        assert r.status == 403 and azure_code(text) == "AuthenticationFailed" and "Signed expiry time" in text


async def test_block_upload_and_block_list(svc, http):
    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": "mp4"}, headers=auth(svc)) as r:
        target = await r.json()
    chunks = [b"A" * 1000, b"B" * 500, b"C" * 7]
    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(3)]
    for block_id, chunk in zip(ids, chunks, strict=True):
        async with http.put(target["url"], params={"comp": "block", "blockid": block_id}, data=chunk) as r:
            assert r.status == 201 and r.headers["x-ms-request-server-encrypted"] == "true"
    xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    async with http.put(target["url"], params={"comp": "blocklist"}, data=xml) as r:
        assert r.status == 201 and r.headers["ETag"]
    blob = svc.blobs.get(target["blob_name"])
    assert blob.path.read_bytes() == b"".join(chunks)
    bad = "<BlockList><Latest>" + base64.b64encode(b"block-9999").decode() + "</Latest></BlockList>"
    async with http.put(target["url"], params={"comp": "blocklist"}, data=bad) as r:
        assert r.status == 400 and azure_code(await r.text()) == "InvalidBlockList"


async def test_large_put_streams_to_disk(svc, http, tmp_path):
    big = make_large_file(tmp_path / "big.mp4", 48 * 1024 * 1024)

    async def body():
        with big.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    async with http.post(api(svc, "generate-upload-url/"), json={"file_extension": "mp4"}, headers=auth(svc)) as r:
        target = await r.json()
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Length": str(big.stat().st_size)}
    async with http.put(target["url"], data=body(), headers=headers) as r:
        assert r.status == 201
    assert svc.blobs.get(target["blob_name"]).size == big.stat().st_size


# -- submit-job ----------------------------------------------------------------------------------------
async def test_submit_job_returns_full_object(svc, http, video):
    blob = await upload(svc, http, video.read_bytes())
    status, body = await submit(svc, http, blob_name=blob, camera_type="drone")
    assert status == 201 and body["success"] is True
    assert UUID_RX.match(body["job_id"]) and LA_RX.match(body["uploaded_at"])
    assert body["title"] == blob.split("/")[-1] and body["status"] == "Queued - position: 1"
    assert body["percent_complete"] is None and body["has_ply"] is False and body["has_spz"] is False
    assert (body["reconstruction_method"], body["training_max_num_gaussians"], body["training_num_steps"]) == (
        "glomap", 1_000_000, 25_000)
    assert body["public"] is False and body["remove_background"] is False
    assert body["camera_data"]["cameraType"] == "drone" and body["camera_data"]["position"]["z"] == -3.0


async def test_submit_validation_messages(svc, http, video):
    blob = await upload(svc, http, video.read_bytes())
    cases = [
        ({}, "No blob_name provided."),
        ({"blob_name": "videos/clip.mp4"}, "Invalid blob_name format."),
        ({"blob_name": "videos/00000000-0000-4000-8000-000000000000.mp4"}, "Blob not found. Please verify the upload."),
        ({"blob_name": blob, "reconstruction_method": "GLOMAP"},
         "Invalid reconstruction method. Must be one of: glomap, colmap, vggt, quest, generate_lod"),
        ({"blob_name": blob, "training_max_num_gaussians": 50_000}, "Number of gaussians must be at least 100,000"),
        ({"blob_name": blob, "training_num_steps": 100}, "Number of training steps must be at least 5,000"),
        ({"blob_name": blob, "training_max_num_gaussians": 1, "training_num_steps": 1},
         "Number of gaussians must be at least 100,000; Number of training steps must be at least 5,000"),
        ({"blob_name": blob, "training_num_steps": "lots"}, "invalid literal for int() with base 10: 'lots'"),
        ({"blob_name": blob, "camera_type": "fisheye"}, 'Invalid camera_type. Must be "orbital" or "drone".'),
        ({"blob_name": blob, "apriltag_size_mm": 5000}, "AprilTag size must be between 1mm and 1000mm."),
    ]
    for fields, message in cases:
        assert await submit(svc, http, **fields) == (400, {"success": False, "error_message": message}), fields
    upper = await upload(svc, http, video.read_bytes(), ext="MP4")
    assert (await submit(svc, http, blob_name=upper))[1]["error_message"] == "Invalid blob_name format."
    svc.max_video_bytes = 1000
    status, body = await submit(svc, http, blob_name=blob)
    assert status == 400 and re.fullmatch(r"File size \(0\.\d\d GB\) exceeds the maximum allowed limit "
                                          r"\(0\.00 GB\)\.", body["error_message"])
    svc.max_video_bytes = 1 << 30
    svc.age_blob(blob, 61 * 60)
    assert (await submit(svc, http, blob_name=blob))[1]["error_message"] == "Blob too old. Please upload a new video."
    async with http.post(api(svc, "submit-job/"), data=b"{nope", headers={**auth(svc), "Content-Type":
                                                                          "application/json"}) as r:
        assert (r.status, await r.json()) == (500, {"success": False, "error_message":
                                                    "An error occurred while processing the request."})


async def test_submit_clamps_and_the_clamp_quirk(svc, http, video):
    blob = await upload(svc, http, video.read_bytes())
    status, body = await submit(svc, http, blob_name=blob, training_max_num_gaussians="5000000",
                                training_num_steps=99_999, title="  keep  ", public="t")
    assert status == 201 and body["training_max_num_gaussians"] == 2_000_000 and body["training_num_steps"] == 40_000
    assert body["title"] == "  keep  " and body["public"] is True
    # one clamped value makes the server apply adjustments and forget every other error
    status, body = await submit(svc, http, blob_name=blob, training_max_num_gaussians=9_000_000, training_num_steps=10)
    assert status == 201 and body["training_num_steps"] == 10


async def test_credits_consumed_refused_and_refunded(clock, http, video):
    async with Vid2SceneSandbox(clock=clock, credits=1, gaussians=2000) as svc:
        blob = await upload(svc, http, video.read_bytes())
        status, body = await submit(svc, http, blob_name=blob)
        assert status == 201 and svc.credits == 0
        assert await submit(svc, http, blob_name=blob) == (400, {
            "success": False, "error_message": "Insufficient API credits to process scene."})
        async with http.delete(api(svc, f"jobs/{body['job_id']}/"), headers=auth(svc)) as r:
            assert r.status == 204
        assert svc.credits == 1


# -- the life cycle ----------------------------------------------------------------------------------
async def test_statuses_in_order_live(http, video):
    async with Vid2SceneSandbox(gaussians=2000, speed=2.0, pickup_seconds=0.3) as svc:
        blob = await upload(svc, http, video.read_bytes())
        _, body = await submit(svc, http, blob_name=blob, camera_type="orbital")
        seen, percents, deadline = [], [], time.monotonic() + 8
        while time.monotonic() < deadline:
            job = await get_job(svc, http, body["job_id"])
            if not seen or seen[-1] != job["status"]:
                seen.append(job["status"])
            assert job["has_ply"] is job["has_spz"] is (job["status"] == "Finished")
            if job["status"] == "Generating 3D scene":
                assert isinstance(job["percent_complete"], float)
                percents.append(job["percent_complete"])
                assert job["camera_data"]["cameraType"] == "orbital"  # auto camera keeps the type
            elif job["status"] != "Finished":
                assert job["percent_complete"] is None
            if job["status"] == "Finished":
                assert job["percent_complete"] == 100
                break
            await asyncio.sleep(0.03)
        order = ["Queued - position: 1", "Queued", "Processing video", "Generating 3D scene", "Finished"]
        assert seen == [s for s in order if s in seen] and set(order) - set(seen) <= {"Queued"}, seen
        assert percents == sorted(percents) and len(set(percents)) >= 3 and 0 < percents[0] < percents[-1] <= 100


async def test_queue_positions_with_two_jobs(svc, http, clock, video):
    blob = await upload(svc, http, video.read_bytes())
    first = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    second = (await submit(svc, http, blob_name=blob))[1]["job_id"]

    async def statuses():
        return [(await get_job(svc, http, j))["status"] for j in (first, second)]

    assert await statuses() == ["Queued - position: 1", "Queued - position: 2"]
    clock.advance(svc.queue_seconds)
    assert await statuses() == ["Queued", "Queued - position: 1"]
    clock.advance(svc.pickup_seconds)
    assert await statuses() == ["Processing video", "Queued - position: 1"]
    clock.advance(svc.processing_seconds + svc.training_seconds / 2)
    assert await statuses() == ["Generating 3D scene", "Queued - position: 1"]
    clock.advance(svc.training_seconds / 2)
    assert await statuses() == ["Finished", "Queued"]
    clock.advance(svc.pickup_seconds)
    assert await statuses() == ["Finished", "Processing video"]


async def test_stuck_job_generates_forever_and_the_queue_moves_on(svc, http, clock, video):
    blob = await upload(svc, http, video.read_bytes())
    svc.stick_next_job()
    stuck = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    after = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    clock.advance(60)
    frozen = await get_job(svc, http, stuck)
    clock.advance(8 * 3600)
    job = await get_job(svc, http, stuck)
    assert job["status"] == "Generating 3D scene" and job["has_ply"] is False
    assert job["percent_complete"] == frozen["percent_complete"] < 100
    assert (await get_job(svc, http, after))["status"] == "Finished"


async def test_failed_jobs(svc, http, clock, video):
    blob = await upload(svc, http, video.read_bytes())
    svc.fail_next_job("no poses")
    early = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    svc.fail_next_job("diverged", during="training")
    late = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    junk = (await submit(svc, http, blob_name=await upload(svc, http, b"\x00" * 4096)))[1]["job_id"]
    for _ in range(100):  # the worker's probe of the junk upload runs in a thread
        if svc.jobs[junk].fate == "fail":
            break
        await asyncio.sleep(0.02)
    clock.advance(60)
    for job_id in (early, late, junk):
        job = await get_job(svc, http, job_id)
        assert job["status"] == "Failed" and job["has_ply"] is False and job["has_spz"] is False
    assert (await get_job(svc, http, early))["percent_complete"] is None
    assert isinstance((await get_job(svc, http, late))["percent_complete"], float)
    async with http.get(api(svc, f"jobs/{early}/download/ply/"), headers=auth(svc), allow_redirects=False) as r:
        assert (r.status, await r.json()) == (404, {"error": "PLY file not available for this job"})
    svc.forget_job(early)
    assert (await get_job(svc, http, early))["status"] == "Not found"


# -- jobs CRUD -----------------------------------------------------------------------------------------
async def test_list_get_patch_put_delete(svc, http, video):
    blob = await upload(svc, http, video.read_bytes())
    job_id = (await submit(svc, http, blob_name=blob, title="Garden"))[1]["job_id"]
    svc.add_api_key("someone-else", user="other")
    async with http.get(api(svc, "jobs/"), headers=auth(svc)) as r:
        assert await r.json() == [{"job_id": job_id, "title": "Garden"}]
    async with http.get(api(svc, "jobs/"), headers=auth(svc, "someone-else")) as r:
        assert await r.json() == []
    async with http.get(api(svc, f"jobs/{job_id}/"), headers=auth(svc, "someone-else")) as r:
        assert r.status == 404
    url = api(svc, f"jobs/{job_id}/")
    camera = {"lookAt": {"x": 0, "y": 0, "z": 0}, "position": {"x": 1, "y": 2, "z": 3},
              "up": {"x": 0, "y": 1, "z": 0}, "cameraType": "orbital"}
    async with http.patch(url, json={"title": "Yard", "public": True, "camera_data": camera,
                                     "training_num_steps": 6000}, headers=auth(svc)) as r:
        body = await r.json()
        assert r.status == 200 and (body["title"], body["public"], body["camera_data"]) == ("Yard", True, camera)
        assert body["training_num_steps"] == 25_000  # read-only, silently ignored
    bad_cases = [({"camera_data": {"lookAt": camera["lookAt"], "position": camera["position"]}},
                  {"camera_data": ["Invalid camera_data: 'up' is a required property"]}),
                 ({"camera_data": camera | {"fov": 60}},
                  {"camera_data": ["Invalid camera_data: Additional properties are not allowed ('fov' was unexpected)"]}),
                 ({"camera_data": camera | {"cameraType": "fisheye"}},
                  {"camera_data": ["Invalid camera_data: 'fisheye' is not one of ['orbital', 'drone']"]}),
                 ({"title": "x" * 256, "public": "maybe"},
                  {"title": ["Ensure this field has no more than 255 characters."], "public": ["Must be a valid boolean."]})]
    for payload, errors in bad_cases:
        async with http.patch(url, json=payload, headers=auth(svc)) as r:
            assert (r.status, await r.json()) == (400, errors)
    async with http.put(url, json={"public": False}, headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (400, {"title": ["This field is required."]})
    async with http.put(url, json={"title": "Final"}, headers=auth(svc)) as r:
        assert r.status == 200 and (await r.json())["title"] == "Final"
    async with http.post(url, json={}, headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (405, {"detail": 'Method "POST" not allowed.'})
    async with http.delete(url, headers=auth(svc)) as r:
        assert r.status == 204 and await r.read() == b""
    async with http.get(url, headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (404, {"detail": "No SceneProcessingJob matches the given query."})


# -- downloads and previews ----------------------------------------------------------------------------
def parse_ply_header(data: bytes) -> tuple[int, list[str], int]:
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    count = int(next(line for line in lines if line.startswith("element vertex")).split()[2])
    props = [line.split()[2] for line in lines if line.startswith("property float")]
    return count, props, end


async def test_downloads_redirect_to_blob_origin(svc, http, clock, video):
    blob = await upload(svc, http, video.read_bytes())
    job_id = (await submit(svc, http, blob_name=blob))[1]["job_id"]
    base = f"jobs/{job_id}/"
    async with http.get(api(svc, base + "preview/"), headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (400, {"error": "No preview available yet"})
    async with http.get(api(svc, base + "download/spz/"), headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (404, {"error": "SPZ file not available for this job"})
    clock.advance(svc.queue_seconds + svc.pickup_seconds + svc.processing_seconds + svc.training_seconds * 0.3)
    previews = []
    for _ in range(2):
        async with http.get(api(svc, base + "preview/"), headers=auth(svc), allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
        async with http.get(location) as r:  # no credentials on the storage origin
            assert r.status == 200 and r.content_type == "image/jpeg"
            image = await r.read()
        assert Image.open(io.BytesIO(image)).format == "JPEG"
        previews.append((location, image))
        clock.advance(svc.training_seconds * 0.3)
    assert previews[0][0] != previews[1][0] and previews[0][1] != previews[1][1]
    clock.advance(svc.training_seconds)
    async with http.head(api(svc, base + "download/ply/"), headers=auth(svc), allow_redirects=False) as r:
        assert r.status == 302
    async with http.get(api(svc, base + "download/zip/"), headers=auth(svc)) as r:
        assert (r.status, await r.json()) == (400, {"error": 'Invalid file type. Must be "ply" or "spz"'})
    async with http.get(api(svc, base + "download/ply/"), headers=auth(svc), allow_redirects=False) as r:
        assert r.status == 302
        ply_url = r.headers["Location"]
    assert ply_url.startswith(svc.urls["blob"]) and parse_qs(urlsplit(ply_url).query)["sp"] == ["r"]
    async with http.get(ply_url) as r:
        ply = await r.read()
    count, props, offset = parse_ply_header(ply)
    assert count == svc.gaussians and props == splatgen.PLY_PROPS and len(props) == 62
    assert len(ply) == offset + count * 248
    async with http.get(api(svc, base + "download/spz/"), headers=auth(svc)) as r:  # followed, like a client
        spz = await r.read()
    assert spz[:2] == b"\x1f\x8b"
    magic, version, points, degree = struct.unpack_from("<IIIB", gzip.decompress(spz))
    assert (magic, version, points, degree) == (0x5053474E, 3, count, 3)
    clock.advance(svc.download_url_ttl + 5)
    async with http.get(ply_url) as r:
        assert r.status == 403 and azure_code(await r.text()) == "AuthenticationFailed"


def test_spz_v4_layout():
    g = splatgen.torus_gaussians(300, seed=3)
    data = splatgen.pack_spz(g, version=4)
    magic, version, n, degree, fb, flags, streams, toc = struct.unpack_from("<IIIBBBBI", data)
    assert (magic, version, n, degree, fb, flags, streams, toc) == (0x5053474E, 4, 300, 3, 12, 0, 6, 32)
    offset, sizes = toc + 16 * streams, []
    for i in range(streams):
        packed, raw = struct.unpack_from("<QQ", data, toc + 16 * i)
        assert len(zstandard.ZstdDecompressor().decompress(data[offset:offset + packed], max_output_size=raw)) == raw
        offset, sizes = offset + packed, sizes + [raw]
    assert sizes == [300 * 9, 300, 300 * 3, 300 * 3, 300 * 4, 300 * 45] and offset == len(data)


# -- faults --------------------------------------------------------------------------------------------
async def test_rate_limit_and_server_error_faults(svc, http):
    svc.faults.rate_limit("GET", r"^/api/v1/jobs/$", retry_after=7)
    svc.faults.add("POST", r"/submit-job/$", 500, {"success": False, "error_message": "boom"})
    async with http.get(api(svc, "jobs/"), headers=auth(svc)) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "7"
    async with http.get(api(svc, "jobs/"), headers=auth(svc)) as r:
        assert r.status == 200
    assert (await submit(svc, http, blob_name="x"))[0] == 500
    assert svc.env_lines() == {"VID2SCENE_BASE_URL": f"{svc.base_url}/api/v1", "VID2SCENE_API_KEY": svc.api_key,
                               "VID2SCENE_ALLOWED_HOSTS": f'["{svc.urls["blob"][7:]}"]'}
