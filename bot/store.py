"""The only place with SQL: jobs and users' saved provider objects in one SQLite file (WAL).

Every state change is one committed UPDATE guarded by the state it expects (`WHERE state = ?`),
so two writers can never both move a job, and an illegal move is caught before it is written.
Migrations are numbered and applied at start; `PRAGMA user_version` records the last one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
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


_LIVE = "state NOT IN ('done', 'failed', 'cancelled')"


_JSON_FIELDS = {"params", "provider_data"}
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
    if name == "result_message_ids":
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
        elif name == "result_message_ids":
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


def new_job_id() -> str:
    """Short, typeable, unguessable enough for a per-guild id: 8 chars of a-z0-9."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(8))


class Store:
    """An open database. Use `await Store.open(path)`; close with `await store.close()`."""

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
        """One statement in its own transaction; returns the row count."""
        async with self.transaction() as db:
            cur = await db.execute(sql, params)
            return cur.rowcount

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
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
                         max_per_guild: int | None = None) -> Job:
        """Insert a new job. With limits, the live jobs of its owner and guild are counted in the
        same write transaction as the insert, so simultaneous commands cannot all pass; raises
        LimitReached and writes nothing when a limit is full."""
        columns = ", ".join(_JOB_COLUMNS)
        marks = ", ".join("?" for _ in _JOB_COLUMNS)
        async with self.transaction() as db:
            if max_per_user is not None and await self._count_live(db, "owner_id", job.owner_id) >= max_per_user:
                raise LimitReached("user", max_per_user)
            if (max_per_guild is not None and job.guild_id is not None
                    and await self._count_live(db, "guild_id", job.guild_id) >= max_per_guild):
                raise LimitReached("guild", max_per_guild)
            await db.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})",
                             [_to_column(n, getattr(job, n)) for n in _JOB_COLUMNS])
        return job

    @staticmethod
    async def _count_live(db: aiosqlite.Connection, column: str, value: int) -> int:
        async with db.execute(f"SELECT COUNT(*) FROM jobs WHERE {column} = ? AND {_LIVE}", (value,)) as cur:
            row = await cur.fetchone()
        return int(row[0])

    async def get_job(self, job_id: str) -> Job | None:
        async with self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _from_row(row) if row else None

    async def _write(self, job: Job, new: Job) -> Job:
        changed = {n: getattr(new, n) for n in _JOB_COLUMNS if getattr(new, n) != getattr(job, n)}
        changed["updated_at"] = new.updated_at
        # a cancel request makes the job due at once; no step may push that back
        assignments = ", ".join(
            "next_run_at = CASE WHEN cancel_requested = 1 THEN MIN(next_run_at, ?) ELSE ? END"
            if n == "next_run_at" else f"{n} = ?" for n in changed)
        params: list[Any] = []
        for n, v in changed.items():
            params += [_to_column(n, v)] * (2 if n == "next_run_at" else 1)
        params += [job.id, str(job.state)]
        rowcount = await self._execute_write(f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ?", params)
        if rowcount != 1:
            raise StaleJob(f"job {job.id} is no longer {job.state}")
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
        return (f"SELECT * FROM jobs WHERE state NOT IN ('done', 'failed', 'cancelled') "
                f"AND next_run_at <= ? {skip} ORDER BY next_run_at LIMIT ?")

    async def due_jobs(self, now: datetime, limit: int = 50, exclude: Iterable[str] = ()) -> list[Job]:
        """Live jobs whose next step is due, oldest due first."""
        excluded = list(exclude)
        async with self._db.execute(self.due_sql(len(excluded)), [_ts(now), *excluded, limit]) as cur:
            return [_from_row(r) for r in await cur.fetchall()]

    async def next_due_at(self, exclude: Iterable[str] = ()) -> datetime | None:
        excluded = list(exclude)
        skip = f"AND id NOT IN ({', '.join('?' for _ in excluded)})" if excluded else ""
        sql = f"SELECT MIN(next_run_at) FROM jobs WHERE state NOT IN ('done', 'failed', 'cancelled') {skip}"
        async with self._db.execute(sql, excluded) as cur:
            row = await cur.fetchone()
        return _dt(row[0]) if row and row[0] is not None else None

    async def list_jobs(self, *, owner_id: int | None = None, guild_id: int | None = None,
                        live_only: bool = False, limit: int = 25) -> list[Job]:
        where, params = [], []
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
        rowcount = await self._execute_write(
            "UPDATE jobs SET cancel_requested = 1, next_run_at = ?, updated_at = ? "
            "WHERE id = ? AND state NOT IN ('done', 'failed', 'cancelled', 'collecting', 'delivering')",
            (_ts(now or utcnow()), _ts(utcnow()), job_id))
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

    async def wake(self, job_id: str) -> None:
        """Make a live job due now (a Refresh click)."""
        await self._execute_write(
            f"UPDATE jobs SET next_run_at = ? WHERE id = ? AND {_LIVE}", (_ts(utcnow()), job_id))

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
            where.append("(name LIKE ? ESCAPE '\\' OR remote_id LIKE ? ESCAPE '\\')")
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
