"""The runner's lanes: status calls have their own slots, apart from heavy steps, and a lane never
runs more steps at once than its limit (what the provider sees)."""

from __future__ import annotations

import asyncio

from bot.models import JobState
from bot.net import Net
from bot.providers.base import ProviderLimits
from bot.runner import Runner
from bot.store import Store
from tests.bot.test_runner import FakeDelivery, make_job
from tests.support.echo import EchoProvider, EchoRemote


async def _until(predicate, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")


async def test_status_polls_go_on_while_every_heavy_slot_is_busy(tmp_path):
    store = await Store.open(tmp_path / "bot.db")
    remote = EchoRemote()
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=0.01, poll_max=0.02, max_concurrent=1,
                                                                  max_concurrent_polls=4))
    release = asyncio.Event()
    collect = provider.collect

    async def slow_collect(job, status, workdir):
        if job.params["text"] == "heavy":
            await release.wait()
        return await collect(job, status, workdir)

    provider.collect = slow_collect
    heavy = remote.create("heavy", "heavy", 0, 0)
    waiting = [remote.create(f"w{i}", f"w{i}", 0, 2) for i in range(3)]
    heavy_job = await store.create_job(make_job(state=JobState.COLLECTING, remote_id=heavy.id,
                                                params={"text": "heavy"}, provider_data={"_status": {"echo": "HEAVY"}}))
    jobs = [await store.create_job(make_job(state=JobState.RUNNING, remote_id=r.id, params={"text": r.text}))
            for r in waiting]
    delivery = FakeDelivery()
    runner = Runner(store, {"echo": provider}, delivery, spool_dir=tmp_path / "spool")
    runner.start()
    try:
        async def all_polled_to_the_end():
            states = [(await store.get_job(j.id)).state for j in jobs]
            return all(s is JobState.COLLECTING for s in states)

        # the only heavy slot is held by a slow download, yet the waiting jobs are polled to their end
        await _until(all_polled_to_the_end)
        assert all(remote.poll_calls[r.text] == 3 for r in waiting)
        assert (await store.get_job(heavy_job.id)).state is JobState.COLLECTING and delivery.delivered == []
        release.set()

        async def all_delivered():
            return len(delivery.delivered) == 4

        await _until(all_delivered)
        assert sorted(delivery.delivered) == sorted([heavy_job.id, *(j.id for j in jobs)])
    finally:
        await runner.stop()
        await provider.close()
        await store.close()


async def test_no_more_status_calls_at_once_than_the_providers_poll_limit(tmp_path):
    store = await Store.open(tmp_path / "bot.db")
    remote = EchoRemote()
    provider = EchoProvider(remote, Net(), limits=ProviderLimits(poll_min=5, poll_max=5, max_concurrent=1,
                                                                  max_concurrent_polls=3))
    running, most = 0, 0

    async def poll(job):
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.05)
            return remote.status(job.remote_id)
        finally:
            running -= 1

    provider.poll = poll
    remotes = [remote.create(f"j{i}", f"j{i}", 0, 50) for i in range(12)]
    for r in remotes:
        await store.create_job(make_job(state=JobState.RUNNING, remote_id=r.id, params={"text": r.text}))
    runner = Runner(store, {"echo": provider}, FakeDelivery(), spool_dir=tmp_path / "spool")
    runner.start()
    try:
        async def each_polled_once():
            return len(remote.poll_calls) == 12

        await _until(each_polled_once)
        assert most == 3  # the limit was used, and never passed
        assert all(n == 1 for n in remote.poll_calls.values())  # each job polled once, then not due for 5 s
    finally:
        await runner.stop()
        await provider.close()
        await store.close()
