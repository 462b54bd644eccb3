"""Workers on PostgreSQL hear of new work at once: a job created, a cancel asked or a lease given
back by another process wakes an idle worker (LISTEN/NOTIFY) instead of waiting out its idle time,
and the listening connection comes back after it is cut.

Each worker here idles 600 s, so a job taken within the 15 s these tests allow was taken because
the worker was told of it."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from bot.models import JobState, utcnow
from bot.net import Net
from bot.providers.base import ProviderLimits
from bot.runner import Runner
from bot.store import LimitReached, open_store
from bot.store_pg_listen import APPLICATION_NAME, DUE_CHANNEL
from tests.bot.test_runner import FakeDelivery, make_job
from tests.support.echo import EchoProvider, EchoRemote

#: far longer than any test here waits: only a wake-up gets a job taken in time
IDLE = 600.0
#: how long a test waits for the worker (a bound on the test, not a measured figure: see bench/)
PROMPTLY = 15.0


@pytest.fixture
async def pg_url(postgres_server):
    return (await postgres_server.fresh_schema_url())[1]


async def _until(predicate, seconds: float = PROMPTLY, what: str = "it") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


async def _listeners(url: str) -> list[int]:
    """Backends of the bot's listening connections, as an operator sees them in pg_stat_activity."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                                "AND query LIKE 'LISTEN%'", APPLICATION_NAME)
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


class Worker:
    """A worker process's runner on its own store, idling `IDLE` s, with its heartbeats counted."""

    def __init__(self, store, remote: EchoRemote, tmp_path, *, limits: ProviderLimits | None = None) -> None:
        self.store = store
        self.delivery = FakeDelivery()
        self.provider = EchoProvider(remote, Net(), limits=limits or ProviderLimits(
            poll_min=0.01, poll_max=0.05, deadlines={"echo": 3600}))
        self.beats = 0
        self.runner = Runner(store, {"echo": self.provider}, self.delivery, spool_dir=tmp_path / "spool",
                             worker_id="worker-1", idle_wait=IDLE, heartbeat=self._beat)

    def _beat(self) -> None:
        self.beats += 1

    async def settled(self) -> None:
        """Wait until the runner has looked at the database and gone to sleep (no turn for 1 s)."""
        seen, quiet = -1, 0
        while quiet < 20:
            quiet = quiet + 1 if self.beats == seen and self.beats else 0
            seen = self.beats
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.runner.stop(grace=2)
        await self.provider.close()
        await self.store.close()


@pytest.fixture
async def two_processes(pg_url, tmp_path):
    """A worker, and the gateway's store: two pools on one database, as two processes have."""
    remote = EchoRemote()
    worker = Worker(await open_store(pg_url), remote, tmp_path)
    gateway = await open_store(pg_url)
    yield worker, gateway, remote
    await worker.close()
    await gateway.close()


async def test_an_idle_worker_takes_a_job_the_gateway_created_at_once(two_processes, pg_url, caplog):
    worker, gateway, _remote = two_processes
    worker.runner.start()
    await worker.settled()
    job = await gateway.create_job(make_job(params={"text": "hello"}))

    async def delivered():
        return (await gateway.get_job(job.id)).state is JobState.DONE

    await _until(delivered, what="the job's delivery")
    assert worker.delivery.delivered == [job.id]
    await worker.runner.stop()

    async def no_listener():
        return not await _listeners(pg_url)

    await _until(no_listener, what="closing the listening connection")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # quietly


async def test_a_cancel_asked_on_the_gateway_wakes_the_worker(pg_url, tmp_path):
    remote = EchoRemote()
    # the provider is polled every 5 to 10 minutes: only a wake-up makes the cancel quick
    worker = Worker(await open_store(pg_url), remote, tmp_path,
                    limits=ProviderLimits(poll_min=300, poll_max=600, deadlines={"echo": 3600}))
    gateway = await open_store(pg_url)
    try:
        running = remote.create("t", "long", 0, 10_000)
        job = await gateway.create_job(make_job(state=JobState.RUNNING, remote_id=running.id))
        worker.runner.start()

        async def polled():
            return remote.poll_calls.get("long", 0) >= 1

        await _until(polled, what="the first poll")
        await worker.settled()
        assert (await gateway.get_job(job.id)).next_run_at.timestamp() - job.created_at.timestamp() > 200
        assert await gateway.request_cancel(job.id)

        async def cancelled():
            return (await gateway.get_job(job.id)).state is JobState.CANCELLED

        await _until(cancelled, what="the cancel")
        assert running.cancelled  # stopped at the provider, not only in our books
    finally:
        await worker.close()
        await gateway.close()


