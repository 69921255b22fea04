"""The process scheduler: wakes early only for a retry due before its planned wake-up,
checks every schedule within a bounded rate, and serves each schedule on its own."""

from __future__ import annotations

from redrive.runtime.scheduler import CHECKS_PER_SECOND, Schedule, Scheduler


def schedule(s: Scheduler, name: str = "orders") -> Schedule:
    return s.add(
        client=None,  # type: ignore[arg-type]
        due_key=f"retry:{{{name}}}:g:due",
        retry_key=f"retry:{{{name}}}:g",
        stream=name,
    )


def test_a_retry_due_after_the_wake_up_does_not_wake_the_loop() -> None:
    s = Scheduler(interval=1.0)
    orders = schedule(s)
    s._changed.clear()
    s.wakes_at_ms = 10_000.0

    orders.scheduled(12_000)
    assert not s._changed.is_set()
    assert orders.wake_ms == 0.0  # never checked yet: at once

    orders.scheduled(9_000)
    assert s._changed.is_set()


def test_an_awake_loop_is_always_told() -> None:
    s = Scheduler(interval=1.0)
    orders = schedule(s)
    s._changed.clear()  # wakes_at_ms == 0: promoting right now, it must look again
    orders.scheduled(50_000)
    assert s._changed.is_set()


def test_an_own_retry_sets_when_its_schedule_needs_the_loop() -> None:
    s = Scheduler(interval=1.0)
    orders = schedule(s)
    orders.check_ms = 90_000.0
    orders.scheduled(70_000)
    orders.scheduled(60_000)
    assert orders.wake_ms == 60_000


def test_checks_are_spread_so_the_rate_does_not_grow_with_handlers() -> None:
    s = Scheduler(interval=1.0)
    schedule(s, "a")
    assert s.check_every_ms == 1000.0  # few handlers: the interval
    for i in range(99):
        schedule(s, f"s{i}")
    # 100 handlers: each checked every 10 s, the process still CHECKS_PER_SECOND per second
    assert len(s.schedules) / (s.check_every_ms / 1000) == CHECKS_PER_SECOND
