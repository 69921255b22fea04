"""The scheduler wakes early only for a retry due before its planned wake-up."""

from __future__ import annotations

from redrive.runtime.scheduler import Scheduler


def scheduler() -> Scheduler:
    return Scheduler(
        client=None,  # type: ignore[arg-type]
        due_key="retry:{orders}:g:due",
        retry_key="retry:{orders}:g",
        interval=0.1,
    )


def test_a_retry_due_after_the_wake_up_does_not_wake_the_loop() -> None:
    s = scheduler()
    s.wakes_at_ms = 10_000.0

    s.scheduled(12_000)
    assert not s._changed.is_set()

    s.scheduled(9_000)
    assert s._changed.is_set()


def test_an_awake_loop_is_always_told() -> None:
    s = scheduler()  # wakes_at_ms == 0: promoting right now, it must look again
    s.scheduled(50_000)
    assert s._changed.is_set()
