"""The polling policy: bounded, adaptive to queue position and progress, honouring Retry-After."""

from __future__ import annotations

import pytest

from bot.models import RemotePhase
from bot.polling import PollBounds, eta_seconds, retry_backoff

BOUNDS = PollBounds(2.0, 60.0)


def _plan(bounds=BOUNDS, **kw):
    from bot.polling import PollClock, plan_poll
    kw.setdefault("progress", None)
    kw.setdefault("queue_position", None)
    kw.setdefault("now", 0.0)
    return plan_poll(bounds, PollClock(), **kw)


def test_queue_position_stretches_the_wait_within_bounds():
    near = _plan(phase=RemotePhase.QUEUED, queue_position=1)
    far = _plan(phase=RemotePhase.QUEUED, queue_position=20)
    very_far = _plan(phase=RemotePhase.QUEUED, queue_position=10_000)
    assert BOUNDS.minimum <= near < far <= very_far == BOUNDS.maximum


def test_without_progress_or_history_the_wait_grows_with_running_time():
    from bot.polling import PollClock, plan_poll
    clock = PollClock()
    first = plan_poll(BOUNDS, clock, phase=RemotePhase.RUNNING, progress=None, queue_position=None, now=0)
    later = plan_poll(BOUNDS, clock, phase=RemotePhase.RUNNING, progress=None, queue_position=None, now=300)
    assert first == BOUNDS.minimum and later == 30


def test_retry_after_wins_even_past_the_maximum():
    assert _plan(phase=RemotePhase.RUNNING, retry_after=90) == 90
    assert _plan(phase=RemotePhase.QUEUED, queue_position=0, retry_after=0.5) == BOUNDS.minimum


def test_eta_extrapolates_the_average_pace():
    assert eta_seconds(0.25, 100) == pytest.approx(300)
    assert eta_seconds(1.0, 100) == 0
    assert eta_seconds(0.01, 100) is None  # too little to extrapolate from
    assert eta_seconds(None, 100) is None
    assert eta_seconds(0.5, None) is None


