"""The real bot through sandbox Discord with the test provider: what a user sees from command to result."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import JobState
from bot.providers.base import ProviderLimits
from tests.e2e.helpers import (
    field,
    job_id_of,
    result_messages,
    run_echo,
    status_message,
    wait_job_state,
    wait_result,
)
from tests.support.policy import sandbox_net


async def test_command_is_acked_fast_status_moves_and_result_posts_once(emu, harness, users, remote, echo_options):
    # paced like a real provider, so the card can show each stage within Discord's edit rate limit
    echo_options.update(limits=ProviderLimits(poll_min=0.4, poll_max=0.5, deadlines={"echo": 60}), running_polls=6)
    harness.settings_overrides["status_edit_seconds"] = 0.9
    await harness.restart()
    ix = await emu.slash("echo", user=users["alice"], options={"text": "hello"})
    await ix.wait_ack(timeout=3)
    assert not ix.failed and ix.ack_latency < 3.0
    assert ix.response_type == 5  # deferred, then a private "Started job" note
    note = await ix.wait_reply()
    job_id = job_id_of(note.content)
    assert note.ephemeral and note.visible_to == users["alice"]

    status = await status_message(emu, job_id)
    assert not status.ephemeral
    result = await wait_result(emu, job_id)
    assert result.attachments[0]["filename"] == "echo.txt"
    assert emu.read_attachment(result.attachments[0]).startswith(b"HELLO\n")
    assert result.message_reference["message_id"] == str(status.id)
    assert result.pinged_user_ids == [users["alice"]] and not result.pinged_everyone

    # the status card went through the life cycle, edited in place
    await emu.wait_for(lambda: (field(emu.message(status.id), "State") or "").startswith("Done in"), timeout=10)
    status = emu.message(status.id)
    states = [field(v, "State") for v in [*status.edits, status]]
    assert any(s.startswith("Queued (position") for s in states)
    assert any(s.startswith("Running") for s in states)
    assert states[-1].startswith("Done in ")  # the result card says how long it took
    versions_shown = [v.embeds for v in [*status.edits, status]]
    assert all(a != b for a, b in zip(versions_shown, versions_shown[1:], strict=False))  # no identical re-edit
    assert any(field(v, "Progress") for v in status.edits)
    assert any((field(v, "ETA") or "").startswith("<t:") for v in status.edits)
    await asyncio.sleep(0.5)
    assert len(result_messages(emu, job_id)) == 1
    assert remote.submits == 1


async def test_restart_mid_job_resumes_and_posts_once(emu, harness, users, remote, echo_options):
    echo_options.update(running_polls=8)
    await harness.restart()  # providers are built per bot instance
    job_id = await run_echo(emu, users["alice"], "survive")
    await wait_job_state(harness, job_id, JobState.RUNNING)
    await harness.restart()
    await wait_result(emu, job_id)
    await asyncio.sleep(0.3)
    assert len(result_messages(emu, job_id)) == 1
    assert remote.submits == 1


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the bot catches it, like a process dying."""


def die_right_after_posting_a_result(harness) -> None:
    """The bot dies between Discord accepting a result message and the store recording it."""
    store = harness.bot.store
    real_update = store.update

    async def dies_after_send(job, **changes):
        if "result_message_ids" in changes:
            raise SimulatedCrash()
        return await real_update(job, **changes)

    store.update = dies_after_send


async def test_crash_between_sending_and_recording_the_result_posts_no_second_message(emu, harness, users, remote):
    die_right_after_posting_a_result(harness)
    job_id = await run_echo(emu, users["alice"], "crashy")
    await emu.wait_for(lambda: result_messages(emu, job_id), timeout=10)
    await harness.crash()
    await harness.start()
    await wait_job_state(harness, job_id, JobState.DONE)
    sends = [c for c in emu.calls if c.method == "POST" and c.path.endswith("/messages")
             and f"job `{job_id}`" in ((c.json or {}).get("content") or "")]
    assert len(sends) == 2  # the resend happened, with the same nonce
    assert sends[0].json["nonce"] == sends[1].json["nonce"]
    assert len(result_messages(emu, job_id)) == 1


