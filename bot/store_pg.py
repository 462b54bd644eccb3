"""The store on PostgreSQL (asyncpg), for a gateway and several workers on one database.

The SQL is the store's own (bot/store.py): statements are written once with `?` marks, which are
numbered here (`$1`, `$2` …), and run through the small part of aiosqlite's interface the store
uses. Only what differs is here: the schema (64-bit ids, `DOUBLE PRECISION`; the same numbered
migrations, recorded in `schema_version`), claims that skip rows another worker is locking
(`FOR UPDATE SKIP LOCKED`), JSON reads, and an advisory lock per guild and owner so live-job
limits and budgets hold across processes (BEGIN IMMEDIATE does that on SQLite), and a NOTIFY with
writes that make a job claimable sooner, which other processes' runners LISTEN for
(bot/store_pg_listen.py), so a worker takes a new job at once rather than after its idle wait.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from bot.models import Job
from bot.store import _DUE, Store, _ts
from bot.store_pg_listen import DUE_CHANNEL, DueListener

PG_MIGRATIONS: tuple[str, ...] = (
    # 1: jobs and saved objects
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        owner_id BIGINT NOT NULL,
        channel_id BIGINT NOT NULL,
        guild_id BIGINT,
        summary TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        provider_data TEXT NOT NULL DEFAULT '{}',
        remote_id TEXT,
        progress DOUBLE PRECISION,
        queue_position BIGINT,
        detail TEXT,
        preview_url TEXT,
        eta DOUBLE PRECISION,
        status_message_id BIGINT,
        result_message_ids TEXT NOT NULL DEFAULT '[]',
        artifacts TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        submit_intent_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        running_since DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        next_run_at DOUBLE PRECISION NOT NULL,
        deadline_at DOUBLE PRECISION,
        status_edited_at DOUBLE PRECISION,
        status_fingerprint TEXT,
        delivery_started_at DOUBLE PRECISION
    );
    CREATE INDEX jobs_due ON jobs (next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled');
    CREATE INDEX jobs_owner ON jobs (owner_id, created_at);
    CREATE INDEX jobs_guild ON jobs (guild_id, created_at);
    CREATE TABLE saved_objects (
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        owner_id BIGINT NOT NULL,
        guild_id BIGINT,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (provider, kind, remote_id)
    );
    CREATE INDEX saved_owner ON saved_objects (owner_id, provider, kind, updated_at);
    """,
    # 2: finishing chores (an outbox on the job row), the fixed delivery plan, refused cancels, cooldowns
    """
    ALTER TABLE jobs ADD COLUMN finish_pending TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN delivery_plan TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_refused_at DOUBLE PRECISION;
    DROP INDEX jobs_due;
    CREATE INDEX jobs_due ON jobs (next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled') OR finish_pending <> '[]';
    CREATE TABLE cooldowns (
        user_id BIGINT NOT NULL,
        command TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (user_id, command)
    );
    """,
    # 3: monthly budgets per server and provider, and the spending ledger (one entry per job)
    """
    CREATE TABLE budgets (
        guild_id BIGINT NOT NULL,
        provider TEXT NOT NULL,
        monthly_limit DOUBLE PRECISION,
        confirm_above DOUBLE PRECISION,
        updated_by BIGINT,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (guild_id, provider)
    );
    CREATE TABLE ledger (
        job_id TEXT PRIMARY KEY,
        guild_id BIGINT NOT NULL,
        provider TEXT NOT NULL,
        month TEXT NOT NULL,
        owner_id BIGINT NOT NULL,
        estimate DOUBLE PRECISION NOT NULL,
        amount DOUBLE PRECISION NOT NULL,
        settled INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX ledger_month ON ledger (guild_id, provider, month);
    CREATE TABLE pending_starts (
        token TEXT PRIMARY KEY,
        owner_id BIGINT NOT NULL,
        request TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 4: workers claim due jobs per provider and lane with leases (owner, expiry, fencing token)
    """
    CREATE INDEX jobs_lane ON jobs (provider, state, next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled') OR finish_pending <> '[]';
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION;
    ALTER TABLE jobs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
    """,
    # 5: which providers each running worker offers (so none fails a job another one can run)
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        providers TEXT NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL
    );
    """,
)