def test_backoff_doubles_and_caps():
    assert [retry_backoff(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert retry_backoff(30) == 300


def test_backoff_stays_capped_after_thousands_of_attempts():
    from bot.polling import retry_backoff

    assert retry_backoff(5000, cap=120) == 120  # a paid job through a days-long outage


def _run(bounds, clock, reports, typical=None):
    """Feed (time, phase, progress) reports to the policy; returns the delays it chose."""
    from bot.polling import plan_poll
    return [plan_poll(bounds, clock, phase=phase, progress=progress, queue_position=None, now=t,
                      typical_total=typical) for t, phase, progress in reports]


def test_a_steady_pace_is_aimed_at_closely_and_the_end_is_polled_at_the_minimum():
    from bot.polling import PollClock
    bounds = PollBounds(3.0, 30.0)
    clock = PollClock()
    # 1% per second: 100 s in all
    delays = _run(bounds, clock, [(0, RemotePhase.RUNNING, 0.0), (10, RemotePhase.RUNNING, 0.1),
                                  (20, RemotePhase.RUNNING, 0.2),
                                  (80, RemotePhase.RUNNING, 0.8), (90, RemotePhase.RUNNING, 0.9),
                                  (99, RemotePhase.RUNNING, 0.99)])
    assert delays[0] == bounds.minimum  # nothing to go by yet
    assert delays[1] == pytest.approx(30.0)  # 90 s left -> capped
    assert delays[4] == pytest.approx(8.0)  # 10 s left at a steady pace -> 80% of it
    assert delays[5] == bounds.minimum


def test_checkpoints_that_jump_are_not_trusted_as_a_steady_pace():
    from bot.polling import PollClock
    bounds = PollBounds(3.0, 300.0)
    steady, jumpy = PollClock(), PollClock()
    a = _run(bounds, steady, [(0, RemotePhase.RUNNING, 0.0), (10, RemotePhase.RUNNING, 0.05),
                              (20, RemotePhase.RUNNING, 0.10), (28, RemotePhase.RUNNING, 0.14)])
    b = _run(bounds, jumpy, [(0, RemotePhase.RUNNING, 0.0), (10, RemotePhase.RUNNING, 0.0),
                             (20, RemotePhase.RUNNING, 0.0), (28, RemotePhase.RUNNING, 0.6)])
    assert a[-1] == pytest.approx((200 - 28) * 0.8)
    assert b[-1] == pytest.approx(28 * 0.4 / 0.6 * 0.5)  # only half of what the jump predicts


def test_without_progress_recent_durations_of_the_kind_set_the_pace():
    from bot.polling import FINAL_STEP, DurationHistory, PollClock
    history = DurationHistory()
    assert history.typical() is None  # too few to go by
    for seconds in (100, 110, 120, 130, 140):
        history.add(seconds)
    typical = history.typical()
    assert 100 <= typical < 120  # the early side, so most jobs are seen promptly
    bounds = PollBounds(3.0, 120.0)
    delays = _run(bounds, PollClock(), [(0, RemotePhase.RUNNING, None), (50, RemotePhase.RUNNING, None),
                                        (typical + 5, RemotePhase.RUNNING, None),
                                        (typical + 200, RemotePhase.RUNNING, None)], typical=typical)
    assert delays[0] == pytest.approx(typical * 0.8)  # most of the way to the early side
    assert delays[1] == pytest.approx((typical - 50) * 0.8)
    assert delays[2] == pytest.approx(FINAL_STEP + 0.05)  # just past it: the final step
    assert delays[3] == pytest.approx(FINAL_STEP + 2)  # long overdue: stretched slowly
    # the final step keeps a finished job's lateness under 5 s, and never undercuts the provider
    assert FINAL_STEP < 5
    assert _run(PollBounds(10.0, 120.0), PollClock(), [(0, RemotePhase.RUNNING, None),
                                                       (typical + 5, RemotePhase.RUNNING, None)],
                typical=typical)[1] == pytest.approx(10.05)


def test_a_poll_clock_survives_a_round_trip_through_json():
    from bot.polling import PollClock
    clock = PollClock(submitted_at=5.0, running_since=7.0, progress0=(0.1, 8.0), last=(0.3, 12.0))
    assert PollClock.from_json(clock.to_json(), submitted_at=0.0) == clock
    assert PollClock.from_json(None, submitted_at=3.0) == PollClock(submitted_at=3.0)


def test_progress_already_made_at_the_first_report_is_paced_from_the_last_queued_sighting():
    """Scenario's job was queued at the last poll and is 48% done at this one: it ran for at most
    the time between, so the slowest pace it allows puts the end 65 s away, and the next poll
    goes halfway there to measure the real pace (not at a blind guess, nor at the cap)."""
    from bot.polling import PollClock
    bounds = PollBounds(3.0, 120.0)
    clock = PollClock()
    delays = _run(bounds, clock, [(0, RemotePhase.QUEUED, None), (60, RemotePhase.RUNNING, 0.48)])
    assert clock.queued_at == 0 and delays[1] == pytest.approx(0.5 * 60 * 0.52 / 0.48)
    later = PollClock(queued_at=30.0)  # seen queued later: a shorter run, an earlier end
    assert _run(bounds, later, [(60, RemotePhase.RUNNING, 0.48)])[0] == pytest.approx(0.5 * 30 * 0.52 / 0.48)
    assert PollClock.from_json(later.to_json(), submitted_at=0.0) == later  # kept across restarts


def test_the_card_is_not_told_the_slowest_pace_as_its_eta():
    """2% done at the first report, 30 s after it was seen queued: the latest end that allows is
    25 min away, but recent jobs of the kind took 60 s; the card says what they say, and the next
    poll goes most of the way to their estimate (without them: halfway to that latest end)."""
    from bot.polling import PollClock, plan_poll_with_eta

    bounds = PollBounds(3.0, 3600.0)
    plan = plan_poll_with_eta(bounds, PollClock(queued_at=0.0), phase=RemotePhase.RUNNING, progress=0.02,
                              queue_position=None, now=30.0, typical_total=60.0)
    assert plan.delay == pytest.approx(0.8 * 30) and plan.remaining == pytest.approx(30.0)
    unknown = plan_poll_with_eta(bounds, PollClock(queued_at=0.0), phase=RemotePhase.RUNNING, progress=0.02,
                                 queue_position=None, now=30.0)
    assert unknown.remaining is None  # no estimate rather than a wrong one
    assert unknown.delay == pytest.approx(0.5 * 30 * 0.98 / 0.02)
