"""Money-safety through sandbox Discord, the real bot and the provider sandboxes: what a user sees
when a provider misbehaves, and what the provider recorded as paid.

- a lost submit answer is reconciled over many pages, some of them empty: paid once, delivered once;
- a marker typed into another user's title hijacks nothing;
- a refused CDN link (Viggle) and an expired part URL (Scenario) recover;
- unusable inputs are refused with nothing spent;
- errors that may have cost money (a render 500) or could not (a 200 error envelope) say so plainly.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.config import ScenarioSettings, Vid2SceneSettings, ViggleSettings
from bot.models import JobState
from bot.providers.base import job_marker
from bot.providers.scenario import ScenarioProvider
from bot.providers.vid2scene import Vid2SceneProvider
from bot.providers.viggle import ViggleProvider
from sandbox.media import image_bytes, make_video
from sandbox.scenario import ScenarioSandbox
from sandbox.vid2scene import Vid2SceneSandbox
from sandbox.viggle import ViggleSandbox
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import job_id_of, result_messages, wait_job_state, wait_result
from tests.support.policy import sandbox_net


async def command(emu, user: int, name: str, /, **options):
    ix = await emu.slash(name, user=user, options=options)
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply(timeout=10)


async def failure_notice(emu, job_id: str, timeout: float = 20):
    found = await emu.wait_for(lambda: [m for m in emu.messages() if f"job `{job_id}`" in m.content
                                        and "failed" in m.content], timeout=timeout)
    return found[0]


def quick(limits):
    """A short wait before looking for a submission whose answer was lost (60 s in production)."""
    return dataclasses.replace(limits, reconcile_settle=0.3)


# -- Scenario ------------------------------------------------------------------------------------------

@pytest.fixture
async def scenario(tmp_path):
    sb = ScenarioSandbox(upload_validate_seconds=0.05, queue_seconds=0.1, warmup_seconds=0.05, run_seconds=0.3,
                         layer_seconds=0.5, layers_found=2, max_parallel_jobs=100, workdir=tmp_path / "scenario")
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
async def layers_bot(emu, tmp_path, scenario):
    env = scenario.env_lines()
    settings = ScenarioSettings(api_key=env["SCENARIO_API_KEY"], api_secret=env["SCENARIO_API_SECRET"],
                                base_url=env["SCENARIO_BASE_URL"], poll_min_seconds=0.05, poll_max_seconds=0.2)

    def providers():
        prov = ScenarioProvider(settings, sandbox_net(scenario, emu))
        prov.upload_poll_seconds = 0.05
        prov.reconcile_settle_seconds = 0.3
        prov.reconcile_page_size = 2
        prov.api.submit_timeout = 0.4
        prov.limits = quick(prov.limits)
        return {"scenario": prov}

    h = BotHarness(emu, tmp_path, providers, extensions=("cogs.jobs", "cogs.layers"))
    await h.start()
    yield h
    await h.stop()


async def start_layers(emu, user, path, name="clip.mp4") -> str:
    reply = await command(emu, user, "layers", video=emu.attachment(path, name, "video/mp4"),
                          instruction="each person separately", max_layers=2)
    return job_id_of(reply.content)


async def test_a_lost_answer_is_reconciled_over_many_pages_some_empty_and_paid_once(emu, layers_bot, users,
                                                                                    scenario, tmp_path):
    # the job is created at once; the answer arrives after the bot stopped waiting
    scenario.faults.add("POST", r"/generate/custom/", passthrough=True)  # the dry run that prices it
    scenario.faults.add("POST", r"/generate/custom/", delay=1.0, passthrough=True)
    scenario.paginate_with_empty_pages(2)
    job_id = await start_layers(emu, users["alice"], make_video(tmp_path / "clip.mp4", seconds=0.5))
    await emu.wait_for(lambda: scenario.paid_jobs == 1, timeout=15)
    scenario.add_other_jobs(12)  # a busy project: ours sinks far down the newest-first list
    await wait_job_state(layers_bot, job_id, JobState.DONE, timeout=30)
    await asyncio.sleep(0.3)
    [result] = result_messages(emu, job_id)
    assert result.pinged_user_ids == [users["alice"]]
    assert [a["filename"] for a in result.attachments][1:] == ["layer-00-background.webm", "layer-01-person-1.webm"]
    paid = [r for r in scenario.requests_to(r"/generate/custom/", "POST") if "dryRun" not in r.query]
    assert scenario.paid_jobs == 1 and len(paid) == 1
    listed = scenario.requests_to(r"^/v1/jobs$", "GET")
    assert len(listed) > 10 and any(r.query.get("paginationToken", "").endswith(".1") for r in listed)
    job = await layers_bot.bot.store.get_job(job_id)
    assert scenario.jobs[job.remote_id].input["video"] == job.provider_data["asset_id"]


async def test_an_expired_part_url_restarts_the_upload_and_the_job_is_delivered(emu, layers_bot, users,
                                                                              scenario, tmp_path):
    scenario.expire_part_urls(1)
    job_id = await start_layers(emu, users["bob"], make_video(tmp_path / "clip.mp4", seconds=0.5))
    await wait_job_state(layers_bot, job_id, JobState.DONE, timeout=30)
    assert len(result_messages(emu, job_id)) == 1
    assert len(scenario.uploads) == 2 and scenario.paid_jobs == 1
    assert not [m for m in emu.messages() if "API key" in m.content]


async def test_a_single_frame_clip_is_refused_with_nothing_spent(emu, layers_bot, users, scenario, tmp_path):
    job_id = await start_layers(emu, users["alice"], make_video(tmp_path / "still.mp4", seconds=1 / 12, fps=12))
    notice = await failure_notice(emu, job_id)
    assert "single frame" in notice.content and "at least 4 frames" in notice.content
    assert scenario.uploads == {} and scenario.paid_jobs == 0


# -- vid2scene -----------------------------------------------------------------------------------------

@pytest.fixture
async def v2s():
    service = Vid2SceneSandbox(queue_seconds=0.4, pickup_seconds=0.05, processing_seconds=0.2,
                               training_seconds=1.0)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def splat_bot(emu, tmp_path, v2s):
    env = v2s.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                poll_min_seconds=0.05, poll_max_seconds=0.2)

    def providers():
        prov = Vid2SceneProvider(section, sandbox_net(v2s, emu))
        prov.limits = quick(prov.limits)
        return {"vid2scene": prov}

    h = BotHarness(emu, tmp_path, providers, extensions=("cogs.jobs", "cogs.splat"))
    await h.start()
    yield h
    await h.stop()


async def test_a_forged_marker_hijacks_nothing(emu, splat_bot, users, v2s, tmp_path):
    video = make_video(tmp_path / "walk.mp4", seconds=1.5)
    v2s.faults.add("POST", r"submit-job", 502, "<h1>Bad Gateway</h1>", times=1)  # alice's submit: nothing made
    v2s.paginate_job_list(1)
    alice_reply = await command(emu, users["alice"], "splat create",
                                video=emu.attachment(video, "garden.mp4", "video/mp4"), title="Garden")
    alice_job = job_id_of(alice_reply.content)
    # bob reads alice's job id off the channel and types her marker into his own title
    bob_reply = await command(emu, users["bob"], "splat create", video=emu.attachment(video, "mine.mp4", "video/mp4"),
                              title=f"Mine [vb:{alice_job}]")
    bob_job = job_id_of(bob_reply.content)
    await wait_job_state(splat_bot, bob_job, JobState.DONE, timeout=30)
    await wait_job_state(splat_bot, alice_job, JobState.DONE, timeout=30)
    store = splat_bot.bot.store
    alice, bob = await store.get_job(alice_job), await store.get_job(bob_job)
    assert alice.remote_id != bob.remote_id
    assert v2s.jobs[bob.remote_id].title == f"Mine [vb:{bob_job}]"  # his typed marker was stripped
    assert v2s.jobs[alice.remote_id].title == f"Garden [vb:{alice_job}]"
    assert len(v2s.jobs) == 2  # one paid scene each; the 502 created nothing
    await wait_result(emu, alice_job)
    assert len(result_messages(emu, alice_job)) == 1 and len(result_messages(emu, bob_job)) == 1
    assert result_messages(emu, alice_job)[0].pinged_user_ids == [users["alice"]]
    assert job_marker(alice) not in " ".join(m.content for m in result_messages(emu, bob_job))


async def test_a_tiny_video_and_video_only_methods_are_refused_with_nothing_spent(emu, splat_bot, users, v2s,
                                                                               tmp_path):
    scope = next(iter(emu.commands.values()))
    splat = next(c for c in scope if c["name"] == "splat")
    create = next(o for o in splat["options"] if o["name"] == "create")
    method = next(o for o in create["options"] if o["name"] == "reconstruction_method")
    assert [c["value"] for c in method["choices"]] == ["glomap", "colmap", "vggt"]  # no quest / generate_lod

    tiny = make_video(tmp_path / "tiny.mp4", seconds=2, width=2, height=2)
    reply = await command(emu, users["alice"], "splat create", video=emu.attachment(tiny, "tiny.mp4", "video/mp4"))
    notice = await failure_notice(emu, job_id_of(reply.content))
    assert "2×2" in notice.content and "at least 100 px" in notice.content
    blank = await command(emu, users["alice"], "splat create", video=emu.attachment(tiny, "t.mp4", "video/mp4"),
                          title="[vb:abc]")
    assert "cannot be blank" in blank.content
    assert v2s.jobs == {} and not v2s.requests_to("generate-upload-url")


# -- Viggle --------------------------------------------------------------------------------------------

@pytest.fixture
async def viggle():
    svc = ViggleSandbox(credits=100, character_seconds=0.2, scene_seconds=0.2, render_seconds=0.6)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def viggle_bot(emu, tmp_path, viggle):
    settings = ViggleSettings(api_key=viggle.api_key, base_url=viggle.base_url, poll_min_seconds=0.05,
                              poll_max_seconds=0.2)
    h = BotHarness(emu, tmp_path, lambda: {"viggle": ViggleProvider(settings, sandbox_net(viggle, emu))},
                   extensions=("cogs.jobs", "cogs.viggle"))
    await h.start()
    yield h
    await h.stop()


async def start_mix(emu, user, tmp_path) -> str:
    portrait = tmp_path / "me.png"
    portrait.write_bytes(image_bytes(128, 128))
    clip = make_video(tmp_path / "dance.mp4", seconds=1.0, width=96, height=64, fps=8)
    reply = await command(emu, user, "viggle mix", image=emu.attachment(portrait, "me.png", "image/png"),
                          video=emu.attachment(clip, "dance.mp4", "video/mp4"))
    return job_id_of(reply.content)


async def test_a_refused_cdn_link_is_renewed_and_the_render_delivered_once(emu, viggle_bot, users, viggle, tmp_path):
    viggle.refuse_cdn(times=1)
    job_id = await start_mix(emu, users["alice"], tmp_path)
    result = await wait_result(emu, job_id, timeout=30)
    assert [a["filename"] for a in result.attachments] == [f"viggle-{job_id}.mp4", f"viggle-{job_id}-frame.jpg"]
    assert emu.read_attachment(result.attachments[0])[4:8] == b"ftyp"
    assert viggle.ledger.charges == 1 and len(viggle.jobs) == 1
    assert viggle.requests_to(r"/download$", "GET")  # the fresh link came from Viggle's download endpoint
    assert not [m for m in emu.messages() if "credentials" in m.content or "API key" in m.content]


async def test_a_render_server_error_is_reported_as_what_it_is(emu, viggle_bot, users, viggle, tmp_path):
    viggle.faults.add("POST", r"^/api/render$", 500, "Internal Server Error")
    job_id = await start_mix(emu, users["bob"], tmp_path)
    notice = await failure_notice(emu, job_id)
    assert "Viggle answered with a server error (HTTP 500) when starting the render" in notice.content
    assert "may have been charged" in notice.content and "/viggle credits" in notice.content
    assert "restarted" not in notice.content
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == 1  # never sent twice


async def test_an_error_envelope_in_a_200_says_out_of_credits(emu, viggle_bot, users, viggle, tmp_path):
    viggle.error_in_200("POST", r"^/api/render$", "CS-UORC01-008")
    job_id = await start_mix(emu, users["alice"], tmp_path)
    notice = await failure_notice(emu, job_id)
    assert "out of credits" in notice.content and "restarted" not in notice.content
    assert viggle.ledger.charges == 0 and viggle.jobs == {}


async def test_a_blank_name_is_refused_at_the_command_with_nothing_spent(emu, viggle_bot, users, viggle, tmp_path):
    portrait = tmp_path / "me.png"
    portrait.write_bytes(image_bytes(128, 128))
    for name in ("   ", "[vb:abcdef]"):
        reply = await command(emu, users["alice"], "viggle character", name=name,
                              image=emu.attachment(portrait, "me.png", "image/png"))
        assert "cannot be blank" in reply.content and reply.ephemeral
    assert viggle.ledger.charges == 0 and not viggle.requests_to(r"^/api/")
