"""Many live jobs at once: the real Store and Runner against a provider that stays "running".

N jobs are put in the store as running at a fake provider whose every status call takes
`--latency` seconds and never reports progress; their first polls are spread over one poll interval
(`--poll-max`, the provider's upper bound, which the policy reaches for a job running this long).
The runner then drives them for `--seconds`. Measured: each poll's lateness (when it happened
minus when the job was due; jobs still overdue at the end count with their lateness then), polls
and polls per second against the schedule, CPU (process time over wall time, all threads: 100 is
one core) and RSS growth while running.

With `--workers K` (K > 1) K processes each run a Runner on the same database (leases keep them
apart); `--database-url postgresql://...` uses PostgreSQL instead of a SQLite file (in a schema of
its own, dropped afterwards; CPU counts the bench's processes, not the PostgreSQL server's). `--batch`
gives the fake provider a `poll_many` (one request answers many jobs), to compare requests per job.
Each poll draws the status card to compare it with what is shown (unchanged: no edit).
Prints a summary and, as the last line, one JSON object. No pass/fail.
Run: python bench/bench_scale.py --jobs 10000 --latency 0.1 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bot.delivery import Delivery
from bot.models import Job, JobState, RemotePhase, RemoteStatus, utcnow
from bot.polling import PollClock
from bot.providers.base import Provider, ProviderLimits
from bot.runner import ASK_ALONE_EVERY, Runner
from bot.store import new_job_id

#: a job's deadline (Scenario's layers: 60 min; the bench's jobs never reach theirs)
DEADLINE = 3600.0
#: how often a listed job is still asked on its own (the runner's rule)
ALONE_PERIOD = max(ASK_ALONE_EVERY, DEADLINE / 4)

PROVIDER = "fake"


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SlowProvider(Provider):
    """Answers every status call after `latency` seconds with "running", no progress."""

    name = PROVIDER
    display_name = "Fake"

    def __init__(self, latency: float, limits: ProviderLimits) -> None:
        self.latency = latency
        self.limits = limits
        self.lateness: list[float] = []
        self.requests = 0

    def _seen(self, job: Job) -> None:
        self.lateness.append(max(0.0, (utcnow() - job.next_run_at).total_seconds()))

    async def poll(self, job: Job) -> RemoteStatus:
        self._seen(job)
        self.requests += 1
        await asyncio.sleep(self.latency)
        return RemoteStatus(RemotePhase.RUNNING)

    async def upload(self, job, workdir):  # pragma: no cover - jobs start as running
        raise NotImplementedError

    async def submit(self, job):  # pragma: no cover
        raise NotImplementedError

    async def collect(self, job, status, workdir):  # pragma: no cover
        raise NotImplementedError

    async def cancel(self, job):  # pragma: no cover
        return None


class BatchProvider(SlowProvider):
    """The same, with a list call that answers many jobs in one request."""

    batch_status = True

    async def poll_many(self, jobs: list[Job]) -> dict[str, RemoteStatus]:
        for job in jobs:
            self._seen(job)
        self.requests += 1
        await asyncio.sleep(self.latency)
        return {job.id: RemoteStatus(RemotePhase.RUNNING) for job in jobs}


def _delivery(store) -> Delivery:
    """The real card logic with no Discord client: the jobs' cards already show what a poll finds
    (their fingerprints are filled in), so each poll only draws the card to compare it."""
    return Delivery(None, store, upload_limit=10 << 20, edit_interval=5.0, provider_names={PROVIDER: "Fake"})


async def _open_store(args):
    if args.database_url:
        from bot.store_pg import PgStore

        return await PgStore.open(args.database_url)
    from bot.store import Store

    return await Store.open(args.db)


async def _fill(args, origin: float) -> None:
    store = await _open_store(args)
    now = utcnow() + timedelta(seconds=origin - time.time())
    long_ago = now - timedelta(hours=1)
    clock = PollClock(submitted_at=long_ago.timestamp(), running_since=long_ago.timestamp()).to_json()
    jobs = []

    def asked_alone(i: int) -> float:
        """Steady state: each job was last asked on its own (the runner does so every
        ALONE_PERIOD seconds, whatever the lists say) at a time spread over that period."""
        return now.timestamp() - ALONE_PERIOD * ((i * 7919) % args.jobs) / args.jobs

    for i in range(args.jobs):
        first = now + timedelta(seconds=args.poll_max * i / args.jobs)
        jobs.append(Job(id=new_job_id(), provider=PROVIDER, kind="render", state=JobState.RUNNING,
                        owner_id=1000 + i, channel_id=1, guild_id=None, summary="bench",
                        remote_id=f"r{i}", provider_data={"_poll": clock, "_asked_alone": asked_alone(i)},
                        created_at=long_ago,
                        updated_at=long_ago, running_since=long_ago, next_run_at=first,
                        status_message_id=1, status_edited_at=long_ago))
    delivery = _delivery(store)
    for job in jobs:
        await store.create_job(job.evolve(status_fingerprint=delivery.status_payload(job)[2]))
    await store.close()


async def _drive(args, started_at: float) -> dict:
    store = await _open_store(args)
    limits = ProviderLimits(poll_min=args.poll_min, poll_max=args.poll_max, max_concurrent=4,
                            default_deadline=DEADLINE)
    provider = (BatchProvider if args.batch else SlowProvider)(args.latency, limits)
    with tempfile.TemporaryDirectory() as spool:
        runner = Runner(store, {PROVIDER: provider}, _delivery(store), spool_dir=Path(spool),
                        worker_id=f"bench-{os.getpid()}")
        await asyncio.sleep(max(0.0, started_at - time.time()))
        rss0, cpu0, wall0 = _rss_mib(), _cpu(), time.monotonic()
        runner.start()
        await asyncio.sleep(args.seconds)
        cpu, wall, rss = _cpu() - cpu0, time.monotonic() - wall0, _rss_mib()
        await runner.stop(grace=2.0)
    await store.close()
    return {"lateness": provider.lateness, "requests": provider.requests, "cpu_pct": 100 * cpu / wall,
            "rss_growth_mib": rss - rss0}


def _worker(args, started_at: float, queue) -> None:
    queue.put(asyncio.run(_drive(args, started_at)))


async def _overdue(args, end: float) -> list[float]:
    """Lateness of the jobs still waiting for a poll that was due before the end of the run."""
    store = await _open_store(args)
    now = utcnow() + timedelta(seconds=end - time.time())
    jobs = await store.due_jobs(now, limit=args.jobs)
    await store.close()
    return [(now - j.next_run_at).total_seconds() for j in jobs if j.state.is_live]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    parser.add_argument("--poll-min", type=float, default=3.0)
    parser.add_argument("--poll-max", type=float, default=30.0)
    parser.add_argument("--batch", action="store_true", help="the provider answers many jobs per request")
    args = parser.parse_args()
    schema = ""
    if args.database_url:  # a schema of its own, dropped at the end: runs never see each other's jobs
        schema = f"bench_{os.getpid()}"
        asyncio.run(_pg(args.database_url, f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in args.database_url else "?"
        base_url, args.database_url = args.database_url, f"{args.database_url}{sep}options=-csearch_path%3D{schema}"
    try:
        summary = _run(args)
    finally:
        if schema:
            asyncio.run(_pg(base_url, f"DROP SCHEMA {schema} CASCADE"))
    print(f"{args.jobs} jobs, {args.workers} worker(s), {args.latency * 1000:.0f} ms per call, {args.seconds:g} s: "
          f"p95 lateness {summary['p95_lateness_s']} s, {summary['polls']}/{summary['polls_expected']} polls, "
          f"CPU {summary['cpu_pct']}%, RSS +{summary['rss_growth_mib']} MiB")
    print(json.dumps(summary))


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args.db = Path(tmp) / "jobs.db"
        started_at = time.time() + 1.0 + args.jobs * 0.0015  # the schedule starts once the store is full
        asyncio.run(_fill(args, started_at))
        if time.time() > started_at:
            print(f"filling the store took {time.time() - started_at:.1f} s longer than planned")
        if args.workers == 1:
            results = [asyncio.run(_drive(args, started_at))]
        else:
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            procs = [ctx.Process(target=_worker, args=(args, started_at, queue)) for _ in range(args.workers)]
            for p in procs:
                p.start()
            results = [queue.get() for _ in procs]
            for p in procs:
                p.join()
        overdue = asyncio.run(_overdue(args, started_at + args.seconds))
    lateness = sorted([x for r in results for x in r["lateness"]] + overdue)
    polls = sum(len(r["lateness"]) for r in results)
    requests = sum(r["requests"] for r in results)
    # each job is due once at its spread-out start, then every poll_max (plus the call itself)
    expected = sum(int((args.seconds - args.poll_max * i / args.jobs) // (args.poll_max + args.latency)) + 1
                   for i in range(args.jobs) if args.poll_max * i / args.jobs <= args.seconds)
    p95 = lateness[int(0.95 * (len(lateness) - 1))] if lateness else 0.0
    summary = {
        "jobs": args.jobs, "workers": args.workers, "latency_s": args.latency, "seconds": args.seconds,
        "backend": "postgresql" if args.database_url else "sqlite", "batch": args.batch,
        "p50_lateness_s": round(statistics.median(lateness), 3) if lateness else 0.0,
        "p95_lateness_s": round(p95, 3), "max_lateness_s": round(lateness[-1], 3) if lateness else 0.0,
        "on_time_pct": round(100 * sum(1 for x in lateness if x <= 1.0) / max(1, len(lateness)), 1),
        "overdue_at_end": len(overdue),
        "polls": polls, "polls_expected": expected, "polls_per_s": round(polls / args.seconds, 1),
        "requests_per_poll": round(requests / max(1, polls), 3),
        "cpu_pct": round(sum(r["cpu_pct"] for r in results), 1),
        "rss_growth_mib": round(max(r["rss_growth_mib"] for r in results), 1),
    }
    return summary


if __name__ == "__main__":
    main()
