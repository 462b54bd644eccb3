"""The store: migrations on a real file, guarded transitions, due-job queries, saved objects."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import fields
from datetime import datetime, timedelta

import pytest

from bot.models import TRANSITIONS, Artifact, Job, JobState, utcnow
from bot.store import MIGRATIONS, IllegalTransition, SavedObject, StaleJob, Store, new_job_id


def make_job(**over) -> Job:
    base = dict(id=new_job_id(), provider="echo", kind="echo", state=JobState.ACCEPTED, owner_id=1,
                channel_id=10, guild_id=100, summary="a test job")
    base.update(over)
    return Job(**base)


@pytest.fixture
async def store(reopen):
    return await reopen()


async def test_migrations_apply_once_and_survive_reopen(tmp_path):
    path = tmp_path / "db" / "bot.db"
    s = await Store.open(path)
    assert await s.schema_version() == len(MIGRATIONS)
    await s.create_job(make_job(id="keepme01"))
    await s.close()
    s = await Store.open(path)  # reopening applies nothing twice and keeps the data
    assert await s.schema_version() == len(MIGRATIONS)
    assert (await s.get_job("keepme01")).summary == "a test job"
    await s.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_new_migration_is_applied_to_an_old_file(tmp_path):
    path = tmp_path / "bot.db"
    s = await Store.open(path)
    await s.create_job(make_job(id="oldjob01"))
    version = await s.migrate((*MIGRATIONS, "ALTER TABLE jobs ADD COLUMN extra TEXT;"))
    assert version == len(MIGRATIONS) + 1
    assert (await s.get_job("oldjob01")) is not None
    await s.close()


async def test_job_round_trips_every_field(store, tmp_path):
    now = utcnow()
    art = Artifact(path=tmp_path / "x.spz", filename="x.spz", description="splat", optional=True,
                   download_key="spz")
    job = make_job(params={"title": "ünïcode", "n": 3}, provider_data={"blob": "b"}, remote_id="r1",
                   progress=0.5, queue_position=2, detail="Generating", preview_url="https://x/p.jpg", eta=now,
                   status_message_id=42, result_message_ids=(1, 2), artifacts=(art,), attempts=2, last_error="e",
                   cancel_requested=True, submit_intent_at=now, running_since=now, finished_at=now,
                   deadline_at=now, status_edited_at=now, status_fingerprint="running:ab",
                   delivery_started_at=now)
    await store.create_job(job)
    loaded = await store.get_job(job.id)
    for f in fields(Job):
        want, got = getattr(job, f.name), getattr(loaded, f.name)
        if isinstance(want, datetime):
            assert abs((got - want).total_seconds()) < 1e-3, f.name
        else:
            assert got == want, f.name


async def test_walks_the_whole_life_cycle(store):
    job = await store.create_job(make_job())
    for state in (JobState.UPLOADING, JobState.SUBMITTED, JobState.RUNNING, JobState.COLLECTING,
                  JobState.DELIVERING, JobState.DONE):
        job = await store.transition(job, state)
    stored = await store.get_job(job.id)
    assert stored.state is JobState.DONE
    assert stored.finished_at is not None and stored.running_since is not None


@pytest.mark.parametrize("start", list(JobState))
async def test_illegal_transitions_raise_and_write_nothing(store, start):
    job = await store.create_job(make_job(state=start))
    for target in JobState:
        if target in TRANSITIONS[start]:
            continue
        with pytest.raises(IllegalTransition):
            await store.transition(job, target)
    assert (await store.get_job(job.id)).state is start


async def test_terminal_states_are_final_and_delivery_cannot_be_cancelled():
    for state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
        assert TRANSITIONS[state] == frozenset()
    assert JobState.CANCELLED not in TRANSITIONS[JobState.DELIVERING]
    assert JobState.FAILED in TRANSITIONS[JobState.DELIVERING]


async def test_a_stale_copy_cannot_move_a_job(store):
    job = await store.create_job(make_job())
    await store.transition(job, JobState.UPLOADING)
    with pytest.raises(StaleJob):
        await store.transition(job, JobState.FAILED)  # `job` still believes it is accepted
    with pytest.raises(StaleJob):
        await store.update(job, progress=0.3)


async def test_due_jobs_excludes_future_terminal_and_inflight(store):
    now = utcnow()
    due = await store.create_job(make_job(next_run_at=now - timedelta(seconds=5)))
    later = await store.create_job(make_job(next_run_at=now + timedelta(seconds=60)))
    await store.create_job(make_job(state=JobState.DONE, next_run_at=now - timedelta(seconds=5)))
    busy = await store.create_job(make_job(next_run_at=now - timedelta(seconds=9)))
    got = await store.due_jobs(now, exclude=[busy.id])
    assert [j.id for j in got] == [due.id]
    assert abs((await store.next_due_at(exclude=[busy.id, due.id]) - later.next_run_at).total_seconds()) < 1e-3


async def test_due_query_uses_the_partial_index(tmp_path):
    s = await Store.open(tmp_path / "bot.db")
    await s.close()
    with sqlite3.connect(tmp_path / "bot.db") as raw:
        for excluded in (0, 3):
            plan = raw.execute("EXPLAIN QUERY PLAN " + Store.due_sql(excluded), [5, *"abc"[:excluded], 5]).fetchall()
            assert any("jobs_due" in str(row) for row in plan), plan


async def test_cancel_request_only_for_cancellable_jobs(store):
    live = await store.create_job(make_job(state=JobState.RUNNING))
    delivering = await store.create_job(make_job(state=JobState.DELIVERING))
    done = await store.create_job(make_job(state=JobState.DONE))
    assert await store.request_cancel(live.id)
    assert not await store.request_cancel(delivering.id)
    assert not await store.request_cancel(done.id)
    assert (await store.get_job(live.id)).cancel_requested


async def test_live_counts_and_listing(store):
    for state in (JobState.RUNNING, JobState.ACCEPTED, JobState.DONE):
        await store.create_job(make_job(state=state, owner_id=7))
    await store.create_job(make_job(owner_id=8, guild_id=200))
    assert await store.count_live(owner_id=7) == 2
    assert await store.count_live(guild_id=100) == 2
    assert len(await store.list_jobs(owner_id=7)) == 3
    assert len(await store.list_jobs(guild_id=200)) == 1


async def test_saved_objects_upsert_and_search(store):
    obj = SavedObject("viggle", "character", "char_1", owner_id=5, guild_id=1, name="Dancer 100%", status="pending")
    await store.save_object(obj)
    await store.save_object(SavedObject("viggle", "character", "char_1", owner_id=5, guild_id=1, name="Dancer 100%",
                                        status="ready", data={"thumb": "u"}))
    await store.save_object(SavedObject("viggle", "character", "char_2", owner_id=6, guild_id=1, name="Other"))
    mine = await store.list_objects(provider="viggle", kind="character", owner_id=5)
    assert [(o.remote_id, o.status, o.data) for o in mine] == [("char_1", "ready", {"thumb": "u"})]
    assert await store.list_objects(provider="viggle", kind="character", name_contains="100%") == mine
    assert await store.list_objects(provider="viggle", kind="character", name_contains="0_%") == []
    # what a user types into autocomplete, in any case
    assert await store.list_objects(provider="viggle", kind="character", name_contains="dANCER") == mine
    assert await store.delete_object("viggle", "character", "char_1")
    assert await store.get_object("viggle", "character", "char_1") is None


async def test_limits_hold_when_many_jobs_are_created_at_once(store):
    """Ten simultaneous commands from one user start exactly the user's limit; the guild limit holds
    across users the same way (the count and the insert are one transaction)."""
    from bot.store import LimitReached

    async def try_create(owner: int) -> bool:
        try:
            await store.create_job(make_job(owner_id=owner, guild_id=500), max_per_user=3, max_per_guild=5)
            return True
        except LimitReached:
            return False

    started = await asyncio.gather(*(try_create(1) for _ in range(10)))
    assert sum(started) == 3
    started = await asyncio.gather(*(try_create(owner) for owner in range(10, 18)))
    assert sum(started) == 2  # the guild had 3 live jobs already, so only 2 of 8 users got in
    assert await store.count_live(guild_id=500) == 5


async def test_a_refused_insert_writes_nothing_and_leaves_the_store_usable(store):
    from bot.store import LimitReached

    await store.create_job(make_job(owner_id=3), max_per_user=1)
    with pytest.raises(LimitReached) as caught:
        await store.create_job(make_job(owner_id=3), max_per_user=1)
    assert caught.value.scope == "user"
    assert await store.count_live(owner_id=3) == 1
    other = await store.create_job(make_job(owner_id=4), max_per_user=1)
    assert (await store.get_job(other.id)).owner_id == 4


async def test_finished_jobs_are_due_while_they_owe_chores(store):
    now = utcnow()
    owing = await store.create_job(make_job(state=JobState.DONE, finish_pending=("card", "spool"),
                                            next_run_at=now - timedelta(seconds=1)))
    await store.create_job(make_job(state=JobState.FAILED, next_run_at=now - timedelta(seconds=1)))
    assert [j.id for j in await store.due_jobs(now)] == [owing.id]
    assert await store.live_job_ids() == {owing.id}
    await store.update(owing, finish_pending=())
    assert await store.due_jobs(now) == [] and await store.next_due_at() is None


async def test_a_cooldown_is_taken_once_by_simultaneous_commands_and_across_connections(store, reopen):
    from bot.store import Cooldown, CoolingDown

    now = utcnow()

    async def take(s: Store) -> bool:
        try:
            await s.take_cooldown(Cooldown(1, "viggle render", 30, now))
            return True
        except CoolingDown as exc:
            assert abs((exc.until - now).total_seconds() - 30) < 1e-3
            return False

    assert sum(await asyncio.gather(*(take(store) for _ in range(10)))) == 1
    other = await reopen()  # another process on the same database
    assert not await take(other)
    await other.take_cooldown(Cooldown(2, "viggle render", 30, now))  # per user
    await other.take_cooldown(Cooldown(1, "viggle mix", 30, now))  # per command
    later = now + timedelta(seconds=31)
    await other.take_cooldown(Cooldown(1, "viggle render", 30, later))  # ran out: taken again


async def test_a_job_refused_by_a_limit_costs_no_cooldown_and_a_cooling_one_is_not_created(store):
    from bot.store import Cooldown, CoolingDown, LimitReached

    now = utcnow()
    await store.create_job(make_job(owner_id=9), max_per_user=1)
    with pytest.raises(LimitReached):
        await store.create_job(make_job(owner_id=9), max_per_user=1, cooldown=Cooldown(9, "echo", 60, now))
    await store.create_job(make_job(owner_id=9), max_per_user=5, cooldown=Cooldown(9, "echo", 60, now))
    with pytest.raises(CoolingDown):
        await store.create_job(make_job(owner_id=9), max_per_user=5, cooldown=Cooldown(9, "echo", 60, now))
    assert await store.count_live(owner_id=9) == 2


async def test_a_job_whose_cancel_was_refused_cannot_be_flagged_again(store):
    job = await store.create_job(make_job(state=JobState.RUNNING, cancel_refused_at=utcnow()))
    assert not await store.request_cancel(job.id)


async def test_limits_hold_across_processes(store, reopen):
    from bot.store import LimitReached

    others = [await reopen() for _ in range(3)]  # as many processes, each its own connection

    async def create(s: Store) -> bool:
        try:
            await s.create_job(make_job(owner_id=77, guild_id=700), max_per_user=2, max_per_guild=3)
            return True
        except LimitReached:
            return False

    assert sum(await asyncio.gather(*(create(s) for s in [store, *others] for _ in range(4)))) == 2
    assert await store.count_live(owner_id=77) == 2


async def test_two_workers_never_claim_the_same_job(store, reopen):
    now = utcnow()
    for i in range(20):
        await store.create_job(make_job(state=JobState.RUNNING, next_run_at=now - timedelta(seconds=i)))
    other = await reopen()
    a, b = await asyncio.gather(store.claim_due(now, worker="a", lease_seconds=60, limit=15),
                                other.claim_due(now, worker="b", lease_seconds=60, limit=15))
    assert len(a) + len(b) == 20 and not {j.id for j in a} & {j.id for j in b}
    assert await store.claim_due(now, worker="c", lease_seconds=60, limit=50) == []  # all leased


async def test_an_expired_lease_is_taken_over_and_the_stalled_workers_write_is_refused(store):
    now = utcnow()
    job = await store.create_job(make_job(state=JobState.RUNNING, next_run_at=now - timedelta(seconds=1)))
    [mine] = await store.claim_due(now, worker="stalled", lease_seconds=30, limit=5)
    assert await store.claim_due(now + timedelta(seconds=29), worker="other", lease_seconds=30, limit=5) == []
    [theirs] = await store.claim_due(now + timedelta(seconds=31), worker="other", lease_seconds=30, limit=5)
    assert theirs.id == job.id and theirs.lease_token > mine.lease_token
    with pytest.raises(StaleJob):  # the stalled worker wakes up and writes with its old token
        await store.update(mine, progress=0.9)
    with pytest.raises(StaleJob):
        await store.transition(mine, JobState.COLLECTING)
    moved = await store.transition(theirs, JobState.COLLECTING)
    assert (await store.get_job(job.id)).state is JobState.COLLECTING and moved.progress is None


async def test_a_worker_with_no_providers_claims_every_providers_jobs_as_unknown(store):
    """The chores lane of a worker configured with no provider at all asks for the live jobs of
    providers other than none: every live job (an empty exclusion list is valid SQL on both)."""
    now = utcnow()
    job = await store.create_job(make_job(state=JobState.RUNNING, next_run_at=now - timedelta(seconds=1)))
    claimed = await store.claim_due(now, worker="a", lease_seconds=30, limit=5, not_providers=[],
                                    states=[JobState.RUNNING])
    assert [j.id for j in claimed] == [job.id]


async def test_leases_are_given_back_and_renewed_by_their_owner_only(store):
    now = utcnow()
    job = await store.create_job(make_job(state=JobState.RUNNING, next_run_at=now - timedelta(seconds=1)))
    await store.claim_due(now, worker="a", lease_seconds=30, limit=5)
    assert await store.release_leases("b", [job.id]) == 0  # not b's to give
    assert await store.renew_leases("a", [job.id], now + timedelta(seconds=300)) == 1
    assert await store.claim_due(now + timedelta(seconds=100), worker="b", lease_seconds=30, limit=5) == []
    assert await store.release_leases("a", [job.id]) == 1
    assert [j.id for j in await store.claim_due(now, worker="b", lease_seconds=30, limit=5)] == [job.id]


async def test_workers_say_which_providers_they_offer_until_they_fall_silent(store, reopen):
    now = utcnow()
    await store.beat_worker("a", ["viggle", "echo"], now - timedelta(minutes=30))  # stopped long ago
    other = await reopen()
    await other.beat_worker("b", ["scenario"], now)
    await other.beat_worker("a", ["echo"], now)  # restarted without viggle
    assert await store.offered_providers(now - timedelta(minutes=10)) == {"echo", "scenario"}
    assert await store.offered_providers(now + timedelta(seconds=1)) == set()
