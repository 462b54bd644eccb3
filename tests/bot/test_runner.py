"""The runner alone, with a real store and fake delivery: retry budgets and the paid-work rule."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.models import Artifact, Job, JobState, RemoteStatus
from bot.net import Net
from bot.providers.base import ProviderLimits, Transient
from bot.runner import Runner
from bot.store import Store, new_job_id
from tests.support.echo import EchoProvider, EchoRemote


class FakeDelivery:
    """Counts what the runner asks of Discord; `outage` sends fail with a dropped connection."""

    def __init__(self, outage: int = 0) -> None:
        self.outage = outage
        self.delivered: list[str] = []
        self.failures: list[str] = []
        self.final_cards: list[tuple[str, JobState]] = []
        self.refusals: list[str] = []

    def edit_wait(self, job: Job) -> float:
        return 0.0

    async def sync_status(self, job: Job, *, force: bool = False) -> Job:
        return job

    async def show_final(self, job: Job) -> bool:
        self.final_cards.append((job.id, job.state))
        return True

    async def notify_cancel_refused(self, job: Job) -> None:
        self.refusals.append(job.id)

    async def deliver(self, job: Job) -> Job:
        if self.outage > 0:
            self.outage -= 1
            raise aiohttp.ClientConnectionError("Discord is unreachable")
        self.delivered.append(job.id)
        return job

    async def notify_failure(self, job: Job) -> None:
        self.failures.append(job.id)


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "bot.db")
    yield s
    await s.close()


async def drive_until(runner: Runner, store: Store, job_id: str, done, limit: int = 60) -> Job:
    """Run the loop, fast-forwarding each backoff by making the job due again."""
    runner.start()
    try:
        for _ in range(limit):
            job = await store.get_job(job_id)
            if done(job):
                return job
            await store.wake(job_id)
            runner.wake()
            await asyncio.sleep(0.05)
        raise AssertionError(f"not reached; job is {job.state}, attempts {job.attempts}")
    finally:
        await runner.stop()


def echo_provider(remote: EchoRemote) -> EchoProvider:
    return EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=0.01, poll_max=0.02))


async def test_delivery_outlasts_an_outage_longer_than_the_attempt_budget(store, tmp_path):
    artifact_path = tmp_path / "result.txt"
    artifact_path.write_text("done")
    job = await store.create_job(Job(id=new_job_id(), provider="echo", kind="echo", state=JobState.DELIVERING,
                                     owner_id=1, channel_id=2, guild_id=3, summary="paid for",
                                     artifacts=(Artifact(artifact_path, "result.txt"),)))
    delivery = FakeDelivery(outage=6)
    provider = echo_provider(EchoRemote())
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=2)
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal)
    assert final.state is JobState.DONE and delivery.delivered == [job.id] and delivery.failures == []
    await provider.close()


async def test_unpaid_steps_give_up_after_the_attempt_budget_and_say_why(store, tmp_path):
    remote = EchoRemote()
    provider = echo_provider(remote)

    async def broken_upload(job, workdir):
        raise Transient("the echo upload host is down")

    provider.upload = broken_upload
    job = await store.create_job(make_job(state=JobState.UPLOADING))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=3)
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal and not j.finish_pending)
    assert final.state is JobState.FAILED
    assert final.last_error.startswith("Gave up after 3 attempts.") and "temporary problem" in final.last_error
    assert delivery.failures == [job.id] and remote.submits == 0
    await provider.close()


async def test_polls_after_payment_outlast_the_attempt_budget_and_deliver_once(store, tmp_path):
    remote = EchoRemote()
    remote_job = remote.create("t", "paid", 0, 2)
    remote.broken_poll_texts.add("paid")
    job = await store.create_job(make_job(state=JobState.RUNNING, remote_id=remote_job.id))
    delivery = FakeDelivery()
    provider = echo_provider(remote)
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=3)
    during = await drive_until(runner, store, job.id, lambda j: j.attempts >= 10)
    assert during.state is JobState.RUNNING and "temporary problem" in during.last_error
    assert delivery.failures == []
    remote.broken_poll_texts.clear()  # the provider is back
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal and not j.finish_pending)
    assert final.state is JobState.DONE and delivery.delivered == [job.id] and delivery.failures == []
    await provider.close()


async def test_an_outage_after_payment_still_ends_at_the_deadline(store, tmp_path):
    from datetime import timedelta

    remote = EchoRemote()
    remote_job = remote.create("t", "down", 0, 2)
    remote.broken_poll_texts.add("down")
    clock = Clock()
    job = await store.create_job(make_job(state=JobState.RUNNING, remote_id=remote_job.id,
                                          deadline_at=clock.now + timedelta(minutes=10)))
    delivery = FakeDelivery()
    provider = echo_provider(remote)
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=3, clock=clock)
    for _ in range(5):
        await runner._drive(await store.get_job(job.id))
    assert (await store.get_job(job.id)).state is JobState.RUNNING
    clock.advance(11 * 60)
    await runner._drive(await store.get_job(job.id))
    final = await store.get_job(job.id)
    assert final.state is JobState.FAILED and "did not finish within" in final.last_error
    assert delivery.failures == [job.id]
    await provider.close()


async def test_a_successful_step_clears_earlier_errors(store, tmp_path):
    remote = EchoRemote()
    remote_job = remote.create("t", "flaky", 0, 500)
    provider = echo_provider(remote)
    real_status = remote.status
    calls = {"n": 0}

    def flaky(remote_id: str) -> RemoteStatus:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Transient("blip")
        return real_status(remote_id)

    remote.status = flaky
    job = await store.create_job(Job(id=new_job_id(), provider="echo", kind="echo", state=JobState.RUNNING,
                                     owner_id=1, channel_id=2, guild_id=3, summary="s", remote_id=remote_job.id))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", max_attempts=3)
    after = await drive_until(runner, store, job.id, lambda j: calls["n"] >= 2 and j.last_error is None)
    assert after.attempts == 0 and after.state.is_live
    await provider.close()


class Clock:
    def __init__(self) -> None:
        from bot.models import utcnow
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta
        self.now += timedelta(seconds=seconds)


def make_job(**over) -> Job:
    base = dict(id=new_job_id(), provider="echo", kind="echo", state=JobState.ACCEPTED, owner_id=1, channel_id=2,
                guild_id=3, summary="s", params={"text": "hi"})
    base.update(over)
    return Job(**base)


async def test_a_cancel_during_the_upload_stops_before_the_paid_call(store, tmp_path):
    remote = EchoRemote()
    provider = echo_provider(remote)
    uploading = asyncio.Event()
    release = asyncio.Event()

    async def slow_upload(job, workdir):
        uploading.set()
        await release.wait()
        return {}

    provider.upload = slow_upload
    job = await store.create_job(make_job(state=JobState.UPLOADING))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool")
    step = asyncio.create_task(runner._drive(job))
    await uploading.wait()
    assert await store.request_cancel(job.id)
    release.set()
    await step
    final = await store.get_job(job.id)
    assert final.state is JobState.CANCELLED and remote.submits == 0
    await provider.close()


async def test_a_deadline_passing_while_collecting_keeps_the_paid_result(store, tmp_path):
    from datetime import timedelta

    from bot.models import utcnow
    remote = EchoRemote()
    provider = echo_provider(remote)
    remote_job = remote.create("t", "late", 0, 0)
    job = await store.create_job(make_job(state=JobState.COLLECTING, remote_id=remote_job.id,
                                          provider_data={"_status": {"echo": "LATE"}},
                                          deadline_at=utcnow() - timedelta(minutes=1)))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool")
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal)
    assert final.state is JobState.DONE and delivery.delivered == [job.id]
    assert not remote_job.cancelled
    await provider.close()


async def test_a_429_for_one_job_slows_the_providers_other_jobs(store, tmp_path):
    from bot.providers.base import RateLimited
    remote = EchoRemote()
    provider = echo_provider(remote)
    a, b = remote.create("a", "a", 0, 50), remote.create("b", "b", 0, 50)

    async def poll(job):
        if job.remote_id == a.id:
            raise RateLimited(30)
        return remote.status(job.remote_id)

    provider.poll = poll
    job_a = await store.create_job(make_job(state=JobState.RUNNING, remote_id=a.id))
    job_b = await store.create_job(make_job(state=JobState.RUNNING, remote_id=b.id))
    clock = Clock()
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    await runner._drive(job_a)
    await runner._drive(await store.get_job(job_b.id))
    assert remote.poll_calls.get("b") is None  # not asked while the provider said slow down
    later = await store.get_job(job_b.id)
    assert (later.next_run_at - clock.now).total_seconds() >= 29 and later.attempts == 0
    await provider.close()


async def test_eta_follows_the_pace_seen_since_the_first_poll_not_since_zero(store, tmp_path):
    remote = EchoRemote()
    provider = echo_provider(remote)
    seen = iter([0.6, 0.7])

    async def poll(job):
        from bot.models import RemotePhase
        return RemoteStatus(RemotePhase.RUNNING, progress=next(seen))

    provider.poll = poll
    clock = Clock()
    job = await store.create_job(make_job(state=JobState.RUNNING, remote_id="r",
                                          running_since=clock.now))  # e.g. a restart: running long before
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    clock.advance(3600)
    await runner._drive(job)
    assert (await store.get_job(job.id)).eta is None  # one observation: nothing to extrapolate yet
    clock.advance(10)
    await runner._drive(await store.get_job(job.id))
    eta = (await store.get_job(job.id)).eta
    assert abs((eta - clock.now).total_seconds() - 30) < 0.5  # 10 s per 10 %, 30 % left
    await provider.close()


async def test_results_lost_from_the_spool_are_fetched_again_then_delivered(store, tmp_path):
    remote = EchoRemote()
    provider = echo_provider(remote)
    remote_job = remote.create("t", "gone", 0, 0)
    vanished = Artifact(tmp_path / "spool" / "was-here.txt", "echo.txt")  # e.g. a recreated container
    job = await store.create_job(make_job(state=JobState.DELIVERING, remote_id=remote_job.id,
                                          provider_data={"_status": {"echo": "AGAIN"}}, artifacts=(vanished,)))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool")
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal)
    assert final.state is JobState.DONE and delivery.delivered == [job.id]
    assert [a.filename for a in final.artifacts] == ["echo.txt"] and final.artifacts[0].path != vanished.path
    await provider.close()


async def test_the_start_up_sweep_removes_only_spools_no_live_job_uses(store, tmp_path):
    spool = tmp_path / "spool"
    live = await store.create_job(make_job(state=JobState.RUNNING, remote_id="r"))
    owing = await store.create_job(make_job(state=JobState.DONE, finish_pending=("spool",)))
    finished = await store.create_job(make_job(state=JobState.DONE))
    for name in (live.id, owing.id, finished.id, "qwer2345"):
        (spool / name).mkdir(parents=True)
        (spool / name / "input.mp4").write_bytes(b"x" * 1000)
    (spool / "tmpkeep2345").mkdir()  # not a job's folder (a download's temporary one)
    runner = Runner(store, {}, FakeDelivery(), spool_dir=spool)
    assert await runner.sweep_spool() == 2
    assert sorted(p.name for p in spool.iterdir()) == sorted([live.id, owing.id, "tmpkeep2345"])


async def test_a_refused_cancel_keeps_the_job_running_and_says_so_once(store, tmp_path):
    remote = EchoRemote()
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=0.01, poll_max=0.02), refuse_cancel=True)
    remote_job = remote.create("t", "keep going", 0, 3)
    job = await store.create_job(make_job(state=JobState.RUNNING, remote_id=remote_job.id,
                                          params={"text": "keep going"}))
    assert await store.request_cancel(job.id)
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool")
    await runner._drive(await store.get_job(job.id))
    kept = await store.get_job(job.id)
    assert kept.state is JobState.RUNNING and kept.cancel_refused_at is not None and not kept.cancel_requested
    assert await store.count_live(owner_id=kept.owner_id) == 1  # still holds its slot
    assert delivery.refusals == [job.id] and kept.finish_pending == ()
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal and not j.finish_pending)
    assert final.state is JobState.DONE and delivery.delivered == [job.id] and delivery.refusals == [job.id]
    assert not remote_job.cancelled
    await provider.close()


async def test_a_cancel_that_meets_an_outage_is_asked_again_not_taken_as_refused(store, tmp_path):
    remote = EchoRemote()
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=0.01, poll_max=0.02))
    remote_job = remote.create("t", "stop me", 0, 500)
    real_cancel, tries = provider.cancel, []

    async def down_once(job):
        tries.append(job.id)
        if len(tries) == 1:
            raise Transient("HTTP 503")
        return await real_cancel(job)

    provider.cancel = down_once
    job = await store.create_job(make_job(state=JobState.RUNNING, remote_id=remote_job.id))
    assert await store.request_cancel(job.id)
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=1)
    await runner._drive(await store.get_job(job.id))
    waiting = await store.get_job(job.id)
    assert waiting.state is JobState.RUNNING and waiting.cancel_requested and waiting.cancel_refused_at is None
    final = await drive_until(runner, store, job.id, lambda j: j.state.is_terminal)
    assert final.state is JobState.CANCELLED and remote_job.cancelled and len(tries) == 2
    assert delivery.refusals == []  # nobody was told the provider said no
    await provider.close()


async def test_finishing_chores_that_fail_are_owed_and_redone_later(store, tmp_path):
    artifact_path = tmp_path / "spool" / "x" / "result.txt"
    artifact_path.parent.mkdir(parents=True)
    artifact_path.write_text("done")
    job = await store.create_job(make_job(state=JobState.DELIVERING, remote_id="echo-1",
                                          artifacts=(Artifact(artifact_path, "result.txt"),)))

    class CardOutage(FakeDelivery):
        down = 2

        async def show_final(self, job: Job) -> bool:
            if self.down:
                self.down -= 1
                raise aiohttp.ClientConnectionError("Discord is unreachable")
            return await super().show_final(job)

    delivery = CardOutage()
    clock = Clock()
    runner = Runner(store, {"echo": echo_provider(EchoRemote())}, delivery, spool_dir=tmp_path / "spool",
                    clock=clock)
    await runner._drive(job)
    ended = await store.get_job(job.id)
    assert ended.state is JobState.DONE and ended.finish_pending == ("card",)  # the rest was done
    assert ended.next_run_at > clock.now
    assert await store.get_object("echo", "echo", "echo-1") is not None
    for _ in range(2):
        await runner._drive(await store.get_job(job.id))
    assert (await store.get_job(job.id)).finish_pending == ()
    assert delivery.final_cards == [(job.id, JobState.DONE)]


async def test_an_hour_long_outage_after_payment_polls_at_the_providers_pace_then_delivers_once(store, tmp_path):
    """Simulated time: every step runs when the job is next due, with the provider down for an hour."""
    from datetime import timedelta

    remote = EchoRemote()
    remote_job = remote.create("t", "paid hour", 0, 2)
    remote.broken_poll_texts.add("paid hour")
    clock = Clock()
    start = clock.now
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=3, poll_max=30))
    job = await store.create_job(make_job(state=JobState.SUBMITTED, remote_id=remote_job.id,
                                          deadline_at=start + timedelta(hours=2)))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", max_attempts=3, clock=clock)
    waits = []
    while clock.now - start < timedelta(hours=1):
        job = await store.get_job(job.id)
        assert job.state is JobState.SUBMITTED and delivery.failures == []
        waits.append((job.next_run_at - clock.now).total_seconds())
        clock.now = max(clock.now, job.next_run_at)
        await runner._drive(job)
    assert max(waits) <= 30 and remote.poll_calls["paid hour"] >= 3600 / 30
    remote.broken_poll_texts.clear()
    for _ in range(10):
        job = await store.get_job(job.id)
        if job.state.is_terminal:
            break
        clock.now = max(clock.now, job.next_run_at)
        await runner._drive(job)
    assert job.state is JobState.DONE and delivery.delivered == [job.id] and delivery.failures == []
    await provider.close()


@pytest.mark.parametrize("created", [True, False])
async def test_a_cancel_while_a_submission_may_exist_unrecorded_finds_it_first(store, tmp_path, created):

    from bot.providers.base import job_marker

    remote = EchoRemote()
    provider = echo_provider(remote)  # waits 60 s before looking for a lost submission
    clock = Clock()
    job = await store.create_job(make_job(state=JobState.UPLOADING, submit_intent_at=clock.now,
                                          provider_data={"_uploaded": True}))
    if created:  # the paid call went through, its answer was lost
        remote.create(f"hi {job_marker(job)}", "hi", 0, 50)
    assert await store.request_cancel(job.id, now=clock.now)
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    await runner._drive(await store.get_job(job.id))
    waiting = await store.get_job(job.id)
    assert waiting.state is JobState.UPLOADING  # not cancelled blind, and not due again at once
    assert (waiting.next_run_at - clock.now).total_seconds() >= 59
    for _ in range(3):
        clock.advance(61)
        current = await store.get_job(job.id)
        if current.state.is_terminal:
            break
        await runner._drive(current)
    final = await store.get_job(job.id)
    assert final.state is JobState.CANCELLED
    assert remote.submits == (1 if created else 0)  # never submitted (again) after the cancel
    if created:
        assert final.remote_id and remote.jobs[final.remote_id].cancelled  # found, then stopped
    await provider.close()


async def test_a_chore_that_keeps_failing_for_a_bug_is_dropped_after_the_attempt_budget(store, tmp_path):
    job = await store.create_job(make_job(state=JobState.DONE, remote_id="echo-9", finish_pending=("saved", "spool")))
    provider = echo_provider(EchoRemote())

    def broken(job):
        raise ValueError("a bug in saved_object")

    provider.saved_object = broken
    clock = Clock()
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", max_attempts=3,
                    clock=clock)
    for _ in range(2):
        await runner._drive(await store.get_job(job.id))
        assert (await store.get_job(job.id)).finish_pending == ("saved",)
    await runner._drive(await store.get_job(job.id))
    assert (await store.get_job(job.id)).finish_pending == ()


async def test_an_unfinished_reconcile_means_look_again_never_submit_again(store, tmp_path):
    from datetime import timedelta

    from bot.providers.base import ReconcileUnknown

    remote = EchoRemote()
    provider = echo_provider(remote)
    answers = iter([ReconcileUnknown("pages left", retry_after=45), "found-it"])
    submitted: list[str] = []

    async def reconcile(job):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def submit(job):
        submitted.append(job.id)
        return "new", {}

    provider.reconcile, provider.submit = reconcile, submit
    clock = Clock()
    job = await store.create_job(make_job(state=JobState.UPLOADING, provider_data={"_uploaded": True},
                                          submit_intent_at=clock.now - timedelta(minutes=5),
                                          deadline_at=clock.now + timedelta(hours=1)))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", clock=clock)
    await runner._drive(job)
    later = await store.get_job(job.id)
    assert later.state is JobState.UPLOADING and later.submit_intent_at is not None and later.attempts == 0
    assert (later.next_run_at - clock.now).total_seconds() >= 44 and delivery.failures == []
    clock.advance(45)
    await runner._drive(later)
    final = await store.get_job(job.id)
    assert final.state is JobState.SUBMITTED and final.remote_id == "found-it" and submitted == []
    await provider.close()


async def test_an_unknown_submission_past_the_deadline_fails_saying_it_may_exist(store, tmp_path):
    from datetime import timedelta

    from bot.providers.base import ReconcileUnknown

    remote = EchoRemote()
    provider = echo_provider(remote)

    async def reconcile(job):
        raise ReconcileUnknown("The list could not be read; it may still have been charged.")

    provider.reconcile = reconcile
    clock = Clock()
    job = await store.create_job(make_job(state=JobState.UPLOADING, provider_data={"_uploaded": True},
                                          submit_intent_at=clock.now - timedelta(hours=2),
                                          deadline_at=clock.now - timedelta(minutes=1)))
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool", clock=clock)
    await runner._drive(job)
    final = await store.get_job(job.id)
    assert final.state is JobState.FAILED and delivery.failures == [job.id]
    assert "may still have been charged" in final.last_error
    await provider.close()


async def test_a_kind_without_progress_is_polled_near_when_recent_jobs_of_it_finished(store, tmp_path):
    """Viggle characters report nothing until ready: the runner aims its polls at how long the last
    jobs of that kind took (kept with each finished job), not at a blind fixed pace."""
    from bot.models import RemotePhase

    for seconds in (100.0, 110.0, 120.0):
        await store.create_job(make_job(state=JobState.DONE, remote_id="old",
                                        provider_data={"_remote_seconds": seconds}))
    remote = EchoRemote()
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=2, poll_max=300))

    async def poll(job):
        return RemoteStatus(RemotePhase.RUNNING)

    provider.poll = poll
    clock = Clock()
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    job = await store.create_job(make_job(state=JobState.SUBMITTED, remote_id="r"))
    await runner._drive(job)
    polled = await store.get_job(job.id)
    wait = (polled.next_run_at - clock.now).total_seconds()
    assert 75 <= wait <= 96  # most of the way to the early side of 100-120 s
    assert polled.eta is not None  # and the card can say when
    fresh = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    clock.advance(10)
    await fresh._drive(polled)  # a restart keeps the job's clock: the wait shrinks, it does not start over
    again = await store.get_job(job.id)
    assert (again.next_run_at - clock.now).total_seconds() < wait
    await provider.close()


async def test_a_batched_poll_takes_the_jobs_due_soon_along_and_leaves_the_rest(store, tmp_path):
    """A list request answers every listed job, so a batched poll also takes the jobs due within
    the provider's `batch_ahead_seconds`: one request instead of one each a moment later. Jobs
    due later, and jobs the list cannot answer, keep their own time (and no lease)."""
    from datetime import timedelta

    from bot.models import RemotePhase

    class Listing(EchoProvider):
        batch_status = True
        batch_ahead_seconds = 10.0

        def can_batch(self, job: Job) -> bool:
            return job.kind == "listed"

        async def poll_many(self, jobs):
            asked.append(sorted(j.params["text"] for j in jobs))
            return {j.id: RemoteStatus(RemotePhase.RUNNING) for j in jobs}

        async def poll(self, job):
            single.append(job.params["text"])
            return RemoteStatus(RemotePhase.RUNNING)

    asked: list[list[str]] = []
    single: list[str] = []
    clock = Clock()
    provider = Listing(EchoRemote(), Net(), limits=ProviderLimits(poll_min=30, poll_max=60))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    due = {"now": 0, "soon": 5, "later": 60, "render-soon": 5, "now-too": 0}
    jobs = {}
    for text, seconds in due.items():
        jobs[text] = await store.create_job(make_job(
            state=JobState.SUBMITTED, remote_id=f"r-{text}", kind="unlisted" if text == "render-soon" else "listed",
            params={"text": text}, next_run_at=clock.now + timedelta(seconds=seconds)))
    await runner._claim_due()
    await asyncio.gather(*set(runner._inflight.values()))
    assert asked == [["now", "now-too", "soon"]] and single == []  # one request for three jobs
    for text in ("later", "render-soon"):  # untouched: still due when they were
        assert (await store.get_job(jobs[text].id)).next_run_at == jobs[text].next_run_at
    other = await store.claim_due(clock.now + timedelta(seconds=5), worker="other", lease_seconds=60, limit=9)
    assert [j.params["text"] for j in other] == ["render-soon"]  # given back: free to claim when due
    soon = await store.get_job(jobs["soon"].id)
    assert soon.next_run_at >= clock.now + timedelta(seconds=30)  # polled, so planned afresh
    await provider.close()


async def test_a_rider_the_list_leaves_out_is_polled_when_due_not_early(store, tmp_path):
    """A job taken along early for a batched poll whose answer leaves it out (a list cut short, a
    failed list call) is not polled on its own ahead of time: that would ask the provider again
    sooner than its minimum interval. It keeps its own time and is polled when due."""
    from datetime import timedelta

    from bot.models import RemotePhase

    class Listing(EchoProvider):
        batch_status = True

        async def poll_many(self, jobs):
            return {j.id: RemoteStatus(RemotePhase.RUNNING) for j in jobs if j.params["text"] != "soon"}

        async def poll(self, job):
            single.append(job.params["text"])
            return RemoteStatus(RemotePhase.RUNNING)

    single: list[str] = []
    clock = Clock()
    provider = Listing(EchoRemote(), Net(), limits=ProviderLimits(poll_min=30, poll_max=60))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    jobs = {}
    for text, seconds in {"now": 0, "now-too": 0, "soon": 5}.items():
        jobs[text] = await store.create_job(make_job(
            state=JobState.SUBMITTED, remote_id=f"r-{text}", params={"text": text},
            next_run_at=clock.now + timedelta(seconds=seconds)))
    await runner._claim_due()
    await asyncio.gather(*set(runner._inflight.values()))
    assert single == []  # last polled 25 s ago: asking now would beat the 30 s minimum
    assert (await store.get_job(jobs["soon"].id)).next_run_at == jobs["soon"].next_run_at
    await runner._claim_due()  # its lease is given back: another pass (or worker) takes it when due
    clock.advance(5)
    await runner._claim_due()
    await asyncio.gather(*set(runner._inflight.values()))
    assert single == ["soon"]
    await provider.close()


async def test_a_finished_job_a_slow_list_answered_is_collected_even_past_its_deadline(store, tmp_path):
    """The list request began before the job's deadline and came back saying it finished: the paid
    result is collected, not failed and cancelled (Viggle's cancel deletes the object)."""
    from datetime import timedelta

    from bot.models import RemotePhase

    class SlowListing(EchoProvider):
        batch_status = True

        async def poll_many(self, jobs):
            clock.advance(4)  # pages, a retried 502, reads of the finished objects
            return {j.id: RemoteStatus(RemotePhase.SUCCEEDED, progress=1.0) for j in jobs}

        async def cancel(self, job):
            cancelled.append(job.params["text"])

    cancelled: list[str] = []
    clock = Clock()
    provider = SlowListing(EchoRemote(), Net(), limits=ProviderLimits(poll_min=3, poll_max=60))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    jobs = [await store.create_job(make_job(state=JobState.RUNNING, remote_id=f"r-{text}", params={"text": text},
                                            next_run_at=clock.now, deadline_at=clock.now + timedelta(seconds=end)))
            for text, end in (("tight", 3), ("loose", 60))]
    await runner._claim_due()
    await asyncio.gather(*set(runner._inflight.values()))
    assert [(await store.get_job(j.id)).state for j in jobs] == [JobState.COLLECTING] * 2
    assert cancelled == []
    await provider.close()


async def test_jobs_a_failed_pass_claimed_are_given_back_at_once(store, tmp_path):
    """The riders' claim fails (a locked database): the jobs that pass had already claimed are not
    left leased to a worker that never started them (they would wait out the whole lease)."""

    from bot.models import RemotePhase

    class Listing(EchoProvider):
        batch_status = True

        async def poll_many(self, jobs):
            polled.extend(j.params["text"] for j in jobs)
            return {j.id: RemoteStatus(RemotePhase.RUNNING) for j in jobs}

    polled: list[str] = []
    clock = Clock()
    provider = Listing(EchoRemote(), Net(), limits=ProviderLimits(poll_min=3, poll_max=60))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock,
                    lease_seconds=600)
    for text in ("a", "b"):
        await store.create_job(make_job(state=JobState.RUNNING, remote_id=f"r-{text}", params={"text": text},
                                        next_run_at=clock.now))
    claim = store.claim_due

    async def riders_fail(*args, **kw):
        if kw.get("due_by") is not None:
            raise RuntimeError("database is locked")
        return await claim(*args, **kw)

    store.claim_due = riders_fail
    with pytest.raises(RuntimeError):
        await runner._claim_due()
    store.claim_due = claim
    clock.advance(1)  # the next pass, a second later, polls them (not 10 minutes later)
    await runner._claim_due()
    await asyncio.gather(*set(runner._inflight.values()))
    assert sorted(polled) == ["a", "b"]
    await provider.close()