async def test_the_listener_comes_back_after_its_connection_is_cut(two_processes, pg_url, caplog):
    worker, gateway, _remote = two_processes
    worker.runner.start()
    await _until(lambda: _has_listener(pg_url), what="listening")
    await worker.settled()
    [first] = await _listeners(pg_url)
    admin = await asyncpg.connect(pg_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    # made while nobody listens (the listener waits at least 0.25 s before connecting again):
    # its notification is lost, so only the look after reconnecting finds it
    missed = await gateway.create_job(make_job(params={"text": "during the cut"}))

    async def listening_again():
        return [pid for pid in await _listeners(pg_url) if pid != first] != []

    await _until(listening_again, what="listening again")
    assert first not in await _listeners(pg_url)
    await _until(_done(gateway, missed), what="the delivery of the job made during the cut")
    await worker.settled()
    after = await gateway.create_job(make_job(params={"text": "after the cut"}))
    await _until(_done(gateway, after), what="the delivery of a job made after the reconnect")
    assert sorted(worker.delivery.delivered) == sorted([missed.id, after.id])
    assert any("listening again" in r.getMessage() for r in caplog.records)


def _done(store, job):
    async def done():
        return (await store.get_job(job.id)).state is JobState.DONE
    return done


async def _has_listener(url: str) -> bool:
    return bool(await _listeners(url))


async def test_only_committed_changes_that_make_a_job_claimable_are_announced(pg_url):
    store = await open_store(pg_url)
    heard: list[str] = []
    ear = await asyncpg.connect(pg_url)
    await ear.add_listener(DUE_CHANNEL, lambda _c, _pid, _ch, payload: heard.append(payload))
    try:
        job = await store.create_job(make_job(params={"text": "secret words"}), max_per_user=1)
        with pytest.raises(LimitReached):  # refused: rolled back, so nobody is told
            await store.create_job(make_job(provider="other"), max_per_user=1)
        await store.update(job, next_run_at=job.next_run_at.replace(year=2100))  # later, not sooner
        await store.request_cancel(job.id)
        [taken] = await store.claim_due(utcnow(), worker="w", lease_seconds=60, limit=1)
        await store.release_leases("w", [taken.id])  # given back while due: claimable again

        async def all_heard():
            await ear.execute("SELECT 1")  # a round trip: what was sent before it has arrived
            return len(heard) >= 3

        await _until(all_heard, what="hearing the creation, the cancel and the release")
        await all_heard()
        assert heard == ["echo", "echo", "echo"]  # naming only the provider, never the user's words
    finally:
        await ear.close()
        await store.close()


async def test_a_listening_connection_dropped_at_once_again_and_again_backs_off(pg_url):
    """A server (or a proxy) that takes the connection and drops it at once: the listener waits
    longer each time rather than reconnecting, warning and waking the runner in a loop."""
    from bot.store_pg_listen import DueListener

    wakes = []
    listener = DueListener(pg_url, lambda: wakes.append(1), first_retry=0.05, stable_after=10.0)
    listener.start()
    admin = await asyncpg.connect(pg_url)
    try:
        for drop in range(1, 5):
            await _until(lambda: _has_listener(pg_url), what="listening")
            [pid] = await _listeners(pg_url)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

            async def counted(drop=drop):
                return listener.failures == drop

            await _until(counted, what=f"drop {drop} counted")
        assert listener.retry_delay() == pytest.approx(0.05 * 2 ** 3)  # 0.05, 0.1, 0.2, then 0.4 s
    finally:
        await admin.close()
        await listener.close()
