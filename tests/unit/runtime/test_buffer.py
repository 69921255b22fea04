"""The buffer: what is held, the reader's room and the lanes' wake-ups (no Redis)."""

from __future__ import annotations

import asyncio

from pytest import MonkeyPatch

from redrive.runtime import buffer as buffer_module
from redrive.runtime.buffer import Buffer, ReadBudget
from tests.unit.runtime.fakes import MAIN, RETRY, entries


def test_added_entries_are_held_and_queued_in_order() -> None:
    buffer = Buffer((MAIN, RETRY))
    assert buffer.add(MAIN, entries("1-0", "2-0"), now=5.0) == 2
    buffer.add_recovered(RETRY, b"0-1", [b"data", b"{}"], 6.0, suspect=False)
    buffer.add_recovered(MAIN, b"0-2", [b"data", b"{}"], 6.0, suspect=True)

    assert [item[1] for item in buffer.queue] == [b"0-1", b"1-0", b"2-0"]  # recovered first
    assert [item[1] for item in buffer.suspects] == [b"0-2"]
    assert buffer.holds(MAIN, b"1-0") and buffer.holds(RETRY, b"0-1")
    assert not buffer.holds(RETRY, b"1-0")  # held per stream: ids of two streams may clash
    assert buffer.size() == 4 and buffer.held_total() == 4


def test_a_lease_renewal_sees_only_old_entries_and_refreshes_them() -> None:
    buffer = Buffer((MAIN, RETRY))
    buffer.add(MAIN, entries("1-0"), now=1.0)
    buffer.add(MAIN, entries("2-0"), now=9.0)

    assert buffer.held_before(MAIN, cutoff=5.0) == [b"1-0"]
    buffer.renewed(MAIN, [b"1-0", b"7-0"], now=10.0)  # 7-0 finished meanwhile: not re-held
    assert buffer.held_before(MAIN, cutoff=9.5) == [b"2-0"]
    assert not buffer.holds(MAIN, b"7-0")


def test_dropping_entries_lost_to_another_consumer_keeps_the_rest() -> None:
    buffer = Buffer((MAIN, RETRY))
    buffer.add(MAIN, entries("1-0", "2-0", "3-0"), now=1.0)
    buffer.add(RETRY, entries("2-0"), now=1.0)
    queue = buffer.queue

    assert buffer.drop(MAIN, {b"2-0", b"3-0"}) == 2
    assert buffer.queue is queue  # in place: the lanes hold a reference
    assert [(s.key, i) for s, i, _, _ in buffer.queue] == [("orders", b"1-0"), (RETRY.key, b"2-0")]
    assert not buffer.holds(MAIN, b"2-0") and buffer.holds(RETRY, b"2-0")


def test_fresh_ids_are_the_new_source_entries_and_any_other_way_in_takes_one_out() -> None:
    # An idempotent handler's new entries keyed on their own id claim implicitly; an
    # entry re-delivered, reclaimed or lost to another consumer claims in Redis.
    buffer = Buffer((MAIN, RETRY))
    buffer.add(MAIN, entries("1-0"), now=1.0)
    assert buffer.fresh is None  # off unless the handler's claims are implicit
    buffer.fresh = set()
    buffer.add(MAIN, entries("2-0", "3-0", "4-0", "5-0"), now=1.0)
    buffer.add(RETRY, entries("6-0"), now=1.0)  # a retry is never fresh
    assert buffer.fresh == {b"2-0", b"3-0", b"4-0", b"5-0"}

    buffer.add_recovered(MAIN, b"2-0", [b"data", b"{}"], 2.0, suspect=False)
    buffer.drop(MAIN, {b"3-0"})
    buffer.settled(MAIN, b"4-0", 10)
    assert buffer.fresh == {b"5-0"}


def test_fresh_ids_of_entries_that_never_ran_here_are_bounded(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr(buffer_module, "MAX_FRESH", 3)
    buffer = Buffer((MAIN, RETRY))
    buffer.fresh = {b"0-1", b"0-2", b"0-3", b"0-4"}  # e.g. reclaimed away while paused
    buffer.add(MAIN, entries("1-0", "2-0"), now=1.0)
    assert buffer.fresh == {b"1-0", b"2-0"}  # the old ones only lose the shortcut


async def test_the_reader_waits_for_room_until_a_lane_finishes() -> None:
    buffer = Buffer((MAIN, RETRY))
    buffer.add(MAIN, entries("1-0", "2-0", "3-0"), now=1.0)
    waiting = asyncio.ensure_future(buffer.wait_room(low_water=2))
    await asyncio.sleep(0)
    assert not waiting.done()

    source, entry_id, _, size = buffer.queue.popleft()
    buffer.begin()
    await asyncio.sleep(0)
    assert not waiting.done()  # taken but running: still counts
    buffer.finish(source, entry_id, size)

    assert await asyncio.wait_for(waiting, 1) == 2
    assert not buffer.holds(MAIN, b"1-0")


async def test_sealing_releases_a_waiting_reader_and_idle_lanes() -> None:
    buffer = Buffer((MAIN, RETRY))
    buffer.add(MAIN, entries("1-0", "2-0"), now=1.0)
    reader = asyncio.ensure_future(buffer.wait_room(low_water=0))
    lanes = [asyncio.ensure_future(buffer.idle_wait()) for _ in range(3)]
    await asyncio.sleep(0)

    buffer.seal()

    await asyncio.wait_for(asyncio.gather(reader, *lanes), 1)
    assert buffer.sealed


async def test_lanes_are_woken_one_at_a_time() -> None:
    buffer = Buffer((MAIN, RETRY))
    lanes = [asyncio.ensure_future(buffer.idle_wait()) for _ in range(3)]
    await asyncio.sleep(0)

    buffer.wake()
    buffer.wake()  # one is already on its way: no second wake-up
    await asyncio.sleep(0)
    assert sum(lane.done() for lane in lanes) == 1

    buffer.wake()  # the woken lane has run: the next wake-up goes out
    await asyncio.sleep(0)
    assert sum(lane.done() for lane in lanes) == 2
    buffer.wake_all()
    await asyncio.sleep(0)
    assert all(lane.done() for lane in lanes)


async def test_the_read_budget_counts_bytes_until_finished_or_dropped() -> None:
    budget = ReadBudget(limit=100)
    buffer = Buffer((MAIN, RETRY), budget)
    buffer.add(MAIN, [(b"1-0", [b"data", b"x" * 46]), (b"2-0", [b"data", b"y" * 56])], now=1.0)
    assert budget.used == 110 and buffer.last_bytes == 110
    blocked = asyncio.ensure_future(budget.wait())
    await asyncio.sleep(0)
    assert not blocked.done()  # over the limit: a reader waits

    source, entry_id, _, size = buffer.queue.popleft()
    buffer.begin()
    buffer.finish(source, entry_id, size)
    assert budget.used == 60
    await asyncio.wait_for(blocked, 1)

    assert buffer.drop(MAIN, {b"2-0"}) == 1
    assert budget.used == 0