async def test_after_a_long_outage_our_earlier_result_is_found_not_resent(emu, harness, users):
    die_right_after_posting_a_result(harness)
    job_id = await run_echo(emu, users["alice"], "outage")
    await emu.wait_for(lambda: result_messages(emu, job_id), timeout=10)
    await harness.crash()
    # the outage lasted longer than Discord's nonce window
    from datetime import timedelta

    from bot.store import Store
    db = await Store.open(harness.settings().database_path)
    job = await db.get_job(job_id)
    await db.update(job, delivery_started_at=job.delivery_started_at - timedelta(minutes=30))
    await db.close()
    await harness.start()
    job = await wait_job_state(harness, job_id, JobState.DONE)
    sends = [c for c in emu.calls if c.method == "POST" and c.path.endswith("/messages")
             and f"job `{job_id}`" in ((c.json or {}).get("content") or "")]
    assert len(sends) == 1
    assert list(job.result_message_ids) == [result_messages(emu, job_id)[0].id]


async def test_a_job_whose_polls_always_fail_does_not_delay_another(emu, harness, users, remote):
    remote.broken_poll_texts.add("broken")
    broken = await run_echo(emu, users["alice"], "broken")
    fine = await run_echo(emu, users["bob"], "fine")
    await wait_result(emu, fine, timeout=10)
    job = await harness.bot.store.get_job(broken)
    assert job.state.is_live and job.attempts >= 1
    assert "temporary problem" in job.last_error
    assert remote.poll_calls["broken"] >= 1


