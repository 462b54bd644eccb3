"""/viggle through sandbox Discord with the real bot and the Viggle sandbox: what a user sees."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import JobState
from sandbox.media import image_bytes, make_video
from sandbox.viggle import ViggleSandbox
from tests.e2e.helpers import field, job_id_of, result_messages, status_message, wait_job_state, wait_result
from tests.e2e.viggle_world import quick_channel_limits, viggle_harness

GROUP_DANCE = "1c9e7a52-3f6b-4d8a-b2e1-0f9d8c7b6a54"


@pytest.fixture
async def viggle():
    # each render checkpoint outlasts the longest poll wait
    svc = ViggleSandbox(credits=100, character_seconds=0.2, scene_seconds=0.2, render_seconds=1.5)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def bot(emu, tmp_path, viggle):
    quick_channel_limits(emu)
    h = viggle_harness(emu, tmp_path, viggle)
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
def media(tmp_path):
    portrait = tmp_path / "alice.png"
    portrait.write_bytes(image_bytes(128, 128, label="A"))
    other = tmp_path / "bob.png"
    other.write_bytes(image_bytes(128, 128, label="B", hue=5))
    clip = make_video(tmp_path / "dance.mp4", seconds=1.0, width=96, height=64, fps=8)
    return {"alice": portrait, "bob": other, "clip": clip}


async def reply_to(emu, user: int, command: str, **options):
    ix = await emu.slash(command, user=user, options=options)
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply(timeout=10)


async def run_job(emu, bot, user: int, command: str, state=JobState.DONE, **options) -> str:
    reply = await reply_to(emu, user, command, **options)
    job_id = job_id_of(reply.content)
    await wait_job_state(bot, job_id, state, timeout=20)
    return job_id


async def make_character(emu, bot, user, media, name: str) -> str:
    att = emu.attachment(media[name.lower()], f"{name.lower()}.png", "image/png")
    return await run_job(emu, bot, user, "viggle character", name=name, image=att)


async def test_character_and_scene_from_attachments_are_announced_then_rendered(emu, bot, users, viggle, media):
    alice = users["alice"]
    char_job = await make_character(emu, bot, alice, media, "Alice")
    [card] = result_messages(emu, char_job)
    assert "Alice" in card.content and "ready" in card.content
    assert card.attachments[0]["filename"].endswith(".png")
    assert emu.read_attachment(card.attachments[0]).startswith(b"\x89PNG")
    # Viggle fetched the Discord link itself: no upload through the bot
    [create] = viggle.requests_to(r"^/api/characters/preprocess$", "POST")
    assert create.headers.get("Content-Type", "").startswith("multipart/form-data")

    scene_job = await run_job(emu, bot, alice, "viggle scene", name="Dance", background_mode="original",
                              video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    [scene_card] = result_messages(emu, scene_job)
    assert "Dance" in scene_card.content and "V4_Preview" in scene_card.content
    assert scene_card.attachments[0]["filename"] == "scene-thumbnail.jpg"
    assert emu.read_attachment(scene_card.attachments[0]).startswith(b"\xff\xd8")

    choices = await emu.autocomplete("viggle render", focused="scene", value="da", options={}, user=alice)
    assert [c["name"] for c in choices] == ["Dance · V4"]
    choices = await emu.autocomplete("viggle render", focused="character", value="", options={}, user=alice)
    assert [c["name"] for c in choices] == ["Alice"]
    # someone else's saved objects are not offered
    assert await emu.autocomplete("viggle render", focused="scene", value="", options={}, user=users["bob"]) == []

    render_job = await run_job(emu, bot, alice, "viggle render", scene="Dance", character="Alice",
                               background_mode="transparent")
    [result] = result_messages(emu, render_job)
    names = [a["filename"] for a in result.attachments]
    assert names == [f"viggle-{render_job}.mp4", f"viggle-{render_job}-mask.mp4", f"viggle-{render_job}-frame.jpg"]
    status = emu.message((await status_message(emu, render_job)).id)
    await emu.wait_for(lambda: emu.message(status.id).embeds[0].get("image"), timeout=5)
    assert emu.message(status.id).embeds[0]["image"]["url"] == result.attachments[2]["url"]  # the card shows a frame
    shown = [field(v, "State") or "" for v in [*status.edits, status]]
    assert any("Motion understood" in s for s in shown)
    assert not any("_done" in s or "checkpoint" in s for s in shown)
    assert any(field(v, "Progress") for v in status.edits)


async def test_multi_person_render_with_partial_mapping_posts_once(emu, bot, users, viggle, media):
    alice = users["alice"]
    await make_character(emu, bot, alice, media, "Alice")
    await run_job(emu, bot, alice, "viggle template", template_id=GROUP_DANCE, name="Group")
    # segments are offered by autocomplete, filled with the user's characters
    choices = await emu.autocomplete("viggle render", focused="mapping", value="",
                                     options={"scene": "Group"}, user=alice)
    assert choices and '"person_a1b2c3d4": "Alice"' in choices[0]["value"]
    mapping = '{"person_a1b2c3d4": "Alice", "person_c9d0e1f2": "Alice"}'  # partial, one character twice
    job_id = await run_job(emu, bot, alice, "viggle render", scene="Group", mapping=mapping)
    await wait_result(emu, job_id)
    await asyncio.sleep(0.3)
    results = result_messages(emu, job_id)
    assert len(results) == 1 and results[0].attachments[0]["filename"] == f"viggle-{job_id}.mp4"
    rendered = next(iter(viggle.jobs.values()))
    assert len(rendered.character_ids) == 2 and len(set(rendered.character_ids)) == 1
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == 1


async def test_mix_in_one_command(emu, bot, users, viggle, media):
    job_id = await run_job(emu, bot, users["alice"], "viggle mix",
                           image=emu.attachment(media["alice"], "alice.png", "image/png"),
                           video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"),
                           background_mode="solid", bg_color="0,0,255")
    [result] = result_messages(emu, job_id)
    assert result.attachments[0]["filename"] == f"viggle-{job_id}.mp4"
    assert result.pinged_user_ids == [users["alice"]]


async def test_cancel_refunds(emu, bot, users, viggle, media):
    alice = users["alice"]
    await make_character(emu, bot, alice, media, "Alice")
    await run_job(emu, bot, alice, "viggle scene", name="Dance",
                  video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    before = viggle.credits
    viggle.stick_next_render()
    job_id = await run_job(emu, bot, alice, "viggle render", state=JobState.RUNNING, scene="Dance",
                           character="Alice")
    assert viggle.credits < before
    status = await status_message(emu, job_id)
    await emu.click(status, f"job:cancel:{job_id}", user=alice)
    await wait_job_state(bot, job_id, JobState.CANCELLED)
    assert viggle.credits == before
    assert viggle.requests_to(r"^/api/render/job_", "DELETE")


async def test_refusals_are_specific_and_spend_nothing(emu, bot, users, viggle, media):
    alice = users["alice"]
    await make_character(emu, bot, alice, media, "Alice")
    await run_job(emu, bot, alice, "viggle scene", name="Dance",
                  video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    renders_before = len(viggle.requests_to(r"^/api/render$", "POST"))

    reply = await reply_to(emu, alice, "viggle render", scene="Dance", character="Alice", model="V3_Preview")
    assert "prepared with V4_Preview" in reply.content and "V3_Preview" in reply.content
    reply = await reply_to(emu, alice, "viggle render", scene="Dance", mapping='{"person_a": Alice}')
    assert "not valid JSON" in reply.content
    reply = await reply_to(emu, alice, "viggle render", scene="Dance", mapping='{"person_a": "Alice"}')
    assert "only one person" in reply.content
    reply = await reply_to(emu, alice, "viggle render", scene="Dance", character="Alice", bg_color="0,255,0")
    assert "only applies to the solid background" in reply.content
    reply = await reply_to(emu, alice, "viggle render", scene="Dance", character="Alice",
                           background_mode="solid", bg_color="#00ff00")
    assert "R,G,B" in reply.content
    reply = await reply_to(emu, alice, "viggle render", scene="Nope", character="Alice")
    assert "no scene called `Nope`" in reply.content
    reply = await reply_to(emu, alice, "viggle character", name="X",
                           image=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    assert "PNG or JPG" in reply.content
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == renders_before

    # a scene still on its way to Viggle (held back by a rate limit) is named as being made, not unknown
    viggle.faults.rate_limit("POST", r"^/api/scenes/preprocess$", retry_after=3)
    held = job_id_of((await reply_to(emu, alice, "viggle scene", name="Later",
                                     video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))).content)
    reply = await reply_to(emu, alice, "viggle render", scene="later", character="Alice")
    assert "`Later` is not ready yet" in reply.content and f"job `{held}` is still making it" in reply.content
    await wait_job_state(bot, held, JobState.DONE, timeout=20)

    viggle.scene_seconds = 30
    await run_job(emu, bot, alice, "viggle scene", state=JobState.SUBMITTED, name="Slow",
                  video=emu.attachment(media["clip"], "dance.mp4", "video/mp4"))
    # the user picks the pending scene once the list offers it (saved just after the submission)
    for _ in range(200):
        offered = await emu.autocomplete("viggle render", focused="scene", value="slow", options={}, user=alice)
        if offered:
            break
        await asyncio.sleep(0.05)
    assert [c["name"] for c in offered] == ["Slow · V4 · pending"]
    reply = await reply_to(emu, alice, "viggle render", scene="Slow", character="Alice")
    assert "not ready yet" in reply.content and "pending" in reply.content
    assert len(viggle.requests_to(r"^/api/render$", "POST")) == renders_before

    viggle.set_credits(0)
    reply = await reply_to(emu, alice, "viggle credits")
    assert "**0**" in reply.content
    job_id = await run_job(emu, bot, alice, "viggle render", state=JobState.FAILED, scene="Dance",
                           character="Alice")
    job = await bot.bot.store.get_job(job_id)
    assert "out of credits" in job.last_error and "Insufficient credits" in job.last_error
    failure = await emu.wait_for(lambda: [m for m in emu.messages() if f"job `{job_id}`" in m.content
                                          and "failed" in m.content], timeout=10)
    assert "out of credits" in failure[0].content


async def test_credits_shows_the_balance_privately(emu, bot, users, viggle):
    viggle.set_credits(37.5)
    reply = await reply_to(emu, users["alice"], "viggle credits")
    assert reply.ephemeral and "Viggle credits left: **37.5**" in reply.content
