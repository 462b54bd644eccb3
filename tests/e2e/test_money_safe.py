"""Money-safe, as a user sees it through sandbox Discord: limits hold under simultaneous commands,
cooldowns say how long to wait, a paid job outlives a provider outage, and a job's ending (final
card, notice, saved object, spool) survives a crash right after it, with nothing posted twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.config import Vid2SceneSettings
from bot.models import JobState
from bot.providers.vid2scene import Vid2SceneProvider
from bot.store import Store
from sandbox.discord.messages import delete as delete_message
from sandbox.media import make_video
from sandbox.vid2scene import Vid2SceneSandbox
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import (
    field,
    finished,
    job_id_of,
    result_messages,
    run_echo,
    status_message,
    wait_job_state,
    wait_result,
)
from tests.support.policy import sandbox_net


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the bot catches it, like a process dying."""


def cards(emu, job_id: str) -> list:
    return [m for m in emu.messages() if not m.ephemeral
            and any((e.get("footer") or {}).get("text") == f"Job {job_id}" for e in m.embeds or [])]


async def replies(interactions) -> list[str]:
    return [(await ix.wait_reply(timeout=15)).content for ix in interactions]


# -- limits and cooldowns ------------------------------------------------------------------------

async def test_ten_simultaneous_commands_start_exactly_the_users_limit(emu, harness, users, echo_options, remote):
    echo_options.update(running_polls=400)
    await harness.restart()
    limit = harness.bot.settings.max_jobs_per_user
    burst = await asyncio.gather(*(emu.slash("echo", user=users["alice"], options={"text": f"burst {i}"})
                                   for i in range(10)))
    texts = await replies(burst)
    started = [t for t in texts if t.startswith("Started job")]
    assert len(started) == limit
    assert sum(f"already have {limit} jobs running" in t for t in texts) == 10 - limit
    assert await harness.bot.store.count_live(owner_id=users["alice"]) == limit
    await emu.wait_for(lambda: remote.submits == limit, timeout=10)
    await asyncio.sleep(0.3)
    assert remote.submits == limit


async def test_eight_users_at_once_start_exactly_the_guilds_limit(emu, harness, echo_options, remote):
    echo_options.update(running_polls=400)
    await harness.restart()
    harness.bot.jobs.max_per_guild = 2
    people = [emu.add_user(f"user{i}") for i in range(8)]
    burst = await asyncio.gather(*(emu.slash("echo", user=u, options={"text": f"from {u}"}) for u in people))
    texts = await replies(burst)
    assert sum(t.startswith("Started job") for t in texts) == 2
    assert sum("This server has too many jobs running" in t for t in texts) == 6
    assert await harness.bot.store.count_live(guild_id=emu.guild_id) == 2


