"""When to ask a provider again: a pure policy, no I/O, so it can be tested and benchmarked alone.

Polling too often wastes the provider's rate budget; too rarely makes results late. The policy
aims each poll at the job's predicted end (`plan_poll_with_eta`):
- queued: the further back in the queue, the longer the wait (and never sooner than the typical
  run of the kind would allow);
- running with progress: from the pace since the first progress seen; a steady pace is aimed at
  closely, progress that jumps in checkpoints only halfway;
- running without progress: from how long recent jobs of the same kind took;
- always inside the provider's [min, max] bounds, and never sooner than a 429's Retry-After.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from bot.models import RemotePhase


@dataclass(frozen=True, slots=True)
class PollBounds:
    minimum: float
    maximum: float

    def clamp(self, seconds: float) -> float:
        return max(self.minimum, min(self.maximum, seconds))


#: progress below this is too little to extrapolate from
MIN_PROGRESS_FOR_ETA = 0.02
#: a pace measured over this much progress predicts the end well enough to aim close to it
TRUSTED_PROGRESS = 0.1
#: the wait between polls once a job is past its predicted end: the longest that still sees a
#: finished job within 5 s (polling at the provider's 3 s minimum there costs half as many polls
#: again for a result 1 s sooner on average)
FINAL_STEP = 4.5
#: progress that moves by more than this between two polls comes in checkpoints, which lag
SMALL_STEP = 0.1


def eta_seconds(progress: float | None, running_for: float | None) -> float | None:
    """Remaining seconds if progress keeps its average pace so far; None when unknowable."""
    if progress is None or running_for is None or running_for <= 0:
        return None
    if progress >= 1:
        return 0.0
    if progress < MIN_PROGRESS_FOR_ETA:
        return None
    return running_for * (1 - progress) / progress


def retry_backoff(attempts: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Wait after the n-th failed attempt of a step: 2, 4, 8 … seconds, capped."""
    return min(cap, base * 2 ** min(max(0, attempts - 1), 32))  # a days-long outage must not overflow


@dataclass(slots=True)
class PollClock:
    """What the policy remembers of one job between polls (the runner persists it with the job):
    when it was first seen running and its first reported progress, since the pace from then on is
    what predicts the rest (after a restart, or when the first poll already shows 60%)."""

    submitted_at: float = 0.0
    running_since: float | None = None
    progress0: tuple[float, float] | None = None
    #: the previous progress report, to tell a steady pace from one that moves in steps
    last: tuple[float, float] | None = None
    #: when the job was last seen queued: it cannot have started running before
    queued_at: float | None = None

    def to_json(self) -> dict:
        return {"submitted_at": self.submitted_at, "running_since": self.running_since,
                "progress0": list(self.progress0) if self.progress0 else None,
                "last": list(self.last) if self.last else None, "queued_at": self.queued_at}

    @classmethod
    def from_json(cls, data: dict | None, submitted_at: float) -> PollClock:
        data = data or {}

        def pair(key: str) -> tuple[float, float] | None:
            value = data.get(key)
            return (float(value[0]), float(value[1])) if value else None

        return cls(submitted_at=data.get("submitted_at", submitted_at), running_since=data.get("running_since"),
                   progress0=pair("progress0"), last=pair("last"), queued_at=data.get("queued_at"))


