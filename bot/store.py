"""The only place with SQL: jobs and users' saved provider objects in one SQLite file (WAL).

Every state change is one committed UPDATE guarded by the state it expects (`WHERE state = ?`),
so two writers can never both move a job, and an illegal move is caught before it is written.
Migrations are numbered and applied at start; `PRAGMA user_version` records the last one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.models import TERMINAL_STATES, TRANSITIONS, Artifact, Job, JobState, SavedObject, utcnow

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs and saved objects
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        owner_id INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        guild_id INTEGER,
        summary TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        provider_data TEXT NOT NULL DEFAULT '{}',
        remote_id TEXT,
        progress REAL,
        queue_position INTEGER,
        detail TEXT,
        preview_url TEXT,
        eta REAL,
        status_message_id INTEGER,
        result_message_ids TEXT NOT NULL DEFAULT '[]',
        artifacts TEXT NOT NULL DEFAULT '[]',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        submit_intent_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        running_since REAL,
        finished_at REAL,
        next_run_at REAL NOT NULL,
        deadline_at REAL,
        status_edited_at REAL,
        status_fingerprint TEXT,
        delivery_started_at REAL
    );
    CREATE INDEX jobs_due ON jobs (next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled');
    CREATE INDEX jobs_owner ON jobs (owner_id, created_at);
    CREATE INDEX jobs_guild ON jobs (guild_id, created_at);
    CREATE TABLE saved_objects (
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        owner_id INTEGER NOT NULL,
        guild_id INTEGER,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (provider, kind, remote_id)
    );
    CREATE INDEX saved_owner ON saved_objects (owner_id, provider, kind, updated_at);
    """,
    # 2: finishing chores (an outbox on the job row), the fixed delivery plan, refused cancels, cooldowns
    """
    ALTER TABLE jobs ADD COLUMN finish_pending TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN delivery_plan TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_refused_at REAL;
    DROP INDEX jobs_due;
    CREATE INDEX jobs_due ON jobs (next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled') OR finish_pending <> '[]';
    CREATE TABLE cooldowns (
        user_id INTEGER NOT NULL,
        command TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (user_id, command)
    );
    """,
    # 3: monthly budgets per server and provider, and the spending ledger (one entry per job)
    """
    CREATE TABLE budgets (
        guild_id INTEGER NOT NULL,
        provider TEXT NOT NULL,
        monthly_limit REAL,
        confirm_above REAL,
        updated_by INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (guild_id, provider)
    );
    CREATE TABLE ledger (
        job_id TEXT PRIMARY KEY,
        guild_id INTEGER NOT NULL,
        provider TEXT NOT NULL,
        month TEXT NOT NULL,
        owner_id INTEGER NOT NULL,
        estimate REAL NOT NULL,
        amount REAL NOT NULL,
        settled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX ledger_month ON ledger (guild_id, provider, month);
    CREATE TABLE pending_starts (
        token TEXT PRIMARY KEY,
        owner_id INTEGER NOT NULL,
        request TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 4: workers claim due jobs per provider and lane with leases (owner, expiry, fencing token)
    """
    CREATE INDEX jobs_lane ON jobs (provider, state, next_run_at)
        WHERE state NOT IN ('done', 'failed', 'cancelled') OR finish_pending <> '[]';
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until REAL;
    ALTER TABLE jobs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
    """,
    # 5: which providers each running worker offers (so none fails a job another one can run)
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        providers TEXT NOT NULL,
        seen_at REAL NOT NULL
    );
    """,
)


class IllegalTransition(RuntimeError):
    """A move the life cycle does not allow: a bug in the caller, never a user error."""


class StaleJob(RuntimeError):
    """The job changed under us (another task moved it); re-read and decide again."""


class LimitReached(RuntimeError):
    """A live-job limit refused a new job; `scope` is "user" or "guild", `limit` the number."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"{scope} limit of {limit} live jobs reached")
        self.scope, self.limit = scope, limit


class BudgetExceeded(RuntimeError):
    """A charge would take a server past its monthly budget for a provider; nothing was written."""

    def __init__(self, provider: str, limit: float, spent: float, amount: float) -> None:
        super().__init__(f"{provider} budget of {limit:g} would be passed ({spent:g} spent, {amount:g} asked)")
        self.provider, self.limit, self.spent, self.amount = provider, limit, spent, amount

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.spent)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a new job is expected to cost, booked against its server's monthly budget."""

    provider: str
    guild_id: int
    month: str  # "YYYY-MM", UTC
    amount: float | None  # None: not known before the job runs (refused only once the budget is used up)