async def test_a_button_clicked_after_a_restart_still_works(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    await harness.restart()
    job_id = await run_echo(emu, users["alice"], "long one")
    await wait_job_state(harness, job_id, JobState.RUNNING)
    await harness.restart()
    status = await status_message(emu, job_id)
    click = await emu.click(status, f"job:cancel:{job_id}", user=users["alice"])
    await click.wait_ack()
    assert not click.failed
    await wait_job_state(harness, job_id, JobState.CANCELLED)
    await emu.wait_for(lambda: field(emu.message(status.id), "State") == "Cancelled", timeout=5)
    assert emu.message(status.id).components == []  # no buttons on a finished job


async def test_a_stranger_cannot_cancel_someone_elses_job_but_a_manager_can(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    await harness.restart()
    job_id = await run_echo(emu, users["alice"], "mine")
    status = await status_message(emu, job_id)

    click = await emu.click(status, f"job:cancel:{job_id}", user=users["bob"])
    reply = await click.wait_reply()
    assert reply.ephemeral and "Only the person who started this job" in reply.content
    ix = await emu.slash("jobs cancel", user=users["bob"], options={"id": job_id})
    reply = await ix.wait_reply()
    assert f"no job `{job_id}` that you can see" in reply.content
    await asyncio.sleep(0.3)
    assert (await harness.bot.store.get_job(job_id)).state.is_live

    ix = await emu.slash("jobs cancel", user=users["mod"], options={"id": job_id})
    assert "Cancelling" in (await ix.wait_reply()).content
    await wait_job_state(harness, job_id, JobState.CANCELLED)


async def test_failed_job_shows_reason_and_pings_only_the_owner(emu, harness, users):
    job_id = await run_echo(emu, users["alice"], "fail @everyone <@&1234>")
    await wait_job_state(harness, job_id, JobState.FAILED)
    status = await status_message(emu, job_id)
    await emu.wait_for(lambda: field(emu.message(status.id), "State") == "Failed", timeout=5)
    reason = field(emu.message(status.id), "Reason")
    assert "could not echo this" in reason and "Hint: try a shorter text" in reason
    notice = await emu.wait_for(lambda: [m for m in emu.messages() if "failed" in m.content
                                         and f"`{job_id}`" in m.content], timeout=5)
    assert notice[0].pinged_user_ids == [users["alice"]]
    for message in emu.messages():
        assert not message.pinged_everyone and not message.pinged_role_ids


async def test_input_refused_by_the_provider_is_explained(emu, harness, users):
    job_id = await run_echo(emu, users["alice"], "reject")
    job = await wait_job_state(harness, job_id, JobState.FAILED)
    assert job.last_error == "The echo service refuses to echo 'reject'."


async def test_job_stuck_upstream_fails_at_its_deadline(emu, tmp_path, remote, users):
    from bot.providers.base import ProviderLimits
    from tests.e2e.harness import BotHarness
    from tests.support.echo import EchoProvider

    limits = ProviderLimits(poll_min=0.05, poll_max=0.1, deadlines={"echo": 1.0})
    h = BotHarness(emu, tmp_path, lambda: {"echo": EchoProvider(remote, sandbox_net(emu), limits=limits, running_polls=10_000)})
    await h.start()
    try:
        job_id = await run_echo(emu, users["alice"], "forever")
        job = await wait_job_state(h, job_id, JobState.FAILED, timeout=10)
        assert "did not finish within" in job.last_error
        assert remote.jobs[job.remote_id].cancelled  # we told the provider to stop too
    finally:
        await h.stop()


async def test_attachment_is_streamed_from_discord_to_the_provider(emu, harness, users, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 300_000)
    att = emu.attachment(src, "in.bin", "application/octet-stream")
    ix = await emu.slash("echo", user=users["alice"], options={"text": "with file", "file": att})
    job_id = job_id_of((await ix.wait_reply()).content)
    job = await wait_job_state(harness, job_id, JobState.DONE)
    assert job.provider_data["input_bytes"] == 300_000


async def test_per_user_limit_refuses_with_a_clear_message(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    await harness.restart()
    for i in range(harness.bot.settings.max_jobs_per_user):
        await run_echo(emu, users["alice"], f"slot {i}")
    ix = await emu.slash("echo", user=users["alice"], options={"text": "one too many"})
    reply = await ix.wait_reply()
    assert "already have 3 jobs running" in reply.content and reply.ephemeral


@pytest.mark.parametrize("command", ["jobs list", "jobs show"])
async def test_jobs_list_and_show(emu, harness, users, command):
    job_id = await run_echo(emu, users["alice"], "listed")
    options = {"id": job_id} if command == "jobs show" else {}
    ix = await emu.slash(command, user=users["alice"], options=options)
    reply = await ix.wait_reply()
    assert reply.ephemeral
    text = reply.content + " ".join(str(e) for e in reply.embeds)
    assert job_id in text


async def test_a_crash_right_after_the_paid_call_is_reconciled_not_paid_twice(emu, harness, users, remote):
    async def die_before_the_id_is_recorded(job):
        raise SimulatedCrash()

    harness.bot.providers["echo"].submit_hook = die_before_the_id_is_recorded
    job_id = await run_echo(emu, users["alice"], "paid once")
    await emu.wait_for(lambda: remote.submits == 1, timeout=10)
    await harness.crash()
    await harness.start()  # a new instance: its provider has no hook
    await wait_result(emu, job_id)
    assert remote.submits == 1
    job = await harness.bot.store.get_job(job_id)
    assert job.remote_id == next(iter(remote.jobs))


async def test_refresh_is_for_the_owner_and_managers(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    await harness.restart()
    job_id = await run_echo(emu, users["alice"], "refresh me")
    status = await status_message(emu, job_id)
    click = await emu.click(status, f"job:refresh:{job_id}", user=users["bob"])
    reply = await click.wait_reply()
    assert reply.ephemeral and "can refresh it" in reply.content
    click = await emu.click(status, f"job:refresh:{job_id}", user=users["alice"])
    await click.wait_ack()
    assert click.response_type == 6 and not click.failed  # acknowledged silently; the card redraws


async def test_a_channel_where_results_cannot_be_posted_is_refused_before_anything_starts(emu, harness, users,
                                                                                          remote):
    from sandbox.discord.permissions import ATTACH_FILES, BOT_DEFAULT
    await emu.set_bot_permissions(emu.channel_id, BOT_DEFAULT & ~ATTACH_FILES)
    ix = await emu.slash("echo", user=users["alice"], options={"text": "no files here"})
    reply = await ix.wait_reply()
    assert reply.ephemeral and "missing the Attach Files permission" in reply.content
    assert remote.submits == 0
    assert await harness.bot.store.list_jobs(owner_id=users["alice"]) == []