@dataclass(slots=True)
class DurationHistory:
    """Recent total durations (submission to finish) of one kind of job: their median is the prior
    for jobs whose provider reports no progress."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=25))

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)

    def typical(self) -> float | None:
        """An early-side estimate (the 20th percentile): polls aimed there then tighten to the
        minimum, so most jobs are seen promptly while few polls are spent before."""
        if len(self.recent) < 3:
            return None
        return statistics.quantiles(self.recent, n=5, method="inclusive")[0]


@dataclass(frozen=True, slots=True)
class PollPlan:
    delay: float
    #: seconds left as predicted, for the card's ETA (None when unknowable)
    remaining: float | None


def plan_poll(bounds: PollBounds, clock: PollClock, *, phase: RemotePhase, progress: float | None,
              queue_position: int | None, now: float, typical_total: float | None = None,
              retry_after: float | None = None) -> float:
    """Seconds until the next poll; see `plan_poll_with_eta`."""
    return plan_poll_with_eta(bounds, clock, phase=phase, progress=progress, queue_position=queue_position,
                              now=now, typical_total=typical_total, retry_after=retry_after).delay


def plan_poll_with_eta(bounds: PollBounds, clock: PollClock, *, phase: RemotePhase, progress: float | None,
                       queue_position: int | None, now: float, typical_total: float | None = None,
                       retry_after: float | None = None) -> PollPlan:
    """The next poll of an unfinished job, aimed at its predicted end.

    The end is predicted from the pace of reported progress since it was first seen, or, when the
    provider reports none, from the durations of recent jobs of the same kind (their early side,
    so most jobs are seen promptly). Far from the end the wait is a share of the time left (a few
    polls, converging; a pace measured over a good share of the job is trusted more, so close to
    the end the wait shrinks to the provider's minimum); a job past its predicted end is polled
    every `FINAL_STEP` (never below that minimum), stretching slowly as it grows overdue. Updates `clock`.
    """
    elapsed = now - clock.submitted_at
    by_history = typical_total - elapsed if typical_total is not None else None
    remaining: float | None = None
    if phase is RemotePhase.QUEUED:
        clock.queued_at = now
        ahead = max(0, queue_position or 0)
        delay = bounds.minimum * (1 + 0.5 * ahead)
        if by_history is not None:  # a queued job is at least its run away from the end
            delay = max(delay, by_history / 2)
    else:
        if clock.running_since is None:
            clock.running_since = now
        share, untold = 0.5, False
        if progress is not None:
            if clock.progress0 is None or progress < clock.progress0[0]:
                clock.progress0 = (progress, now)
            p0, t0 = clock.progress0
            if progress >= 1:
                remaining = 0.0
            elif progress > p0:
                remaining = eta_seconds((progress - p0) / (1 - p0), now - t0)
                if remaining is not None and progress - p0 >= TRUSTED_PROGRESS and _steady(clock, progress, now):
                    share = 0.8
            elif clock.last is None:
                # the first report already shows progress: it was made since the job was last
                # seen queued at the latest, so the slowest pace it allows gives the latest end;
                # halfway there, the next report measures the real pace. That end is an upper
                # bound, not an estimate: the card is not told it.
                remaining = eta_seconds(progress, now - (clock.queued_at or clock.submitted_at))
                untold = True
            clock.last = (progress, now)
        if by_history is not None and remaining is None:
            # no progress: recent jobs of the kind know best (their early side already leans
            # early, so most of the way there is aimed at). Reported progress, even in lagging
            # steps, knows this job better than they do.
            remaining, share = by_history, 0.8
        if remaining is None:
            delay = (now - clock.running_since) / 10
        elif remaining > 0:
            delay = remaining * share
            if untold:  # recent jobs may know a nearer end; they are the card's estimate too
                remaining = by_history if by_history is not None and by_history > 0 else None
                if remaining is not None:
                    delay = min(delay, remaining * 0.8)
        else:
            delay = max(bounds.minimum, FINAL_STEP) - remaining / 100  # overdue: stretch slowly
            remaining = None
    delay = bounds.clamp(delay)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return PollPlan(delay, remaining)


def _steady(clock: PollClock, progress: float, now: float) -> bool:
    """Whether progress since the last report moved by a small step at the average pace (within
    15%): then it is reported continuously, not in lagging checkpoints, and the end it predicts
    can be aimed at."""
    if clock.progress0 is None or clock.last is None or now <= clock.last[1] or clock.last[1] <= clock.progress0[1]:
        return False
    p0, t0 = clock.progress0
    average = (progress - p0) / (now - t0)
    recent = (progress - clock.last[0]) / (now - clock.last[1])
    small_steps = progress - clock.last[0] <= SMALL_STEP
    return small_steps and average > 0 and abs(recent - average) <= 0.15 * average