@dataclass(frozen=True, slots=True)
class Budget:
    guild_id: int
    provider: str
    monthly_limit: float | None
    confirm_above: float | None


#: how long a cost question can be answered
PENDING_SECONDS = 24 * 3600

class CoolingDown(RuntimeError):
    """A per-user cooldown refused a command; `until` is when it may be used again."""

    def __init__(self, command: str, until: datetime) -> None:
        super().__init__(f"{command} is cooling down until {until.isoformat()}")
        self.command, self.until = command, until


@dataclass(frozen=True, slots=True)
class Cooldown:
    """Take a per-user cooldown in the same write as what it guards."""

    user_id: int
    command: str
    seconds: float
    now: datetime


_LIVE = "state NOT IN ('done', 'failed', 'cancelled')"
#: live jobs, and finished ones that still owe chores (the predicate of the partial index jobs_due)
_DUE = "(state NOT IN ('done', 'failed', 'cancelled') OR finish_pending <> '[]')"


_JSON_FIELDS = {"params", "provider_data", "delivery_plan"}
_TIME_FIELDS = {f.name for f in fields(Job) if f.name.endswith("_at")} | {"eta", "running_since"}
_JOB_COLUMNS = [f.name for f in fields(Job)]


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _to_column(name: str, value: Any) -> Any:
    if name in _TIME_FIELDS:
        return _ts(value)
    if name in _JSON_FIELDS:
        return json.dumps(value, sort_keys=True)
    if name in ("result_message_ids", "finish_pending"):
        return json.dumps(list(value))
    if name == "artifacts":
        return json.dumps([a.to_json() for a in value])
    if name == "state":
        return str(value)
    if name == "cancel_requested":
        return int(bool(value))
    return value


def _from_row(row: aiosqlite.Row) -> Job:
    values: dict[str, Any] = {}
    for name in _JOB_COLUMNS:
        raw = row[name]
        if name in _TIME_FIELDS:
            values[name] = _dt(raw)
        elif name in _JSON_FIELDS:
            values[name] = json.loads(raw)
        elif name in ("result_message_ids", "finish_pending"):
            values[name] = tuple(json.loads(raw))
        elif name == "artifacts":
            values[name] = tuple(Artifact.from_json(a) for a in json.loads(raw))
        elif name == "state":
            values[name] = JobState(raw)
        elif name == "cancel_requested":
            values[name] = bool(raw)
        else:
            values[name] = raw
    return Job(**values)


JOB_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_job_id() -> str:
    """Short, typeable, unguessable enough for a per-guild id: 8 chars of a-z0-9 (no 0/1/i/l/o)."""
    return "".join(secrets.choice(JOB_ID_ALPHABET) for _ in range(8))


def looks_like_job_id(name: str) -> bool:
    """Whether a name could be one of ours (spool folders are named by job id)."""
    return len(name) == 8 and all(c in JOB_ID_ALPHABET for c in name)


