"""Viggle result cards with their follow-up buttons, cost prompts and monthly budgets, through
sandbox Discord with the real bot and the Viggle sandbox; buttons are clicked after a restart."""

from __future__ import annotations

import asyncio

import pytest

from bot.costs import month_key
from bot.models import JobState
from sandbox.discord.interactions import CommandInputError
from sandbox.media import image_bytes, make_video
from sandbox.viggle import ViggleSandbox
from tests.e2e.cards_helpers import card_buttons, custom_id, labels, select_options
from tests.e2e.helpers import field, job_id_of, status_message, wait_job_state, wait_result
from tests.e2e.viggle_world import quick_channel_limits, viggle_harness
from tests.support.busy_store import BusyStore


@pytest.fixture
async def viggle():
    svc = ViggleSandbox(credits=100, character_seconds=0.2, scene_seconds=0.2, render_seconds=0.4)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def bot(emu, tmp_path, viggle):
    quick_channel_limits(emu)
    h = viggle_harness(emu, tmp_path, viggle, extensions=("cogs.jobs", "cogs.viggle", "cogs.budget", "cogs.followups"),
                       discord_api_url=f"{emu.base_url}/api/v10")  # links to its CDN
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
def media(tmp_path):
    portrait = tmp_path / "alice.png"
    portrait.write_bytes(image_bytes(128, 128, label="A"))
    other = tmp_path / "bob.png"
    other.write_bytes(image_bytes(128, 128, label="B", hue=5))
    clip = make_video(tmp_path / "dance.mp4", seconds=2.0, width=96, height=64, fps=8)
    return {"alice": portrait, "bob": other, "clip": clip}


async def command(emu, user: int, slash: str, **options):
    ix = await emu.slash(slash, user=user, options=options)
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply(timeout=10)


async def finished(emu, bot, reply) -> str:
    job_id = job_id_of(reply.content)
    await wait_job_state(bot, job_id, JobState.DONE, timeout=20)
    return job_id


async def character(emu, bot, user, media, name: str) -> str:
    att = emu.attachment(media[name.lower()], f"{name.lower()}.png", "image/png")
    return await finished(emu, bot, await command(emu, user, "viggle character", name=name, image=att))


async def scene(emu, bot, user, media, name: str = "Dance") -> str:
    return await finished(emu, bot, await command(emu, user, "viggle scene", name=name,
                                                  video=emu.attachment(media["clip"], "dance.mp4", "video/mp4")))


async def settled(bot, job_id: str) -> dict:
    """The job's ledger entry once the runner has booked what it really cost (just after done)."""
    for _ in range(100):
        entry = await bot.bot.store.ledger_entry(job_id)
        if entry and entry["settled"]:
            return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id}'s charge was never settled")


async def click(emu, message, label_or_id: str, user: int, **kw):
    cid = label_or_id if ":" in label_or_id else custom_id(message, label_or_id)
    ix = await emu.click(message, cid, user=user, **kw)
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return ix


async def test_character_and_scene_cards_render_each_other_after_a_restart(emu, bot, users, viggle, media):
    alice, bob = users["alice"], users["bob"]
    char_job = await character(emu, bot, alice, media, "Alice")
    scene_job = await scene(emu, bot, alice, media)
    char_card = await status_message(emu, char_job)
    scene_card = await status_message(emu, scene_job)
    assert await card_buttons(emu, char_card.id) == ["Render into a scene…"]
    assert await card_buttons(emu, scene_card.id) == ["Render a character…"]
    result = await wait_result(emu, char_job)
    assert "`/viggle render`" in result.content and "id `" not in result.content  # the name, not a UUID
    final = emu.message(char_card.id).embeds[0]
    assert final["image"]["url"] == result.attachments[0]["url"]  # the thumbnail, from the result message
    assert field(emu.message(char_card.id), "Cost") == "1 credit"

    await bot.restart()  # the buttons are persistent: a new bot answers the old message's buttons
    refused = await (await click(emu, emu.message(char_card.id), "Render into a scene…", bob)).wait_reply()
    assert refused.ephemeral and "Only <@" in refused.content and "spends credits" in refused.content

    pick = await (await click(emu, emu.message(char_card.id), "Render into a scene…", alice)).wait_reply()
    scene_id = (await bot.bot.store.get_job(scene_job)).remote_id
    assert [o["label"] for o in select_options(pick)] == ["Dance · V4"]
    started = await (await click(emu, pick, f"fu-pick:scene:{char_job}", alice, values=[scene_id])).wait_reply()
    assert "Expected cost: about 2 credits (1 credit per second of video, 2.0 s)" in started.content
    render_job = await finished(emu, bot, started)
    render = await bot.bot.store.get_job(render_job)
    assert render.params["scene_id"] == scene_id
    assert render.params["character_id"] == (await bot.bot.store.get_job(char_job)).remote_id

    await bot.restart()
    pick = await (await click(emu, emu.message(scene_card.id), "Render a character…", alice)).wait_reply()
    [option] = select_options(pick)
    assert option["label"] == "Alice"
    started = await (await click(emu, pick, f"fu-pick:character:{scene_job}", alice,
                                 values=[option["value"]])).wait_reply()
    second = await finished(emu, bot, started)
    assert (await bot.bot.store.get_job(second)).params["scene_id"] == scene_id
    render_card = await status_message(emu, second)
    assert await card_buttons(emu, render_card.id) == ["Render again", "Mix with another image"]