async def test_a_cooldown_says_how_long_to_wait_and_holds_across_a_restart(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    harness.settings_overrides["cooldowns"] = {"echo": 600}
    await harness.restart()
    await run_echo(emu, users["alice"], "first")
    ix = await emu.slash("echo", user=users["alice"], options={"text": "too soon"})
    reply = await ix.wait_reply()
    assert reply.ephemeral and "you can use `/echo` again <t:" in reply.content and ":R>" in reply.content
    seconds = int(reply.content.rsplit("(in ", 1)[1].split(" s)")[0])
    assert 590 <= seconds <= 600
    await run_echo(emu, users["bob"], "someone else")  # per user
    await harness.restart()  # kept in the database, not in memory
    reply = await (await emu.slash("echo", user=users["alice"], options={"text": "again"})).wait_reply()
    assert "you can use `/echo` again" in reply.content
    assert len(await harness.bot.store.list_jobs(owner_id=users["alice"])) == 1


async def test_a_command_refused_by_the_job_limit_costs_no_cooldown(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    harness.settings_overrides["cooldowns"] = {"echo": 600}
    await harness.restart()
    harness.bot.jobs.max_per_user = 1
    job_id = await run_echo(emu, users["alice"], "only one")
    harness.bot.jobs.cooldowns = {}
    await run_echo(emu, users["bob"], "bob's")
    harness.bot.jobs.cooldowns = {"echo": 600}
    reply = await (await emu.slash("echo", user=users["bob"], options={"text": "bob again"})).wait_reply()
    assert "already have 1 jobs running" in reply.content  # the limit answers; the cooldown is untouched
    ix = await emu.slash("jobs cancel", user=users["alice"], options={"id": job_id})
    assert "Cancelling" in (await ix.wait_reply()).content
    await wait_job_state(harness, job_id, JobState.CANCELLED)
    harness.bot.jobs.max_per_user = 2
    reply = await (await emu.slash("echo", user=users["alice"], options={"text": "next"})).wait_reply()
    assert "you can use `/echo` again" in reply.content  # alice's cooldown from her job still runs


# -- a long outage after payment -----------------------------------------------------------------

async def test_an_outage_after_payment_backs_off_and_delivers_once(emu, tmp_path, users):
    """Compressed time: polls every 0.02-0.1 s instead of vid2scene's 10-120 s, so 3 s of 503s is
    30 of its longest poll intervals (an hour at the default 120 s), far past the attempt budget."""
    sandbox = Vid2SceneSandbox(queue_seconds=0.2, pickup_seconds=0.05, processing_seconds=0.2,
                               training_seconds=0.5, download_url_ttl=5)
    await sandbox.start()
    env = sandbox.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                poll_min_seconds=0.02, poll_max_seconds=0.1, deadline_minutes={"splat": 2})
    h = BotHarness(emu, tmp_path, lambda: {"vid2scene": Vid2SceneProvider(section, sandbox_net(sandbox, emu))},
                   extensions=("cogs.jobs", "cogs.splat"), max_attempts=3)
    await h.start()
    try:
        video = make_video(tmp_path / "orbit.mp4", seconds=2)
        ix = await emu.slash("splat create", user=users["alice"],
                             options={"video": emu.attachment(video, "orbit.mp4", "video/mp4"), "title": "Outage"})
        job_id = job_id_of((await ix.wait_reply()).content)
        await wait_job_state(h, job_id, JobState.SUBMITTED, timeout=20)
        sandbox.faults.add("*", r"/jobs/", 503, {"detail": "Service unavailable"}, times=None)  # vid2scene is down
        before = len(sandbox.requests)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.0
        while loop.time() < end:
            job = await h.bot.store.get_job(job_id)
            assert job.state.is_live, job.last_error
            await asyncio.sleep(0.2)
        assert job.attempts > 3 and "temporary problem" in job.last_error  # well past the budget
        failed_polls = [r for r in sandbox.requests[before:] if "/jobs/" in r.path and r.method == "GET"]
        assert len(failed_polls) >= 10  # kept asking, every 0.1 s at most (the provider's maximum)
        sandbox.faults.clear()  # back up
        result = await wait_result(emu, job_id, timeout=30)
        assert result.attachments
        await wait_job_state(h, job_id, JobState.DONE)
        await asyncio.sleep(0.5)
        assert len(result_messages(emu, job_id)) == 1
        assert len(sandbox.requests_to("submit-job", "POST")) == 1
        assert not [m for m in emu.messages() if f"job `{job_id}`" in m.content and "failed" in m.content]
    finally:
        await h.stop()
        await sandbox.stop()


# -- a crash right after a job ends --------------------------------------------------------------

def die_before_the_chores(harness) -> None:
    """The bot dies right after writing a job's end, before any of its finishing chores."""
    runner = harness.bot.runner
    real = runner._do_chores

    async def dies(job, provider):
        if job.state.is_terminal:
            raise SimulatedCrash()
        return await real(job, provider)

    runner._do_chores = dies


async def test_a_crash_right_after_a_job_is_done_still_finishes_it(emu, harness, users, remote):
    job_id = await run_echo(emu, users["alice"], "finish me")
    status = await status_message(emu, job_id)
    die_before_the_chores(harness)
    await wait_result(emu, job_id)
    job = await wait_job_state(harness, job_id, JobState.DONE)
    spool = harness.settings().spool_dir / job_id
    await asyncio.sleep(0.2)
    job = await harness.bot.store.get_job(job_id)
    assert set(job.finish_pending) >= {"card", "saved", "spool"} and spool.exists()
    await harness.crash()
    await harness.start()
    await emu.wait_for(lambda: (field(emu.message(status.id), "State") or "").startswith("Done"), timeout=10)
    job = await harness.bot.store.get_job(job_id)
    await emu.wait_for(lambda: not spool.exists(), timeout=5)
    assert len(cards(emu, job_id)) == 1 and emu.message(status.id).components == []
    assert len(result_messages(emu, job_id)) == 1
    saved = await harness.bot.store.get_object("echo", "echo", job.remote_id)
    assert saved is not None and saved.status == "done" and saved.name == "finish me"
    assert (await finished(harness, job_id)).finish_pending == ()


async def test_a_crash_right_after_a_job_failed_still_shows_it_and_notifies_once(emu, harness, users):
    die_before_the_chores(harness)
    job_id = await run_echo(emu, users["alice"], "fail loudly")
    status = await status_message(emu, job_id)
    await wait_job_state(harness, job_id, JobState.FAILED)
    await asyncio.sleep(0.2)
    await harness.crash()
    assert not [m for m in emu.messages() if f"failed · job `{job_id}`" in m.content]
    await harness.start()
    notices = await emu.wait_for(lambda: [m for m in emu.messages() if f"failed · job `{job_id}`" in m.content],
                                 timeout=10)
    await emu.wait_for(lambda: field(emu.message(status.id), "State") == "Failed", timeout=10)
    await harness.restart()  # once more: nothing is owed, nothing is posted again
    await asyncio.sleep(0.5)
    assert len([m for m in emu.messages() if f"failed · job `{job_id}`" in m.content]) == len(notices) == 1
    assert notices[0].pinged_user_ids == [users["alice"]]
    assert len(cards(emu, job_id)) == 1


async def test_a_paid_submission_found_by_reconcile_records_the_saved_object(emu, harness, users, remote):
    async def die_before_the_id_is_recorded(job):
        raise SimulatedCrash()

    harness.bot.providers["echo"].submit_hook = die_before_the_id_is_recorded
    job_id = await run_echo(emu, users["alice"], "reconciled")
    await emu.wait_for(lambda: remote.submits == 1, timeout=10)
    await harness.crash()
    await harness.start()
    await wait_result(emu, job_id)
    job = await finished(harness, job_id)
    saved = await harness.bot.store.get_object("echo", "echo", job.remote_id)
    assert saved is not None and saved.name == "reconciled" and saved.status == "done" and remote.submits == 1


# -- the status card is posted once --------------------------------------------------------------

def lose_the_card_id(harness) -> None:
    """The command posts its card, then the bot dies before the card's id is written."""
    store = harness.bot.store
    real = store.record_status

    async def lost(job_id, **kwargs):
        if kwargs.get("only_if_unset"):
            return False
        return await real(job_id, **kwargs)

    store.record_status = lost


async def test_a_card_whose_id_was_lost_is_adopted_by_its_nonce(emu, harness, users):
    lose_the_card_id(harness)
    job_id = await run_echo(emu, users["alice"], "one card")
    await wait_job_state(harness, job_id, JobState.DONE)
    await emu.wait_for(lambda: [c for c in cards(emu, job_id) if (field(c, "State") or "").startswith("Done")], timeout=10)
    assert len(cards(emu, job_id)) == 1


async def test_a_card_whose_id_was_lost_long_ago_is_found_in_the_channel(emu, harness, users, echo_options):
    echo_options.update(running_polls=400)
    await harness.restart()
    lose_the_card_id(harness)
    job_id = await run_echo(emu, users["alice"], "old card")
    card = await status_message(emu, job_id)
    await harness.crash()
    # a long outage: past Discord's nonce window, so only the channel's history can find the card
    card.created_at -= timedelta(minutes=30)
    db = await Store.open(harness.settings().database_path)
    job = await db.get_job(job_id)
    await db.update(job, created_at=job.created_at - timedelta(minutes=30))
    await db.close()
    await harness.start()
    await emu.wait_for(lambda: (field(emu.message(card.id), "State") or "").startswith("Running"), timeout=15)
    assert (await harness.bot.store.get_job(job_id)).status_message_id == card.id
    assert len(cards(emu, job_id)) == 1


# -- the delivery plan is kept -------------------------------------------------------------------

async def test_results_split_as_planned_before_a_restart_whatever_the_limit_is_after(emu, harness, users,
                                                                                     echo_options):
    echo_options.update(result_files=11)
    await harness.restart()
    delivery = harness.bot.delivery
    real = delivery._send_part

    async def dies_before_the_second(job, channel, plan, index, total):
        if index == 1:
            raise SimulatedCrash()
        return await real(job, channel, plan, index, total)

    delivery._send_part = dies_before_the_second
    job_id = await run_echo(emu, users["alice"], "many files")
    await emu.wait_for(lambda: result_messages(emu, job_id), timeout=10)
    await asyncio.sleep(0.2)
    await harness.crash()
    harness.settings_overrides["upload_limit_mb"] = 0.001  # now no file would fit
    await harness.start()
    await wait_job_state(harness, job_id, JobState.DONE)
    posted = result_messages(emu, job_id)
    assert [m.content.split("\n")[0].endswith(f"(part {i}/2) · job `{job_id}`") for i, m in
            zip((1, 2), posted, strict=True)] == [True, True]
    assert len(posted[0].attachments) == 10 and [a["filename"] for a in posted[1].attachments] == ["echo-11.txt"]


async def test_a_free_look_up_at_the_provider_has_its_cooldown_too(emu, tmp_path, users):
    sandbox = Vid2SceneSandbox()
    await sandbox.start()
    env = sandbox.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"])
    h = BotHarness(emu, tmp_path, lambda: {"vid2scene": Vid2SceneProvider(section, sandbox_net(sandbox, emu))},
                   extensions=("cogs.jobs", "cogs.splat"), cooldowns={"splat list": 60},
                   operator_ids=[users["mod"]])
    await h.start()
    try:  # an operator's list asks vid2scene for scenes made outside the bot
        first = await (await emu.slash("splat list", user=users["mod"])).wait_reply()
        assert "no splat scenes yet" in first.content
        again = await (await emu.slash("splat list", user=users["mod"])).wait_reply()
        assert again.ephemeral and "you can use `/splat list` again <t:" in again.content
        other = await (await emu.slash("splat list", user=users["alice"])).wait_reply()
        assert "no splat scenes yet" in other.content  # per user
        assert len(sandbox.requests_to(r"^/api/v1/jobs/?$", "GET")) == 1  # the refused one asked nothing
    finally:
        await h.stop()
        await sandbox.stop()


# -- a result is found again only by its own words -----------------------------------------------

async def test_a_notice_about_the_job_is_never_taken_for_its_result(emu, harness, users):
    """The owner was told the provider would not stop the job; then delivery broke off (a crash,
    an outage) for longer than Discord keeps nonces. Looking through the channel for results
    already posted must not take that notice for the result: the result is posted, once."""
    delivery = harness.bot.delivery
    real = delivery._send_part
    reached = asyncio.Event()

    async def dies_before_posting(job, channel, plan, index, total, fallback=None):
        reached.set()
        raise SimulatedCrash()

    delivery._send_part = dies_before_posting
    job_id = await run_echo(emu, users["alice"], "refused cancel")
    await asyncio.wait_for(reached.wait(), 10)
    job = await harness.bot.store.get_job(job_id)
    await delivery.notify_cancel_refused(job.evolve(cancel_refused_at=job.created_at))
    delivery._send_part = real
    await harness.crash()
    db = await Store.open(harness.settings().database_path)  # the outage outlasted the nonce window
    job = await db.get_job(job_id)
    await db.update(job, delivery_started_at=job.delivery_started_at - timedelta(minutes=10))
    await db.close()
    await harness.start()
    [result] = await emu.wait_for(lambda: result_messages(emu, job_id), timeout=15)
    assert result.attachments and result.attachments[0]["filename"] == "echo.txt"
    await finished(harness, job_id)
    assert len(result_messages(emu, job_id)) == 1
    assert (await harness.bot.store.get_job(job_id)).result_message_ids == (result.id,)


async def test_a_replacement_card_posted_before_a_crash_is_not_posted_again(emu, harness, users, echo_options):
    """Someone deleted the card; the job's end went out on a fresh card, and the bot died before
    writing its id. Back after Discord's nonce window, the bot finds that card in the channel
    instead of posting a second one."""
    echo_options.update(running_polls=400)
    await harness.restart()
    job_id = await run_echo(emu, users["alice"], "deleted card")
    old = await status_message(emu, job_id)
    await delete_message(emu, emu.message(old.id))  # as a user with Manage Messages would
    store = harness.bot.store
    real = store.record_status

    async def dies_after_posting(job_id_, **kwargs):
        if kwargs.get("message_id") not in (None, old.id):
            raise SimulatedCrash()
        return await real(job_id_, **kwargs)

    store.record_status = dies_after_posting
    await (await emu.slash("jobs cancel", user=users["alice"], options={"id": job_id})).wait_reply()
    fresh = await emu.wait_for(lambda: [c for c in cards(emu, job_id) if c.id != old.id], timeout=10)
    await asyncio.sleep(0.2)
    await harness.crash()
    fresh[0].created_at -= timedelta(minutes=30)  # past the nonce window: only the history can find it
    await harness.start()
    await emu.wait_for(lambda: field(emu.message(fresh[0].id), "State") == "Cancelled", timeout=10)
    await finished(harness, job_id)
    await asyncio.sleep(0.3)
    assert [c.id for c in cards(emu, job_id)] == [fresh[0].id]


async def test_a_late_edit_from_another_process_does_not_leave_an_old_state_on_the_card(
        emu, harness, users, echo_options):
    """Another process (a Refresh on the gateway, a stalled worker) was editing the card to show
    the job running when the job ended; its edit, held up by a rate limit, lands after the final
    one. The card must end up showing the end, not "Running"."""
    from types import SimpleNamespace

    from bot.delivery import Delivery

    echo_options.update(running_polls=400)
    await harness.restart()
    job_id = await run_echo(emu, users["alice"], "late edit")
    card = await status_message(emu, job_id)
    await emu.wait_for(lambda: (field(emu.message(card.id), "State") or "").startswith("Running"), timeout=10)
    bot, gate, held = harness.bot, asyncio.Event(), asyncio.Event()

    class HeldChannel:  # its edits wait, as discord.py waits out a 429 before sending
        def __init__(self, channel):
            self.channel = channel

        def get_partial_message(self, message_id):
            message = self.channel.get_partial_message(message_id)

            async def edit(**kwargs):
                held.set()
                await gate.wait()
                return await message.edit(**kwargs)
            return SimpleNamespace(edit=edit)

    other_process = SimpleNamespace(get_partial_messageable=lambda cid: HeldChannel(bot.get_partial_messageable(cid)),
                                    get_guild=bot.get_guild, user=bot.user)
    gateway = Delivery(other_process, bot.store, upload_limit=bot.delivery.upload_limit, edit_interval=0,
                       provider_names=bot.delivery.provider_names)
    running = await bot.store.get_job(job_id)
    late = asyncio.create_task(gateway.sync_status(running.evolve(progress=0.5), force=True))
    await asyncio.wait_for(held.wait(), 5)
    await (await emu.slash("jobs cancel", user=users["alice"], options={"id": job_id})).wait_reply()
    await finished(harness, job_id)
    assert field(emu.message(card.id), "State") == "Cancelled"
    gate.set()
    await late
    assert field(emu.message(card.id), "State") == "Cancelled"
    assert len(cards(emu, job_id)) == 1
