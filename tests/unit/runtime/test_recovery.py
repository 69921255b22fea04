"""Recovery's admission of re-delivered entries (no Redis: the counts are given)."""

from __future__ import annotations

from redrive.runtime.buffer import Buffer
from redrive.runtime.recovery import DELIVERY_BOUND, Recovery
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.stats import Stats
from tests.unit.runtime.fakes import MAIN, RETRY, FakeSettler, entries
from tests.unit.runtime.test_acks import batcher


def recovery(max_deliveries: int = 5) -> Recovery:
    spec = HandlerSpec("orders", "g", print, False, max_deliveries=max_deliveries)
    return Recovery(
        client=None,  # type: ignore[arg-type]  # admit() asks nothing of Redis
        spec=spec,
        consumer="c1",
        sources=(MAIN, RETRY),
        buffer=Buffer((MAIN, RETRY)),
        batcher=batcher(),
        settler=FakeSettler(),  # type: ignore[arg-type]
        stats=Stats("orders", "g", "c1", metrics=False),
    )


def test_a_first_redelivery_runs_next_and_a_second_is_isolated() -> None:
    r = recovery()
    counts = {b"1-0": 2, b"2-0": 3}  # this delivery included

    assert r.admit(MAIN, entries("1-0", "2-0"), counts) == 2

    assert [i for _, i, _, _ in r.buffer.queue] == [b"1-0"]
    assert [i for _, i, _, _ in r.buffer.suspects] == [b"2-0"]


def test_entries_handled_here_are_never_run_again() -> None:
    r = recovery()
    r.buffer.add(MAIN, entries("1-0"), now=0.0)  # still running here (a reconnect)
    r.batcher.ack(MAIN, b"2-0")  # succeeded, its ack not yet sent
    r.batcher.remember(MAIN, [b"3-0"])  # acked, and pending again: Redis lost the ack

    assert r.admit(MAIN, entries("1-0", "2-0", "3-0"), {}) == 0

    assert len(r.buffer.queue) == 1  # only the one that was already there
    assert r.batcher.ids[MAIN] == [b"2-0", b"3-0"]  # 3-0 is acked again, not run


def test_a_crash_loop_ends_in_the_dlq_and_a_trimmed_payload_is_recorded() -> None:
    r = recovery()
    settler: FakeSettler = r.settler  # type: ignore[assignment]
    looping = [(b"1-0", [b"data", b"{}"]), (b"2-0", None)]

    assert r.admit(MAIN, looping, {b"1-0": DELIVERY_BOUND + 1}) == 0

    assert settler.exceeded_ids == [b"1-0"]
    assert settler.trimmed_ids == [b"2-0"]
    assert not r.buffer.queue and not r.buffer.suspects


def test_with_max_deliveries_1_a_redelivery_is_dead_lettered_at_once() -> None:
    r = recovery(max_deliveries=1)
    settler: FakeSettler = r.settler  # type: ignore[assignment]

    assert r.admit(MAIN, entries("1-0"), {b"1-0": 2}) == 0
    assert settler.exceeded_ids == [b"1-0"]
