"""The Viggle sandbox over real HTTP: every endpoint's happy path and every documented error code,
as a Viggle client would see them (envelopes, state sequences, real MP4s on the CDN origin)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web

from sandbox.media import image_bytes, make_video
from sandbox.viggle import ViggleSandbox
from sandbox.viggle_records import TEMPLATES

KEY = "sk-sandbox-viggle"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = {"character_seconds": 0.1, "scene_seconds": 0.1, "render_seconds": 0.6}
SOLO, GROUP = TEMPLATES[0].id, TEMPLATES[1].id
ORDER = ("queued", "processing", "rendering", "merging", "complete")


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("viggle-media")
    (root / "portrait.png").write_bytes(image_bytes(96, 128))
    (root / "portrait.jpg").write_bytes(image_bytes(96, 128, fmt="JPEG"))
    (root / "notes.txt").write_text("not an image")
    (root / "garbage.mp4").write_bytes(b"\x00\x01 definitely not a video " * 40)
    make_video(root / "clip.mp4", seconds=2.0, width=160, height=120, fps=12)
    return root


@pytest.fixture
async def files(media):
    """A tiny origin standing in for Discord's CDN: the sandbox fetches URL inputs from here."""
    app = web.Application()
    app.router.add_static("/f/", media)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/f"
    await runner.cleanup()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_viggle():
    started: list[ViggleSandbox] = []

    async def make(**kwargs) -> ViggleSandbox:
        service = ViggleSandbox(**(FAST | kwargs))
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest.fixture
async def viggle(make_viggle) -> ViggleSandbox:
    return await make_viggle()


# -- helpers -----------------------------------------------------------------------------------------
async def call(http, method: str, url: str, *, headers=AUTH, **kw) -> tuple[int, dict]:
    async with http.request(method, url, headers=headers, allow_redirects=False, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


def form(**fields) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, Path):
            data.add_field(name, value.read_bytes(), filename=value.name)
        else:
            data.add_field(name, str(value))
    return data


def code_of(body: dict) -> str:
    return body["detail"]["error_code"]