async def test_render_again_and_mix_with_another_image_after_a_restart(emu, bot, users, viggle, media):
    alice, bob = users["alice"], users["bob"]
    await character(emu, bot, alice, media, "Alice")
    await scene(emu, bot, alice, media)
    render_job = await finished(emu, bot, await command(emu, alice, "viggle render", scene="Dance",
                                                        character="Alice", fast=True))
    card = await status_message(emu, render_job)
    await card_buttons(emu, card.id)
    versions = [field(v, "State") or "" for v in emu.message(card.id).edits]
    assert not any("_done" in s or "checkpoint" in s for s in versions)  # plain words only
    await bot.restart()

    refused = await (await click(emu, emu.message(card.id), "Render again", bob)).wait_reply()
    assert refused.ephemeral and refused.visible_to == bob and "Only <@" in refused.content
    assert len(await bot.bot.store.list_jobs(owner_id=bob)) == 0
    started = await (await click(emu, emu.message(card.id), "Render again", alice)).wait_reply()
    assert "4 credits" in started.content and "with fast" in started.content  # 2 s, twice the rate
    again = await finished(emu, bot, started)
    first, second = await bot.bot.store.get_job(render_job), await bot.bot.store.get_job(again)
    assert {k: second.params[k] for k in ("scene_id", "character_id", "fast")} == \
        {k: first.params[k] for k in ("scene_id", "character_id", "fast")}
    assert viggle.jobs[second.remote_id].cost == 4  # what Viggle charged is what the command said
    assert field(emu.message(card.id), "Cost") == "4 credits"  # measured from the 2 s video, fast
    assert (await settled(bot, again))["amount"] == 4

    ix = await click(emu, emu.message(card.id), "Mix with another image", alice)
    assert ix.modal and ix.modal["custom_id"] == f"fu-modal:mix:{render_job}"
    picture = emu.attachment_record(emu.attachment(media["bob"], "bob.png", "image/png"))["url"]
    submit = await emu.submit_modal(ix.modal["custom_id"], values={"link": picture}, user=alice)
    await submit.wait_ack(timeout=3)
    mixed = await finished(emu, bot, await submit.wait_reply())
    mix = await bot.bot.store.get_job(mixed)
    assert mix.kind == "mix" and mix.params["image_url"] == picture
    assert mix.params["video"]["filename"] == "dance.mp4"  # the scene's own clip drives the new picture
    # a mix's price is unknown until its clip is rendered: the ledger books what the video measures
    assert (await settled(bot, mixed))["amount"] == viggle.jobs[mix.remote_id].cost == 4
    assert viggle.jobs[mix.remote_id].mode == "fast"  # picture + clip in one go, keeping the render's fast choice


