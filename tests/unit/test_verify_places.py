"""The read model's classification (pure): one place per entry, double bookings named."""

from __future__ import annotations

from redrive.store.readers import next_start
from redrive.verify.places import (
    ACKED,
    DEAD,
    PENDING,
    RETRYING,
    UNREAD,
    Snapshot,
    dead_by_origin,
    retrying_origins,
    written_by,
)


def _dead(origin: str, group: str = "g", stream: str = "s", reason: str = "poison") -> dict:
    return {
        b"redrive-origin-stream": stream.encode(),
        b"redrive-origin-id": origin.encode(),
        b"redrive-group": group.encode(),
        b"redrive-reason": reason.encode(),
    }


def _snapshot(**places: object) -> Snapshot:
    base: dict[str, object] = {
        "stream": "s", "group": "g", "last_delivered": "5-0",
        "pending": frozenset(), "retrying": frozenset(), "dead": {},
    }  # fmt: skip
    return Snapshot(**{**base, **places})  # type: ignore[arg-type]


def test_each_entry_has_one_place_by_the_group_s_last_delivered_id() -> None:
    snap = _snapshot(
        pending=frozenset({"2-0"}),
        retrying=frozenset({"3-0"}),
        dead=dead_by_origin([_dead("4-0")], "s", "g"),
    )
    where = {i: snap.place(i) for i in ("1-0", "2-0", "3-0", "4-0", "5-0", "6-0", "10-0")}
    assert where == {"1-0": ACKED, "2-0": PENDING, "3-0": RETRYING, "4-0": DEAD,
                     "5-0": ACKED, "6-0": UNREAD, "10-0": UNREAD}  # fmt: skip
    assert [i for i in where if snap.unsettled(i)] == ["2-0", "3-0", "6-0", "10-0"]
    assert all(len(snap.places(i)) <= 1 for i in where)


def test_a_group_that_delivered_nothing_has_everything_unread() -> None:
    snap = _snapshot(last_delivered=None)
    assert snap.place("0-1") == UNREAD
    assert not snap.delivered("0-1")


def test_an_entry_in_two_places_is_double_booked_and_counted_in_the_first() -> None:
    snap = _snapshot(pending=frozenset({"2-0"}), dead=dead_by_origin([_dead("2-0")], "s", "g"))
    assert snap.places("2-0") == [DEAD, PENDING]
    assert snap.place("2-0") == DEAD


def test_dead_letters_of_other_groups_and_streams_and_without_origin_are_not_this_group_s() -> None:
    letters = [_dead("1-0"), _dead("1-0", reason="max_retries_exceeded"), _dead("2-0", group="h"),
               _dead("3-0", stream="t"), {b"redrive-group": b"g"}]  # fmt: skip
    dead = dead_by_origin(letters, "s", "g")
    assert list(dead) == ["1-0"]
    snap = _snapshot(dead=dead)
    assert snap.reasons("1-0") == ["poison", "max_retries_exceeded"]
    assert written_by(letters[2], None, None) and written_by(letters[2], "s", None)
    assert not written_by(letters[2], None, "g")


def test_retrying_origins_come_from_the_retry_stream_and_the_schedule() -> None:
    retries = [{b"redrive-origin-id": b"1-0"}, {b"data": b"{}"}]
    scheduled = [{b"redrive-origin-id": b"2-0"}]
    assert retrying_origins(retries, scheduled) == {"1-0", "2-0"}


def test_pages_step_past_the_last_id_until_a_short_page() -> None:
    def first(row: tuple[str, int]) -> str:
        return row[0]

    assert next_start([("1-0", 0), ("2-5", 0)], 2, first) == "(2-5"
    assert next_start([("1-0", 0)], 2, first) is None
    assert next_start([], 2, first) is None
