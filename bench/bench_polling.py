"""Adaptive polling (bot/polling.py) against fixed-interval polling, on simulated jobs.

For jobs of several lengths (queue wait plus a run whose progress is reported linearly), count the
polls each policy makes and how late it notices completion. Prints one table; no pass/fail.
Run: python bench/bench_polling.py
"""

from __future__ import annotations

from bot.models import RemotePhase
from bot.polling import PollBounds, next_poll_delay

BOUNDS = PollBounds(3.0, 60.0)


def simulate(queue_s: float, run_s: float, policy) -> tuple[int, float]:
    """Returns (polls, seconds between completion and the poll that saw it)."""
    t, polls = 0.0, 0
    end = queue_s + run_s
    while True:
        polls += 1
        if t >= end:
            return polls, t - end
        if t < queue_s:
            position = max(1, int((queue_s - t) / 30) + 1)  # one job ahead per 30 s of wait
            t += policy(RemotePhase.QUEUED, None, position, None)
        else:
            running_for = t - queue_s
            t += policy(RemotePhase.RUNNING, running_for / run_s, None, running_for)


def adaptive(phase, progress, position, running_for) -> float:
    return next_poll_delay(BOUNDS, phase=phase, progress=progress, queue_position=position, running_for=running_for)


def fixed(seconds: float):
    return lambda *_: seconds


def main() -> None:
    # lengths deliberately not multiples of the fixed intervals, as real jobs are
    cases = [(0, 37), (64, 127), (311, 613), (607, 1843), (0, 8 * 3600 + 13)]
    policies = [("adaptive 3-60 s", adaptive), ("fixed 5 s", fixed(5)), ("fixed 30 s", fixed(30))]
    print(f"{'job (queue + run)':<22}" + "".join(f"{name:>26}" for name, _ in policies))
    print(f"{'':<22}" + "".join(f"{'polls':>14}{'late (s)':>12}" for _ in policies))
    totals = {name: [0, 0.0] for name, _ in policies}
    for queue_s, run_s in cases:
        row = f"{f'{queue_s:g} s + {run_s:g} s':<22}"
        for name, policy in policies:
            polls, late = simulate(queue_s, run_s, policy)
            totals[name][0] += polls
            totals[name][1] += late
            row += f"{polls:>14}{late:>12.1f}"
        print(row)
    print(f"{'total':<22}" + "".join(f"{totals[n][0]:>14}{totals[n][1]:>12.1f}" for n, _ in policies))


if __name__ == "__main__":
    main()
