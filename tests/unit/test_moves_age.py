"""max_age counts from a message's birth, or from its replay out of the DLQ."""

from __future__ import annotations

from redrive.core.message import Message
from redrive.runtime.moves import _first_seen


def test_age_counts_from_the_original_id() -> None:
    msg = Message(stream="orders", id="1700000000000-3")
    assert _first_seen(msg) == 1_700_000_000_000


def test_a_replay_starts_a_fresh_life() -> None:
    msg = Message(stream="orders", id="1700000000000-3")
    msg.meta = {"replayed-ms": "1800000000000"}  # read from a replayed entry
    assert _first_seen(msg) == 1_800_000_000_000
