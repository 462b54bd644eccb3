"""/splat through sandbox Discord with the real bot and the vid2scene sandbox: what users see."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.config import Vid2SceneSettings
from bot.models import JobState
from bot.providers import vid2scene as v2s
from bot.providers.vid2scene import Vid2SceneProvider
from sandbox.media import image_bytes, make_large_file, make_video
from sandbox.vid2scene import Vid2SceneSandbox
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import field, job_id_of, result_messages, status_message, wait_job_state, wait_result
from tests.support.policy import sandbox_net

QUICK = {"queue_seconds": 0.8, "pickup_seconds": 0.05, "processing_seconds": 0.3, "training_seconds": 2.0,
         "download_url_ttl": 1.5}


@pytest.fixture
def knobs() -> dict:
    return {}


@pytest.fixture
async def v2s_sandbox(knobs):
    service = Vid2SceneSandbox(**{**QUICK, **knobs})
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def bot_options() -> dict:
    return {}


@pytest.fixture
def deadline() -> dict:
    return {"splat": 5.0}


@pytest.fixture
async def splat_bot(emu, tmp_path, v2s_sandbox, bot_options, deadline):
    env = v2s_sandbox.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                poll_min_seconds=0.05, poll_max_seconds=0.2, deadline_minutes=deadline)
    # edits paced for the sandbox's short queue (Discord's 5 per 5 s per channel still applies)
    options = {"status_edit_seconds": 0.2, **bot_options}
    h = BotHarness(emu, tmp_path, lambda: {"vid2scene": Vid2SceneProvider(section, sandbox_net(v2s_sandbox, emu))},
                   extensions=("cogs.jobs", "cogs.splat"), **options)
    await h.start()
    yield h
    await h.stop()


async def create(emu, user: int, path, name: str, ctype: str, **options):
    ix = await emu.slash("splat create", user=user, options={"video": emu.attachment(path, name, ctype), **options})
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply()


def nothing_spent(sandbox) -> bool:
    return not (sandbox.requests_to("generate-upload-url") or sandbox.requests_to("/videos/", "PUT")
                or sandbox.requests_to("submit-job"))


# Discord allows 5 edits of a message per 5 s: the first states use them up, so training must
# outlast that window for its progress to be shown (real jobs train for an hour)
@pytest.mark.parametrize("knobs", [{"training_seconds": 6.0}])
async def test_create_shows_queue_and_progress_posts_spz_and_preview_once_and_manages_the_scene(
        emu, users, splat_bot, v2s_sandbox, tmp_path):
    video = make_video(tmp_path / "orbit.mp4", seconds=2)
    note = await create(emu, users["alice"], video, "orbit.mp4", "video/mp4", title="Desk orbit",
                        training_num_steps=6000, camera_type="orbital")
    job_id = job_id_of(note.content)
    assert note.ephemeral
    status = await status_message(emu, job_id)
    result = await wait_result(emu, job_id, timeout=30)  # the bot renders a turntable before posting

    names = [a["filename"] for a in result.attachments]
    assert names[:2] == ["desk-orbit.spz", "desk-orbit-turntable.webp"]
    assert emu.read_attachment(result.attachments[0])[:2] in (b"\x1f\x8b", b"NG")
    turntable = emu.read_attachment(result.attachments[1])
    assert turntable[:4] == b"RIFF" and turntable[8:12] == b"WEBP" and len(turntable) <= 2 * 1024 * 1024
    assert result.message_reference["message_id"] == str(status.id)
    assert result.pinged_user_ids == [users["alice"]]

    await emu.wait_for(lambda: (field(emu.message(status.id), "State") or "").startswith("Done in"), timeout=5)
    versions = [*emu.message(status.id).edits, emu.message(status.id)]
    states = [field(v, "State") or "" for v in versions]
    assert any(s.startswith("Queued (position 1)") for s in states)
    assert any((field(v, "Progress") or "").endswith("%") and "Training" in (field(v, "State") or "")
               for v in versions)
    thumbs = [e.get("thumbnail", {}).get("url", "") for v in versions for e in v.embeds]
    assert any(t.startswith(v2s_sandbox.urls["blob"]) for t in thumbs)  # the live training preview
    assert states[-1].startswith("Done in ")  # the result card says how long it took
    final = versions[-1].embeds[0]
    # once done, the card shows the posted turntable (the result's own attachment, by its URL)
    assert final["image"]["url"] == result.attachments[1]["url"]
    assert f"/{result.id})" in field(versions[-1], "Files")  # a jump link to the result message
    assert field(versions[-1], "Cost") == "1 credit"
    await asyncio.sleep(0.4)
    assert len(result_messages(emu, job_id)) == 1
    assert len(v2s_sandbox.requests_to("submit-job", "POST")) == 1

    job = await splat_bot.bot.store.get_job(job_id)
    scene = job.remote_id
    # a scene made elsewhere with the same key is listed too
    outside = v2s_sandbox.jobs[scene].video_blob
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{v2s_sandbox.env_lines()['VID2SCENE_BASE_URL']}/submit-job/",
                          json={"blob_name": outside, "title": "From the website"},
                          headers={"Authorization": f"Api-Key {v2s_sandbox.api_key}"}) as resp:
            assert resp.status == 201
            foreign = (await resp.json())["job_id"]
    # ... but it has no recorded owner, so only a server manager sees and handles it
    listing = await (await emu.slash("splat list", user=users["alice"])).wait_reply()
    assert "Desk orbit" in listing.content and "From the website" not in listing.content and listing.ephemeral
    managed = await (await emu.slash("splat list", user=users["mod"])).wait_reply()
    assert "From the website" in managed.content and "made outside this bot" in managed.content
    for command, extra in (("splat info", {}), ("splat download", {}), ("splat rename", {"title": "mine"}),
                           ("splat visibility", {"public": True}), ("splat delete", {})):
        nope = await (await emu.slash(command, user=users["alice"], options={"scene": foreign, **extra})).wait_reply()
        assert "only a server manager" in nope.content and nope.ephemeral, command
    assert v2s_sandbox.jobs[foreign].title == "From the website" and v2s_sandbox.jobs[foreign].public is False
    seen = await (await emu.slash("splat info", user=users["mod"], options={"scene": foreign})).wait_reply()
    assert seen.embeds and field(seen, "Owner") == "made outside this bot"

    choices = await emu.autocomplete("splat info", focused="scene", value="desk", user=users["alice"])
    assert [c["value"] for c in choices] == [scene]
    assert await emu.autocomplete("splat info", focused="scene", value="desk", user=users["bob"]) == []
    info = await (await emu.slash("splat info", user=users["alice"], options={"scene": scene})).wait_reply()
    assert info.embeds and field(info, "Status").startswith("Finished")

    renamed = await (await emu.slash("splat rename", user=users["alice"],
                                     options={"scene": scene, "title": "Desk, final"})).wait_reply()
    assert "Renamed" in renamed.content and v2s_sandbox.jobs[scene].title == f"Desk, final [vb:{job_id}]"
    shown = await (await emu.slash("splat visibility", user=users["alice"],
                                   options={"scene": scene, "public": True})).wait_reply()
    assert "now public" in shown.content and v2s_sandbox.jobs[scene].public is True
    nope = await (await emu.slash("splat rename", user=users["bob"],
                                  options={"scene": scene, "title": "mine now"})).wait_reply()
    assert "Only the person who made this scene" in nope.content

    # a stranger may not delete it; the owner is asked to confirm first
    refused = await (await emu.slash("splat delete", user=users["bob"], options={"scene": scene})).wait_reply()
    assert "Only the person who made this scene" in refused.content and refused.ephemeral
    assert scene in v2s_sandbox.jobs
    ask = await (await emu.slash("splat delete", user=users["alice"], options={"scene": scene})).wait_reply()
    assert "for good?" in ask.content
    click = await emu.click(ask, f"splat:del:yes:{scene}:{users['alice']}", user=users["alice"])
    await click.wait_ack()
    await emu.wait_for(lambda: "Deleted the scene" in emu.message(ask.id).content, timeout=5)
    assert scene not in v2s_sandbox.jobs
    assert await splat_bot.bot.store.get_object("vid2scene", "scene", scene) is None


async def test_bad_inputs_are_refused_clearly_and_nothing_is_uploaded(
        emu, users, splat_bot, v2s_sandbox, tmp_path, monkeypatch):
    png = tmp_path / "cat.png"
    png.write_bytes(image_bytes(64, 64))
    reply = await create(emu, users["alice"], png, "cat.png", "image/png")
    assert "is not a video" in reply.content and "job" not in reply.content

    monkeypatch.setattr(v2s, "MAX_VIDEO_BYTES", 1 << 20)
    big = make_large_file(tmp_path / "big.mp4", 3 << 20)
    reply = await create(emu, users["alice"], big, "big.mp4", "video/mp4")
    assert "vid2scene accepts at most 1 MB" in reply.content

    # a picture renamed to .mp4 passes the cheap check; the probe of the spooled file stops it
    disguised = tmp_path / "holiday.mp4"
    disguised.write_bytes(image_bytes(64, 64))
    note = await create(emu, users["alice"], disguised, "holiday.mp4", "video/mp4")
    job = await wait_job_state(splat_bot, job_id_of(note.content), JobState.FAILED)
    assert "not a video I can read" in job.last_error and "PNG" in job.last_error
    assert nothing_spent(v2s_sandbox)


@pytest.mark.parametrize("bot_options", [{"upload_limit_mb": 1.0}])
async def test_download_button_gives_a_fresh_link_after_the_old_one_expired(
        emu, users, splat_bot, v2s_sandbox, tmp_path):
    note = await create(emu, users["alice"], make_video(tmp_path / "o.mp4"), "mug.mp4", "video/mp4")
    job_id = job_id_of(note.content)
    result = await wait_result(emu, job_id, timeout=20)
    names = [a["filename"] for a in result.attachments]
    assert "mug.spz" in names and "mug.ply" not in names  # the PLY is over the 1 MB limit
    assert "full-quality scene (PLY)" in result.content and "use the button" in result.content
    assert "Download mug.ply" in str(result.components)

    async def click_for_link() -> str:
        click = await emu.click(result, f"job:dl:{job_id}:ply", user=users["alice"])
        reply = await click.wait_reply()
        assert reply.ephemeral and reply.visible_to == users["alice"]
        return reply.content.split("<", 1)[1].split(">", 1)[0]

    first = await click_for_link()
    async with aiohttp.ClientSession() as s:
        async with s.get(first) as resp:
            assert resp.status == 200 and (await resp.content.read(4)) == b"ply\n"
        await asyncio.sleep(QUICK["download_url_ttl"] + 0.6)
        async with s.get(first) as resp:
            assert resp.status == 403  # the signed link expired
        second = await click_for_link()
        assert second != first
        async with s.get(second) as resp:
            assert resp.status == 200

        # /splat download: the SPZ fits and comes as a private file; the PLY comes as a fresh link
        scene = (await splat_bot.bot.store.get_job(job_id)).remote_id
        spz = await (await emu.slash("splat download", user=users["alice"],
                                     options={"scene": scene, "format": "spz"})).wait_reply()
        assert spz.ephemeral and spz.attachments[0]["filename"] == "mug.spz"
        ply = await (await emu.slash("splat download", user=users["alice"],
                                     options={"scene": scene, "format": "ply"})).wait_reply()
        assert ply.ephemeral and ply.visible_to == users["alice"] and "fresh PLY link" in ply.content
        again = await emu.click(ply, f"splat:link:{scene}:ply", user=users["alice"])
        link = (await again.wait_reply()).content.split("<", 1)[1].split(">", 1)[0]
        async with s.get(link) as resp:
            assert resp.status == 200
        stranger = await (await emu.slash("splat download", user=users["bob"],
                                          options={"scene": scene, "format": "ply"})).wait_reply()
        assert "Only the person who made this scene" in stranger.content


@pytest.mark.parametrize("deadline", [{"splat": 0.05}])  # 3 seconds
async def test_a_job_stuck_upstream_fails_at_its_deadline(emu, users, splat_bot, v2s_sandbox, tmp_path):
    v2s_sandbox.stick_next_job()
    note = await create(emu, users["alice"], make_video(tmp_path / "s.mp4"), "stuck.mp4", "video/mp4")
    job_id = job_id_of(note.content)
    job = await wait_job_state(splat_bot, job_id, JobState.FAILED, timeout=10)
    assert "did not finish within" in job.last_error and "stuck on their side" in job.last_error
    assert job.remote_id not in v2s_sandbox.jobs  # deleted upstream (which refunds the scene credit)
    status = await status_message(emu, job_id)
    await emu.wait_for(lambda: "did not finish" in (field(emu.message(status.id), "Reason") or ""), timeout=5)
    assert job.detail == "Training the 3D scene" and job.progress  # it hung mid-training, not in the queue
    assert not result_messages(emu, job_id)


@pytest.mark.parametrize("bot_options", [{"upload_limit_mb": 50.0}])
async def test_a_server_refusing_the_upload_still_gets_download_buttons_for_the_paid_files(
        emu, users, splat_bot, v2s_sandbox, tmp_path):
    """The bot was told the server takes 50 MB (a boost that has lapsed since): Discord refuses the
    files (413). The message is planned again under smaller limits; files that cannot be sent
    still come as Download buttons, never silently dropped."""
    emu.upload_limit = 2000  # what this server really accepts now
    note = await create(emu, users["alice"], make_video(tmp_path / "o.mp4"), "mug.mp4", "video/mp4")
    job_id = job_id_of(note.content)
    result = await wait_result(emu, job_id, timeout=20)
    assert all(a["size"] <= 2000 for a in result.attachments)
    labels = str(result.components)
    assert "Download mug.ply" in labels and "Download mug.spz" in labels
    assert "use the button" in result.content
    assert len(result_messages(emu, job_id)) == 1