class Store:
    """An open database. Use `await Store.open(path)`; close with `await store.close()`.
    `open_store(url_or_path)` picks SQLite or PostgreSQL (bot/store_pg.py)."""

    #: dialect: the smaller of two values; what makes a claim skip rows another worker is taking
    _LEAST = "MIN"
    #: a case-insensitive LIKE (SQLite's own LIKE is, for ASCII)
    _LIKE = "LIKE"
    _SKIP_LOCKED = ""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # one connection is shared by every task: a multi-statement transaction must not let another
        # task's statement (and its commit) slip in between, so every write takes this lock
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE: other processes wait for it), committed on exit
        and rolled back on error. Checks and the writes they allow go in the same one."""
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    async def _execute_write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, its own transaction (autocommit: one trip to the database thread, which
        matters at hundreds of polls a second); returns the row count."""
        async with self._write_lock:
            cur = await self._db.execute(sql, params)
            return cur.rowcount

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit: a lone statement commits by itself; transaction() says BEGIN IMMEDIATE itself
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        store = cls(db)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    # -- migrations -----------------------------------------------------------------------------
    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0])

    async def migrate(self, migrations: Sequence[str] = MIGRATIONS) -> int:
        """Apply every migration newer than the file's version, each in its own transaction."""
        current = await self.schema_version()
        for number, script in enumerate(migrations, start=1):
            if number <= current:
                continue
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        return await self.schema_version()

    # -- jobs -----------------------------------------------------------------------------------
    async def create_job(self, job: Job, *, max_per_user: int | None = None,
                         max_per_guild: int | None = None, charge: Charge | None = None,
                         cooldown: Cooldown | None = None) -> Job:
        """Insert a new job. With limits, the live jobs of its owner and guild are counted in the
        same write transaction as the insert, so simultaneous commands cannot all pass; raises
        LimitReached and writes nothing when a limit is full. A `charge` is checked against the
        server's monthly budget and booked in that same transaction (BudgetExceeded otherwise). A
        cooldown is taken in the same transaction (CoolingDown when it has not run out), so a job
        refused for any reason costs none."""
        columns = ", ".join(_JOB_COLUMNS)
        marks = ", ".join("?" for _ in _JOB_COLUMNS)
        async with self.transaction() as db:
            await self._serialize(db, job)
            if max_per_user is not None and await self._count_live(db, "owner_id", job.owner_id) >= max_per_user:
                raise LimitReached("user", max_per_user)
            if (max_per_guild is not None and job.guild_id is not None
                    and await self._count_live(db, "guild_id", job.guild_id) >= max_per_guild):
                raise LimitReached("guild", max_per_guild)
            if charge is not None:
                await self._book(db, job, charge)
            if cooldown is not None:  # after the limits: a job refused by them costs no cooldown
                await self._take_cooldown(db, cooldown)
            await db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})",
                             [_to_column(n, getattr(job, n)) for n in _JOB_COLUMNS])
            await self._announce(db, job.provider)
        return job

    async def _serialize(self, db: Any, job: Job) -> None:
        """Make concurrent creations for the same guild or owner wait for each other (on SQLite,
        BEGIN IMMEDIATE already does; PostgreSQL takes advisory locks)."""

    async def _serialize_budget(self, db: Any, guild_id: int) -> None:
        """Make concurrent bookings against one guild's budget wait for each other (SQLite: BEGIN
        IMMEDIATE already does; PostgreSQL takes the guild's advisory lock)."""

    async def _announce(self, db: Any, provider: str) -> None:
        """Tell other processes' runners, in this transaction, that a job may be claimable sooner
        (PostgreSQL NOTIFYs; on SQLite one process wakes its own runner)."""

    async def _write_waking(self, sql: str, params: Sequence[Any], now: datetime) -> int:
        """An UPDATE of jobs that may make some claimable (due by `now`, not leased); returns the
        row count. PostgreSQL also tells the other processes, in the same statement."""
        return await self._execute_write(sql, params)

    def due_signal(self, wake: Callable[[], None]) -> AbstractAsyncContextManager[Any]:
        """While entered, `wake()` is called when another process makes a job claimable sooner
        (PostgreSQL LISTENs); one SQLite process has no one else to hear from."""
        return nullcontext()

    async def _book(self, db: aiosqlite.Connection, job: Job, charge: Charge) -> None:
        limit = await self._limit(db, charge.guild_id, charge.provider)
        if limit is not None:
            spent = await self._spent(db, charge.guild_id, charge.provider, charge.month)
            if (spent + (charge.amount or 0.0) > limit + 1e-9) or (charge.amount is None and spent >= limit):
                raise BudgetExceeded(charge.provider, limit, spent, charge.amount or 0.0)
        amount = charge.amount or 0.0
        now = _ts(utcnow())
        await db.execute(
            "INSERT INTO ledger (job_id, guild_id, provider, month, owner_id, estimate, amount, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, charge.guild_id, charge.provider, charge.month, job.owner_id, amount, amount, now, now))

    @staticmethod
    async def _limit(db: aiosqlite.Connection, guild_id: int, provider: str) -> float | None:
        async with db.execute("SELECT monthly_limit FROM budgets WHERE guild_id = ? AND provider = ?",
                              (guild_id, provider)) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    @staticmethod
    async def _spent(db: aiosqlite.Connection, guild_id: int, provider: str, month: str) -> float:
        async with db.execute("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE guild_id = ? AND provider = ? "
                              "AND month = ?", (guild_id, provider, month)) as cur:
            row = await cur.fetchone()
        return float(row[0])

    # -- budgets and the ledger -----------------------------------------------------------------
    async def set_budget(self, guild_id: int, provider: str, *, monthly_limit: float | None,
                         confirm_above: float | None, by: int) -> None:
        await self._execute_write(
            """INSERT INTO budgets (guild_id, provider, monthly_limit, confirm_above, updated_by, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (guild_id, provider) DO UPDATE SET monthly_limit = excluded.monthly_limit,
                   confirm_above = excluded.confirm_above, updated_by = excluded.updated_by,
                   updated_at = excluded.updated_at""",
            (guild_id, provider, monthly_limit, confirm_above, by, _ts(utcnow())))

    async def get_budget(self, guild_id: int, provider: str) -> Budget | None:
        async with self._db.execute("SELECT * FROM budgets WHERE guild_id = ? AND provider = ?",
                                    (guild_id, provider)) as cur:
            row = await cur.fetchone()
        return Budget(row["guild_id"], row["provider"], row["monthly_limit"], row["confirm_above"]) if row else None

    async def month_spent(self, guild_id: int, provider: str, month: str) -> float:
        return await self._spent(self._db, guild_id, provider, month)

    async def spend_by_user(self, guild_id: int, provider: str, month: str) -> list[tuple[int, float]]:
        """Each user's booked spend this month, largest first (estimates until the provider reports)."""
        async with self._db.execute(
                "SELECT owner_id, SUM(amount) AS total FROM ledger WHERE guild_id = ? AND provider = ? AND month = ? "
                "GROUP BY owner_id HAVING SUM(amount) > 0 ORDER BY total DESC", (guild_id, provider, month)) as cur:
            return [(int(r[0]), float(r[1])) for r in await cur.fetchall()]

    async def ledger_entry(self, job_id: str) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM ledger WHERE job_id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def settle_charge(self, job_id: str, amount: float) -> bool:
        """Replace a job's booked estimate by what the provider reports it cost (0: a refund).
        Idempotent; False when the job has no ledger entry."""
        rowcount = await self._execute_write(
            "UPDATE ledger SET amount = ?, settled = 1, updated_at = ? WHERE job_id = ?",
            (max(0.0, amount), _ts(utcnow()), job_id))
        return rowcount == 1

    # -- commands waiting for a cost confirmation -------------------------------------------------
    async def save_pending(self, token: str, owner_id: int, request: dict[str, Any]) -> None:
        """A validated command waiting for its owner to confirm the cost (kept across restarts)."""
        now = utcnow()
        async with self.transaction() as db:
            await db.execute("DELETE FROM pending_starts WHERE created_at < ?", (_ts(now) - PENDING_SECONDS,))
            await db.execute("INSERT INTO pending_starts (token, owner_id, request, created_at) VALUES (?, ?, ?, ?)",
                             (token, owner_id, json.dumps(request, sort_keys=True), _ts(now)))

    async def pending_owner(self, token: str) -> int | None:
        async with self._db.execute("SELECT owner_id FROM pending_starts WHERE token = ? AND created_at >= ?",
                                    (token, _ts(utcnow()) - PENDING_SECONDS)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def take_pending(self, token: str, owner_id: int) -> dict[str, Any] | None:
        """The waiting command, taken by one statement that removes it: of two clicks at once (in
        any processes) only one gets it, so it starts once."""
        rows = await self._returning("DELETE FROM pending_starts WHERE token = ? AND owner_id = ? "
                                     "RETURNING request, created_at", (token, owner_id))
        fresh = [r for r in rows if float(r[1]) >= _ts(utcnow()) - PENDING_SECONDS]
        return json.loads(fresh[0][0]) if fresh else None

    async def requote_charge(self, job_id: str, amount: float) -> None:
        """A firmer estimate before paying (a provider's quote): re-checked against the budget in one
        transaction; raises BudgetExceeded and keeps the old entry when it no longer fits."""
        async with self.transaction() as db:
            async with db.execute("SELECT * FROM ledger WHERE job_id = ?", (job_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return
            await self._serialize_budget(db, row["guild_id"])
            limit = await self._limit(db, row["guild_id"], row["provider"])
            if limit is not None:
                others = await self._spent(db, row["guild_id"], row["provider"], row["month"]) - row["amount"]
                if others + amount > limit + 1e-9:
                    raise BudgetExceeded(row["provider"], limit, others, amount)
            await db.execute("UPDATE ledger SET estimate = ?, amount = ?, updated_at = ? WHERE job_id = ?",
                             (amount, amount, _ts(utcnow()), job_id))
    async def take_cooldown(self, cooldown: Cooldown) -> None:
        """Start a per-user cooldown, or raise CoolingDown while the last one runs."""
        async with self.transaction() as db:
            await self._take_cooldown(db, cooldown)

    @staticmethod
    async def _take_cooldown(db: aiosqlite.Connection, c: Cooldown) -> None:
        """One statement: insert, or move `until` only when it has passed; no row changed means
        the cooldown still runs (even against another process, as the statement is atomic)."""
        if c.seconds <= 0:
            return
        until = c.now.timestamp() + c.seconds
        cur = await db.execute(
            "INSERT INTO cooldowns (user_id, command, until) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id, command) DO UPDATE SET until = excluded.until WHERE cooldowns.until <= ?",
            (c.user_id, c.command, until, c.now.timestamp()))
        if cur.rowcount == 1:
            return
        async with db.execute("SELECT until FROM cooldowns WHERE user_id = ? AND command = ?",
                              (c.user_id, c.command)) as read:
            row = await read.fetchone()
        raise CoolingDown(c.command, _dt(row[0]) if row else c.now)

    @staticmethod
    async def _count_live(db: aiosqlite.Connection, column: str, value: int) -> int:
        async with db.execute(f"SELECT COUNT(*) FROM jobs WHERE {column} = ? AND {_LIVE}", (value,)) as cur:
            row = await cur.fetchone()
        return int(row[0])

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._db.execute_fetchall("SELECT * FROM jobs WHERE id = ?", (job_id,))  # one hop
        return _from_row(rows[0]) if rows else None

    async def reload(self, job: Job) -> Job:
        """The job as stored now, still under the lease `job` was claimed with. Raises StaleJob
        once another worker has taken it over (its fencing token moved on): a copy read afresh
        must not lend a stalled worker the new owner's token."""
        fresh = await self.get_job(job.id)
        if fresh is None:
            return job
        if fresh.lease_token != job.lease_token:
            raise StaleJob(f"job {job.id} was taken over by another worker")
        return fresh

    async def _write(self, job: Job, new: Job) -> Job:
        changed = {n: getattr(new, n) for n in _JOB_COLUMNS if getattr(new, n) != getattr(job, n)}
        changed["updated_at"] = new.updated_at
        # a cancel request makes the job due at once; no step may push that back, except the wait
        # before looking for a submission that may exist unrecorded (it must be found to be stopped)
        assignments = ", ".join(
            "next_run_at = CASE WHEN cancel_requested = 1 AND (submit_intent_at IS NULL OR remote_id IS NOT NULL) "
            f"THEN {self._LEAST}(next_run_at, ?) ELSE ? END"
            if n == "next_run_at" else f"{n} = ?" for n in changed)
        params: list[Any] = []
        for n, v in changed.items():
            params += [_to_column(n, v)] * (2 if n == "next_run_at" else 1)
        params += [job.id, str(job.state), job.lease_token]
        rowcount = await self._execute_write(
            f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ? AND lease_token = ?", params)
        if rowcount != 1:
            raise StaleJob(f"job {job.id} is no longer {job.state}, or its lease was taken over")
        return new

    async def update(self, job: Job, **changes: Any) -> Job:
        """Change fields without changing state."""
        if "state" in changes and changes["state"] != job.state:
            raise IllegalTransition("use transition() to change state")
        return await self._write(job, job.evolve(**changes, updated_at=utcnow()))

    async def transition(self, job: Job, state: JobState, **changes: Any) -> Job:
        """Move a job along its life cycle, with any other fields, in one committed write."""
        if state not in TRANSITIONS[job.state]:
            raise IllegalTransition(f"job {job.id}: {job.state} -> {state} is not allowed")
        now = utcnow()
        extra: dict[str, Any] = {}
        if state in TERMINAL_STATES:
            extra["finished_at"] = now
        if state is JobState.RUNNING and job.running_since is None:
            extra["running_since"] = now
        return await self._write(job, job.evolve(**{**extra, **changes}, state=state, updated_at=now))

    @staticmethod
    def due_sql(excluded: int = 0) -> str:
        """The due-jobs query (served by the partial index `jobs_due`)."""
        skip = f"AND id NOT IN ({', '.join('?' for _ in range(excluded))})" if excluded else ""
        return f"SELECT * FROM jobs WHERE {_DUE} AND next_run_at <= ? {skip} ORDER BY next_run_at LIMIT ?"

    async def due_jobs(self, now: datetime, limit: int = 50, exclude: Iterable[str] = (), *,
                       provider: str | None = None, states: Iterable[JobState] | None = None,
                       not_providers: Iterable[str] | None = None) -> list[Job]:
        """Live jobs whose next step is due, and finished ones with chores due, oldest due first.
        A lane of the runner narrows it: one provider's (or none of these providers'), in these
        states. `exclude` is for the few jobs in flight, never for thousands."""
        excluded = list(exclude)
        if provider is None and states is None and not_providers is None:
            sql, params = self.due_sql(len(excluded)), [_ts(now), *excluded, limit]
        else:
            where, params = [_DUE, "next_run_at <= ?"], [_ts(now)]
            self._narrow_to_lane(where, params, provider, states, not_providers)
            if excluded:
                where.append(f"id NOT IN ({', '.join('?' for _ in excluded)})")
                params += excluded
            sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY next_run_at LIMIT ?"
            params.append(limit)
        return [_from_row(r) for r in await self._db.execute_fetchall(sql, params)]

    @staticmethod
    def _narrow_to_lane(where: list[str], params: list[Any], provider: str | None,
                        states: Iterable[JobState] | None, not_providers: Iterable[str] | None) -> None:
        """Add a runner lane's conditions: one provider's jobs (or none of these providers'), in these states."""
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        names = list(not_providers or ())
        if names:  # `NOT IN ()` is SQLite's, not PostgreSQL's
            where.append(f"provider NOT IN ({', '.join('?' for _ in names)})")
            params += names
        if states is not None:
            wanted = [str(s) for s in states]
            where.append(f"state IN ({', '.join('?' for _ in wanted)})")
            params += wanted

    async def claim_due(self, now: datetime, *, worker: str, lease_seconds: float, limit: int,
                        provider: str | None = None, states: Iterable[JobState] | None = None,
                        not_providers: Iterable[str] | None = None, due_by: datetime | None = None) -> list[Job]:
        """Take up to `limit` due jobs of a lane for `worker`, oldest due first: each gets a lease
        until `now + lease_seconds` and a new fencing token (returned in the job, and required by
        every write made with it). Jobs leased by anyone whose lease has not run out are skipped;
        an expired lease is taken over. One statement, so two workers never take the same job.
        `due_by` (later than `now`) also takes jobs due soon, to ride along in a batched poll."""
        where = [_DUE, "next_run_at <= ?", "(lease_until IS NULL OR lease_until < ?)"]
        params = [_ts(due_by or now), _ts(now)]
        self._narrow_to_lane(where, params, provider, states, not_providers)
        pick = f"SELECT id FROM jobs WHERE {' AND '.join(where)} ORDER BY next_run_at LIMIT ?{self._SKIP_LOCKED}"
        sql = (f"UPDATE jobs SET lease_owner = ?, lease_until = ?, lease_token = lease_token + 1 "
               f"WHERE id IN ({pick}) RETURNING *")
        rows = await self._returning(sql, [worker, _ts(now) + lease_seconds, *params, limit])
        return sorted((_from_row(r) for r in rows), key=lambda j: j.next_run_at)

    async def renew_leases(self, worker: str, job_ids: Iterable[str], until: datetime) -> int:
        """Extend `worker`'s leases on jobs it is still working on (a long upload, say)."""
        ids = list(job_ids)
        if not ids:
            return 0
        return await self._execute_write(
            f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND id IN ({', '.join('?' for _ in ids)})",
            [_ts(until), worker, *ids])

    async def beat_worker(self, worker: str, providers: Iterable[str], now: datetime) -> None:
        """Say that `worker` runs and offers these providers (a runner does so every turn or so)."""
        await self._execute_write(
            "INSERT INTO workers (id, providers, seen_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "providers = excluded.providers, seen_at = excluded.seen_at",
            (worker, json.dumps(sorted(providers)), _ts(now)))

    async def offered_providers(self, since: datetime) -> set[str]:
        """The providers some worker seen since `since` offers."""
        async with self._db.execute("SELECT providers FROM workers WHERE seen_at >= ?", (_ts(since),)) as cur:
            rows = await cur.fetchall()
        return {name for row in rows for name in json.loads(row[0])}

    async def release_leases(self, worker: str | None, job_ids: Iterable[str] | None = None) -> int:
        """Give up `worker`'s leases (on these jobs, or all of them); `worker` None: everyone's
        (a lone worker starting again after a crash)."""
        where, params = ["lease_until IS NOT NULL"], []
        if worker is not None:
            where.append("lease_owner = ?")
            params.append(worker)
        if job_ids is not None:
            ids = list(job_ids)
            if not ids:
                return 0
            where.append(f"id IN ({', '.join('?' for _ in ids)})")
            params += ids
        return await self._write_waking(
            f"UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE {' AND '.join(where)}", params, utcnow())

    async def _returning(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """A write whose changed rows are read back (RETURNING)."""
        async with self._write_lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def next_due_at(self, exclude: Iterable[str] = (), *, after: datetime | None = None) -> datetime | None:
        """When the next job falls due; with `after`, the first due later than that (what is due
        already was claimed, or waits for a free slot)."""
        excluded = list(exclude)
        skip = f"AND id NOT IN ({', '.join('?' for _ in excluded)})" if excluded else ""
        later = "AND next_run_at > ?" if after is not None else ""
        sql = f"SELECT MIN(next_run_at) FROM jobs WHERE {_DUE} {later} {skip}"
        async with self._db.execute(sql, ([_ts(after)] if after is not None else []) + excluded) as cur:
            row = await cur.fetchone()
        return _dt(row[0]) if row and row[0] is not None else None

    async def recent_remote_durations(self, provider: str, kind: str, limit: int = 25) -> list[float]:
        """How long the provider took for the latest finished jobs of a kind, newest first."""
        sql = ("SELECT json_extract(provider_data, '$._remote_seconds') AS seconds FROM jobs "
               "WHERE provider = ? AND kind = ? AND state = 'done' AND seconds IS NOT NULL "
               "ORDER BY finished_at DESC LIMIT ?")
        async with self._db.execute(sql, (provider, kind, limit)) as cur:
            return [float(r[0]) for r in await cur.fetchall()]

    async def list_jobs(self, *, owner_id: int | None = None, guild_id: int | None = None,
                        live_only: bool = False, limit: int = 25, provider: str | None = None) -> list[Job]:
        where, params = [], []
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        if owner_id is not None:
            where.append("owner_id = ?")
            params.append(owner_id)
        if guild_id is not None:
            where.append("guild_id = ?")
            params.append(guild_id)
        if live_only:
            where.append("state NOT IN ('done', 'failed', 'cancelled')")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        async with self._db.execute(f"SELECT * FROM jobs {clause} ORDER BY created_at DESC LIMIT ?",
                                    [*params, limit]) as cur:
            return [_from_row(r) for r in await cur.fetchall()]

    async def count_live(self, *, owner_id: int | None = None, guild_id: int | None = None) -> int:
        column, value = ("owner_id", owner_id) if owner_id is not None else ("guild_id", guild_id)
        return await self._count_live(self._db, column, value)

    async def request_cancel(self, job_id: str, now: datetime | None = None) -> bool:
        """Flag a live job for cancelling and make it due at once; False when it is not live."""
        now = now or utcnow()
        rowcount = await self._write_waking(
            "UPDATE jobs SET cancel_requested = 1, next_run_at = ?, updated_at = ? "
            "WHERE id = ? AND cancel_refused_at IS NULL "
            "AND state NOT IN ('done', 'failed', 'cancelled', 'collecting', 'delivering')",
            (_ts(now), _ts(utcnow()), job_id), now)
        return rowcount == 1

    async def record_status(self, job_id: str, *, message_id: int | None, fingerprint: str,
                            edited_at: datetime, only_if_unset: bool = False) -> bool:
        """Note what the status message shows. Not guarded by state: the card is bookkeeping beside
        the life cycle, and a step may move the job while the card is being posted."""
        guard = " AND status_message_id IS NULL" if only_if_unset else ""
        rowcount = await self._execute_write(
            f"UPDATE jobs SET status_message_id = COALESCE(?, status_message_id), status_fingerprint = ?, "
            f"status_edited_at = ? WHERE id = ?{guard}", (message_id, fingerprint, _ts(edited_at), job_id))
        return rowcount == 1

    async def live_job_ids(self) -> set[str]:
        """Ids of jobs that may still use their spool folder (live, or owing chores)."""
        async with self._db.execute(f"SELECT id FROM jobs WHERE {_DUE}") as cur:
            return {row[0] for row in await cur.fetchall()}

    async def wake(self, job_id: str) -> None:
        """Make a live job due now (a Refresh click)."""
        now = utcnow()
        await self._write_waking(f"UPDATE jobs SET next_run_at = ? WHERE id = ? AND {_LIVE}", (_ts(now), job_id), now)

    # -- saved objects --------------------------------------------------------------------------
    async def save_object(self, obj: SavedObject) -> None:
        now = _ts(utcnow())
        await self._execute_write(
            """INSERT INTO saved_objects (provider, kind, remote_id, owner_id, guild_id, name, status, data,
                                          created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (provider, kind, remote_id) DO UPDATE SET
                   name = excluded.name, status = excluded.status, data = excluded.data,
                   updated_at = excluded.updated_at""",
            (obj.provider, obj.kind, obj.remote_id, obj.owner_id, obj.guild_id, obj.name, obj.status,
             json.dumps(obj.data or {}, sort_keys=True), now, now))

    async def list_objects(self, *, provider: str, kind: str, owner_id: int | None = None,
                           name_contains: str = "", limit: int = 25) -> list[SavedObject]:
        where = ["provider = ?", "kind = ?"]
        params: list[Any] = [provider, kind]
        if owner_id is not None:
            where.append("owner_id = ?")
            params.append(owner_id)
        if name_contains:
            # case-insensitive on both backends (SQLite's LIKE is, for ASCII; PostgreSQL needs ILIKE)
            where.append(f"(name {self._LIKE} ? ESCAPE '\\' OR remote_id {self._LIKE} ? ESCAPE '\\')")
            pattern = "%" + name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        sql = f"SELECT * FROM saved_objects WHERE {' AND '.join(where)} ORDER BY updated_at DESC LIMIT ?"
        async with self._db.execute(sql, [*params, limit]) as cur:
            rows = await cur.fetchall()
        return [self._object(r) for r in rows]

    async def get_object(self, provider: str, kind: str, remote_id: str) -> SavedObject | None:
        async with self._db.execute(
                "SELECT * FROM saved_objects WHERE provider = ? AND kind = ? AND remote_id = ?",
                (provider, kind, remote_id)) as cur:
            row = await cur.fetchone()
        return self._object(row) if row else None

    async def delete_object(self, provider: str, kind: str, remote_id: str) -> bool:
        rowcount = await self._execute_write(
            "DELETE FROM saved_objects WHERE provider = ? AND kind = ? AND remote_id = ?",
            (provider, kind, remote_id))
        return rowcount == 1

    @staticmethod
    def _object(row: aiosqlite.Row) -> SavedObject:
        return SavedObject(provider=row["provider"], kind=row["kind"], remote_id=row["remote_id"],
                           owner_id=row["owner_id"], guild_id=row["guild_id"], name=row["name"],
                           status=row["status"], data=json.loads(row["data"]),
                           created_at=_dt(row["created_at"]), updated_at=_dt(row["updated_at"]))


async def open_store(location: str | Path) -> Store:
    """`postgresql://…` opens PostgreSQL (bot/store_pg.py, for a gateway and several workers);
    anything else is a SQLite file (one process)."""
    if str(location).startswith(("postgresql://", "postgres://")):
        from bot.store_pg import PgStore

        return await PgStore.open(str(location))
    return await Store.open(location)
