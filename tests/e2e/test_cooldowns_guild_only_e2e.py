"""Jobs started from a button or a modal keep their command's cooldown and stay in servers, as a
user sees it through sandbox Discord: "Go ahead" on a cost question and "Try another instruction"
on a layers card are refused while `/splat create` or `/layers` is cooling down; the free
follow-ups (Make public/private, Get PLY) take their commands' cooldowns; a DM cannot start a job;
and the commands that start paid jobs are registered as server-only."""

from __future__ import annotations

import pytest

import sandbox.discord.emulator as emulator_module
from bot.config import DEFAULT_COOLDOWNS
from bot.confirm import JOB_COMMANDS
from bot.models import JobState
from sandbox.discord.interactions import base_payload
from sandbox.media import make_video
from tests.e2e.cards_helpers import card_buttons, custom_id
from tests.e2e.helpers import job_id_of, status_message, wait_job_state
from tests.e2e.splat_layers_world import splat_layers_harness

EXTENSIONS = ("cogs.jobs", "cogs.splat", "cogs.layers", "cogs.budget", "cogs.followups", "cogs.viggle")


@pytest.fixture
async def bot(emu, tmp_path, v2s, scenario):
    # the product's cooldowns (layers 30 s, splat create 30 s, ...), not the harness's "all off"
    h = splat_layers_harness(emu, tmp_path, v2s, scenario, extensions=EXTENSIONS, cooldowns=dict(DEFAULT_COOLDOWNS))
    await h.start()
    yield h
    await h.stop()


async def reply_of(ix):
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply(timeout=10)


async def private_answer(emu, message, label: str, user: int) -> str:
    ix = await emu.click(message, custom_id(message, label), user=user)
    await ix.wait_ack(timeout=3)
    found = await emu.wait_for(lambda: [m for m in ix.replies if m.content], timeout=10)
    return found[0].content


async def layers_result_card(emu, bot, user: int, video) -> tuple[str, object]:
    """A finished /layers job of `user`, and its card once it shows the result and its buttons."""
    job_id = job_id_of((await reply_of(await emu.slash("layers", user=user, options={
        "video": video, "instruction": "the dancer", "max_layers": 3}))).content)
    await wait_job_state(bot, job_id, JobState.DONE, timeout=30)
    card = await status_message(emu, job_id)
    await card_buttons(emu, card.id)
    return job_id, emu.message(card.id)


async def try_another_instruction(emu, card, user: int) -> str:
    """Click "Try another instruction" on a layers card, fill in the form: the private answer."""
    ix = await emu.click(card, custom_id(card, "Try another instruction"), user=user)
    await ix.wait_ack(timeout=3)
    sub = await emu.submit_modal(ix.modal["custom_id"], values={"instruction": "the shadow only", "layers": "2"},
                                 user=user)
    return (await reply_of(sub)).content


async def jobs_of(bot, user: int) -> list:
    return await bot.bot.store.list_jobs(owner_id=user, limit=50)


async def test_try_another_instruction_waits_for_the_layers_cooldown(emu, bot, users, tmp_path):
    alice = users["alice"]
    att = emu.attachment(make_video(tmp_path / "clip.mp4", seconds=1.0), "clip.mp4", "video/mp4")
    first, card = await layers_result_card(emu, bot, alice, att)

    text = await try_another_instruction(emu, card, alice)
    assert text.startswith("You're going too fast: you can use `/layers` again"), text
    assert "Started job" not in text
    assert [j.id for j in await jobs_of(bot, alice)] == [first]
    # the slash command and the button share one cooldown: /layers is refused too
    again = await reply_of(await emu.slash("layers", user=alice, options={"video": att, "instruction": "x"}))
    assert "going too fast" in again.content and "`/layers`" in again.content


