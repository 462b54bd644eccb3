"""When to ask a provider again: a pure policy, no I/O, so it can be tested and benchmarked alone.

Polling too often wastes the provider's rate budget; too rarely makes results late. The policy:
- queued: the further back in the queue, the longer the wait;
- running with progress: aim for about four polls across the estimated remaining time, so polls
  get denser as the job nears its end;
- running without progress: wait a tenth of the time it has run so far (long jobs, rare polls);
- always inside the provider's [min, max] bounds, and never sooner than a 429's Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import RemotePhase


@dataclass(frozen=True, slots=True)
class PollBounds:
    minimum: float
    maximum: float

    def clamp(self, seconds: float) -> float:
        return max(self.minimum, min(self.maximum, seconds))


#: progress below this is too little to extrapolate from
MIN_PROGRESS_FOR_ETA = 0.02


def eta_seconds(progress: float | None, running_for: float | None) -> float | None:
    """Remaining seconds if progress keeps its average pace so far; None when unknowable."""
    if progress is None or running_for is None or running_for <= 0:
        return None
    if progress >= 1:
        return 0.0
    if progress < MIN_PROGRESS_FOR_ETA:
        return None
    return running_for * (1 - progress) / progress


def next_poll_delay(
    bounds: PollBounds,
    *,
    phase: RemotePhase,
    progress: float | None = None,
    queue_position: int | None = None,
    running_for: float | None = None,
    retry_after: float | None = None,
) -> float:
    """Seconds until the next poll of a job that is not finished."""
    if phase is RemotePhase.QUEUED:
        ahead = max(0, queue_position or 0)
        delay = bounds.minimum * (1 + 0.5 * ahead)
    else:
        remaining = eta_seconds(progress, running_for)
        if remaining is not None:
            delay = remaining / 4
        elif running_for is not None:
            delay = running_for / 10
        else:
            delay = bounds.minimum
    delay = bounds.clamp(delay)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def retry_backoff(attempts: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Wait after the n-th failed attempt of a step: 2, 4, 8 … seconds, capped."""
    return min(cap, base * 2 ** min(max(0, attempts - 1), 32))  # a days-long outage must not overflow
