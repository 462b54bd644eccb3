"""Several runners (workers) on one database: each job is driven by one of them at a time, a
stalled worker's jobs are taken over once its lease runs out, and its late writes are refused."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import Job, JobState
from bot.net import Net
from bot.providers.base import ProviderLimits
from bot.runner import Runner
from bot.store import open_store
from tests.bot.test_runner import FakeDelivery, make_job
from tests.support.echo import EchoProvider, EchoRemote
from tests.support.file_host import FileHost
from tests.support.policy import sandbox_net


@pytest.fixture(params=["sqlite", "postgresql"])
async def location(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "bot.db"
    return (await request.getfixturevalue("postgres_server").fresh_schema_url())[1]


def provider_for(remote: EchoRemote) -> EchoProvider:
    return EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=0.01, poll_max=0.05, max_concurrent=2,
                                                              max_concurrent_polls=4))


async def shut_down(runners: list[Runner], *closables) -> None:
    """Stop the workers (a frozen one's step is cut after a second), then close their clients and stores."""
    for runner in runners:
        await runner.stop(grace=1)
    for closable in closables:
        await closable.close()


async def _until(predicate, seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


async def test_two_workers_share_the_jobs_and_deliver_each_once(location, tmp_path):
    remote = EchoRemote()
    stores = [await open_store(location) for _ in range(2)]
    deliveries = [FakeDelivery(), FakeDelivery()]
    providers = [provider_for(remote), provider_for(remote)]
    runners = [Runner(s, {"echo": p}, d, spool_dir=tmp_path / f"spool{i}", worker_id=f"w{i}", idle_wait=0.1)
               for i, (s, p, d) in enumerate(zip(stores, providers, deliveries, strict=True))]
    jobs = [await stores[0].create_job(make_job(params={"text": f"t{i}"})) for i in range(12)]
    for r in runners:
        r.start()
    try:
        async def all_done():
            got = [await stores[0].get_job(j.id) for j in jobs]
            return all(j.state is JobState.DONE and not j.finish_pending for j in got)

        await _until(all_done)
    finally:
        for r in runners:
            await r.stop()
        for p in providers:
            await p.close()
        for s in stores:
            await s.close()
    delivered = deliveries[0].delivered + deliveries[1].delivered
    assert sorted(delivered) == sorted(j.id for j in jobs)  # every job once, by one worker or the other
    assert remote.submits == 12  # and paid once


async def test_a_stalled_workers_job_is_taken_over_and_its_late_write_refused(location, tmp_path):
    remote = EchoRemote()
    stalled_store, healthy_store = await open_store(location), await open_store(location)
    release = asyncio.Event()
    stalled_provider, healthy_provider = provider_for(remote), provider_for(remote)
    first_poll = asyncio.Event()

    async def stuck_poll(job: Job):
        first_poll.set()
        await release.wait()  # the worker hangs in the middle of a step (a frozen VM, a long GC)
        return remote.status(job.remote_id)

    stalled_provider.poll = stuck_poll
    rj = remote.create("t", "t", 0, 10_000)  # runs on: the job stays in the same state throughout
    job = await stalled_store.create_job(make_job(state=JobState.RUNNING, remote_id=rj.id))
    stalled = Runner(stalled_store, {"echo": stalled_provider}, FakeDelivery(), spool_dir=tmp_path / "a",
                     worker_id="stalled", lease_seconds=0.6, idle_wait=0.1)
    healthy = Runner(healthy_store, {"echo": healthy_provider}, FakeDelivery(), spool_dir=tmp_path / "b",
                     worker_id="healthy", lease_seconds=5, idle_wait=0.1)
    stalled.start()
    try:
        await asyncio.wait_for(first_poll.wait(), 10)
        stalled._loop_task.cancel()  # it stops renewing its lease, as a stalled process would
        claimed = (await healthy_store.get_job(job.id)).lease_token
        healthy.start()

        async def polled_twice_by_the_other():
            return remote.poll_calls.get("t", 0) >= 2

        await _until(polled_twice_by_the_other)  # the lease ran out and the job was taken over
        await healthy.stop()
        taken = await healthy_store.get_job(job.id)
        assert taken.state is JobState.RUNNING and taken.lease_token > claimed
        release.set()  # the stalled worker wakes up and records its (old) poll
        await asyncio.sleep(0.5)
        after = await healthy_store.get_job(job.id)
        assert after.updated_at == taken.updated_at and after.progress == taken.progress  # its write was refused
    finally:
        release.set()
        await stalled.stop(grace=1)
        await healthy.stop()
        await stalled_provider.close()
        await healthy_provider.close()
        await stalled_store.close()
        await healthy_store.close()


async def test_a_job_taken_over_mid_upload_fetches_its_input_again_and_is_paid_once(location, tmp_path):
    """Worker A froze after spooling the input, before the paid call. Worker B (another machine:
    another spool folder) takes the job over, fetches the input again from Discord's CDN and
    submits; when A wakes, its stale lease stops it before it pays a second time."""
    (tmp_path / "cdn").mkdir()
    host = await FileHost(tmp_path / "cdn").start()
    remote = EchoRemote()
    a_store, b_store = await open_store(location), await open_store(location)
    a_provider, b_provider = provider_for(remote), provider_for(remote)
    a_provider.net, b_provider.net = sandbox_net(host), sandbox_net(host)  # the CDN stand-in is on loopback
    spooled, release = asyncio.Event(), asyncio.Event()
    upload = a_provider.upload

    async def frozen_after_spooling(job: Job, workdir):
        data = await upload(job, workdir)
        spooled.set()
        await release.wait()
        return data

    a_provider.upload = frozen_after_spooling
    job = await a_store.create_job(make_job(params={"text": "t", "file": host.attachment("in.bin", b"x" * 5000)}))
    b_delivery = FakeDelivery()
    a = Runner(a_store, {"echo": a_provider}, FakeDelivery(), spool_dir=tmp_path / "a", worker_id="a",
               lease_seconds=0.6, idle_wait=0.1)
    b = Runner(b_store, {"echo": b_provider}, b_delivery, spool_dir=tmp_path / "b", worker_id="b",
               lease_seconds=5, idle_wait=0.1)
    a.start()
    try:
        await asyncio.wait_for(spooled.wait(), 10)
        assert (tmp_path / "a" / job.id / "input.bin").stat().st_size == 5000
        a._loop_task.cancel()  # A stops renewing its lease, as a frozen machine would
        b.start()

        async def delivered():
            return b_delivery.delivered == [job.id]

        await _until(delivered)
        release.set()  # A wakes up with the input in its own spool and tries to go on
        await asyncio.sleep(0.5)
        assert host.gets == ["in.bin", "in.bin"]  # B fetched the input again on its machine
        assert remote.submits == 1  # and only B paid
        assert (await b_store.get_job(job.id)).state is JobState.DONE
    finally:
        release.set()
        await shut_down([a, b], a_provider, b_provider, a_store, b_store)
        await host.stop()


async def test_a_worker_frozen_in_its_last_read_before_paying_does_not_pay_again(location, tmp_path):
    """Worker A froze while reading the job afresh right before the paid call; B took it over and
    finished it. The copy A then reads carries B's fencing token: A must not borrow it to pay."""
    remote = EchoRemote()
    a_store, b_store = await open_store(location), await open_store(location)
    a_provider, b_provider = provider_for(remote), provider_for(remote)
    frozen, release = asyncio.Event(), asyncio.Event()
    read = a_store.get_job

    async def read_then_freeze(job_id):
        row = await read(job_id)
        if row and row.state is JobState.UPLOADING and row.provider_data.get("_uploaded") and not frozen.is_set():
            frozen.set()
            await release.wait()  # a GC pause or a stopped VM between the query and its answer
            return await read(job_id)
        return row

    a_store.get_job = read_then_freeze
    job = await a_store.create_job(make_job(params={"text": "t"}))
    a = Runner(a_store, {"echo": a_provider}, FakeDelivery(), spool_dir=tmp_path / "a", worker_id="a",
               lease_seconds=0.6, idle_wait=0.1)
    b_delivery = FakeDelivery()
    b = Runner(b_store, {"echo": b_provider}, b_delivery, spool_dir=tmp_path / "b", worker_id="b",
               lease_seconds=5, idle_wait=0.1)
    a.start()
    try:
        await asyncio.wait_for(frozen.wait(), 10)
        a._loop_task.cancel()  # A stops renewing its lease, as a frozen process would
        b.start()

        async def finished():
            row = await b_store.get_job(job.id)
            return row.state is JobState.DONE and not row.finish_pending

        await _until(finished)
        before = await b_store.get_job(job.id)
        release.set()
        await asyncio.sleep(0.5)
        assert remote.submits == 1 and b_delivery.delivered == [job.id]
        assert await b_store.get_job(job.id) == before  # A wrote nothing either
    finally:
        release.set()
        await shut_down([a, b], a_provider, b_provider, a_store, b_store)


async def test_a_worker_without_a_provider_leaves_its_jobs_to_the_workers_that_have_it(location, tmp_path,
                                                                                         monkeypatch):
    """A worker missing a provider (an older version in a rolling upgrade, a key missing from its
    environment) must not fail the jobs other workers run or have queued, paid ones included, however
    long they have waited for a slot. Only a job of a provider no running worker offers is failed,
    with the reason."""
    from datetime import timedelta

    import bot.runner
    from bot.models import utcnow

    monkeypatch.setattr(bot.runner, "WORKER_BEAT", 0.1)  # workers say what they offer every 0.1 s
    remote = EchoRemote()
    store = await open_store(location)
    await store.beat_worker("new-version", ["echo"], utcnow())  # a running worker that has echo
    running = await store.create_job(make_job(state=JobState.RUNNING, remote_id=remote.create("t", "t", 0, 10_000).id))
    backlog = await store.create_job(make_job(state=JobState.COLLECTING, remote_id=remote.create("u", "u", 0, 0).id,
                                              next_run_at=utcnow() - timedelta(hours=2)))  # waiting for a slot
    gone = await store.create_job(make_job(provider="retired", state=JobState.UPLOADING))
    provider = provider_for(remote)
    other = Runner(store, {"viggle": provider}, FakeDelivery(), spool_dir=tmp_path / "o", worker_id="old-version",
                   idle_wait=0.1)
    other.start()
    try:
        async def failed():
            return (await store.get_job(gone.id)).state is JobState.FAILED

        await _until(failed)
        await asyncio.sleep(0.3)  # several more passes
        assert "service is not configured" in (await store.get_job(gone.id)).last_error
        assert (await store.get_job(running.id)).state is JobState.RUNNING
        assert (await store.get_job(backlog.id)).state is JobState.COLLECTING
        assert "viggle" in await store.offered_providers(utcnow() - timedelta(minutes=1))  # it said so too
    finally:
        await other.stop(grace=0.5)
        await provider.close()
        await store.close()


async def test_a_healthy_workers_lease_outlasts_a_long_step_whatever_its_idle_wait(location, tmp_path):
    """The loop extends leases between waits: an idle wait longer than the lease must not let a
    healthy worker's lease lapse in the middle of a long upload (the other worker would start it too)."""
    remote = EchoRemote()
    a_store, b_store = await open_store(location), await open_store(location)
    a_provider, b_provider = provider_for(remote), provider_for(remote)
    uploads: list[str] = []

    def slow_upload(who: str):
        async def upload(job, workdir):
            uploads.append(who)
            await asyncio.sleep(3.0)  # a long upload; the worker is healthy all along
            return {}
        return upload

    a_provider.upload, b_provider.upload = slow_upload("a"), slow_upload("b")
    await a_store.create_job(make_job(params={"text": "t"}))
    a = Runner(a_store, {"echo": a_provider}, FakeDelivery(), spool_dir=tmp_path / "a", worker_id="a",
               lease_seconds=1.5, idle_wait=5.0)
    b = Runner(b_store, {"echo": b_provider}, FakeDelivery(), spool_dir=tmp_path / "b", worker_id="b",
               lease_seconds=1.5, idle_wait=0.1)
    a.start()
    try:
        async def started():
            return bool(uploads)

        await _until(started)
        b.start()
        await asyncio.sleep(3.0)
        assert uploads == ["a"]
    finally:
        await shut_down([a, b], a_provider, b_provider, a_store, b_store)


async def test_two_shard_processes_on_one_sqlite_file_leave_each_others_jobs_alone(tmp_path):
    """Two gateway processes splitting the shards (SHARD_COUNT=2, SHARD_IDS=[0] and [1], no
    WORKER_ID, as docs/scaling.md describes) on one SQLite file: when one (re)starts, it does not
    take the job the other is in the middle of (its lease) and run the same step a second time."""
    from bot.config import Settings, isolated_settings, worker_name

    with isolated_settings():
        names = [worker_name(Settings(discord_token="MTIz.tok.en", database_path=tmp_path / "bot.db",
                                      shard_count=2, shard_ids=[shard])) for shard in (0, 1)]
    remote = EchoRemote()
    a_store, b_store = await open_store(tmp_path / "bot.db"), await open_store(tmp_path / "bot.db")
    a_provider, b_provider = provider_for(remote), provider_for(remote)
    polls: list[str] = []
    polling, release = asyncio.Event(), asyncio.Event()

    async def a_poll(job: Job):
        polls.append("a")
        polling.set()
        await release.wait()  # a status call that takes a while
        return remote.status(job.remote_id)

    async def b_poll(job: Job):
        polls.append("b")
        return remote.status(job.remote_id)

    a_provider.poll, b_provider.poll = a_poll, b_poll
    await a_store.create_job(make_job(params={"text": "t"}))
    a = Runner(a_store, {"echo": a_provider}, FakeDelivery(), spool_dir=tmp_path / "a", worker_id=names[0],
               idle_wait=0.1)
    b = Runner(b_store, {"echo": b_provider}, FakeDelivery(), spool_dir=tmp_path / "b", worker_id=names[1],
               idle_wait=0.1)
    a.start()
    try:
        await asyncio.wait_for(polling.wait(), 10)
        b.start()  # the other shard's process starts (or restarts) meanwhile
        await asyncio.sleep(0.5)
        assert polls == ["a"]  # the job A is polling is still A's alone
    finally:
        release.set()
        await shut_down([a, b], a_provider, b_provider, a_store, b_store)
