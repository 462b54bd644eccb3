"""A busy store (a remote PostgreSQL, a pool held by the runner) must not make commands and buttons
miss Discord's 3 s deadline for the first response: they acknowledge first, then read the store and
answer. Here every store call waits while the store is "busy", for longer than the deadline."""

from __future__ import annotations

import pytest

from bot.models import JobState
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import job_id_of, status_message, wait_job_state
from tests.support.busy_store import BusyStore
from tests.support.echo import EchoProvider
from tests.support.policy import sandbox_net


@pytest.fixture
async def slow(emu, tmp_path, remote):
    h = BotHarness(emu, tmp_path, lambda: {"echo": EchoProvider(remote, sandbox_net(emu), running_polls=400)},
                   extensions=("cogs.jobs", "cogs.budget", "tests.support.echo_cog"))
    await h.start()
    h.busy = BusyStore(h.bot.store)
    yield h
    h.busy.free.set()
    await h.stop()


async def test_commands_and_cancel_buttons_answer_in_time_while_the_store_is_busy(emu, slow, users):
    made = await (await emu.slash("echo", user=users["alice"], options={"text": "long one"})).wait_reply()
    job_id = job_id_of(made.content)
    await wait_job_state(slow, job_id, JobState.RUNNING)
    status = await status_message(emu, job_id)

    slow.busy.busy_for(emu.ack_deadline + 1.0)
    asked = {
        "budget show": await emu.slash("budget show", user=users["mod"]),
        "budget set": await emu.slash("budget set", user=users["mod"],
                                      options={"provider": "viggle", "monthly_limit": 500}),
        "jobs list": await emu.slash("jobs list", user=users["alice"]),
        "jobs show": await emu.slash("jobs show", user=users["alice"], options={"id": job_id}),
        "stranger's Cancel": await emu.click(status, f"job:cancel:{job_id}", user=users["bob"]),
    }
    replies = {}
    for what, ix in asked.items():
        await ix.wait_ack(timeout=emu.ack_deadline + 2)  # raises InteractionFailed: "This interaction failed"
        replies[what] = await ix.wait_reply(timeout=15)
    assert slow.busy.held >= len(asked)  # each of them did wait for the store
    assert all(r.ephemeral for r in replies.values())
    assert "**Viggle**: 0 credits spent" in replies["budget show"].content
    assert "Budget saved. Viggle: at most 500 credits a month" in replies["budget set"].content
    assert f"`{job_id}`" in replies["jobs list"].content
    assert replies["jobs show"].embeds and replies["jobs show"].embeds[0]["footer"]["text"] == f"Job {job_id}"
    assert "Only the person who started this job" in replies["stranger's Cancel"].content
    assert (await slow.bot.store.get_job(job_id)).state.is_live

    slow.busy.busy_for(emu.ack_deadline + 1.0)
    click = await emu.click(status, f"job:cancel:{job_id}", user=users["alice"])
    await click.wait_ack(timeout=emu.ack_deadline + 2)
    await wait_job_state(slow, job_id, JobState.CANCELLED, timeout=15)
