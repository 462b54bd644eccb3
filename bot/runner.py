"""The background loop that carries every job from accepted to done, one committed step at a time.

It reads due jobs from the store (so a restart simply continues), runs each job's next step in its
own task under a per-provider concurrency limit, and never lets one job's failure stop the loop.
The paid step is bracketed: intent is recorded before `submit`, the remote id right after; a job
found with intent but no id is reconciled with the provider instead of being submitted again.
After the paid step only the deadline ends a job: passing faults back off and continue.
Finishing is a step too: a job's end is written with the chores it owes (final card, notice, saved
object, spool removal), and the same loop does them until none is left, across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import discord

from bot.costs import amount_words, settled_amount
from bot.delivery import Delivery
from bot.models import TERMINAL_STATES, TRANSITIONS, Chore, Job, JobState, RemotePhase, RemoteStatus, utcnow
from bot.polling import DurationHistory, PollBounds, PollClock, plan_poll_with_eta, retry_backoff
from bot.providers.base import (
    AuthFailed,
    InputRejected,
    NotFound,
    OutOfCredits,
    Provider,
    ProviderError,
    RateLimited,
    ReconcileUnknown,
    SubmissionUnknown,
    Transient,
    user_message,
)
from bot.store import BudgetExceeded, StaleJob, Store, looks_like_job_id

log = logging.getLogger(__name__)

#: errors after which trying again cannot help
FINAL_ERRORS = (InputRejected, AuthFailed, OutOfCredits, NotFound, SubmissionUnknown)
#: errors from a paid call that prove nothing was created (safe to clear the intent)
NOT_CREATED = (InputRejected, AuthFailed, OutOfCredits, RateLimited)
#: steps that run after the paid call, on work that exists at the provider
_PAID_STEPS = (JobState.SUBMITTED, JobState.RUNNING, JobState.COLLECTING)
#: a job answered by list requests is still asked on its own this often (or four times before its
#: deadline, if that is rarer): a list that lags (a cached page) must not keep a finished, paid
#: job "running" until its deadline
ASK_ALONE_EVERY = 600.0
#: among several workers, one is taken as running while it has said so within this long (each says
#: so at least every WORKER_BEAT seconds); a job is failed for a provider none of them offers
WORKER_ALIVE = 600.0
WORKER_BEAT = 60.0

#: a runner lane: (provider, POLL or WORK), or CHORES for finished jobs' chores (no provider slot)
Lane = tuple[str | None, str]
POLL, WORK = "poll", "work"
CHORES: Lane = (None, "chores")
#: light steps (a status call) and heavy ones (files, conversions, delivery) have their own slots
_POLL_STATES = (JobState.SUBMITTED, JobState.RUNNING)
_WORK_STATES = (JobState.ACCEPTED, JobState.UPLOADING, JobState.COLLECTING, JobState.DELIVERING)
_LIVE_STATES = _POLL_STATES + _WORK_STATES


def is_outage(exc: BaseException) -> bool:
    """A fault that passes by itself (network, timeouts, Discord's 5xx or 429), as opposed to a
    request that will be refused however often it is sent."""
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500 or exc.status == 429
    if isinstance(exc, Transient | RateLimited):
        return True
    import aiohttp

    return isinstance(exc, aiohttp.ClientConnectionError | TimeoutError | ConnectionError)


class Runner:
    """Drives jobs. `wake()` after creating or changing one; `start()`/`stop()` around the bot."""

    def __init__(self, store: Store, providers: dict[str, Provider], delivery: Delivery, *, spool_dir: Path,
                 max_attempts: int = 8, clock: Callable[[], datetime] = utcnow, idle_wait: float = 30.0,
                 batch_window: float = 0.02, chore_concurrency: int = 16, worker_id: str = "",
                 lease_seconds: float = 600.0, heartbeat: Callable[[], None] | None = None) -> None:
        self.store = store
        self.providers = providers
        self.delivery = delivery
        self.spool_dir = spool_dir
        self.max_attempts = max_attempts
        self.clock = clock
        self.idle_wait = idle_wait
        self.batch_window = batch_window
        #: this worker's name among several; "" means the only worker (a crash's leases are all its own)
        self.worker_id = worker_id
        #: the name its leases are taken under
        self.lease_owner = worker_id or "local"
        self._beaten_at = float("-inf")
        self._beats = 0
        #: providers other running workers offer (read with each beat): their jobs are not ours to fail
        self._offered_elsewhere: set[str] = set()
        self.lease_seconds = lease_seconds
        self._to_release: set[str] = set()
        self._renewed_at = 0.0
        #: called on every turn of the loop (at least every `idle_wait` s): `python -m bot health`
        self.heartbeat = heartbeat
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        #: how many steps of each lane may run at once; a job is claimed only into a free slot
        self._capacity: dict[Lane, int] = {CHORES: chore_concurrency}
        for name, p in providers.items():
            self._capacity[(name, POLL)] = p.limits.max_concurrent_polls
            self._capacity[(name, WORK)] = p.limits.max_concurrent
        self._busy: dict[Lane, set[str]] = {lane: set() for lane in self._capacity}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._status_dirty: set[str] = set()
        self._not_before: dict[str, datetime] = {}
        self._status_tasks: dict[str, asyncio.Task[None]] = {}
        self._durations: dict[tuple[str, str], DurationHistory] = {}

    # -- life -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._loop(), name="job-runner")

    def wake(self) -> None:
        self._wake.set()

    def refresh(self, job: Job) -> None:
        """A Refresh click: redraw the card now, and poll early only when that is harmless (not
        during a backoff or a provider's slow-down, and not more often than the provider's
        minimum interval), so clicking cannot burn attempts or ignore Retry-After."""
        self._status_dirty.add(job.id)
        self._show_soon(job.id)
        provider = self.providers.get(job.provider)
        if provider is None or job.attempts or job.last_error or job.id in self._inflight:
            return
        now = self.clock()
        if self._not_before.get(job.provider, now) > now:
            return
        if (now - job.updated_at).total_seconds() >= provider.limits.poll_min:
            asyncio.create_task(self.store.wake(job.id)).add_done_callback(lambda _t: self._wake.set())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking jobs, let running steps finish for `grace` seconds, then cancel the rest.
        Nothing is lost: a step's effects are committed only when it completes."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:  # other workers may take these jobs at once instead of waiting for the leases to run out
            await self.store.release_leases(self.lease_owner, self._to_release | self._inflight.keys())
        except Exception:
            log.warning("could not give back this worker's leases; they run out by themselves")
        # status edits are cosmetic and re-done on the next step: do not wait out a rate limit
        for task in list(self._status_tasks.values()):
            task.cancel()
        await asyncio.gather(*self._status_tasks.values(), return_exceptions=True)

    async def _loop(self) -> None:
        # on PostgreSQL, other processes' new jobs, cancels and refreshes wake this runner at once
        async with self.store.due_signal(self._wake.set):
            await self._turns()

    async def _turns(self) -> None:
        try:
            # leases this worker held when it stopped (or died) are its own to take back at once
            await self.store.release_leases(self.worker_id or None)
            await self.sweep_spool()
        except Exception:
            log.exception("could not sweep the spool folder")
        while not self._stopping:
            self._wake.clear()
            if self.heartbeat is not None:
                self.heartbeat()
            try:
                wait = await self._claim_due()
            except Exception:  # the loop itself must never die (a locked database, say)
                log.exception("runner loop error")
                wait = 1.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
            if self.batch_window and not self._stopping:
                # steps end one by one: gather those that end together into one pass (one query
                # per lane claims them all), which costs at most this much lateness
                await asyncio.sleep(self.batch_window)

    async def _claim_due(self) -> float:
        """One pass: fill each lane's free slots with its due jobs, oldest due first; returns how
        long to wait for the next due job. No task waits for a slot: a full lane's due jobs stay
        in the store until a step of that lane ends (which wakes the loop)."""
        now = self.clock()
        await self._beat()
        await self._tend_leases()
        for lane, capacity in self._capacity.items():
            free = capacity - len(self._busy[lane])
            if free > 0:
                await self._fill(lane, free, now)
        wait = self.idle_wait
        if self._inflight:  # leases are extended only between waits: wake in time to extend them
            wait = min(wait, self.lease_seconds / 3)
        next_due = await self.store.next_due_at(after=now)
        if next_due is not None:
            wait = min(wait, max(0.0, (next_due - self.clock()).total_seconds()))
        return wait

    async def _fill(self, lane: Lane, free: int, now: datetime) -> None:
        """Claim a lane's due jobs and start them. Whatever a failing pass claimed but did not
        start is given back at once (else it would wait out its lease)."""
        name, kind = lane
        claim = functools.partial(self.store.claim_due, now, worker=self.lease_owner, lease_seconds=self.lease_seconds)
        claimed: list[Job] = []
        try:
            if lane == CHORES:
                claimed += await claim(limit=free, states=TERMINAL_STATES)
                if len(claimed) < free and (not self.worker_id or self._beats >= 2):
                    # live jobs of a provider this bot no longer has are failed with a reason; among
                    # several workers only those of a provider no running worker offers (the others
                    # may have it: a worker missing a key, a rolling upgrade), and only once workers
                    # started with this one have had a beat to say what they offer
                    offered = set(self.providers) | self._offered_elsewhere
                    claimed += await claim(limit=free - len(claimed), not_providers=offered, states=_LIVE_STATES)
            else:
                claimed += await claim(limit=free, provider=name,
                                       states=_POLL_STATES if kind == POLL else _WORK_STATES)
            jobs = [job for job in claimed if job.id not in self._inflight]  # still ending a step elsewhere
            batch = self._batchable(jobs, lane, now)
            if batch:
                riders = await self._claim_riders(lane, free - len(jobs), now, jobs)
                claimed += riders
                jobs += riders
                batch = self._batchable(jobs, lane, now)
            if len(batch) > 1:  # one list request answers them all
                self._spawn(batch, lane, self._drive_batch(batch, lane), f"jobs-{len(batch)}-{batch[0].id}")
                jobs = [job for job in jobs if job not in batch]
            for job in jobs:
                self._spawn([job], lane, self._drive(job, lane), f"job-{job.id}")
        except BaseException:
            idle = [job.id for job in claimed if job.id not in self._inflight]
            if idle:
                with contextlib.suppress(Exception):
                    await self.store.release_leases(self.lease_owner, idle)
            raise

    async def _beat(self) -> None:
        """Among several workers: say which providers this one offers, and learn what the others
        offer, now and then."""
        loop_now = asyncio.get_running_loop().time()
        if self.worker_id and loop_now - self._beaten_at >= WORKER_BEAT:
            self._beaten_at = loop_now
            now = self.clock()
            await self.store.beat_worker(self.worker_id, self.providers, now)
            self._offered_elsewhere = await self.store.offered_providers(now - timedelta(seconds=WORKER_ALIVE))
            self._beats += 1

    async def _tend_leases(self) -> None:
        """Give back the leases of steps that ended, and extend those still running well before
        they run out (a worker that stalls stops extending, and its jobs are taken over)."""
        if self._to_release:
            done, self._to_release = self._to_release, set()
            await self.store.release_leases(self.lease_owner, done - self._inflight.keys())
        loop_now = asyncio.get_running_loop().time()
        if self._inflight and loop_now - self._renewed_at > self.lease_seconds / 3:
            self._renewed_at = loop_now
            await self.store.renew_leases(self.lease_owner, list(self._inflight),
                                          self.clock() + timedelta(seconds=self.lease_seconds))

    def _spawn(self, jobs: list[Job], lane: Lane, step, name: str) -> None:
        task = asyncio.create_task(step, name=name)
        for job in jobs:
            self._busy[lane].add(job.id)
            self._inflight[job.id] = task
            task.add_done_callback(lambda _t, jid=job.id, ln=lane: self._step_done(jid, ln))

    def _batchable(self, jobs: list[Job], lane: Lane, now: datetime) -> list[Job]:
        """The plain status polls among a claimed poll lane's jobs, when the provider can answer
        several in one request (cancels, deadlines and jobs with errors go one by one)."""
        provider = self.providers.get(lane[0]) if lane[0] else None
        if lane[1] != POLL or provider is None or not provider.batch_status or self._not_before.get(lane[0], now) > now:
            return []
        return [j for j in jobs if j.remote_id and not j.cancel_requested and not j.attempts and not j.last_error
                and (j.deadline_at is None or now <= j.deadline_at) and provider.can_batch(j)
                and not _due_alone(j, provider, now)]

    async def _claim_riders(self, lane: Lane, free: int, now: datetime, claimed: list[Job]) -> list[Job]:
        """Jobs of a batched poll's provider due within its `batch_ahead_seconds`: the list request
        answers them too. Those it cannot answer are given back at once, to be polled when due."""
        provider = self.providers[lane[0]]
        if free <= 0 or provider.batch_ahead_seconds <= 0:
            return []
        taken = {job.id for job in claimed}
        early = await self.store.claim_due(now, worker=self.lease_owner, lease_seconds=self.lease_seconds, limit=free,
                                           provider=lane[0], states=_POLL_STATES,
                                           due_by=now + timedelta(seconds=provider.batch_ahead_seconds))
        early = [job for job in early if job.id not in taken and job.id not in self._inflight]
        riders = self._batchable(early, lane, now)
        if back := [job.id for job in early if job not in riders]:
            await self.store.release_leases(self.lease_owner, back)
        return riders

    async def _drive_batch(self, jobs: list[Job], lane: Lane) -> None:
        """Ask for several jobs' status at once, then take each job's step with its answer; a due job
        the answer left out (or a failed list call) is polled on its own as usual."""
        provider = self.providers[jobs[0].provider]
        try:
            statuses = await provider.poll_many(jobs)
        except RateLimited as exc:
            if not exc.local:
                self._not_before[provider.name] = self.clock() + timedelta(seconds=max(exc.retry_after, 1.0))
            statuses = {}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: status of %d jobs in one request failed: %s", provider.display_name, len(jobs), exc)
            statuses = {}
        # a rider taken along before it was due, and left out, waits for its own time (its last
        # poll may be more recent than the provider's minimum interval)
        now = self.clock()
        await asyncio.gather(*(self._drive(job, lane, status=statuses.get(job.id)) for job in jobs
                               if job.id in statuses or job.next_run_at <= now))

    async def sweep_spool(self) -> int:
        """Remove job folders in the spool that no live job (or owed chore) uses: left by a
        crash, or by jobs finished before chores were recorded. Returns how many went."""
        if not self.spool_dir.is_dir():
            return 0
        keep = await self.store.live_job_ids()
        orphans = [p for p in self.spool_dir.iterdir()
                   if p.is_dir() and looks_like_job_id(p.name) and p.name not in keep]
        for path in orphans:
            await asyncio.to_thread(shutil.rmtree, path, True)
        if orphans:
            log.info("removed %d orphaned spool folder(s)", len(orphans))
        return len(orphans)

    def _step_done(self, job_id: str, lane: Lane) -> None:
        self._inflight.pop(job_id, None)
        self._busy.get(lane, set()).discard(job_id)
        self._to_release.add(job_id)
        self._wake.set()

    # -- one step -------------------------------------------------------------------------------
    async def _drive(self, job: Job, lane: Lane = CHORES, status: RemoteStatus | None = None) -> None:
        try:
            await self._drive_once(job, lane, status)
        except StaleJob:  # taken over (our lease ran out): the new owner carries on, we write nothing
            log.info("job %s: taken over by another worker; leaving it to them", job.id)

    async def _drive_once(self, job: Job, lane: Lane, status: RemoteStatus | None) -> None:
        provider = self.providers.get(job.provider)
        if job.state.is_terminal:  # only chores are left: they need no provider slot
            try:
                await self._do_chores(job, provider)
            except StaleJob:
                pass
            except Exception:
                log.exception("job %s: could not do its finishing chores", job.id)
            return
        if provider is None:
            await self._fail(job, f"The {job.provider} service is not configured on this bot any more.")
            return
        # the lane's slot was taken when the job was claimed: no waiting here
        try:
            if lane[1] != POLL:  # a heavy step: start from the newest copy (a cancel, say)
                job = await self.store.reload(job)
            if not job.state.is_live:
                return
            blocked = (self._not_before.get(job.provider, self.clock()) - self.clock()).total_seconds()
            if blocked > 0 and job.state is not JobState.DELIVERING:
                # the provider said slow down (to another job): its limit covers the whole account
                job = await self._retry_later(job, blocked, count=False)
                return
            job = await self._step(job, provider, status)
            if job.state.is_live and (job.attempts or job.last_error):
                job = await self.store.update(job, attempts=0, last_error=None)  # the step worked
            if job.state.is_live and job.finish_pending:
                job = await self._do_chores(job, provider)
        except StaleJob:
            return  # moved by someone else (a cancel); the next pass reads it afresh
        except RateLimited as exc:
            wait = max(exc.retry_after, 1.0)
            if not exc.local:
                self._not_before[job.provider] = self.clock() + timedelta(seconds=wait)
            job = await self._retry_later(job, wait, count=False)
        except FINAL_ERRORS as exc:
            job = await self._fail(job, user_message(exc, provider.display_name))
        except discord.Forbidden:
            job = await self._fail(job, "The bot is not allowed to post in this channel any more.")
        except discord.NotFound:
            job = await self._fail(job, "The channel this job was started in no longer exists.")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ProviderError):
                log.warning("job %s: %s step failed: %s", job.id, job.state, exc)
            else:
                log.exception("job %s: %s step failed", job.id, job.state)
            job = await self._after_error(job, user_message(exc, provider.display_name), outage=is_outage(exc),
                                          poll_max=provider.limits.poll_max)
        self._show_soon(job.id, job if lane[1] == POLL else None)

    def _show_soon(self, job_id: str, seen: Job | None = None) -> None:
        """Refresh the status message in the background: Discord's edit rate limits must slow
        the card, never the job. Requests made while an edit is under way coalesce into one.
        `seen`, the row a status poll just wrote: when its card would look as shown, nothing is
        done (most polls of a waiting job change nothing a user sees)."""
        if (seen is not None and seen.state.is_live and seen.status_message_id is not None
                and job_id not in self._status_tasks and self._card_unchanged(seen)):
            return
        self._status_dirty.add(job_id)
        if job_id not in self._status_tasks:
            self._status_tasks[job_id] = asyncio.create_task(self._status_worker(job_id), name=f"status-{job_id}")

    def _card_unchanged(self, job: Job) -> bool:
        try:
            return self.delivery.status_payload(job)[2] == job.status_fingerprint
        except Exception:  # drawing failed: let the worker try (and log) it
            return False

    async def _status_worker(self, job_id: str) -> None:
        try:
            while job_id in self._status_dirty:
                self._status_dirty.discard(job_id)
                job = await self.store.get_job(job_id)
                if job is None:
                    continue
                wait = self.delivery.edit_wait(job)
                if wait > 0:  # throttled: show whatever is newest once the window has passed
                    await asyncio.sleep(wait)
                    self._status_dirty.add(job_id)
                    continue
                await self._show(job)
        finally:
            self._status_tasks.pop(job_id, None)

    async def _show(self, job: Job) -> None:
        try:
            await self.delivery.sync_status(job)
        except StaleJob:
            self._status_dirty.add(job.id)  # moved meanwhile: show the newer state
        except Exception:
            log.exception("job %s: could not update its status message", job.id)

    async def _step(self, job: Job, provider: Provider, status: RemoteStatus | None = None) -> Job:
        now = self.clock()
        # a submission whose answer was lost may exist (and be paid): find it first, then stop it
        unrecorded = job.submit_intent_at is not None and job.remote_id is None
        if job.cancel_requested and JobState.CANCELLED in TRANSITIONS[job.state] and not unrecorded:
            return await self._cancel(job, provider)
        waiting_on_provider = job.state in (JobState.ACCEPTED, JobState.SUBMITTED, JobState.RUNNING) or (
            job.state is JobState.UPLOADING and job.submit_intent_at is None)
        answered = status is not None and status.phase.is_terminal  # a batched poll's answer, in hand
        if job.deadline_at is not None and now > job.deadline_at and waiting_on_provider and not answered:
            # never once results exist (they are paid for) nor while a submission may exist unrecorded;
            # nor when a list request that began before the deadline came back with the job finished
            return await self._deadline(job, provider)
        workdir = self.spool_dir / job.id
        match job.state:
            case JobState.ACCEPTED:
                return await self.store.transition(job, JobState.UPLOADING, next_run_at=now)
            case JobState.UPLOADING:
                return await self._upload_and_submit(job, provider, workdir)
            case JobState.SUBMITTED | JobState.RUNNING:
                return await self._poll(job, provider, status)
            case JobState.COLLECTING:
                final = RemoteStatus(RemotePhase.SUCCEEDED, data=job.provider_data.get("_status", {}))
                workdir.mkdir(parents=True, exist_ok=True)
                artifacts = await provider.collect(job, final, workdir)
                cost = await provider.measured_cost(job, artifacts)
                if cost is not None:  # the card and the ledger record it
                    job = await self.store.update(job, provider_data={**job.provider_data, "_charge": cost})
                return await self.store.transition(job, JobState.DELIVERING, artifacts=tuple(artifacts),
                                                   next_run_at=self.clock(), progress=1.0, eta=None,
                                                   queue_position=None)
            case JobState.DELIVERING:
                if any(a.is_local and not a.path.exists() for a in job.artifacts):
                    log.warning("job %s: result files are gone from the spool; fetching them again", job.id)
                    return await self.store.transition(job, JobState.COLLECTING, artifacts=(),
                                                       next_run_at=self.clock())
                if job.remote_id:  # whoever reads the announcement may use the object at once
                    await self._chore(job, Chore.SAVED, provider)
                job = await self.delivery.deliver(job)
                return await self._end(job, JobState.DONE, provider, detail=None)
        return job

    async def _upload_and_submit(self, job: Job, provider: Provider, workdir: Path) -> Job:
        if job.submit_intent_at is not None:
            settle = provider.limits.reconcile_settle - (self.clock() - job.submit_intent_at).total_seconds()
            if settle > 0:  # a timed-out submission may still be landing: look only once it would show
                raise RateLimited(settle, local=True)
            try:
                remote_id = await provider.reconcile(job)
            except ReconcileUnknown as exc:
                # the lookup could not finish: look again later, never submit again on a guess;
                # past the job's deadline the user is told the submission may exist (and be paid)
                if job.deadline_at is not None and self.clock() > job.deadline_at:
                    raise SubmissionUnknown(exc.public) from exc
                raise RateLimited(exc.retry_after, exc.public, local=True) from exc
            if remote_id is not None:
                log.info("job %s: reconciled an earlier submission as %s", job.id, remote_id)
                return await self.store.transition(job, JobState.SUBMITTED, remote_id=remote_id,
                                                   next_run_at=self.clock(),
                                                   finish_pending=_with(job, Chore.SAVED))
            job = await self.store.update(job, submit_intent_at=None)
        if not job.provider_data.get("_uploaded"):
            workdir.mkdir(parents=True, exist_ok=True)
            data = await provider.upload(job, workdir)
            job = await self.store.update(job, provider_data={**job.provider_data, **data, "_uploaded": True})
        quote = job.provider_data.get("quote")
        if isinstance(quote, int | float):  # the provider priced it: book that before paying (idempotent)
            try:
                await self.store.requote_charge(job.id, float(quote))
            except BudgetExceeded as exc:
                return await self._fail(job, f"{provider.display_name} priced this at "
                                             f"{amount_words(job.provider, exc.amount)}, more than the "
                                             f"{amount_words(job.provider, exc.left)} left in this server's "
                                             "monthly budget; nothing was spent.")
        fresh = await self.store.reload(job)
        if fresh.cancel_requested:  # cancelled while uploading: stop before paying
            return await self._cancel(fresh, provider)
        job = await self.store.update(fresh, submit_intent_at=self.clock())
        try:
            remote_id, data = await provider.submit(job)
        except NOT_CREATED:
            await self.store.update(job, submit_intent_at=None)
            raise
        delay = provider.limits.poll_min
        return await self.store.transition(job, JobState.SUBMITTED, remote_id=remote_id,
                                           provider_data={**job.provider_data, **data},
                                           next_run_at=self.clock() + timedelta(seconds=delay),
                                           finish_pending=_with(job, Chore.SAVED))

    async def _poll(self, job: Job, provider: Provider, known: RemoteStatus | None = None) -> Job:
        status = known or await provider.poll(job)
        now = self.clock()
        # an answer clears earlier errors in the same write (readers never see one half cleared)
        fields = {"progress": status.progress, "queue_position": status.queue_position, "detail": status.detail,
                  "last_error": None, "attempts": 0}
        if status.preview_url:
            fields["preview_url"] = status.preview_url
        if status.phase is RemotePhase.SUCCEEDED:
            return await self.store.transition(job, JobState.COLLECTING, next_run_at=now, eta=None,
                                               provider_data={**job.provider_data, "_status": status.data,
                                                              **self._remote_seconds(job, now)},
                                               **fields)
        if status.phase is RemotePhase.FAILED:
            reason = status.error or "The provider reported the job as failed."
            if status.hint:
                reason = f"{reason}\nHint: {status.hint}"
            return await self._fail(job.evolve(**fields), reason)
        if status.phase is RemotePhase.CANCELLED:
            return await self._end(job, JobState.CANCELLED, provider, eta=None,
                                   last_error=f"Cancelled at {provider.display_name}.")
        clock = self._poll_clock(job)
        bounds = PollBounds(provider.limits.poll_min, provider.limits.poll_max)
        plan = plan_poll_with_eta(bounds, clock, phase=status.phase, progress=status.progress,
                                  queue_position=status.queue_position, now=now.timestamp(),
                                  typical_total=await self._typical_seconds(job))
        fields["eta"] = now + timedelta(seconds=plan.remaining) if plan.remaining is not None else None
        fields["next_run_at"] = now + timedelta(seconds=plan.delay)
        fields["provider_data"] = {**job.provider_data, "_poll": clock.to_json()}
        if known is None:
            fields["provider_data"]["_asked_alone"] = round(now.timestamp(), 3)
        if job.state is JobState.SUBMITTED and status.phase is RemotePhase.RUNNING:
            return await self.store.transition(job, JobState.RUNNING, **fields)
        return await self.store.update(job, **fields)

    def _poll_clock(self, job: Job) -> PollClock:
        """What the polling policy remembers of this job (kept with it, so a restart continues)."""
        submitted = job.updated_at if job.state is JobState.SUBMITTED else self.clock()
        return PollClock.from_json(job.provider_data.get("_poll"), submitted_at=submitted.timestamp())

    async def _typical_seconds(self, job: Job) -> float | None:
        """The early side of how long this kind of job took at the provider lately (read from the
        store once per kind, then kept up to date as jobs finish)."""
        key = (job.provider, job.kind)
        if key not in self._durations:
            history = DurationHistory()
            for seconds in reversed(await self.store.recent_remote_durations(job.provider, job.kind)):
                history.add(seconds)
            self._durations[key] = history
        return self._durations[key].typical()

    def _remote_seconds(self, job: Job, now: datetime) -> dict:
        """Note how long the provider took, for the next jobs' polling."""
        if "_poll" not in job.provider_data:
            return {}
        seconds = now.timestamp() - self._poll_clock(job).submitted_at
        if (job.provider, job.kind) in self._durations:
            self._durations[(job.provider, job.kind)].add(seconds)
        return {"_remote_seconds": round(seconds, 1)}

    # -- endings and retries ----------------------------------------------------------------------
    async def _retry_later(self, job: Job, delay: float, *, count: bool, error: str | None = None) -> Job:
        current = await self.store.reload(job)
        if current.state.is_terminal:
            return current
        attempts = current.attempts + 1 if count else current.attempts
        return await self.store.update(current, attempts=attempts, last_error=error,
                                       next_run_at=self.clock() + timedelta(seconds=delay))

    async def _after_error(self, job: Job, message: str, *, outage: bool = False, poll_max: float = 300.0) -> Job:
        current = await self.store.reload(job)
        if current.state is JobState.DELIVERING and outage:
            # the work is done and paid for: a Discord outage only delays it (backoff capped at 5 min)
            return await self._retry_later(current, retry_backoff(current.attempts + 1), count=True, error=message)
        if outage and current.remote_id and current.state in _PAID_STEPS:
            # paid work exists at the provider: an outage only delays it, backing off no further than
            # the provider's poll interval; the deadline (while waiting) is what ends it, never attempts
            delay = retry_backoff(current.attempts + 1, cap=poll_max)
            return await self._retry_later(current, delay, count=True, error=message)
        if current.attempts + 1 >= self.max_attempts:
            return await self._fail(current, f"Gave up after {current.attempts + 1} attempts. {message}")
        return await self._retry_later(current, retry_backoff(current.attempts + 1), count=True, error=message)

    async def _fail(self, job: Job, reason: str) -> Job:
        current = await self.store.reload(job)
        if current.state.is_terminal:
            return current
        return await self._end(current, JobState.FAILED, self.providers.get(job.provider), last_error=reason,
                               eta=None, progress=job.progress, detail=job.detail)

    async def _end(self, job: Job, state: JobState, provider: Provider | None, **changes) -> Job:
        """Write the job's end together with the chores it owes, then do them. A crash after the
        write leaves them on the row for the next pass, so nothing of the ending is lost."""
        current = await self.store.reload(job)
        # the saved object first: the result card's follow-up buttons offer it as soon as they show
        owed = [Chore.SAVED] if state is JobState.DONE and current.remote_id else []
        owed.append(Chore.CARD)
        if state is JobState.FAILED:
            owed.append(Chore.NOTICE)
        owed += [Chore.SPOOL, Chore.SETTLE]  # the charge last: bookkeeping, after what users see
        ended = await self.store.transition(current, state, finish_pending=_with(current, *owed),
                                            next_run_at=self.clock(), attempts=0, **changes)
        return await self._do_chores(ended, provider)

    async def _cancel(self, job: Job, provider: Provider) -> Job:
        refused = None
        if job.remote_id:
            try:
                refused = await provider.cancel(job)
            except (Transient, RateLimited):
                raise  # the provider is down or busy, not saying no: the cancel stays asked, and is retried
            except ProviderError as exc:
                refused = str(exc)
        if refused is not None:
            # the remote job runs on and will be billed: it keeps its slot, and its results are
            # delivered since they are paid for; the owner is told so
            log.info("job %s: %s did not stop the remote job: %s", job.id, provider.display_name, refused)
            job = await self.store.update(job, cancel_requested=False, cancel_refused_at=self.clock(),
                                          next_run_at=self.clock(), finish_pending=_with(job, Chore.CANCEL_REFUSED))
            return job
        return await self._end(job, JobState.CANCELLED, provider, eta=None, last_error="Cancelled on request.")

    async def _deadline(self, job: Job, provider: Provider) -> Job:
        if job.remote_id:
            try:
                await provider.cancel(job)
            except ProviderError:
                pass
        minutes = provider.limits.deadline_for(job.kind) / 60
        return await self._fail(job, f"{provider.display_name} did not finish within {minutes:g} minutes, "
                                     "so the bot stopped waiting. The job may be stuck on their side; "
                                     "please try again.")


    # -- chores (the outbox) ------------------------------------------------------------------------
    async def _do_chores(self, job: Job, provider: Provider | None) -> Job:
        """Do each chore the row owes, striking it off once done. What fails stays owed: a finished
        job is due again after a backoff; a live one retries at its next step."""
        job = await self.store.reload(job)
        for name in list(job.finish_pending):
            try:
                done = await self._chore(job, name, provider)
            except asyncio.CancelledError:
                raise
            except (discord.NotFound, discord.Forbidden) as exc:  # the channel is gone or closed to us
                log.warning("job %s: chore %s cannot be done: %s", job.id, name, exc)
                done = True
            except Exception as exc:
                # outages are waited out; anything else is tried a few times, then dropped
                done = not is_outage(exc) and job.state.is_terminal and job.attempts + 1 >= self.max_attempts
                log.log(logging.ERROR if done else logging.WARNING, "job %s: chore %s failed%s: %s", job.id, name,
                        ", giving up on it" if done else ", will try again", exc, exc_info=not is_outage(exc))
            if done:
                fresh = await self.store.reload(job)
                job = await self.store.update(fresh, finish_pending=tuple(c for c in fresh.finish_pending if c != name))
        if job.finish_pending and job.state.is_terminal:
            attempts = job.attempts + 1
            job = await self.store.update(job, attempts=attempts,
                                          next_run_at=self.clock() + timedelta(seconds=retry_backoff(attempts)))
        return job

    async def _chore(self, job: Job, name: str, provider: Provider | None) -> bool:
        """One chore, idempotently; True when done (or when it can never be done)."""
        match name:
            case Chore.CARD:
                return await self.delivery.show_final(job)
            case Chore.NOTICE:
                await self.delivery.notify_failure(job)
            case Chore.CANCEL_REFUSED:
                await self.delivery.notify_cancel_refused(job)
            case Chore.SAVED:
                saved = provider.saved_object(job) if provider is not None else None
                if saved is not None:
                    await self.store.save_object(saved)
            case Chore.SPOOL:
                await self._clean(job)
            case Chore.SETTLE:  # book what the job really cost, or refund it (idempotent)
                amount = settled_amount(job)
                if amount is not None:
                    await self.store.settle_charge(job.id, amount)
            case _:
                log.warning("job %s: unknown chore %r dropped", job.id, name)
        return True

    async def _clean(self, job: Job) -> None:
        """Drop the job's spool files (large; removed in a thread)."""
        await asyncio.to_thread(shutil.rmtree, self.spool_dir / job.id, True)


def _due_alone(job: Job, provider: Provider, now: datetime) -> bool:
    """Whether a listed job is due to be asked about on its own (ASK_ALONE_EVERY, or a quarter of
    its deadline if rarer), counted from the last time it was (else from when it was made)."""
    value = job.provider_data.get("_asked_alone")
    asked = float(value) if isinstance(value, int | float) else job.created_at.timestamp()
    return now.timestamp() - asked >= max(ASK_ALONE_EVERY, provider.limits.deadline_for(job.kind) / 4)


def _with(job: Job, *chores: Chore) -> tuple[str, ...]:
    """The job's owed chores plus these, each once, in order."""
    return tuple(dict.fromkeys([*job.finish_pending, *map(str, chores)]))
