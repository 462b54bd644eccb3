"""ListWatch: when a batched status list has said the same unfinished thing for too long."""

from bot.providers.list_watch import ListWatch


def test_an_entry_unchanged_for_long_is_distrusted_once_and_a_change_restarts_the_watch():
    now = [0.0]
    watch = ListWatch(clock=lambda: now[0])
    assert watch.trust("a", ("queued", 0.0), 300)
    now[0] = 299.0
    assert watch.trust("a", ("queued", 0.0), 300)
    now[0] = 300.0
    assert not watch.trust("a", ("queued", 0.0), 300)  # polled alone once...
    assert watch.trust("a", ("queued", 0.0), 300)  # ...then watched afresh
    now[0] = 550.0
    assert watch.trust("a", ("in-progress", 0.1), 300)  # it moved
    now[0] = 800.0
    assert watch.trust("a", ("in-progress", 0.1), 300)  # 250 s since it moved
    watch.forget("a")
    now[0] = 5000.0
    assert watch.trust("a", ("in-progress", 0.1), 300)  # forgotten: a new watch
