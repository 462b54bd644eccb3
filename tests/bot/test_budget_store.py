"""Budgets and the ledger in the store: a charge is checked and booked with the job, atomically."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import Job, JobState
from bot.store import BudgetExceeded, Charge, Store, new_job_id


def make_job(owner: int = 1) -> Job:
    return Job(id=new_job_id(), provider="viggle", kind="render", state=JobState.ACCEPTED, owner_id=owner,
               channel_id=10, guild_id=100, summary="render")


@pytest.fixture
async def store(reopen):
    return await reopen()


async def test_simultaneous_charges_for_the_last_credits_cannot_both_pass(store):
    await store.set_budget(100, "viggle", monthly_limit=10, confirm_above=None, by=9)
    jobs = [make_job(owner=i) for i in range(6)]
    results = await asyncio.gather(*(store.create_job(j, charge=Charge("viggle", 100, "2026-11", 3.0)) for j in jobs),
                                   return_exceptions=True)
    passed = [j for j, r in zip(jobs, results, strict=True) if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(passed) == 3 and len(refused) == 3  # 3 x 3 = 9 <= 10; a fourth would make 12
    assert await store.month_spent(100, "viggle", "2026-11") == 9
    for job, result in zip(jobs, results, strict=True):  # a refused charge left no job behind
        assert (await store.get_job(job.id) is None) == isinstance(result, BudgetExceeded)
    assert all(r.limit == 10 and r.spent + r.amount > 10 for r in refused)


async def test_settling_replaces_the_estimate_and_a_refund_frees_the_budget(store):
    await store.set_budget(100, "viggle", monthly_limit=5, confirm_above=2, by=9)
    first, second = make_job(owner=1), make_job(owner=2)
    await store.create_job(first, charge=Charge("viggle", 100, "2026-11", 5.0))
    with pytest.raises(BudgetExceeded):
        await store.create_job(second, charge=Charge("viggle", 100, "2026-11", 1.0))
    with pytest.raises(BudgetExceeded):  # cost unknown up front, but nothing is left
        await store.create_job(second, charge=Charge("viggle", 100, "2026-11", None))
    assert await store.settle_charge(first.id, 0.0)  # failed before paying: refunded
    await store.create_job(second, charge=Charge("viggle", 100, "2026-11", 2.0))
    await store.settle_charge(second.id, 1.5)  # the provider reported less
    assert await store.spend_by_user(100, "viggle", "2026-11") == [(2, 1.5)]
    assert (await store.get_budget(100, "viggle")).confirm_above == 2
    with pytest.raises(BudgetExceeded):  # a quote above what is left is refused and changes nothing
        await store.requote_charge(second.id, 6.0)
    assert await store.month_spent(100, "viggle", "2026-11") == 1.5
    other_month = make_job()
    await store.create_job(other_month, charge=Charge("viggle", 100, "2026-12", 5.0))  # a new month, a new budget


async def test_a_waiting_command_is_taken_once_and_only_by_its_owner(store):
    await store.save_pending("abc123abc123", 7, {"provider": "viggle", "kind": "character"})
    assert await store.pending_owner("abc123abc123") == 7
    assert await store.take_pending("abc123abc123", 8) is None  # someone else
    taken = await asyncio.gather(*(store.take_pending("abc123abc123", 7) for _ in range(3)))
    assert [t for t in taken if t] == [{"provider": "viggle", "kind": "character"}]
    assert await store.pending_owner("abc123abc123") is None


async def test_a_double_click_landing_on_two_processes_starts_the_command_once(reopen):
    gateway, other = await reopen(), await reopen()
    for attempt in range(5):
        token = f"tok{attempt}tok{attempt}"
        await gateway.save_pending(token, 7, {"provider": "viggle", "kind": "render"})
        taken = await asyncio.gather(gateway.take_pending(token, 7), other.take_pending(token, 7))
        assert [t for t in taken if t] == [{"provider": "viggle", "kind": "render"}]


async def test_two_workers_requoting_at_once_cannot_both_pass_the_budget(reopen, monkeypatch):
    """Each quote fits alone; together they would overspend. The check and the write of one must
    not interleave with the other's (another process, on PostgreSQL)."""
    a, b = await reopen(), await reopen()
    await a.set_budget(100, "viggle", monthly_limit=10, confirm_above=None, by=9)
    first, second = make_job(owner=1), make_job(owner=2)
    for job in (first, second):
        await a.create_job(job, charge=Charge("viggle", 100, "2026-11", 1.0))
    spent = Store._spent

    async def slow_spent(db, *args):  # a slow round trip between the check and the write
        value = await spent(db, *args)
        await asyncio.sleep(0.2)
        return value

    monkeypatch.setattr(Store, "_spent", staticmethod(slow_spent))
    results = await asyncio.gather(a.requote_charge(first.id, 8.0), b.requote_charge(second.id, 8.0),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["BudgetExceeded", "NoneType"]
    assert await a.month_spent(100, "viggle", "2026-11") == 9