#: any key will do, as long as it is ours: one process migrates at a time
_MIGRATION_LOCK = 0x766964656F626F74
_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` marks as PostgreSQL's `$1`, `$2` … (the store's SQL has no `?` inside literals)."""
    counter = itertools.count(1)
    return _MARK.sub(lambda _m: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    """asyncpg answers a write with its command tag: "UPDATE 3", "INSERT 0 1"."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class _Result:
    """Rows and a row count, shaped like the aiosqlite cursor the store reads."""

    def __init__(self, rows: list[Any] | None = None, rowcount: int = -1) -> None:
        self._rows = rows or []
        self.rowcount = rowcount

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Any]:
        return list(self._rows)


class _Call:
    """What `execute` gives back: awaited (a write's result) or used with `async with` (a read)."""

    def __init__(self, target: Any, sql: str, params: Sequence[Any]) -> None:
        self.target, self.sql, self.params = target, numbered(sql), [_arg(p) for p in params]

    def __await__(self):
        return self._run().__await__()

    async def __aenter__(self) -> _Result:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def _run(self) -> _Result:
        head = self.sql.lstrip().split(None, 1)[0].upper()
        if head in ("SELECT", "WITH") or " RETURNING " in self.sql:
            rows = await self.target.fetch(self.sql, *self.params)
            return _Result(rows, len(rows))
        return _Result(rowcount=_rowcount(await self.target.execute(self.sql, *self.params)))


def _arg(value: Any) -> Any:
    """asyncpg types strictly: a bool is stored as 0/1 like SQLite does."""
    return int(value) if isinstance(value, bool) else value


class PgConnection:
    """The few aiosqlite calls the store makes, on an asyncpg pool or one connection."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Call:
        return _Call(self.target, sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.target.fetch(numbered(sql), *[_arg(p) for p in params])


class PgStore(Store):
    """The store on PostgreSQL: `await PgStore.open("postgresql://...")`."""

    _LEAST = "LEAST"
    _LIKE = "ILIKE"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def __init__(self, pool: asyncpg.Pool, url: str = "") -> None:
        super().__init__(PgConnection(pool))  # type: ignore[arg-type]
        self._pool = pool
        #: for the listening connection, which is not the pool's
        self._url = url

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PgStore:  # type: ignore[override]
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        store = cls(pool, url)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:  # type: ignore[override]
        """One transaction on its own connection (other processes and tasks go on meanwhile)."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield PgConnection(conn)

    async def _execute_write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._db.execute(sql, params)).rowcount  # type: ignore[union-attr]

    async def _returning(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return await self._db.execute_fetchall(sql, params)

    async def _serialize(self, db: Any, job: Job) -> None:
        """Live-job limits and the guild's budget are checked and the job inserted under a lock
        per guild, then per owner (always in that order), held to the end of the transaction."""
        if job.guild_id is not None:
            await self._serialize_budget(db, job.guild_id)
        await db.execute("SELECT pg_advisory_xact_lock(?)", (job.owner_id,))

    async def _serialize_budget(self, db: Any, guild_id: int) -> None:
        await db.execute("SELECT pg_advisory_xact_lock(?)", (guild_id,))

    # -- wake-ups across processes --------------------------------------------------------------
    async def _announce(self, db: Any, provider: str) -> None:
        await db.execute("SELECT pg_notify(?, ?)", (DUE_CHANNEL, provider))

    async def _write_waking(self, sql: str, params: Sequence[Any], now: datetime) -> int:
        """The UPDATE, and a NOTIFY per provider of the rows it left claimable, in one statement
        (one transaction: the notification goes out only if the change is committed)."""
        said = (f"WITH changed AS ({sql} RETURNING provider, ({_DUE} AND next_run_at <= ?) AS due), "
                f"told AS (SELECT pg_notify('{DUE_CHANNEL}', provider) FROM changed WHERE due GROUP BY provider) "
                "SELECT (SELECT COUNT(*) FROM changed), (SELECT COUNT(*) FROM told)")
        rows = await self._db.execute_fetchall(said, [*params, _ts(now)])
        return int(rows[0][0])

    @asynccontextmanager
    async def due_signal(self, wake: Callable[[], None]) -> AsyncIterator[DueListener | None]:  # type: ignore[override]
        """A listening connection of its own (reconnecting when lost) while entered."""
        if not self._url:  # built on a pool alone: nothing to listen with
            yield None
            return
        listener = DueListener(self._url, wake)
        listener.start()
        try:
            yield listener
        finally:
            await listener.close()

    # -- migrations -----------------------------------------------------------------------------
    async def schema_version(self) -> int:
        await self._pool.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        return int(await self._pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def migrate(self, migrations: Sequence[str] = PG_MIGRATIONS) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            for number, script in enumerate(migrations, start=1):
                if number > current:
                    await conn.execute(script)
                    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        return await self.schema_version()

    async def recent_remote_durations(self, provider: str, kind: str, limit: int = 25) -> list[float]:
        sql = ("SELECT (provider_data::jsonb ->> '_remote_seconds')::float AS seconds FROM jobs "
               "WHERE provider = $1 AND kind = $2 AND state = 'done' "
               "AND provider_data::jsonb ->> '_remote_seconds' IS NOT NULL ORDER BY finished_at DESC LIMIT $3")
        return [float(r[0]) for r in await self._pool.fetch(sql, provider, kind, limit)]
