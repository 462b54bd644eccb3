"""/layers end to end: the real bot, sandbox Discord and the Scenario sandbox, asserting what the
user sees in the channel and what Scenario was asked to do (and paid for)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.config import ScenarioSettings
from bot.models import JobState
from bot.providers.scenario import ScenarioProvider
from sandbox.media import image_bytes, make_video
from sandbox.scenario import ScenarioSandbox
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import job_id_of, result_messages, status_message, wait_job_state
from tests.support.policy import sandbox_net

INSTRUCTION = "each person separately, then the background"


@pytest.fixture
async def scenario(tmp_path):
    sb = ScenarioSandbox(upload_validate_seconds=0.05, queue_seconds=0.1, warmup_seconds=0.05, run_seconds=0.3,
                           layer_seconds=0.5, layers_found=3, workdir=tmp_path / "scenario")
    await sb.start()
    yield sb
    await sb.stop()


@pytest.fixture
def bot_options() -> dict:
    return {}


@pytest.fixture
async def harness(emu, tmp_path, scenario, bot_options):
    env = scenario.env_lines()
    settings = ScenarioSettings(api_key=env["SCENARIO_API_KEY"], api_secret=env["SCENARIO_API_SECRET"],
                                base_url=env["SCENARIO_BASE_URL"], poll_min_seconds=0.05, poll_max_seconds=0.2)

    def providers():
        prov = ScenarioProvider(settings, sandbox_net(scenario, emu))
        prov.upload_poll_seconds = 0.05
        prov.reconcile_settle_seconds = 1.0
        prov.api.submit_timeout = 0.5
        prov.limits = dataclasses.replace(prov.limits, reconcile_settle=0.5)
        return {"scenario": prov}

    h = BotHarness(emu, tmp_path, providers, extensions=("cogs.jobs", "cogs.layers"), **bot_options)
    await h.start()
    yield h
    await h.stop()


async def start_layers(emu, user: int, path, name: str = "clip.mp4", ctype: str = "video/mp4", **options) -> str:
    ix = await emu.slash("layers", user=user, options={"video": emu.attachment(path, name, ctype),
                                                       "instruction": INSTRUCTION, **options})
    await ix.wait_ack(timeout=3)
    reply = await ix.wait_reply()
    return job_id_of(reply.content)


async def failure_notice(emu, job_id: str, timeout: float = 15):
    found = await emu.wait_for(lambda: [m for m in emu.messages() if f"job `{job_id}`" in m.content
                                        and "failed" in m.content], timeout=timeout)
    return found[0]


def posted_files(emu, job_id: str) -> list[str]:
    return [a["filename"] for m in result_messages(emu, job_id) for a in m.attachments]


async def test_layers_are_posted_once_in_order_with_preview_split_over_messages(emu, harness, users, scenario,
                                                                               tmp_path):
    scenario.layers_found = 10
    clip = make_video(tmp_path / "street.mp4", seconds=1.0)
    job_id = await start_layers(emu, users["alice"], clip, max_layers=10)
    status = await status_message(emu, job_id)
    await wait_job_state(harness, job_id, JobState.DONE, timeout=30)
    await asyncio.sleep(0.3)
    messages = result_messages(emu, job_id)
    assert len(messages) == 2  # 11 files: Discord takes 10 per message
    assert all(m.message_reference["message_id"] == str(status.id) for m in messages)
    assert all(m.pinged_user_ids == [users["alice"]] for m in messages)
    names = ["background"] + [f"person-{i}" for i in range(1, 10)]
    assert posted_files(emu, job_id) == ["layers-preview.png"] + [f"layer-{i:02d}-{n}.webm"
                                                                  for i, n in enumerate(names)]
    preview = emu.read_attachment(messages[0].attachments[0])
    assert preview[:8] == b"\x89PNG\r\n\x1a\n"
    assert "layer 0: background" in messages[0].content
    assert scenario.paid_jobs == 1
    sent = next(j for j in scenario.jobs.values() if j.job_type == "custom").input
    assert sent["separationInstruction"] == INSTRUCTION and sent["maxLayers"] == 10


@pytest.mark.parametrize("bot_options", [{"upload_limit_mb": 0.001}])
async def test_layers_over_the_upload_limit_get_a_fresh_download_link(emu, harness, users, scenario, tmp_path):
    scenario.cdn_url_ttl = 2
    clip = make_video(tmp_path / "clip.mp4", seconds=1.0)
    job_id = await start_layers(emu, users["alice"], clip, max_layers=2)
    await wait_job_state(harness, job_id, JobState.DONE, timeout=30)
    message = result_messages(emu, job_id)[0]
    assert "over this server's upload limit" in message.content
    buttons = [c for row in message.components for c in row.get("components", [])]
    assert [b["label"] for b in buttons] == ["Download layer-00-background.webm", "Download layer-01-person-1.webm"]
    await asyncio.sleep(2.1)  # every URL signed so far has expired
    ix = await emu.click(message, buttons[1]["custom_id"], user=users["alice"])
    reply = await ix.wait_reply()
    assert reply.ephemeral and "fresh link" in reply.content
    assert scenario.urls["cdn"] in reply.content and "Signature=" in reply.content


async def test_a_failed_job_shows_scenarios_error_and_hint(emu, harness, users, scenario, tmp_path):
    scenario.fail_next_job("No separable objects found", "Name the objects to separate, e.g. 'the red car'.")
    job_id = await start_layers(emu, users["bob"], make_video(tmp_path / "c.mp4", seconds=1.0))
    notice = await failure_notice(emu, job_id)
    assert "No separable objects found" in notice.content
    assert "Hint: Name the objects to separate" in notice.content
    assert result_messages(emu, job_id) == []


async def test_a_5xx_on_generate_does_not_pay_twice(emu, harness, users, scenario, tmp_path):
    scenario.faults.add("POST", r"/v1/generate/custom/", passthrough=True)  # the dry run that prices it
    scenario.faults.add("POST", r"/v1/generate/custom/", 503, {"reason": "Service unavailable"})
    job_id = await start_layers(emu, users["alice"], make_video(tmp_path / "c.mp4", seconds=1.0))
    await wait_job_state(harness, job_id, JobState.DONE, timeout=30)
    assert scenario.paid_jobs == 1  # the 503 created nothing; the lookup proved it; one real job
    assert len(scenario.requests_to(r"/v1/jobs$", "GET")) >= 1  # looked up before sending again
    assert len(posted_files(emu, job_id)) == 4


async def test_a_timeout_on_generate_finds_the_job_instead_of_submitting_again(emu, harness, users, scenario,
                                                                               tmp_path):
    # the job is created at once; the answer comes after the bot stopped waiting
    scenario.faults.add("POST", r"/generate/custom/", passthrough=True)  # the dry run that prices it
    scenario.faults.add("POST", r"/generate/custom/", delay=1.5, passthrough=True)
    job_id = await start_layers(emu, users["alice"], make_video(tmp_path / "c.mp4", seconds=1.0))
    await wait_job_state(harness, job_id, JobState.DONE, timeout=30)
    paid = [r for r in scenario.requests_to(r"/v1/generate/custom/", "POST") if "dryRun" not in r.query]
    assert len(paid) == 1
    assert scenario.paid_jobs == 1
    job = await harness.bot.store.get_job(job_id)
    assert job.remote_id in scenario.jobs
    assert len(posted_files(emu, job_id)) == 4


async def test_an_upload_scenario_refuses_is_reported_clearly(emu, harness, users, scenario, tmp_path):
    scenario.fail_next_upload("The video codec is not supported")
    job_id = await start_layers(emu, users["alice"], make_video(tmp_path / "c.mp4", seconds=1.0))
    notice = await failure_notice(emu, job_id)
    assert "Scenario could not import the video: The video codec is not supported" in notice.content
    assert scenario.paid_jobs == 0


async def test_a_picture_named_like_a_video_is_refused_before_upload(emu, harness, users, scenario, tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(image_bytes(64, 64))
    job_id = await start_layers(emu, users["alice"], fake)
    notice = await failure_notice(emu, job_id)
    assert "not a video" in notice.content and "PNG image" in notice.content
    assert scenario.requests_to(r"/v1/uploads") == []


async def test_command_refuses_non_videos_and_empty_instructions_at_once(emu, harness, users, scenario, tmp_path):
    doc = tmp_path / "notes.txt"
    doc.write_text("hello")
    ix = await emu.slash("layers", user=users["alice"], options={
        "video": emu.attachment(doc, "notes.txt", "text/plain"), "instruction": INSTRUCTION})
    reply = await ix.wait_reply()
    assert reply.ephemeral and "not a video" in reply.content
    ix = await emu.slash("layers", user=users["alice"], options={
        "video": emu.attachment(make_video(tmp_path / "c.mp4", seconds=0.5), "c.mp4", "video/mp4"),
        "instruction": "   "})
    reply = await ix.wait_reply()
    assert reply.ephemeral and "Describe how to split" in reply.content
    assert scenario.requests == []


async def test_command_says_when_scenario_is_not_configured(emu, users, tmp_path):
    h = BotHarness(emu, tmp_path, lambda: {}, extensions=("cogs.jobs", "cogs.layers"))
    await h.start()
    try:
        clip = make_video(tmp_path / "c.mp4", seconds=0.5)
        ix = await emu.slash("layers", user=users["alice"], options={
            "video": emu.attachment(clip, "c.mp4", "video/mp4"), "instruction": INSTRUCTION})
        reply = await ix.wait_reply()
        assert reply.ephemeral and "Scenario is not configured on this bot" in reply.content
    finally:
        await h.stop()


async def test_a_cancel_scenario_refuses_keeps_the_slot_and_the_paid_layers_are_still_delivered(
        emu, harness, users, scenario, tmp_path):
    scenario.run_seconds = 4.0  # running long enough to click Cancel
    harness.bot.jobs.max_per_user = 1
    clip = make_video(tmp_path / "long.mp4", seconds=1.0)
    job_id = await start_layers(emu, users["alice"], clip)
    await wait_job_state(harness, job_id, JobState.RUNNING, timeout=15)
    status = await status_message(emu, job_id)
    click = await emu.click(status, f"job:cancel:{job_id}", user=users["alice"])
    assert "Cancelling" in (await click.wait_reply()).content

    # told so: a reply to the card pinging the owner, and the card itself
    notice = (await emu.wait_for(lambda: [m for m in emu.messages() if "would not stop" in m.content
                                          and f"job `{job_id}`" in m.content], timeout=10))[0]
    assert notice.pinged_user_ids == [users["alice"]] and notice.message_reference["message_id"] == str(status.id)
    assert "results will be posted here" in notice.content
    await emu.wait_for(lambda: any(f["name"] == "Cancel refused" for e in emu.message(status.id).embeds
                                   for f in e.get("fields", [])), timeout=5)
    # the remote job runs on, so the user's slot stays taken
    ix = await emu.slash("layers", user=users["alice"], options={
        "video": emu.attachment(make_video(tmp_path / "next.mp4", seconds=0.5), "next.mp4", "video/mp4"),
        "instruction": INSTRUCTION})
    assert "already have 1 jobs running" in (await ix.wait_reply()).content
    ix = await emu.slash("jobs cancel", user=users["alice"], options={"id": job_id})
    assert "would not stop" in (await ix.wait_reply()).content

    # and the paid result is delivered once, saying why it came after all
    await wait_job_state(harness, job_id, JobState.DONE, timeout=30)
    await asyncio.sleep(0.3)
    results = result_messages(emu, job_id)
    assert len(results) == 1 and "would not cancel it" in results[0].content
    assert scenario.paid_jobs == 1
    assert len([m for m in emu.messages() if "would not stop" in m.content and not m.ephemeral]) == 1