async def test_costs_above_the_servers_level_ask_first(emu, bot, users, viggle, media):
    alice, mod = users["alice"], users["mod"]
    saved = await command(emu, mod, "budget set", provider="viggle", confirm_above=0.5)
    assert "commands over 0.5 credits ask first" in saved.content
    att = emu.attachment(media["alice"], "alice.png", "image/png")
    prompt = await command(emu, alice, "viggle character", name="Alice", image=att)
    assert prompt.content.startswith("This will cost about 1 credit (1 credit per character)")
    assert labels(prompt) == ["Go ahead", "Cancel"]
    assert not viggle.requests_to(r"/api/characters", "POST")
    with pytest.raises(CommandInputError):  # the question is only visible to the one who asked
        await emu.click(prompt, custom_id(prompt, "Go ahead"), user=users["bob"])
    busy = BusyStore(bot.bot.store)  # a store busy past Discord's deadline: the answer is acked first
    busy.busy_for(emu.ack_deadline + 1.0)
    await click(emu, prompt, "Cancel", alice)
    await emu.wait_for(lambda: "nothing was started" in emu.message(prompt.id).content, timeout=10)
    assert busy.held
    assert await bot.bot.store.list_jobs(owner_id=alice) == []

    prompt = await command(emu, alice, "viggle character", name="Alice", image=att)
    go = custom_id(prompt, "Go ahead")
    await bot.restart()  # the question outlives the bot that asked it
    # a double click: both reach the bot, one job starts
    first, second = await asyncio.gather(emu.click(prompt, go, user=alice), emu.click(prompt, go, user=alice))
    started = await emu.wait_for(lambda: "Started job" in emu.message(prompt.id).content and emu.message(prompt.id),
                                 timeout=10)
    job_id = await finished(emu, bot, started)
    late = await emu.wait_for(lambda: [m for ix in (first, second) for m in ix.replies
                                       if "already answered" in m.content], timeout=5)
    assert late[0].ephemeral and len(await bot.bot.store.list_jobs(owner_id=alice)) == 1
    assert len(viggle.requests_to(r"/api/characters/preprocess", "POST")) == 1
    entry = await settled(bot, job_id)
    assert entry["estimate"] == 1 and entry["amount"] == 1 and entry["settled"] == 1


async def test_a_budget_refuses_what_would_pass_it_even_when_commands_race(emu, bot, users, viggle, media):
    alice, bob, mod = users["alice"], users["bob"], users["mod"]
    refused = await command(emu, bob, "budget set", provider="viggle", monthly_limit=100)
    assert "Only a server manager" in refused.content
    await command(emu, mod, "budget set", provider="viggle", monthly_limit=2)
    att = {u: emu.attachment(media[n], f"{n}.png", "image/png") for u, n in ((alice, "alice"), (bob, "bob"))}
    # four 1-credit commands at the same moment, two credits left: exactly two may start
    ixs = await asyncio.gather(*(emu.slash("viggle character", user=u, options={"name": f"C{i}", "image": att[u]})
                                 for i, u in enumerate((alice, bob, alice, bob))))
    replies = [await ix.wait_reply(timeout=10) for ix in ixs]
    started = [r for r in replies if "Started job" in r.content]
    over = [r for r in replies if "budget" in r.content]
    assert len(started) == 2 and len(over) == 2
    assert all("monthly Viggle budget" in r.content and "nothing was started" in r.content for r in over)
    for reply in started:
        await finished(emu, bot, reply)
    assert len(viggle.requests_to(r"/api/characters/preprocess", "POST")) == 2
    shown = await command(emu, mod, "budget show", provider="viggle")
    assert "**Viggle**: 2 credits spent of 2 credits (0 credits left)" in shown.content
    assert f"Spending in {month_key()}" in shown.content
    owners = {(await bot.bot.store.get_job(job_id_of(r.content))).owner_id for r in started}
    for owner in owners:
        assert f"<@{owner}>: " in shown.content


async def test_a_job_that_fails_before_paying_gives_its_credits_back(emu, bot, users, viggle, media):
    alice, mod = users["alice"], users["mod"]
    await command(emu, mod, "budget set", provider="viggle", monthly_limit=1)
    viggle.faults.add("POST", r"/api/characters/preprocess", 400, {"detail": "Unsupported image"})
    att = emu.attachment(media["alice"], "alice.png", "image/png")
    failed = job_id_of((await command(emu, alice, "viggle character", name="Alice", image=att)).content)
    await wait_job_state(bot, failed, JobState.FAILED, timeout=20)
    assert (await settled(bot, failed))["amount"] == 0  # refunded: nothing was created
    retried = await finished(emu, bot, await command(emu, alice, "viggle character", name="Alice", image=att))
    assert (await settled(bot, retried))["amount"] == 1
    over = await command(emu, alice, "viggle character", name="Again", image=att)
    assert "budget is used up" in over.content


async def test_a_mix_is_priced_from_its_clip_before_paying_and_refused_over_the_budget(emu, bot, users, viggle,
                                                                                      media):
    """Viggle fetches a mix's clip itself, so nothing was known of its length at the command; the
    bot reads it (free) before the paid call: 2 s with fast is 4 credits, more than the 3 left."""
    alice, mod = users["alice"], users["mod"]
    await command(emu, mod, "budget set", provider="viggle", monthly_limit=3)
    options = {"image": emu.attachment(media["alice"], "alice.png", "image/png"),
               "video": emu.attachment(media["clip"], "dance.mp4", "video/mp4")}
    over = job_id_of((await command(emu, alice, "viggle mix", fast=True, **options)).content)
    job = await wait_job_state(bot, over, JobState.FAILED, timeout=20)
    assert "Viggle priced this at 4 credits, more than the 3 credits left" in job.last_error
    assert "nothing was spent" in job.last_error
    assert not viggle.requests_to(r"^/api/render$", "POST") and (await settled(bot, over))["amount"] == 0
    fits = await finished(emu, bot, await command(emu, alice, "viggle mix", **options))
    assert (await settled(bot, fits))["amount"] == viggle.jobs[(await bot.bot.store.get_job(fits)).remote_id].cost == 2


