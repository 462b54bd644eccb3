"""How long a new job waits before a worker takes it, on PostgreSQL, with and without NOTIFY.

A worker (the real Store and Runner, idle wait `--idle`, default the setting's 30 s) and a gateway
(a second store: its own pool of connections, like another process) share one database. The
gateway creates `--jobs` jobs one at a time, due at once, after a random pause (0 to `--idle` s,
seeded) so creations fall anywhere in the worker's idle wait; measured is the time from just before
the creating write to the worker's first step on the job (its provider's `upload` is called), in
two runs: the store as built (NOTIFY on creation, the worker LISTENing), and the same store with
NOTIFY and LISTEN turned off (the worker finds the job on its next turn). Each run has a schema of
its own, dropped afterwards. Without `--database-url` a throwaway server is started
(.ci/start-postgres; needs PostgreSQL 15's binaries). No pass/fail; the last line is one JSON object.
Run: python bench/bench_wakeup.py --jobs 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import Settings  # noqa: E402
from bot.models import Job, JobState, RemotePhase, RemoteStatus  # noqa: E402
from bot.providers.base import Provider, ProviderLimits  # noqa: E402
from bot.runner import Runner  # noqa: E402
from bot.store import Store, new_job_id  # noqa: E402
from bot.store_pg import PgStore  # noqa: E402

PROVIDER = "fake"


class SilentPgStore(PgStore):
    """The PostgreSQL store as it was before wake-ups: no NOTIFY, no LISTEN."""

    async def _announce(self, db: Any, provider: str) -> None:
        return None

    async def _write_waking(self, sql, params, now) -> int:
        return await Store._write_waking(self, sql, params, now)

    def due_signal(self, wake):  # type: ignore[override]
        return contextlib.nullcontext()


class ClaimClock(Provider):
    """Notes when the worker first steps on each job, then holds it (until the run stops)."""

    name = PROVIDER
    display_name = "Fake"

    def __init__(self, jobs: int) -> None:
        self.limits = ProviderLimits(max_concurrent=jobs + 1)
        self.taken: dict[str, float] = {}
        self.seen = asyncio.Event()

    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        self.taken[job.id] = time.monotonic()
        self.seen.set()
        await asyncio.Event().wait()  # cancelled when the runner stops
        return {}

    async def submit(self, job):  # pragma: no cover - never reached
        raise NotImplementedError

    async def poll(self, job) -> RemoteStatus:  # pragma: no cover
        return RemoteStatus(RemotePhase.RUNNING)

    async def collect(self, job, status, workdir):  # pragma: no cover
        raise NotImplementedError

    async def cancel(self, job):  # pragma: no cover
        return None


class NoDelivery:
    """The jobs never get as far as Discord; the runner still asks for their cards' timing."""

    def edit_wait(self, job: Job) -> float:
        return 3600.0

    async def sync_status(self, job: Job, *, force: bool = False) -> Job:
        return job


async def _one_run(url: str, store_class: type[PgStore], args, seed: int) -> list[float]:
    worker_store, gateway = await store_class.open(url), await store_class.open(url)
    provider = ClaimClock(args.jobs)
    rng = random.Random(seed)
    waits: list[float] = []
    with tempfile.TemporaryDirectory() as spool:
        runner = Runner(worker_store, {PROVIDER: provider}, NoDelivery(), spool_dir=Path(spool),  # type: ignore[arg-type]
                        worker_id="bench-worker", idle_wait=args.idle)
        runner.start()
        try:
            await asyncio.sleep(1.0)  # its first turn is over: it waits
            for i in range(args.jobs):
                await asyncio.sleep(rng.uniform(0, args.idle))
                job = Job(id=new_job_id(), provider=PROVIDER, kind="render", state=JobState.ACCEPTED,
                          owner_id=1000 + i, channel_id=1, guild_id=None, summary="bench")
                provider.seen.clear()
                created = time.monotonic()
                await gateway.create_job(job)
                await asyncio.wait_for(provider.seen.wait(), timeout=args.idle * 2 + 30)
                waits.append(provider.taken[job.id] - created)
                print(f"  job {i + 1}/{args.jobs}: taken after {waits[-1]:.3f} s", flush=True)
        finally:
            await runner.stop(grace=0.1)
            await worker_store.close()
            await gateway.close()
    return waits


async def _schema(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _measure(url: str, store_class: type[PgStore], args, seed: int) -> list[float]:
    schema = f"bench_wakeup_{os.getpid()}_{store_class.__name__.lower()}"
    await _schema(url, f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        return await _one_run(f"{url}{sep}options=-csearch_path%3D{schema}", store_class, args, seed)
    finally:
        await _schema(url, f"DROP SCHEMA {schema} CASCADE")


def _figures(waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    return {"p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "max_s": round(ordered[-1], 3), "mean_s": round(statistics.fmean(ordered), 3)}


async def main_async(args) -> dict:
    server = None
    url = args.database_url
    if not url:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        url = server.url
    try:
        print(f"with NOTIFY (idle wait {args.idle:g} s):")
        notified = await _measure(url, PgStore, args, args.seed)
        print(f"without NOTIFY (idle wait {args.idle:g} s):")
        polled = await _measure(url, SilentPgStore, args, args.seed)
    finally:
        if server is not None:
            server.stop()
    return {"jobs": args.jobs, "idle_wait_s": args.idle, "with_notify": _figures(notified),
            "without_notify": _figures(polled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--idle", type=float, default=Settings.model_fields["runner_idle_seconds"].default,
                        help="the worker's idle wait (RUNNER_IDLE_SECONDS)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""))
    args = parser.parse_args()
    summary = asyncio.run(main_async(args))
    for mode in ("with_notify", "without_notify"):
        f = summary[mode]
        print(f"{mode.replace('_', ' ')}: creation to claim p50 {f['p50_s']} s, p95 {f['p95_s']} s, "
              f"max {f['max_s']} s ({args.jobs} jobs, idle wait {args.idle:g} s)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
