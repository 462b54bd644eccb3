"""The provider corners where money is at stake, each against its sandbox: reconcile answers
created / not created / unknown exactly; forged markers bind nothing; refused or expired links
recover; errors dressed as success say what they are; unusable inputs are refused unpaid."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ScenarioSettings, Vid2SceneSettings, ViggleSettings
from bot.models import Job, JobState, RemotePhase
from bot.providers.base import (
    InputRejected,
    OutOfCredits,
    ReconcileUnknown,
    SubmissionUnknown,
    Transient,
    has_exact_marker,
    job_marker,
    marked_name,
    strip_markers,
)
from bot.providers.scenario import ScenarioProvider
from bot.providers.vid2scene import Vid2SceneProvider
from bot.providers.viggle import ViggleProvider
from sandbox.discord import DiscordEmulator
from sandbox.media import image_bytes, make_video
from sandbox.scenario import ScenarioSandbox
from sandbox.vid2scene import Vid2SceneSandbox
from sandbox.viggle import ViggleSandbox
from tests.support.policy import sandbox_net

_ids = itertools.count(1)


def job_of(provider: str, kind: str, **params) -> Job:
    return Job(id=f"mc{next(_ids)}x", provider=provider, kind=kind, state=JobState.UPLOADING, owner_id=7,
               channel_id=8, guild_id=9, summary=kind, params=params)


# -- the marker (pure) -----------------------------------------------------------------------------

def test_only_the_exact_full_form_of_the_marker_matches():
    job = job_of("viggle", "character", name="Rita")
    other = job_of("viggle", "character", name="Bob")
    assert marked_name("Rita", job) == f"Rita {job_marker(job)}"
    assert has_exact_marker(marked_name("Rita", job), job)
    assert not has_exact_marker(f"{job_marker(job)} my scene", job)  # anywhere but the end
    assert not has_exact_marker(f"Rita{job_marker(job)}", job)  # glued to the label
    # a user who typed another job's marker into their own name: ours follows, so it ends differently
    forged = marked_name(f"fun {job_marker(job)}", other)
    assert job_marker(job) not in forged and has_exact_marker(forged, other)
    assert not has_exact_marker(f"fun {job_marker(job)} {job_marker(other)}", other)  # two markers: tampered
    assert strip_markers(f"a [vb:{job.id}] b [ VB : x ] c [vb:") == "a b c"


# -- Scenario ------------------------------------------------------------------------------------------

@pytest.fixture
async def scenario(tmp_path):
    sb = ScenarioSandbox(upload_validate_seconds=0.05, queue_seconds=0.05, warmup_seconds=0.05, run_seconds=0.2,
                         layer_seconds=0.5, max_parallel_jobs=100, workdir=tmp_path / "scenario")
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
async def layers(scenario, discord_cdn):
    env = scenario.env_lines()
    prov = ScenarioProvider(ScenarioSettings(api_key=env["SCENARIO_API_KEY"], api_secret=env["SCENARIO_API_SECRET"],
                                             base_url=env["SCENARIO_BASE_URL"]), sandbox_net(scenario, discord_cdn))
    prov.upload_poll_seconds = 0.05
    prov.reconcile_settle_seconds = 0.0
    yield prov
    await prov.net.close()


async def uploaded_layers_job(prov, discord_cdn, tmp_path, **video_options) -> Job:
    name = f"clip{next(_ids)}.mp4"
    make_video(discord_cdn.root / name, **({"seconds": 0.5} | video_options))
    job = job_of("scenario", "layers", video=discord_cdn.attachment(name),
                 instruction="each person separately", max_layers=2)
    workdir = tmp_path / job.id
    workdir.mkdir()
    return job.evolve(provider_data=await prov.upload(job, workdir))


async def test_reconcile_reads_every_page_even_empty_ones_and_finds_the_job(layers, scenario, discord_cdn, tmp_path):
    job = await uploaded_layers_job(layers, discord_cdn, tmp_path)
    remote_id, _ = await layers.submit(job)
    scenario.add_other_jobs(12)  # later jobs of the same project push ours far down the newest-first list
    scenario.paginate_with_empty_pages(1)
    scan = await layers.api.list_jobs(created_after="2000-01-01T00:00:00.000Z", page_size=3)
    assert scan.complete and len([j for j in scan.jobs if j["jobType"] == "custom"]) == 13
    before = len(scenario.requests_to(r"^/v1/jobs$", "GET"))
    layers.reconcile_page_size = 3
    assert await layers.reconcile(job) == remote_id
    assert len(scenario.requests_to(r"^/v1/jobs$", "GET")) - before > 5  # far past the old 5-page cap
    assert scenario.paid_jobs == 1


async def test_reconcile_says_not_created_only_after_a_complete_scan(layers, scenario, discord_cdn, tmp_path):
    mine = await uploaded_layers_job(layers, discord_cdn, tmp_path)
    scenario.add_other_jobs(3)
    scenario.paginate_with_empty_pages(2)
    assert await layers.reconcile(mine) is None  # read to the end: certainly not created
    scenario.faults.add("GET", r"^/v1/jobs$", 503, {"reason": "unavailable"}, times=3)  # with_retries: 3 tries
    with pytest.raises(ReconcileUnknown) as info:
        await layers.reconcile(mine)
    assert "not submitted again" in info.value.public and "may still have been charged" in info.value.public


async def test_a_scan_stops_at_jobs_older_than_the_job(layers, scenario):
    scenario.add_other_jobs(4)
    later = datetime.now(UTC) + timedelta(seconds=5)
    scan = await layers.api.list_jobs(created_after="2000-01-01T00:00:00.000Z", page_size=1, stop_before=later)
    assert scan.complete and scan.pages == 1  # everything on the first page is older: the rest is too
    scan = await layers.api.list_jobs(created_after="2000-01-01T00:00:00.000Z", page_size=1)
    assert scan.complete and scan.pages == 4


async def test_an_expired_part_url_restarts_the_upload_with_fresh_urls(layers, scenario, discord_cdn, tmp_path):
    scenario.expire_part_urls(1)
    job = await uploaded_layers_job(layers, discord_cdn, tmp_path)
    assert job.provider_data["asset_id"] in scenario.assets
    assert len(scenario.uploads) == 2  # the refused one, then a fresh one
    refused = [r for r in scenario.requests if r.app == "s3" and r.method == "PUT"]
    assert len(refused) >= 2
    remote_id, _ = await layers.submit(job)
    assert scenario.paid_jobs == 1 and remote_id in scenario.jobs


async def test_part_urls_that_keep_expiring_are_a_passing_fault_never_the_api_key(layers, scenario, discord_cdn,
                                                                                 tmp_path):
    scenario.expire_part_urls(5)
    with pytest.raises(Transient) as info:
        await uploaded_layers_job(layers, discord_cdn, tmp_path)
    assert "API key" not in info.value.public and "expiring" in info.value.public
    assert scenario.paid_jobs == 0


async def test_an_import_without_entity_id_falls_back_to_the_uploads_job(layers, scenario, discord_cdn, tmp_path):
    scenario.import_without_entity_id()
    job = await uploaded_layers_job(layers, discord_cdn, tmp_path)
    asset = job.provider_data["asset_id"]
    assert asset in scenario.assets and scenario.assets[asset].source == "uploaded-video"
    assert job.provider_data["owner_id"]  # recorded for reconcile's owner check
    remote_id, _ = await layers.submit(job)
    assert remote_id in scenario.jobs


async def test_a_single_frame_clip_is_refused_before_any_upload(layers, scenario, discord_cdn, tmp_path):
    with pytest.raises(InputRejected, match="single frame"):
        await uploaded_layers_job(layers, discord_cdn, tmp_path, seconds=1 / 12, fps=12)
    assert scenario.uploads == {} and scenario.paid_jobs == 0


# -- Viggle --------------------------------------------------------------------------------------------

@pytest.fixture
async def viggle():
    svc = ViggleSandbox(credits=100, character_seconds=0.1, scene_seconds=0.1, render_seconds=0.3)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def animate(viggle, discord_cdn):
    prov = ViggleProvider(ViggleSettings(api_key=viggle.api_key, base_url=viggle.base_url),
                          sandbox_net(viggle, discord_cdn))
    yield prov
    await prov.net.close()


async def run_render(prov, viggle, job: Job, workdir) -> Job:
    job = job.evolve(provider_data=await prov.upload(job, workdir))
    remote_id, data = await prov.submit(job)
    job = job.evolve(remote_id=remote_id, provider_data={**job.provider_data, **data})
    for _ in range(200):
        status = await prov.poll(job)
        if status.phase.is_terminal:
            assert status.phase is RemotePhase.SUCCEEDED
            return job.evolve(provider_data={**job.provider_data, "_status": status.data})
        await __import__("asyncio").sleep(0.05)
    raise AssertionError("render did not finish")


async def test_a_refused_cdn_link_gets_a_fresh_one_and_never_blames_the_key(animate, viggle, discord_cdn, tmp_path):
    from bot.models import RemoteStatus

    viggle.cdn.ttl = 1.0  # signed links that expire a second after they are handed out
    discord_cdn.attachment("me.png", image_bytes(64, 64))
    make_video(discord_cdn.root / "dance.mp4", seconds=1.0, width=96, height=64, fps=8)
    job = job_of("viggle", "mix", image=discord_cdn.attachment("me.png"), video=discord_cdn.attachment("dance.mp4"))
    job = await run_render(animate, viggle, job, tmp_path)
    final = RemoteStatus(RemotePhase.SUCCEEDED, data=job.provider_data["_status"])
    await __import__("asyncio").sleep(1.5)  # the link from the last poll has expired: polling again renews it
    arts = await animate.collect(job, final, tmp_path)
    assert arts[0].path.stat().st_size > 0 and not viggle.requests_to(r"/download$", "GET")
    # links refused outright (the stored one and the re-polled one): the authenticated download
    # endpoint (a 302 to a freshly signed link) delivers
    viggle.refuse_cdn(times=2)
    arts[0].path.unlink()
    arts = await animate.collect(job, final, tmp_path)
    assert arts[0].path.stat().st_size > 0
    download = viggle.requests_to(r"/download$", "GET")
    assert len(download) == 1 and download[0].headers["Authorization"] == f"Bearer {viggle.api_key}"
    assert all("Authorization" not in r.headers for r in viggle.requests if r.app == "cdn")
    viggle.refuse_cdn(times=10)
    with pytest.raises(Transient) as info:  # still refused: try again later, never "check the API key"
        await animate.collect(job, final, tmp_path)
    assert "key" not in info.value.public.lower()
    assert viggle.ledger.charges == 1


@pytest.mark.parametrize("style", ["nested", "flat", "string"])
async def test_an_error_envelope_inside_a_200_is_its_real_reason(animate, viggle, style):
    viggle.error_in_200("POST", r"^/api/render$", "CS-UORC01-008", style=style)
    job = job_of("viggle", "render", scene_id="s", character_id="c")
    with pytest.raises(OutOfCredits) as info:
        await animate.submit(job.evolve(provider_data={"inputs": {}}))
    assert "credit" in info.value.public.lower()
    assert viggle.ledger.charges == 0 and viggle.jobs == {}


async def test_character_reconcile_ignores_a_forged_name_and_old_objects(animate, viggle, discord_cdn, tmp_path):
    picture = discord_cdn.attachment("me.png", image_bytes(64, 64))
    victim = job_of("viggle", "character", name="Rita", image=picture)
    # someone else's character whose name holds the victim's marker (typed into the command)
    forger = job_of("viggle", "character", name=f"Evil {job_marker(victim)}", image=picture)
    forger = forger.evolve(provider_data=await animate.upload(forger, tmp_path))
    forged_id, _ = await animate.submit(forger)
    assert viggle.characters[forged_id].name == f"Evil {job_marker(forger)}"
    # and names with the marker somewhere else, or next to another marker (made outside the bot)
    await animate.api.create_character(f"{job_marker(victim)} Evil", image_url=picture["url"])
    await animate.api.create_character(f"Evil {job_marker(victim)} {job_marker(forger)}", image_url=picture["url"])
    assert await animate.reconcile(victim) is None
    # many characters later, the real one is still found (every page is read)
    victim = victim.evolve(provider_data=await animate.upload(victim, tmp_path))
    mine, _ = await animate.submit(victim)
    for i in range(5):
        await animate.api.create_character(f"Other {i}", image_url=picture["url"])
    from bot.providers import viggle_api

    async def small_pages(limit=100, offset=0):
        return await animate.api.list_characters(limit=2, offset=offset)

    assert await viggle_api.find_by_marker(small_pages, "characters", victim, page=2) == mine
    # an object made before the job existed cannot be its submission
    old = victim.evolve(created_at=datetime.now(UTC) + timedelta(hours=1))
    assert await animate.reconcile(old) is None


async def test_a_render_500_is_said_as_what_it_is(animate, viggle):
    viggle.faults.add("POST", r"^/api/render$", 500, "Internal Server Error")
    job = job_of("viggle", "render", scene_id="s", character_id="c")
    with pytest.raises(SubmissionUnknown) as info:
        await animate.submit(job.evolve(provider_data={"inputs": {}}))
    assert info.value.public.startswith("Viggle answered with a server error (HTTP 500) when starting the render")
    assert "restarted" not in info.value.public and "may have been charged" in info.value.public


async def test_a_tiny_image_or_still_clip_is_refused_before_paying(animate, viggle, discord_cdn, tmp_path):
    from bot.providers.viggle_inputs import spool

    with pytest.raises(InputRejected, match="at least 64 px"):
        await spool(animate.net, discord_cdn.attachment("dot.png", image_bytes(40, 24)), tmp_path, "image")
    make_video(discord_cdn.root / "still.mp4", seconds=1 / 8, width=96, height=64, fps=8)
    with pytest.raises(InputRejected, match="single frame"):
        await spool(animate.net, discord_cdn.attachment("still.mp4"), tmp_path, "video")
    assert viggle.ledger.charges == 0 and not viggle.requests_to(r"^/api/")


# -- vid2scene -----------------------------------------------------------------------------------------

@pytest.fixture
async def v2s(tmp_path):
    service = Vid2SceneSandbox(speed=4.0)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def splats(v2s, emu_cdn):
    env = v2s.env_lines()
    p = Vid2SceneProvider(Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"]),
                          sandbox_net(v2s, emu_cdn))
    yield p
    await p.close()


@pytest.fixture
async def emu_cdn():
    emu = DiscordEmulator()
    await emu.start()
    yield emu
    await emu.stop()


def splat_job(emu, path, **params) -> Job:
    stored = emu.attachment(path, path.name, "video/mp4")
    video = {"url": emu.cdn.url(stored), "filename": path.name, "size": stored.size, "content_type": "video/mp4"}
    return job_of("vid2scene", "splat", video=video, **params)


async def test_a_paginated_list_is_read_to_the_end_and_gets_follow_redirects(splats, v2s, emu_cdn, tmp_path):
    video = make_video(tmp_path / "walk.mp4", seconds=1.5)
    jobs = []
    for i in range(5):
        job = splat_job(emu_cdn, video, title=f"Scene {i}")
        job = job.evolve(provider_data=await splats.upload(job, tmp_path / job.id))
        remote_id, _ = await splats.submit(job)
        jobs.append((job, remote_id))
    v2s.paginate_job_list(2)
    v2s.redirect_next("GET", r"/jobs/$", times=2)
    scenes = await splats.scenes()
    assert sorted(s.job_id for s in scenes) == sorted(r for _, r in jobs)
    assert len(v2s.requests_to(r"/jobs/$", "GET")) == 3 + 2  # three pages, two redirects followed
    for job, remote_id in jobs:
        assert await splats.reconcile(job) == remote_id


async def test_posts_never_follow_a_redirect(splats, v2s, emu_cdn, tmp_path):
    job = splat_job(emu_cdn, make_video(tmp_path / "walk.mp4", seconds=1.5))
    job = job.evolve(provider_data=await splats.upload(job, tmp_path / "w"))
    v2s.redirect_next("POST", r"submit-job", times=1, status=302)
    with pytest.raises(InputRejected):
        await splats.submit(job)
    assert len(v2s.requests_to(r"submit-job", "POST")) == 1 and v2s.jobs == {}


async def test_vid2scene_reconcile_binds_no_forged_title(splats, v2s, emu_cdn, tmp_path):
    video = make_video(tmp_path / "walk.mp4", seconds=1.5)
    victim = splat_job(emu_cdn, video, title="Garden")
    victim = victim.evolve(provider_data=await splats.upload(victim, tmp_path / "v"))
    # another user's title typed with the victim's marker: stripped on the way in, so never matched
    forger = splat_job(emu_cdn, video, title=f"Mine {job_marker(victim)}")
    forger = forger.evolve(provider_data=await splats.upload(forger, tmp_path / "f"))
    forged_id, _ = await splats.submit(forger)
    assert job_marker(victim) not in v2s.jobs[forged_id].title
    # even a scene titled exactly in the victim's form, but made before the victim's job, is not it
    await splats.api.update(forged_id, title=marked_name("Garden", victim))
    assert await splats.reconcile(victim.evolve(created_at=datetime.now(UTC) + timedelta(hours=1))) is None
    await splats.api.update(forged_id, title=f"x {job_marker(victim)} {job_marker(forger)}")
    assert await splats.reconcile(victim) is None
    mine, _ = await splats.submit(victim)
    assert await splats.reconcile(victim) == mine


async def test_vid2scene_reconcile_is_unknown_when_the_list_cannot_be_finished(splats, v2s, emu_cdn, tmp_path):
    job = splat_job(emu_cdn, make_video(tmp_path / "walk.mp4", seconds=1.5))
    v2s.paginate_job_list(1)
    for i in range(2):
        other = splat_job(emu_cdn, make_video(tmp_path / f"o{i}.mp4", seconds=1.5))
        await splats.submit(other.evolve(provider_data=await splats.upload(other, tmp_path / other.id)))
    v2s.faults.add("GET", r"/jobs/$", 500, "<h1>Server Error (500)</h1>", times=1)
    with pytest.raises(ReconcileUnknown):
        await splats.reconcile(job)
    assert await splats.reconcile(job) is None  # the next complete scan can say it


@pytest.mark.parametrize("size", [(2, 2), (64, 48)])
async def test_a_tiny_video_is_refused_before_any_upload(splats, v2s, emu_cdn, tmp_path, size):
    video = make_video(tmp_path / "tiny.mp4", seconds=2, width=size[0], height=size[1])
    job = splat_job(emu_cdn, video)
    with pytest.raises(InputRejected, match="at least 100 px"):
        await splats.upload(job, tmp_path / "w")
    assert not v2s.requests_to(r"generate-upload-url") and v2s.jobs == {}


@pytest.mark.parametrize("method", ["quest", "generate_lod"])
async def test_quest_and_lod_are_refused_for_a_video_before_paying(splats, v2s, emu_cdn, tmp_path, method):
    job = splat_job(emu_cdn, make_video(tmp_path / "walk.mp4", seconds=1.5), reconstruction_method=method)
    with pytest.raises(InputRejected, match="does not work from a video"):
        await splats.upload(job, tmp_path / "w")
    assert v2s.jobs == {} and not v2s.requests_to(r"generate-upload-url")


def test_a_plain_success_message_is_not_an_error_envelope():
    from bot.providers.viggle_wire import envelope_error

    assert envelope_error({"detail": "Character deleted"}) is None
    assert envelope_error({"job_id": "j", "status": "failed", "error_code": "CS-UORC01-009"}) is None
    assert envelope_error({"balance": 3}) is None
    assert isinstance(envelope_error({"detail": "Insufficient credits to start this job"}), OutOfCredits)
    assert isinstance(envelope_error({"error_code": "CS-ORIV-009", "message": "Scene not found"}), InputRejected)


async def test_scenario_reconcile_checks_the_owner_and_the_time(layers, scenario, discord_cdn, tmp_path):
    job = await uploaded_layers_job(layers, discord_cdn, tmp_path)
    remote_id, _ = await layers.submit(job)
    assert await layers.reconcile(job) == remote_id
    other_project = job.evolve(provider_data={**job.provider_data, "owner_id": "proj_someone_else"})
    assert await layers.reconcile(other_project) is None
    made_later = job.evolve(created_at=datetime.now(UTC) + timedelta(hours=1),
                            submit_intent_at=datetime.now(UTC) - timedelta(hours=1))
    assert await layers.reconcile(made_later) is None