async def test_go_ahead_on_a_cost_question_waits_for_the_splat_create_cooldown(emu, bot, users, tmp_path):
    alice, mod = users["alice"], users["mod"]
    await reply_of(await emu.slash("budget set", user=mod, options={"provider": "vid2scene", "confirm_above": 0.5}))
    video = make_video(tmp_path / "orbit.mp4", seconds=2)
    answers = []
    for i in range(2):
        prompt = await reply_of(await emu.slash("splat create", user=alice, options={
            "video": emu.attachment(video, "orbit.mp4", "video/mp4"), "title": f"Desk {i}"}))
        assert "please confirm" in prompt.content
        ix = await emu.click(prompt, custom_id(prompt, "Go ahead"), user=alice)
        await ix.wait_ack(timeout=3)
        msg = await emu.wait_for(lambda p=prompt: ("Started job" in emu.message(p.id).content
                                                   or "too fast" in emu.message(p.id).content)
                                 and emu.message(p.id), timeout=10)
        answers.append(msg.content)
    assert answers[0].startswith("Started job"), answers
    assert answers[1].startswith("You're going too fast: you can use `/splat create` again"), answers
    first = job_id_of(answers[0])
    assert [j.id for j in await jobs_of(bot, alice)] == [first]
    rows = await bot.bot.store._db.execute_fetchall("SELECT user_id, command FROM cooldowns")
    assert (alice, "splat create") in [tuple(r) for r in rows]

    # the free follow-ups on its card call vid2scene too: each takes its command's cooldown
    await wait_job_state(bot, first, JobState.DONE, timeout=30)
    card = await status_message(emu, first)
    await card_buttons(emu, card.id)
    card = emu.message(card.id)
    assert "is now p" in await private_answer(emu, card, "Make public/private", alice)
    second = await private_answer(emu, card, "Make public/private", alice)
    assert second.startswith("You're going too fast: you can use `/splat visibility` again"), second
    assert "PLY link" in await private_answer(emu, card, "Get PLY", alice)
    second = await private_answer(emu, card, "Get PLY", alice)
    assert second.startswith("You're going too fast: you can use `/splat download` again"), second


def _as_dm(payload: dict) -> dict:
    """The same interaction as Discord sends it from a DM with the bot: no guild, a user, context 1."""
    user = payload["member"]["user"]
    out = {k: v for k, v in payload.items() if k not in ("guild_id", "guild", "member", "guild_locale")}
    out.update(user=user, context=1, channel={"id": payload["channel_id"], "type": 1, "recipients": [user]},
               authorizing_integration_owners={"0": payload["guild_id"]})
    return out


async def test_a_button_in_a_dm_cannot_start_a_job(emu, bot, users, tmp_path, monkeypatch):
    alice = users["alice"]
    att = emu.attachment(make_video(tmp_path / "clip.mp4", seconds=1.0), "clip.mp4", "video/mp4")
    first, card = await layers_result_card(emu, bot, alice, att)
    bot.bot.jobs.cooldowns.clear()  # only the DM check stands in the way

    monkeypatch.setattr(emulator_module, "base_payload", lambda emu_, ix: _as_dm(base_payload(emu_, ix)))
    text = await try_another_instruction(emu, card, alice)
    assert text.startswith("Jobs that spend credits can only be started in a server"), text
    assert [j.id for j in await jobs_of(bot, alice)] == [first]


async def test_commands_that_start_paid_jobs_are_registered_server_only(emu, bot):
    registered = {c["name"]: c for c in emu.command_registry.by_scope[emu.guild.id]}
    paid = {command.split()[0] for command in JOB_COMMANDS.values()}
    assert paid == {"viggle", "splat", "layers"}
    for name in paid:
        assert registered[name]["dm_permission"] is False, name
        assert registered[name]["contexts"] == [0], name  # GUILD only: no BOT_DM (1) or PRIVATE_CHANNEL (2)
    # every job's command is one the bot registers (a group's subcommand or a top-level command)
    names = {c["name"] for c in registered.values()}
    names |= {f"{c['name']} {o['name']}" for c in registered.values() for o in c.get("options") or []
              if o.get("type") == 1}
    assert set(JOB_COMMANDS.values()) <= names
    # free commands stay usable in DMs
    assert registered["jobs"]["dm_permission"] is True and registered["jobs"]["contexts"] in (None, [0, 1, 2])
