"""The ack batcher: what a round trip carries, what is settling, lost replies (no Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from redrive.runtime.acks import ACKED_MEMORY, AckBatcher, Move
from redrive.runtime.stats import Stats
from redrive.store import calls
from redrive.store.scripts import scripts
from tests.unit.runtime.fakes import MAIN, RETRY, FakeChannel


async def _no_error(exc: Exception) -> None:
    raise exc


def batcher(channel: Any = None, on_error: Any = _no_error) -> AckBatcher:
    return AckBatcher(
        client=None,  # type: ignore[arg-type]  # only NOSCRIPT re-runs use it
        channel=channel,
        group="g",
        consumer="c1",
        sources=(MAIN, RETRY),
        stats=Stats("orders", "g", "c1", metrics=False),
        linger=0.001,
        on_error_reply=on_error,
    )


def move(entry_id: bytes, done: list[Any]) -> Move:
    call = calls.dead_letter(stream="orders", dlq="dlq:{orders}", group="g", consumer="c1",
                             entry_id=entry_id, delete=False, fields=[b"data", b"{}"])  # fmt: skip
    return Move(call, MAIN, entry_id, done.append)


def test_one_ack_call_per_stream_then_one_call_per_move() -> None:
    b = batcher()
    b.ack(MAIN, b"1-0")
    b.ack(RETRY, b"5-0")
    b.ack(MAIN, b"2-0")
    b.send(move(b"3-0", []))

    batch = b.take()
    commands = b.commands(batch)

    sha = scripts().ack.sha
    assert commands[0] == ("EVALSHA", sha, 1, "orders", "g", "c1", "0", b"1-0", b"2-0")
    assert commands[1] == ("EVALSHA", sha, 1, RETRY.key, "g", "c1", "1", b"5-0")  # deleted
    assert commands[2][:2] == ("EVALSHA", scripts().dead_letter.sha)
    assert len(commands) == 3
    assert not b.take()  # nothing left for the next round trip


def test_what_is_settled_here_but_not_in_redis_is_never_run_again() -> None:
    b = batcher()
    b.ack(MAIN, b"1-0")
    b.send(move(b"2-0", []))
    assert b.settling(MAIN) == {b"1-0", b"2-0"}

    batch = b.take()  # sent: the reply has not come yet
    b.ack(MAIN, b"3-0")
    assert b.settling(MAIN) == {b"1-0", b"2-0", b"3-0"}
    assert b.settling(RETRY) == set()

    b.give_back(batch)  # the reply was lost: all of it goes again, in order
    again = b.take()
    assert [(source, ids) for source, ids, _, _ in again.acks] == [(MAIN, [b"1-0", b"3-0"])]
    assert [m.entry_id for m in again.moves] == [b"2-0"]


async def test_settling_counts_fences_and_remembers_acks() -> None:
    b = batcher()
    done: list[Any] = []
    b.ack(MAIN, b"1-0")
    b.ack(MAIN, b"2-0")
    b.send(move(b"3-0", done))
    batch = b.take()

    await b.settle(batch, [[1, [b"2-0"], []], [1, b"9-0"]])

    assert b.stats.fenced == 1
    assert done == [calls.DeadLetterResult(calls.Fence.MOVED, b"9-0")]
    assert b.was_acked(MAIN, b"1-0") and not b.was_acked(RETRY, b"1-0")
    assert b.settling(MAIN) == set()


async def test_a_move_that_met_an_error_reply_is_kept_and_the_error_handled() -> None:
    seen: list[Exception] = []

    async def recreate(exc: Exception) -> None:
        seen.append(exc)

    b = batcher(on_error=recreate)
    b.send(move(b"3-0", []))
    error = RuntimeError("NOGROUP No such key")

    await b.settle(b.take(), [error])

    assert seen == [error]
    assert [m.entry_id for m in b.take().moves] == [b"3-0"]  # sent again


async def test_a_flush_whose_round_trip_fails_gives_everything_back() -> None:
    b = batcher(channel=FakeChannel(ConnectionError("reset")))
    b.ack(MAIN, b"1-0")

    with pytest.raises(ConnectionError):
        await b.flush()

    assert b.settling(MAIN) == {b"1-0"}
    b.channel = FakeChannel([[1, [], []]])  # type: ignore[assignment]
    await b.flush()
    assert b.settling(MAIN) == set() and b.was_acked(MAIN, b"1-0")


async def test_the_memory_of_acks_is_bounded() -> None:
    b = batcher()
    ids = [f"{i}-0".encode() for i in range(ACKED_MEMORY + 500)]
    for start in range(0, len(ids), 100):  # one round trip per 100 acks
        for i in ids[start : start + 100]:
            b.ack(MAIN, i)
        await b.settle(b.take(), [[100, [], []]])

    assert not b.was_acked(MAIN, ids[0])  # the oldest batches are forgotten
    assert b.was_acked(MAIN, ids[-1]) and b.was_acked(MAIN, ids[-ACKED_MEMORY])
    assert sum(blob.count(b"\n") - 1 for blob in b.acked[MAIN]) == ACKED_MEMORY
    assert not b.was_acked(MAIN, b"1-0") and not b.was_acked(MAIN, b"20499")  # whole ids only
