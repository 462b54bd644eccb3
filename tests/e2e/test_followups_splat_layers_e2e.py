"""Result-card follow-ups for splats (Get PLY, Make public/private, Rename) and layers (Try another
instruction), clicked on the old message after the bot was built anew."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import JobState
from sandbox.media import make_video
from tests.e2e.cards_helpers import card_buttons, custom_id
from tests.e2e.helpers import field, job_id_of, result_messages, status_message, wait_job_state
from tests.e2e.splat_layers_world import splat_layers_harness
from tests.support.busy_store import BusyStore

EXTENSIONS = ("cogs.jobs", "cogs.splat", "cogs.layers", "cogs.budget", "cogs.followups")


@pytest.fixture
async def bot(emu, tmp_path, v2s, scenario):
    # Discord's per-channel limits still apply, in short windows so the test stays quick
    for bucket in ("message_create", "message_edit"):
        emu.rate_limits.set(bucket, limit=5, per=0.5)
    h = splat_layers_harness(emu, tmp_path, v2s, scenario, extensions=EXTENSIONS)
    await h.start()
    yield h
    await h.stop()


async def started(emu, bot, ix) -> str:
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    job_id = job_id_of((await ix.wait_reply(timeout=10)).content)
    await wait_job_state(bot, job_id, JobState.DONE, timeout=30)
    return job_id


async def private_answer(emu, message, label: str, user: int):
    ix = await emu.click(message, custom_id(message, label), user=user)
    await ix.wait_ack(timeout=3)
    return await emu.wait_for(lambda: [m for m in ix.replies if m.content], timeout=10)


async def test_splat_card_gets_ply_flips_visibility_and_renames_after_a_restart(emu, bot, users, v2s, tmp_path):
    alice, bob = users["alice"], users["bob"]
    video = make_video(tmp_path / "orbit.mp4", seconds=2)
    job_id = await started(emu, bot, await emu.slash("splat create", user=alice, options={
        "video": emu.attachment(video, "orbit.mp4", "video/mp4"), "title": "Desk"}))
    card = await status_message(emu, job_id)
    assert await card_buttons(emu, card.id) == ["Get PLY", "Make public/private", "Rename"]
    scene = (await bot.bot.store.get_job(job_id)).remote_id
    await bot.restart()

    card = emu.message(card.id)
    [link] = await private_answer(emu, card, "Get PLY", alice)
    assert link.ephemeral and "fresh PLY link" in link.content and v2s.urls["blob"] in link.content
    [nope] = await private_answer(emu, card, "Make public/private", bob)
    assert "Only the person who made this scene" in nope.content and v2s.jobs[scene].public is False
    [flipped] = await private_answer(emu, card, "Make public/private", alice)
    assert "**Desk** is now public" in flipped.content and v2s.jobs[scene].public is True
    [back] = await private_answer(emu, card, "Make public/private", alice)
    assert "now private" in back.content and v2s.jobs[scene].public is False

    # with the store busy past Discord's deadline, the modal is still the click's first answer and
    # the submission is acknowledged before the job is looked up
    busy = BusyStore(bot.bot.store)
    busy.busy_for(emu.ack_deadline + 1.0)
    ix = await emu.click(card, custom_id(card, "Rename"), user=alice)
    await ix.wait_ack(timeout=3)
    assert ix.modal["custom_id"] == f"fu-modal:rename:{job_id}"
    submit = await emu.submit_modal(ix.modal["custom_id"], values={"title": "Desk, at night"}, user=alice)
    await submit.wait_ack(timeout=emu.ack_deadline + 2)
    assert busy.held
    renamed = await submit.wait_reply()
    assert "Renamed **Desk** to **Desk, at night**" in renamed.content
    assert v2s.jobs[scene].title.startswith("Desk, at night")
    assert (await bot.bot.store.get_object("vid2scene", "scene", scene)).name == "Desk, at night"


async def test_layers_card_tries_another_instruction_after_a_restart(emu, bot, users, scenario, tmp_path):
    alice, bob = users["alice"], users["bob"]
    video = make_video(tmp_path / "clip.mp4", seconds=1.0)
    first = await started(emu, bot, await emu.slash("layers", user=alice, options={
        "video": emu.attachment(video, "clip.mp4", "video/mp4"), "instruction": "the dancer", "max_layers": 3}))
    [result] = result_messages(emu, first)
    assert "your Scenario layers are ready" in result.content
    card = await status_message(emu, first)
    assert await card_buttons(emu, card.id) == ["Try another instruction"]
    final = emu.message(card.id)
    assert final.embeds[0]["image"]["url"] == next(a["url"] for a in result.attachments
                                                   if a["filename"] == "layers-preview.png")
    assert field(final, "Cost") == "35 creative units"  # billing.cuCost, as Scenario reported it
    await bot.restart()

    # the modal is the click's first answer (no store look-up before it); bob is refused on submitting
    tried = await emu.click(final, custom_id(final, "Try another instruction"), user=bob)
    await tried.wait_ack(timeout=3)
    refused = await emu.submit_modal(tried.modal["custom_id"], values={"instruction": "mine", "layers": "2"},
                                     user=bob)
    await refused.wait_ack(timeout=3)
    assert "Only <@" in (await refused.wait_reply()).content
    ix = await emu.click(final, custom_id(final, "Try another instruction"), user=alice)
    await ix.wait_ack(timeout=3)
    await bot.restart()  # a deploy while alice types: the form is answered by the new bot
    submit = await emu.submit_modal(ix.modal["custom_id"], values={"instruction": "the shadow only",
                                                                   "layers": "2"}, user=alice)
    await submit.wait_ack(timeout=3)
    note = await submit.wait_reply(timeout=10)
    # the restarted bot had no quote yet: it says how the price is found; then it has one
    assert "dry run" in note.content
    second = job_id_of(note.content)
    await wait_job_state(bot, second, JobState.DONE, timeout=30)
    job = await bot.bot.store.get_job(second)
    assert job.params["instruction"] == "the shadow only" and job.params["max_layers"] == 2
    assert job.params["video"]["filename"] == "clip.mp4"
    assert scenario.jobs[job.remote_id].input["maxLayers"] == 2
    for _ in range(100):  # settled just after the job is done
        entry = await bot.bot.store.ledger_entry(second)
        if entry["settled"]:
            break
        await asyncio.sleep(0.05)
    assert entry["settled"] and entry["amount"] == 30  # the quote, then the real charge


async def test_scenarios_quote_is_checked_against_the_budget_before_paying(emu, bot, users, scenario, tmp_path):
    alice, mod = users["alice"], users["mod"]
    ix = await emu.slash("budget set", user=mod, options={"provider": "scenario", "monthly_limit": 30})
    assert "at most 30 creative units a month" in (await ix.wait_reply()).content
    video = emu.attachment(make_video(tmp_path / "clip.mp4", seconds=1.0), "clip.mp4", "video/mp4")
    options = {"video": video, "instruction": "the dancer", "max_layers": 3}
    ix = await emu.slash("layers", user=alice, options=options)
    job_id = job_id_of((await ix.wait_reply()).content)
    await wait_job_state(bot, job_id, JobState.FAILED, timeout=30)
    job = await bot.bot.store.get_job(job_id)
    assert "priced this at 35 creative units, more than the 30 creative units left" in job.last_error
    assert "nothing was spent" in job.last_error
    assert scenario.paid_jobs == 0 and (await bot.bot.store.ledger_entry(job_id))["amount"] == 0
    # now the price is known up front, even to a restarted bot (it is read back from the store):
    # the next command is refused before anything is uploaded
    await bot.restart()
    uploads = len(scenario.requests_to(r"/v1/uploads$", "POST"))
    ix = await emu.slash("layers", user=alice, options=options)
    refused = (await ix.wait_reply()).content
    assert "This would cost 35 creative units, but only 30 creative units" in refused
    assert len(scenario.requests_to(r"/v1/uploads$", "POST")) == uploads