async def poll(http, url: str, *, headers=AUTH, until=("ready", "failed", "complete", "cancelled"),
               timeout: float = 10) -> list[dict]:
    """Every distinct body seen while polling fast, ending with the terminal one."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            status, body = await call(http, "GET", url, headers=headers)
            assert status == 200, body
            body = body.get("data", body)
            if not seen or body != seen[-1]:
                seen.append(body)
            if body["status"] in until:
                return seen
            await asyncio.sleep(0.02)


async def character(http, svc: ViggleSandbox, media) -> str:
    status, body = await call(http, "POST", f"{svc.base_url}/api/characters/preprocess",
                              data=form(image=media / "portrait.png", name="Hero"))
    assert status == 200, body
    await poll(http, f"{svc.base_url}/api/characters/{body['character_id']}")
    return body["character_id"]


async def scene(http, svc: ViggleSandbox, media, *, wait: bool = True, **fields) -> str:
    status, body = await call(http, "POST", f"{svc.base_url}/api/scenes/preprocess",
                              data=form(name="Dance", video=media / "clip.mp4", **fields))
    assert status == 200, body
    if wait:
        await poll(http, f"{svc.base_url}/api/scenes/{body['scene_id']}")
    return body["scene_id"]


async def imported(http, svc: ViggleSandbox, template: str) -> dict:
    status, body = await call(http, "POST", f"{svc.base_url}/api/scenes/import", json={"template_id": template})
    assert status == 200, body
    await poll(http, f"{svc.base_url}/api/scenes/{body['id']}")
    return body


async def render(http, svc: ViggleSandbox, **fields) -> tuple[int, dict]:
    return await call(http, "POST", f"{svc.base_url}/api/render", data=form(**fields))


async def fetch_video(http, url: str, dest: Path) -> tuple[int, int, float]:
    """Download from the CDN without auth and open it with PyAV: (width, height, seconds)."""
    async with http.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "video/mp4"
        dest.write_bytes(await resp.read())

    def probe() -> tuple[int, int, float]:
        with av.open(str(dest)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.width, stream.codec_context.height, container.duration / av.time_base

    return await asyncio.to_thread(probe)


# -- auth, credits, envelopes, faults ------------------------------------------------------------------
async def test_auth_missing_and_wrong_key(viggle, http):
    status, body = await call(http, "GET", f"{viggle.base_url}/api/credits", headers={})
    assert (status, code_of(body)) == (401, "CS-UORC01-006")
    assert body["detail"]["message"] and body["detail"]["action"]
    status, body = await call(http, "GET", f"{viggle.base_url}/api/characters",
                              headers={"Authorization": "Bearer sk-wrong"})
    assert (status, code_of(body)) == (401, "CS-UORC01-007")
    status, body = await call(http, "POST", f"{viggle.base_url}/api/render", headers={"Authorization": "sk-x"})
    assert (status, code_of(body)) == (401, "CS-UORC01-006")


async def test_credits_and_env_lines(make_viggle, http):
    svc = await make_viggle(credits=42.5, api_key="sk-other")
    status, body = await call(http, "GET", f"{svc.base_url}/api/credits", headers={"Authorization": "Bearer sk-other"})
    assert status == 200 and body["balance"] == 42.5 and body["updated_at"].endswith("Z")
    assert svc.env_lines() == {"VIGGLE_BASE_URL": svc.base_url, "VIGGLE_API_KEY": "sk-other",
                               "VIGGLE_ALLOWED_HOSTS": f'["{svc.urls["cdn"][7:]}"]'}
    svc.set_credits(3)
    assert svc.credits == 3


@pytest.mark.parametrize("style", ["string", "flat"])
async def test_other_error_envelopes(make_viggle, http, style):
    svc = await make_viggle(error_style=style)
    status, missing = await call(http, "GET", f"{svc.base_url}/api/credits", headers={})
    status2, scene_err = await call(http, "POST", f"{svc.base_url}/api/render", data={"scene_id": "nope",
                                                                                       "character_id": "x"})
    assert status == 401 and status2 == 400
    if style == "string":
        assert missing == {"detail": "API key required. Use Authorization: Bearer sk-xxx"}
        assert isinstance(scene_err["detail"], str) and "Scene not found" in scene_err["detail"]
    else:
        assert missing["error_code"] == "CS-UORC01-006" and "detail" not in missing
        assert scene_err["error_code"] == "CS-ORIV-009" and "Scene not found" in scene_err["message"]


async def test_rate_limit_fault_then_recovers(viggle, http):
    viggle.faults.rate_limit("GET", r"^/api/credits$", retry_after=2)
    async with http.get(f"{viggle.base_url}/api/credits", headers=AUTH) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    viggle.faults.add("GET", r"^/api/credits$", 500)
    assert (await call(http, "GET", f"{viggle.base_url}/api/credits"))[0] == 500
    assert (await call(http, "GET", f"{viggle.base_url}/api/credits"))[0] == 200


# -- characters ----------------------------------------------------------------------------------------
async def test_character_upload_lifecycle_list_delete(viggle, http, media):
    status, body = await call(http, "POST", f"{viggle.base_url}/api/characters/preprocess",
                              data=form(image=media / "portrait.png", name="Hero"))
    assert status == 200 and body["status"] == "pending" and body["job_id"].startswith("char_")
    assert viggle.credits == 99
    url = f"{viggle.base_url}/api/characters/{body['character_id']}"
    seen = await poll(http, url)
    assert [s["status"] for s in seen] == ["pending", "processing", "ready"]
    ready = seen[-1]
    assert ready["name"] == "Hero" and ready["credits_used"] == 1 and ready["completed_at"]
    assert ready["thumbnail_url"].startswith(viggle.urls["cdn"])
    async with http.get(ready["thumbnail_url"]) as resp:  # CDN: no auth, a real PNG
        assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")

    second = await character(http, viggle, media)
    status, page = await call(http, "GET", f"{viggle.base_url}/api/characters?limit=1&offset=0")
    assert status == 200 and page["total"] == 2 and [c["id"] for c in page["characters"]] == [second]
    status, page = await call(http, "GET", f"{viggle.base_url}/api/characters?limit=0")
    assert (status, code_of(page)) == (400, "CS-UORC01-002")
    status, gone = await call(http, "DELETE", url)
    assert status == 200 and gone["deleted"] is True
    assert (await call(http, "GET", url))[0] == 404
    async with http.get(ready["thumbnail_url"]) as resp:
        assert resp.status == 404


async def test_character_from_urls_and_image_errors(viggle, http, files):
    pre = f"{viggle.base_url}/api/characters/preprocess"
    status, body = await call(http, "POST", pre, data={"image_url": f"{files}/portrait.jpg", "name": "Jay"})
    assert status == 200
    assert (await poll(http, f"{viggle.base_url}/api/characters/{body['character_id']}"))[-1]["status"] == "ready"
    for data in ({"image_url": f"{files}/missing.png"}, {"image_url": f"{files}/notes.txt"},
                 {"image_url": f"{files}/clip.mp4"}, {"name": "no image"}):
        status, body = await call(http, "POST", pre, data=data)
        assert (status, code_of(body)) == (400, "CS-ORIV-001"), data
    assert viggle.credits == 99  # only the good one was charged


async def test_character_needs_a_credit_and_failure_refunds(viggle, http, media):
    viggle.set_credits(0.5)
    status, body = await call(http, "POST", f"{viggle.base_url}/api/characters/preprocess",
                              data=form(image=media / "portrait.png"))
    assert (status, code_of(body)) == (402, "CS-UORC01-008")
    viggle.set_credits(5)
    viggle.fail_next("character", "CS-UORC01-009", "No person detected")
    status, body = await call(http, "POST", f"{viggle.base_url}/api/characters/preprocess",
                              data=form(image=media / "portrait.png"))
    final = (await poll(http, f"{viggle.base_url}/api/characters/{body['character_id']}"))[-1]
    assert final["status"] == "failed" and final["error"] == "CS-UORC01-009"
    assert final["error_message"] == "No person detected" and final["thumbnail_url"] is None
    assert viggle.credits == 5


# -- scenes ----------------------------------------------------------------------------------------------
async def test_scene_probe_lifecycle_list_delete(viggle, http, media):
    status, body = await call(http, "POST", f"{viggle.base_url}/api/scenes/preprocess",
                              data=form(name="Dance", video=media / "clip.mp4", background_mode="inpaint"))
    assert status == 200 and body["status"] == "pending" and body["job_id"].startswith("scene_")
    seen = await poll(http, f"{viggle.base_url}/api/scenes/{body['scene_id']}")
    assert [s["status"] for s in seen] == ["pending", "ready"]
    ready = seen[-1]
    assert (ready["duration_seconds"], ready["fps"], ready["total_frames"]) == (2.0, 12, 24)
    assert (ready["width"], ready["height"], ready["name"]) == (160, 120, "Dance")
    assert ready["credits_used"] == 0 and viggle.credits == 100
    status, page = await call(http, "GET", f"{viggle.base_url}/api/scenes")
    assert page["total"] == 1 and page["scenes"][0]["id"] == body["scene_id"]
    assert (await call(http, "DELETE", f"{viggle.base_url}/api/scenes/{body['scene_id']}"))[0] == 200
    assert (await call(http, "GET", f"{viggle.base_url}/api/scenes/{body['scene_id']}"))[0] == 404


@pytest.mark.parametrize(("knobs", "fields", "code"), [
    ({}, {"video_url": "{files}/portrait.png"}, "CS-ORIV-003"),
    ({"max_video_seconds": 1.5}, {"video_url": "{files}/clip.mp4"}, "CS-ORIV-004"),
    ({"max_video_bytes": 1000}, {"video_url": "{files}/clip.mp4"}, "CS-ORIV-005"),
    ({"max_video_bytes": 1000}, {"video": "clip.mp4"}, "CS-ORIV-005"),
    ({"max_video_side": 128}, {"video": "clip.mp4"}, "CS-ORIV-006"),
    ({}, {"video_url": "{files}/garbage.mp4"}, "CS-ORIV-007"),
    ({}, {"video_url": "{files}/missing.mp4"}, "CS-ORIV-007"),
    ({}, {}, "CS-ORIV-002"),
    ({}, {"video": "clip.mp4", "background_mode": "blur"}, "CS-ORIV-011"),
    ({}, {"video": "clip.mp4", "model": "V5"}, "CS-UORC01-002"),
    ({}, {"video": "clip.mp4", "name": ""}, "CS-UORC01-002"),
])
async def test_scene_input_errors(make_viggle, http, media, files, knobs, fields, code):
    svc = await make_viggle(**knobs)
    data = {"name": "Dance"} | {k: (media / v if k == "video" else v.format(files=files)) for k, v in fields.items()}
    status, body = await call(http, "POST", f"{svc.base_url}/api/scenes/preprocess", data=form(**data))
    assert (status, code_of(body)) == (400, code), body


async def test_scene_from_url_and_failure(viggle, http, files):
    viggle.fail_next("scene", "CS-UORC01-009", "Could not track a person")
    status, body = await call(http, "POST", f"{viggle.base_url}/api/scenes/preprocess",
                              data={"name": "Remote", "video_url": f"{files}/clip.mp4", "model": "V3_Preview"})
    assert status == 200
    final = (await poll(http, f"{viggle.base_url}/api/scenes/{body['scene_id']}"))[-1]
    assert final["status"] == "failed" and final["error_message"] == "Could not track a person"


async def test_import_templates(viggle, http):
    url = f"{viggle.base_url}/api/scenes/import"
    status, solo = await call(http, "POST", url, json={"template_id": SOLO})
    assert status == 200 and solo["segments"] == [] and solo["status"] == "pending" and "credits_reserved" in solo
    status, group = await call(http, "POST", url, json={"template_uuid": GROUP, "name": "Crew"})
    assert status == 200 and len(group["segments"]) == 3
    assert all(s["uuid"].startswith("person_") and s["type"] == "human" for s in group["segments"])
    final = (await poll(http, f"{viggle.base_url}/api/scenes/{group['id']}"))[-1]
    assert final["name"] == "Crew" and final["status"] == "ready"
    for body in ({"template_id": "no-such"}, {"name": "x"}):
        status, err = await call(http, "POST", url, json=body)
        assert (status, code_of(err)) == (400, "CS-UORC01-002")


async def test_data_wrapper(make_viggle, http, media):
    svc = await make_viggle(wrap_data=True)
    status, body = await call(http, "POST", f"{svc.base_url}/api/scenes/preprocess",
                              data=form(name="W", video=media / "clip.mp4"))
    status, wrapped = await call(http, "GET", f"{svc.base_url}/api/scenes/{body['scene_id']}")
    assert status == 200 and set(wrapped) == {"data"} and wrapped["data"]["id"] == body["scene_id"]
    char = await character(http, svc, media)
    status, wrapped = await call(http, "GET", f"{svc.base_url}/api/characters/{char}")
    assert wrapped["data"]["status"] == "ready"


# -- renders ---------------------------------------------------------------------------------------------
async def test_on_demand_render_states_and_real_output(viggle, http, media, tmp_path):
    status, body = await render(http, viggle, ref_image=media / "portrait.png", driving_video=media / "clip.mp4")
    assert status == 200 and body["status"] == "queued" and body["mode"] == "full_pipeline"
    assert body["job_id"] and body["enqueued_at"].endswith("Z")
    assert viggle.credits == 98  # 2 s of output
    seen = await poll(http, f"{viggle.base_url}/api/render/{body['job_id']}", headers={})  # no auth
    states = [s["status"] for s in seen]
    assert states == sorted(states, key=ORDER.index) and {"processing", "rendering", "merging"} <= set(states)
    assert states[-1] == "complete"
    progress = [s["progress_pct"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert {s["checkpoint"] for s in seen} >= {"ref_done", "dri_done", "bg_done", "render_done"}
    done = seen[-1]
    assert done["chunks"] == [] and done["mask_cdn_url"] is None and done["error_code"] is None
    assert done["cdn_url"].startswith(viggle.urls["cdn"])
    assert await fetch_video(http, done["cdn_url"], tmp_path / "out.mp4") == (160, 120, 2.0)

    async with http.get(f"{viggle.base_url}/api/render/{body['job_id']}/download", headers=AUTH,
                        allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == done["cdn_url"]
    status, err = await call(http, "GET", f"{viggle.base_url}/api/render/{body['job_id']}/download", headers={})
    assert (status, code_of(err)) == (401, "CS-UORC01-006")
    status, same = await call(http, "GET", f"{viggle.base_url}/api/render/{body['job_id']}",
                              headers={"Authorization": f"Bearer {KEY}"})
    assert status == 200 and same["status"] == "complete"


async def test_on_demand_render_from_urls_and_input_errors(viggle, http, files, media):
    status, body = await render(http, viggle, ref_image_url=f"{files}/portrait.jpg",
                                driving_video_url=f"{files}/clip.mp4", model="V3_Preview")
    assert status == 200 and body["mode"] == "full_pipeline"
    cases = [({"ref_image_url": f"{files}/notes.txt", "driving_video_url": f"{files}/clip.mp4"}, "CS-ORIV-001"),
             ({"ref_image_url": f"{files}/missing.png", "driving_video_url": f"{files}/clip.mp4"}, "CS-ORIV-001"),
             ({"driving_video_url": f"{files}/clip.mp4"}, "CS-ORIV-001"),
             ({"ref_image": media / "portrait.png"}, "CS-ORIV-002"),
             ({"ref_image": media / "portrait.png", "driving_video_url": f"{files}/portrait.png"}, "CS-ORIV-003"),
             ({"ref_image": media / "portrait.png", "driving_video_url": f"{files}/garbage.mp4"}, "CS-ORIV-007"),
             ({"ref_image": media / "portrait.png", "driving_video": media / "clip.mp4", "scene_id": "s"},
              "CS-UORC01-002"),
             ({"ref_image": media / "portrait.png", "driving_video": media / "clip.mp4", "model": "V9"},
              "CS-UORC01-002")]
    for fields, code in cases:
        status, err = await render(http, viggle, **fields)
        assert (status, code_of(err)) == (400, code), fields
    assert viggle.credits == 98  # failures cost nothing


async def test_preprocessed_render_form_urlencoded_and_duration_cap(viggle, http, media, tmp_path):
    char = await character(http, viggle, media)
    solo = await imported(http, viggle, SOLO)  # a 4 s template
    before = viggle.credits
    status, body = await call(http, "POST", f"{viggle.base_url}/api/render",
                              data={"character_id": char, "scene_id": solo["id"]})  # x-www-form-urlencoded
    assert status == 200 and body["mode"] == "preprocessed"
    assert viggle.credits == before - 4  # billed on the scene's length ...
    done = (await poll(http, f"{viggle.base_url}/api/render/{body['job_id']}"))[-1]
    width, height, seconds = await fetch_video(http, done["cdn_url"], tmp_path / "solo.mp4")
    assert seconds == 2.0 and height > width  # ... the sandbox's file is capped, aspect kept


async def test_mapping_render_rules(viggle, http, media):
    hero, other = await character(http, viggle, media), await character(http, viggle, media)
    group = await imported(http, viggle, GROUP)
    segs = [s["uuid"] for s in group["segments"]]
    partial = json.dumps({segs[0]: hero, segs[2]: hero})  # partial, repeated character
    status, body = await render(http, viggle, scene_id=group["id"], character_mapping=partial)
    assert status == 200 and body["mode"] == "preprocessed"
    first = (await poll(http, f"{viggle.base_url}/api/render/{body['job_id']}"))[-1]
    assert first["status"] == "complete"
    status, again = await render(http, viggle, scene_id=group["id"], character_mapping=partial)
    second = (await poll(http, f"{viggle.base_url}/api/render/{again['job_id']}"))[-1]
    assert second["cdn_url"] != first["cdn_url"]  # one URL per job, even when the file is shared
    cases = [("{not json", "CS-ORIV-012"), (json.dumps(["a"]), "CS-ORIV-012"), ("{}", "CS-ORIV-012"),
             (json.dumps({"person_nobody": hero}), "CS-ORIV-012"),
             (json.dumps({segs[1]: "no-such-character"}), "CS-ORIV-008"),
             (json.dumps({segs[1]: other, segs[0]: hero}), None)]
    for mapping, code in cases:
        status, err = await render(http, viggle, scene_id=group["id"], character_mapping=mapping)
        assert (status, code and code_of(err)) == ((400, code) if code else (200, None)), mapping
    status, err = await render(http, viggle, character_id="no-such", scene_id=group["id"])
    assert (status, code_of(err)) == (400, "CS-ORIV-008")
    status, err = await render(http, viggle, character_id=hero, scene_id="no-such")
    assert (status, code_of(err)) == (400, "CS-ORIV-009")


async def test_model_mismatch_and_unready_scene(make_viggle, http, media):
    svc = await make_viggle(scene_seconds=30)
    char = await character(http, svc, media)
    svc.scene_seconds = 0.1
    v3 = await scene(http, svc, media, model="V3_Preview")
    status, err = await render(http, svc, character_id=char, scene_id=v3, model="V4_Preview")
    assert (status, code_of(err)) == (400, "CS-UORC01-002")
    assert "V3_Preview" in err["detail"]["message"] and "V4_Preview" in err["detail"]["message"]
    status, ok = await render(http, svc, character_id=char, scene_id=v3, model="V3_Preview")
    assert status == 200
    svc.scene_seconds = 30
    slow = await scene(http, svc, media, wait=False)
    status, err = await render(http, svc, character_id=char, scene_id=slow)
    assert (status, code_of(err)) == (400, "CS-ORIV-010")


async def test_background_rules_and_transparent_mask(viggle, http, media, tmp_path):
    char = await character(http, viggle, media)
    sid = await scene(http, viggle, media)
    cases = [({"background_mode": "blur"}, "CS-ORIV-011"),
             ({"bg_color": "0,0,255"}, "CS-UORC01-002"),
             ({"background_mode": "transparent", "bg_color": "0,0,255"}, "CS-UORC01-002"),
             ({"background_mode": "solid", "bg_color": "#00ff00"}, "CS-UORC01-002"),
             ({"background_mode": "solid", "bg_color": "0,256,0"}, "CS-UORC01-002"),
             ({"background_mode": "solid", "bg_color": "0,255"}, "CS-UORC01-002"),
             ({"background_mode": "solid", "bg_color": "0,0,255"}, None),
             ({"background_mode": "solid"}, None), ({"background_mode": "inpaint"}, None)]
    for fields, code in cases:
        status, err = await render(http, viggle, character_id=char, scene_id=sid, **fields)
        assert (status, code and code_of(err)) == ((400, code) if code else (200, None)), fields
    status, body = await render(http, viggle, character_id=char, scene_id=sid, background_mode="transparent")
    done = (await poll(http, f"{viggle.base_url}/api/render/{body['job_id']}"))[-1]
    assert done["mask_cdn_url"] and done["mask_cdn_url"] != done["cdn_url"]
    assert await fetch_video(http, done["mask_cdn_url"], tmp_path / "mask.mp4") == (160, 120, 2.0)


async def test_fast_mode_and_credit_rules(make_viggle, http, media):
    svc = await make_viggle(credits=10)
    char = await character(http, svc, media)
    sid = await scene(http, svc, media)
    status, body = await render(http, svc, character_id=char, scene_id=sid, fast="true")
    assert status == 200 and body["mode"] == "fast" and svc.credits == 9 - 4  # 2 s at 2x
    status, err = await render(http, svc, ref_image=media / "portrait.png", fast="true")
    assert (status, code_of(err)) == (400, "CS-UORC01-002")
    status, err = await render(http, svc, character_id=char, scene_id=sid, fast="maybe")
    assert (status, code_of(err)) == (400, "CS-UORC01-002")
    svc.set_credits(1.5)
    status, err = await render(http, svc, character_id=char, scene_id=sid)
    assert (status, code_of(err)) == (402, "CS-UORC01-008") and svc.credits == 1.5
    svc.fast_available = False
    status, err = await render(http, svc, character_id=char, scene_id=sid, fast="true")
    assert (status, code_of(err)) == (400, "CS-UORC01-001")


async def test_cancel_refunds_exactly_and_stuck_job(viggle, http, media):
    before = viggle.credits
    viggle.stick_next_render()
    status, body = await render(http, viggle, ref_image=media / "portrait.png", driving_video=media / "clip.mp4")
    url = f"{viggle.base_url}/api/render/{body['job_id']}"
    assert viggle.credits == before - 2
    await asyncio.sleep(0.4)  # past every stage of a normal render
    assert (await call(http, "GET", url))[1]["status"] == "processing"
    status, cancelled = await call(http, "DELETE", url)
    assert status == 200 and cancelled["status"] == "cancelled"
    assert viggle.credits == before
    _, final = await call(http, "GET", url, headers={})
    assert final["status"] == "cancelled" and final["cdn_url"] is None
    status, err = await call(http, "DELETE", url)
    assert (status, code_of(err)) == (400, "CS-UORC01-002") and viggle.credits == before
    status, err = await call(http, "GET", f"{url}/download")
    assert (status, code_of(err)) == (400, "CS-UORC01-002")
    assert (await call(http, "GET", f"{viggle.base_url}/api/render/job_nope", headers={}))[0] == 404


async def test_render_failure_reports_code_and_refunds(viggle, http, media):
    viggle.fail_next("render", "CS-UORC01-009", "Render worker crashed")
    status, body = await render(http, viggle, ref_image=media / "portrait.png", driving_video=media / "clip.mp4")
    final = (await poll(http, f"{viggle.base_url}/api/render/{body['job_id']}", headers={}))[-1]
    assert final["status"] == "failed" and final["error_code"] == "CS-UORC01-009"
    assert final["error_message"] == "Render worker crashed" and final["cdn_url"] is None
    assert viggle.credits == 100


async def test_expiring_cdn_links_and_fresh_download_redirect(make_viggle, http, media):
    svc = await make_viggle(cdn_url_ttl=60)
    status, body = await render(http, svc, ref_image=media / "portrait.png", driving_video=media / "clip.mp4")
    done = (await poll(http, f"{svc.base_url}/api/render/{body['job_id']}"))[-1]
    assert "expires=" in done["cdn_url"]
    async with http.get(done["cdn_url"]) as resp:
        assert resp.status == 200
    svc.cdn.clock = lambda: 1e12  # far future: the link has expired
    async with http.get(done["cdn_url"]) as resp:
        assert resp.status == 403