async def test_a_picker_opened_before_a_restart_starts_one_render_for_its_owner_only(emu, bot, users, viggle, media):
    """The select a button opens outlives the bot that drew it (a deploy while the user chooses)."""
    alice, bob = users["alice"], users["bob"]
    char_job = await character(emu, bot, alice, media, "Alice")
    scene_job = await scene(emu, bot, alice, media)
    card = await status_message(emu, char_job)
    await card_buttons(emu, card.id)
    pick = await (await click(emu, emu.message(card.id), "Render into a scene…", alice)).wait_reply()
    scene_id = (await bot.bot.store.get_job(scene_job)).remote_id
    await bot.restart()

    # a forged pick: Discord shows the picker to alice only, but the bot must not rely on that
    emu.message(pick.id).visible_to = bob
    refused = await (await click(emu, pick, f"fu-pick:scene:{char_job}", bob, values=[scene_id])).wait_reply()
    assert refused.ephemeral and refused.visible_to == bob and "Only <@" in refused.content
    emu.message(pick.id).visible_to = alice
    assert await bot.bot.store.list_jobs(owner_id=bob) == []

    chosen = await click(emu, pick, f"fu-pick:scene:{char_job}", alice, values=[scene_id])
    started = await chosen.wait_reply()
    assert "Expected cost: about 2 credits" in started.content
    render_job = await finished(emu, bot, started)
    render = await bot.bot.store.get_job(render_job)
    assert render.owner_id == alice and render.params["scene_id"] == scene_id
    assert render.params["character_id"] == (await bot.bot.store.get_job(char_job)).remote_id
    assert len(chosen.replies) == 1 and len(viggle.requests_to(r"^/api/render$", "POST")) == 1
    assert [j.kind for j in await bot.bot.store.list_jobs(owner_id=alice)].count("render") == 1


async def test_a_form_opened_before_a_restart_starts_one_mix_for_its_owner_only(emu, bot, users, viggle, media):
    """The typed link of a form opened before a restart is not lost; someone else's submit is refused."""
    alice, bob = users["alice"], users["bob"]
    await character(emu, bot, alice, media, "Alice")
    await scene(emu, bot, alice, media)
    render_job = await finished(emu, bot, await command(emu, alice, "viggle render", scene="Dance", character="Alice"))
    card = await status_message(emu, render_job)
    await card_buttons(emu, card.id)
    picture = emu.attachment_record(emu.attachment(media["bob"], "bob.png", "image/png"))["url"]

    # answered once while the bot that showed the form still runs
    ix = await click(emu, emu.message(card.id), "Mix with another image", alice)
    submit = await emu.submit_modal(ix.modal["custom_id"], values={"link": picture}, user=alice)
    await submit.wait_ack(timeout=3)
    first = await finished(emu, bot, await submit.wait_reply())
    assert len(submit.replies) == 1 and len(viggle.requests_to(r"^/api/render$", "POST")) == 2

    ix = await click(emu, emu.message(card.id), "Mix with another image", alice)
    await bot.restart()
    forged = await emu.submit_modal(ix.modal["custom_id"], values={"link": picture}, user=bob)
    await forged.wait_ack(timeout=3)
    refused = await forged.wait_reply()
    assert refused.ephemeral and refused.visible_to == bob and "Only <@" in refused.content
    assert await bot.bot.store.list_jobs(owner_id=bob) == []

    submit = await emu.submit_modal(ix.modal["custom_id"], values={"link": picture}, user=alice)
    await submit.wait_ack(timeout=3)
    second = await finished(emu, bot, await submit.wait_reply())
    mix = await bot.bot.store.get_job(second)
    assert second != first and mix.owner_id == alice and mix.params["image_url"] == picture
    assert mix.params["video"]["filename"] == "dance.mp4"
    assert len(submit.replies) == 1 and len(viggle.requests_to(r"^/api/render$", "POST")) == 3
    assert [j.kind for j in await bot.bot.store.list_jobs(owner_id=alice)].count("mix") == 2
