"""The Viggle client: every documented wire shape, and each job kind against the Viggle sandbox."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from bot.config import ViggleSettings
from bot.models import Job, JobState, RemotePhase
from bot.providers.base import AuthFailed, InputRejected, OutOfCredits, SubmissionUnknown
from bot.providers.viggle import ViggleProvider
from bot.providers.viggle_inputs import viggle_can_fetch
from bot.providers.viggle_wire import error_for, object_status, parse_error, render_status, unwrap
from sandbox.media import image_bytes, make_video
from sandbox.viggle import ViggleSandbox
from tests.support.policy import sandbox_net

GROUP_DANCE = "1c9e7a52-3f6b-4d8a-b2e1-0f9d8c7b6a54"
_ids = itertools.count(1)


# -- pure parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"detail": {"error_code": "CS-UORC01-008", "message": "Insufficient credits to start this job",
                "action": "Add credits to your account"}},
    {"error_code": "CS-UORC01-008", "message": "Insufficient credits to start this job"},
    {"data": {"error_code": "CS-UORC01-008", "message": "Insufficient credits to start this job"}},
])
def test_error_envelopes_give_code_and_message(body):
    code, message, _action = parse_error(body)
    assert code == "CS-UORC01-008" and message == "Insufficient credits to start this job"
    error = error_for(402, body)
    assert isinstance(error, OutOfCredits) and "Insufficient credits" in error.public


def test_string_detail_and_fastapi_list_and_secrets_are_redacted():
    assert parse_error({"detail": "API key required. Use Authorization: Bearer sk-xxx"})[1] == \
        "API key required. Use Authorization: [redacted]"
    assert isinstance(error_for(401, {"detail": "Invalid key"}), AuthFailed)
    code, message, _ = parse_error({"detail": [{"loc": ["body", "scene_id"], "msg": "field required"}]})
    assert code is None and message == "scene_id: field required"
    assert "https://" not in parse_error({"message": "see https://cdn.x/y?sig=abc"})[1]
    rejected = error_for(400, {"detail": {"error_code": "CS-ORIV-012", "message": "Invalid character_mapping JSON",
                                          "action": "Send a JSON object"}})
    assert isinstance(rejected, InputRejected) and "CS-ORIV-012" in rejected.public
    assert rejected.hint == "Send a JSON object"


@pytest.mark.parametrize(("status", "phase"), [
    ("queued", RemotePhase.QUEUED), ("processing", RemotePhase.RUNNING), ("rendering", RemotePhase.RUNNING),
    ("merging", RemotePhase.RUNNING), ("complete", RemotePhase.SUCCEEDED), ("failed", RemotePhase.FAILED),
    ("cancelled", RemotePhase.CANCELLED)])
def test_render_statuses(status, phase):
    body = {"job_id": "job_1", "status": status, "progress_pct": 60, "checkpoint": "dri_done",
            "cdn_url": "http://cdn/x.mp4" if status == "complete" else None, "mask_cdn_url": None,
            "error_code": "CS-UORC01-009" if status == "failed" else None,
            "error_message": "Processing failed" if status == "failed" else None}
    result = render_status({"data": body} if status == "merging" else body)
    assert result.phase is phase
    if phase is RemotePhase.RUNNING:
        assert result.progress == pytest.approx(0.6)
        assert result.detail == "Motion understood; now preparing the background"  # plain words, no jargon
    if phase is RemotePhase.FAILED:
        assert "Processing failed" in result.error and "CS-UORC01-009" in result.error
    if phase is RemotePhase.SUCCEEDED:
        assert result.data["cdn_url"] == "http://cdn/x.mp4"


def test_object_statuses_and_wrapper():
    assert object_status({"data": {"status": "pending"}}, "character").phase is RemotePhase.QUEUED
    assert object_status({"status": "processing"}, "scene").phase is RemotePhase.RUNNING
    ready = object_status({"id": "c", "status": "ready", "thumbnail_url": "http://t/c.png"}, "character")
    assert ready.phase is RemotePhase.SUCCEEDED and ready.preview_url == "http://t/c.png"
    failed = object_status({"status": "failed", "error_message": "no face"}, "character")
    assert failed.phase is RemotePhase.FAILED and "no face" in failed.error
    assert unwrap({"data": {"id": 1}}) == {"id": 1} and unwrap({"id": 1, "data": {}}) == {"id": 1, "data": {}}


def test_link_reachability():
    assert viggle_can_fetch("http://127.0.0.1:5/cdn/a.png", "http://127.0.0.1:9")
    assert not viggle_can_fetch("http://127.0.0.1:5/cdn/a.png", "https://apis.viggle.ai")
    assert viggle_can_fetch("https://cdn.discordapp.com/a.png?ex=ffffffff&is=1", "https://apis.viggle.ai")
    assert not viggle_can_fetch("https://cdn.discordapp.com/a.png?ex=10&is=1", "https://apis.viggle.ai")


# -- against the sandbox ----------------------------------------------------------------------------

@pytest.fixture
async def viggle():
    svc = ViggleSandbox(credits=100, character_seconds=0.1, scene_seconds=0.1, render_seconds=0.3)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def files(discord_cdn):
    make_video(discord_cdn.folder / "dance.mp4", seconds=1.0, width=96, height=64, fps=8)
    return discord_cdn


@pytest.fixture
async def provider(viggle, files):
    settings = ViggleSettings(api_key=viggle.api_key, base_url=viggle.base_url, poll_min_seconds=0.05,
                              poll_max_seconds=0.2)
    prov = ViggleProvider(settings, sandbox_net(viggle, files))
    yield prov
    await prov.net.close()


def make_job(kind: str, **params) -> Job:
    return Job(id=f"vj{next(_ids)}x", provider="viggle", kind=kind, state=JobState.UPLOADING, owner_id=7,
               channel_id=8, guild_id=9, summary=kind, params=params)


async def submit(provider, job: Job, workdir: Path) -> Job:
    workdir.mkdir(parents=True, exist_ok=True)
    job = job.evolve(provider_data=await provider.upload(job, workdir))
    remote_id, data = await provider.submit(job)
    return job.evolve(remote_id=remote_id, provider_data={**job.provider_data, **data}, state=JobState.SUBMITTED)


async def finish(provider, job: Job, timeout: float = 15):
    seen = []
    for _ in range(int(timeout / 0.05)):
        status = await provider.poll(job)
        seen.append(status)
        if status.phase.is_terminal:
            return status, seen
        await asyncio.sleep(0.05)
    raise AssertionError("job did not finish")


async def make_character(provider, files, tmp_path, name: str, hue: int = 0) -> str:
    att = files.attachment(f"{name}.png", image_bytes(96, 96, hue=hue))
    job = await submit(provider, make_job("character", name=name, image=att), tmp_path / name)
    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED
    return job.remote_id


async def test_character_from_attachment_link_is_announced_with_thumbnail(provider, viggle, files, tmp_path):
    att = files.attachment("alice.png", image_bytes(128, 128))
    job = await submit(provider, make_job("character", name="Alice", image=att), tmp_path / "w")
    assert job.provider_data["inputs"]["image"]["url"] == att["url"]  # handed over, not re-uploaded
    assert files.gets == ["alice.png"]  # fetched by Viggle only
    remote = viggle.characters[job.remote_id]
    assert remote.name == f"Alice [vb:{job.id}]"
    saved = provider.saved_object(job)
    assert saved.kind == "character" and saved.name == "Alice" and saved.status == "pending"

    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED and status.preview_url
    done = job.evolve(provider_data={**job.provider_data, "_status": status.data})
    assert provider.saved_object(done).status == "ready"
    [card] = await provider.collect(done, status, tmp_path / "w")
    assert card.filename.endswith(".png") and card.path.read_bytes().startswith(b"\x89PNG")
    assert "Alice" in card.description and "ready" in card.description


async def test_wrapped_reads_and_unfetchable_link_falls_back_to_upload(provider, viggle, files, tmp_path):
    viggle.wrap_data = True
    att = files.attachment("bob.png", image_bytes(64, 64, hue=3))
    files.refuse_first.add("bob.png")  # Viggle's fetch is refused; the bot's own download works
    job = await submit(provider, make_job("character", name="Bob", image=att), tmp_path / "w")
    assert Path(job.provider_data["inputs"]["image"]["path"]).is_file()
    creates = viggle.requests_to(r"^/api/characters/preprocess$", "POST")
    assert len(creates) == 2  # the refused link, then the upload; the first cost nothing
    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED
    assert viggle.credits == 99


async def test_expiring_link_is_spooled_checked_and_uploaded(provider, viggle, files, tmp_path):
    att = files.attachment("dance.mp4", query="?ex=10&is=1&hm=ab")
    job = await submit(provider, make_job("scene", name="Dance", video=att, background_mode="original",
                                          model="V3_Preview"), tmp_path / "w")
    assert job.provider_data["inputs"]["video"]["path"].endswith(".mp4")
    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED
    saved = provider.saved_object(job.evolve(provider_data={**job.provider_data, "_status": status.data}))
    assert saved.kind == "scene" and saved.data["model"] == "V3_Preview" and saved.status == "ready"
    [card] = await provider.collect(job, status, tmp_path / "w")  # first frame of the spooled clip
    assert card.filename == "scene-thumbnail.jpg" and card.path.read_bytes().startswith(b"\xff\xd8")


async def test_bad_spooled_file_is_refused_before_paying(provider, viggle, files, tmp_path):
    att = files.attachment("fake.mp4", b"this is not a video at all", query="?ex=10")
    with pytest.raises(InputRejected):
        await provider.upload(make_job("scene", name="X", video=att), tmp_path / "w")
    assert not viggle.requests_to("/api/scenes/preprocess")


async def test_template_then_multi_person_render_posts_mp4(provider, viggle, files, tmp_path):
    alice = await make_character(provider, files, tmp_path, "alice")
    bob = await make_character(provider, files, tmp_path, "bob", hue=4)
    job = await submit(provider, make_job("template", template_id=GROUP_DANCE, name="Group"), tmp_path / "t")
    assert job.provider_data["segments"] == ["person_a1b2c3d4", "person_e5f6a7b8", "person_c9d0e1f2"]
    status, _ = await finish(provider, job)
    saved = provider.saved_object(job.evolve(provider_data={**job.provider_data, "_status": status.data}))
    assert saved.data["segments"] == job.provider_data["segments"] and saved.name == "Group"

    # partial mapping, one character twice
    mapping = {"person_a1b2c3d4": alice, "person_c9d0e1f2": alice, "person_e5f6a7b8": bob}
    del mapping["person_e5f6a7b8"]
    render = await submit(provider, make_job("render", scene_id=job.remote_id, mapping=mapping,
                                             background_mode="transparent", fast=False), tmp_path / "r")
    status, seen = await finish(provider, render)
    assert status.phase is RemotePhase.SUCCEEDED
    assert any(s.progress and 0 < s.progress < 1 and "understood" in (s.detail or "") for s in seen)
    assert not any("_done" in (s.detail or "") for s in seen)
    arts = await provider.collect(render, status, tmp_path / "r")
    assert [a.filename for a in arts] == [f"viggle-{render.id}.mp4", f"viggle-{render.id}-mask.mp4",
                                          f"viggle-{render.id}-frame.jpg"]
    assert all(a.link and a.path.stat().st_size > 0 for a in arts[:2])
    assert arts[2].optional and arts[2].path.read_bytes()[:3] == b"\xff\xd8\xff"  # a still for the card
    sent = viggle.jobs[render.remote_id]
    assert sent.character_ids == [alice, alice]
    # status polls send the key (the docs disagree on whether it is needed; it is harmless)
    polls = viggle.requests_to(r"^/api/render/job_", "GET")
    assert polls and all(r.headers.get("Authorization") == f"Bearer {viggle.api_key}" for r in polls)


async def test_mix_with_solid_colour_in_one_go(provider, viggle, files, tmp_path):
    img = files.attachment("me.png", image_bytes(80, 80))
    vid = files.attachment("dance.mp4")
    job = await submit(provider, make_job("mix", image=img, video=vid, model="V4_Preview",
                                          background_mode="solid", bg_color="10,20,30", fast=True), tmp_path / "m")
    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.SUCCEEDED
    video, frame = await provider.collect(job, status, tmp_path / "m")
    assert frame.filename.endswith("-frame.jpg") and frame.optional
    assert video.filename.endswith(".mp4")
    assert viggle.jobs[job.remote_id].bg_color == (10, 20, 30)


async def test_cancel_refunds_and_poll_reports_cancelled(provider, viggle, files, tmp_path):
    alice = await make_character(provider, files, tmp_path, "alice")
    scene = await submit(provider, make_job("scene", name="D", video=files.attachment("dance.mp4")), tmp_path / "s")
    await finish(provider, scene)
    before = viggle.credits
    viggle.stick_next_render()
    job = await submit(provider, make_job("render", scene_id=scene.remote_id, character_id=alice), tmp_path / "r")
    assert viggle.credits < before
    await provider.cancel(job)
    assert viggle.credits == before
    assert (await provider.poll(job)).phase is RemotePhase.CANCELLED


@pytest.mark.parametrize("style", ["nested", "string", "flat"])
async def test_out_of_credits_and_bad_key_in_every_envelope(provider, viggle, files, tmp_path, style):
    viggle.error_style = style
    viggle.set_credits(0)
    att = files.attachment("c.png", image_bytes(64, 64))
    job = await provider.upload(make_job("character", name="C", image=att), tmp_path)
    with pytest.raises(OutOfCredits) as caught:
        await provider.submit(make_job("character", name="C", image=att).evolve(provider_data=job))
    assert "nsufficient credits" in caught.value.public
    provider.api._key = "sk-wrong"
    with pytest.raises(AuthFailed):
        await provider.credits()
    assert "sk-wrong" not in str(caught.value)


async def test_model_mismatch_and_failed_render_are_specific(provider, viggle, files, tmp_path):
    alice = await make_character(provider, files, tmp_path, "alice")
    scene = await submit(provider, make_job("scene", name="D", video=files.attachment("dance.mp4"),
                                            model="V4_Preview"), tmp_path / "s")
    await finish(provider, scene)
    fields = {"scene_id": scene.remote_id, "character_id": alice, "model": "V3_Preview"}
    with pytest.raises(InputRejected) as caught:
        await provider.api.render(fields)
    assert "V4_Preview" in caught.value.public
    viggle.fail_next("render", "CS-UORC01-009", "Processing failed, please try again")
    job = await submit(provider, make_job("render", scene_id=scene.remote_id, character_id=alice), tmp_path / "r")
    status, _ = await finish(provider, job)
    assert status.phase is RemotePhase.FAILED and "Processing failed" in status.error


async def test_paid_post_is_sent_once_and_reconcile_finds_characters_not_renders(provider, viggle, files,
                                                                                  tmp_path):
    viggle.faults.add("POST", r"^/api/render$", 502, {"detail": "Bad gateway"})
    job = make_job("render", scene_id="s", character_id="c")
    with pytest.raises(SubmissionUnknown) as info:  # said as what it is, at once: renders cannot be looked up
        await provider.submit(job.evolve(provider_data={"inputs": {}}))
    assert "server error (HTTP 502) when starting the render" in info.value.public
    assert "may have been charged" in info.value.public and "/viggle credits" in info.value.public
    assert "restarted" not in info.value.public
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == 1
    with pytest.raises(SubmissionUnknown) as info:
        await provider.reconcile(job)
    assert "may have been charged" in info.value.public

    att = files.attachment("r.png", image_bytes(64, 64))
    char_job = make_job("character", name="Rita", image=att)
    assert await provider.reconcile(char_job) is None  # certainly never created
    submitted = await submit(provider, char_job, tmp_path / "c")
    assert await provider.reconcile(char_job) == submitted.remote_id

    # a Viggle that serves fewer objects a page than asked (and no total) is read on, not taken
    # as ended: a short page must not make "not created" of a paid character, and pay it twice
    for n in range(4):
        await make_character(provider, files, tmp_path, f"later{n}", hue=n)
    viggle.faults.add("GET", r"^/api/characters$", 200, passthrough=True, times=None,
                      rewrite=lambda body: {"characters": body["characters"][:2]})
    assert await provider.reconcile(char_job) == submitted.remote_id


async def test_credits_and_check(provider, viggle):
    viggle.set_credits(42)
    assert await provider.credits() == 42
    assert "42 credits" in await provider.check()


# -- the checks /viggle runs before spending (pure) ---------------------------------------------------

def _scene(**data):
    from bot.models import SavedObject

    return SavedObject("viggle", "scene", "s1", 7, 9, "Group", "ready", data)


def test_command_checks_refuse_with_reasons():
    from cogs.viggle_checks import Refusal, check_model, check_segments, parse_bg_color, parse_mapping

    assert parse_bg_color(" 1, 2 ,3 ", "solid") == "1,2,3"
    assert parse_bg_color(None, "original") is None
    for bad, mode, words in [("0,255,0", "transparent", "only applies"), ("#00ff00", "solid", "R,G,B"),
                             ("1,2", "solid", "R,G,B"), ("0,0,256", "solid", "0–255")]:
        with pytest.raises(Refusal, match=words):
            parse_bg_color(bad, mode)
    with pytest.raises(Refusal, match="V4_Preview"):
        check_model(_scene(model="V4_Preview"), "V3_Preview")
    assert check_model(_scene(model="V3_Preview"), None) == "V3_Preview"
    with pytest.raises(Refusal, match="not valid JSON"):
        parse_mapping("{'a': 'b'}")
    with pytest.raises(Refusal, match="JSON object"):
        parse_mapping('["a"]')
    with pytest.raises(Refusal, match="character name or id"):
        parse_mapping('{"person_a": 3}')
    scene = _scene(segments=["person_a", "person_b"])
    check_segments({"person_a": "x"}, scene)  # partial is fine
    with pytest.raises(Refusal, match="no segment `person_z`.*person_a"):
        check_segments({"person_z": "x"}, scene)


def test_mapping_autocomplete_builds_on_what_is_typed():
    from bot.models import SavedObject
    from cogs.viggle_checks import mapping_suggestions

    chars = [SavedObject("viggle", "character", f"id-{n}-0000-0000-0000", 7, 9, n, "ready") for n in ("Ann", "Bo")]
    first = mapping_suggestions("", ["p1", "p2"], chars)
    assert [v for _, v in first] == ['{"p1": "Ann"}', '{"p1": "Bo"}']
    second = mapping_suggestions('{"p1": "Ann"}', ["p1", "p2"], chars)
    assert second[0][1] == '{"p1": "Ann"}' and second[1][1] == '{"p1": "Ann", "p2": "Ann"}'
    assert all(len(v) <= 100 for _, v in second)


async def test_list_requests_tell_the_status_of_many_characters_and_scenes(provider, viggle, files, tmp_path):
    """Characters and scenes report no progress, so they are polled most near their end: one
    character list and one scene list answer all of them; renders (never listed) are left out."""
    ready = make_job("character", name="ready")
    ready = await submit(provider, ready.evolve(params={**ready.params, "image": files.attachment(
        "ready.png", image_bytes(96, 96))}), tmp_path / "c1")
    await finish(provider, ready)
    viggle.character_seconds = 30.0  # the next ones are still being prepared when asked
    pending = [await submit(provider, make_job("character", name=f"p{n}", image=files.attachment(
        f"p{n}.png", image_bytes(96, 96, hue=n))), tmp_path / f"p{n}") for n in range(2)]
    scene = await submit(provider, make_job("template", template_id=GROUP_DANCE, name="Group"), tmp_path / "t")
    await finish(provider, scene)
    render = make_job("render", scene_id=scene.remote_id, mapping={"person_a1b2c3d4": ready.remote_id})
    render = render.evolve(remote_id="job_never_listed", state=JobState.SUBMITTED)
    gone = pending[0].evolve(id="vjgonex", remote_id="char-not-there")
    jobs = [ready, *pending, scene, render, gone]
    assert [provider.can_batch(j) for j in jobs] == [True, True, True, True, False, True]

    before = len(viggle.requests)
    statuses = await provider.poll_many(jobs)
    asked = [r.path for r in viggle.requests[before:]]
    # six jobs, two list requests, and a read of each object the list says is finished (the
    # list's shape is not published: the saved object is made from the object itself)
    assert asked == ["/api/characters", f"/api/characters/{ready.remote_id}", "/api/scenes",
                     f"/api/scenes/{scene.remote_id}"]
    assert set(statuses) == {ready.id, pending[0].id, pending[1].id, scene.id}  # the rest: one by one
    assert statuses[ready.id].phase is RemotePhase.SUCCEEDED and statuses[scene.id].phase is RemotePhase.SUCCEEDED
    assert all(not statuses[j.id].phase.is_terminal for j in pending)
    for job in (ready, scene, pending[1]):  # the same answer a single poll gives
        single = await provider.poll(job)
        assert (statuses[job.id].phase, statuses[job.id].data) == (single.phase, single.data)

    # a list that fails for now answers nothing (single polls follow) and is asked again next time
    viggle.faults.add("GET", r"^/api/scenes$", 503, {"detail": "busy"}, times=None)
    assert set(await provider.poll_many(jobs)) == {ready.id, pending[0].id, pending[1].id}
    assert provider.can_batch(scene)
    viggle.faults.clear()
    # a list whose objects carry no status, or that is not there at all (only third-party code
    # documents them), is not asked again for an hour: those kinds are polled one by one
    viggle.faults.add("GET", r"^/api/characters$", 200, passthrough=True, times=None,
                      rewrite=lambda body: {**body, "characters": [
                          {k: v for k, v in c.items() if k != "status"} for c in body["characters"]]})
    viggle.faults.add("GET", r"^/api/scenes$", 404, {"detail": "Not Found"}, times=None)
    assert await provider.poll_many(jobs) == {}
    assert not any(provider.can_batch(j) for j in jobs)
    asked = len(viggle.requests)
    assert await provider.poll_many(jobs) == {} and len(viggle.requests) == asked  # nothing asked again


async def test_one_listed_object_that_cannot_be_read_does_not_switch_the_list_off(provider, viggle, files, tmp_path):
    """The list says an object is ready, but reading it whole answers 404: only that job is left
    to its own poll; the others are still answered, and the list stays in use."""
    viggle.character_seconds = 30.0
    pending = await submit(provider, make_job("character", name="slow", image=files.attachment(
        "slow.png", image_bytes(96, 96, hue=3))), tmp_path / "slow")
    viggle.character_seconds = 0.1
    ready = await submit(provider, make_job("character", name="ready", image=files.attachment(
        "ready.png", image_bytes(96, 96))), tmp_path / "ready")  # the newest: listed first
    await finish(provider, ready)
    viggle.faults.add("GET", rf"^/api/characters/{ready.remote_id}$", 404, {"detail": "Not Found"}, times=1)
    answers = await provider.poll_many([ready, pending])
    assert set(answers) == {pending.id} and not answers[pending.id].phase.is_terminal
    assert provider.can_batch(ready) and provider.can_batch(pending)
    assert (await provider.poll(ready)).phase is RemotePhase.SUCCEEDED  # its own poll, as the runner does
    before = len(viggle.requests)
    assert set(await provider.poll_many([ready, pending])) == {ready.id, pending.id}
    assert viggle.requests[before].path == "/api/characters"  # the list is still asked


async def test_a_listed_object_with_an_unknown_status_is_left_to_its_own_poll(provider, viggle, files, tmp_path):
    ready = await submit(provider, make_job("character", name="odd", image=files.attachment(
        "odd.png", image_bytes(96, 96))), tmp_path / "odd")
    await finish(provider, ready)
    viggle.faults.add("GET", r"^/api/characters$", 200, passthrough=True, times=1,
                      rewrite=lambda body: {**body, "characters": [
                          {**c, "status": "archived-somehow"} for c in body["characters"]]})
    assert await provider.poll_many([ready]) == {}
    assert (await provider.poll(ready)).phase is RemotePhase.SUCCEEDED
