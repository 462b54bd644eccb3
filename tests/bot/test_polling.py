"""The polling policy: bounded, adaptive to queue position and progress, honouring Retry-After."""

from __future__ import annotations

import pytest

from bot.models import RemotePhase
from bot.polling import PollBounds, eta_seconds, next_poll_delay, retry_backoff

BOUNDS = PollBounds(2.0, 60.0)


def test_queue_position_stretches_the_wait_within_bounds():
    near = next_poll_delay(BOUNDS, phase=RemotePhase.QUEUED, queue_position=1)
    far = next_poll_delay(BOUNDS, phase=RemotePhase.QUEUED, queue_position=20)
    very_far = next_poll_delay(BOUNDS, phase=RemotePhase.QUEUED, queue_position=10_000)
    assert BOUNDS.minimum <= near < far <= very_far == BOUNDS.maximum


def test_polls_get_denser_as_the_end_nears():
    early = next_poll_delay(BOUNDS, phase=RemotePhase.RUNNING, progress=0.2, running_for=60)
    late = next_poll_delay(BOUNDS, phase=RemotePhase.RUNNING, progress=0.9, running_for=270)
    assert early == pytest.approx(60.0)  # 240 s left -> 60 s, at the cap
    assert late == pytest.approx(7.5)  # 30 s left -> a quarter of it
    assert late < early


def test_without_progress_the_wait_grows_with_running_time():
    short = next_poll_delay(BOUNDS, phase=RemotePhase.RUNNING, running_for=10)
    long = next_poll_delay(BOUNDS, phase=RemotePhase.RUNNING, running_for=300)
    assert short == BOUNDS.minimum and long == 30


def test_retry_after_wins_even_past_the_maximum():
    assert next_poll_delay(BOUNDS, phase=RemotePhase.RUNNING, running_for=1, retry_after=90) == 90
    assert next_poll_delay(BOUNDS, phase=RemotePhase.QUEUED, queue_position=0, retry_after=0.5) == BOUNDS.minimum


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