async def test_a_job_a_lagging_list_keeps_calling_running_is_still_asked_alone_now_and_then(store, tmp_path):
    """A list that lags (a cached page) says "running" for a job that has finished. The runner
    still asks about each job on its own now and then (every ASK_ALONE_EVERY seconds, or a quarter
    of its deadline if rarer), so the paid result is collected rather than failed at the deadline."""
    from datetime import timedelta

    from bot.models import RemotePhase
    from bot.runner import ASK_ALONE_EVERY

    class LaggingList(EchoProvider):
        batch_status = True

        async def poll_many(self, jobs):
            listed.extend(j.params["text"] for j in jobs)
            return {j.id: RemoteStatus(RemotePhase.RUNNING) for j in jobs}

        async def poll(self, job):
            alone.append(job.params["text"])
            return RemoteStatus(RemotePhase.SUCCEEDED, progress=1.0)

    listed: list[str] = []
    alone: list[str] = []
    clock = Clock()
    provider = LaggingList(EchoRemote(), Net(), limits=ProviderLimits(poll_min=30, poll_max=60))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool", clock=clock)
    jobs = [await store.create_job(make_job(state=JobState.RUNNING, remote_id=f"r-{t}", params={"text": t},
                                            next_run_at=clock.now, deadline_at=clock.now + timedelta(hours=2)))
            for t in ("a", "b")]
    period = max(ASK_ALONE_EVERY, provider.limits.deadline_for("echo") / 4)  # the rule's period
    elapsed = 0.0
    while elapsed < period + 120 and not alone:
        await runner._claim_due()
        await asyncio.gather(*set(runner._inflight.values()))
        clock.advance(60)
        elapsed += 60
    assert listed and sorted(alone) == ["a", "b"]  # batched until then, each asked alone once
    assert [(await store.get_job(j.id)).state for j in jobs] == [JobState.COLLECTING] * 2
    await provider.close()


async def test_a_job_ended_just_before_a_crash_is_still_settled_in_the_ledger(store, tmp_path):
    """Settling the charge is owed with the job's end, like its card: a worker that dies right
    after writing the end leaves it for the next one, and a cancelled job's estimate is refunded."""
    from bot.store import Charge

    class SimulatedCrash(BaseException):
        pass

    job = await store.create_job(make_job(state=JobState.UPLOADING), charge=Charge("echo", 100, "2030-01", 5.0))
    dying = Runner(store, {}, FakeDelivery(), spool_dir=tmp_path / "spool")

    async def dies(*args, **kwargs):
        raise SimulatedCrash()

    dying._do_chores = dies
    with pytest.raises(SimulatedCrash):
        await dying._end(job, JobState.CANCELLED, None, last_error="Cancelled on request.")
    assert (await store.ledger_entry(job.id))["amount"] == 5.0  # not yet refunded
    restarted = Runner(store, {}, FakeDelivery(), spool_dir=tmp_path / "spool")
    await restarted._drive(await store.get_job(job.id))
    entry = await store.ledger_entry(job.id)
    assert entry["settled"] and entry["amount"] == 0
    assert (await store.get_job(job.id)).finish_pending == ()
