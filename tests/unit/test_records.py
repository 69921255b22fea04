"""Retry and dead-letter records: producer fields byte-identical, DESIGN §3 metadata appended."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.codec import split_meta
from redrive.core.message import Message
from redrive.core.records import (
    MAX_ERROR_MESSAGE,
    MAX_HISTORY,
    MAX_HISTORY_MESSAGE,
    MAX_TRACEBACK,
    Failure,
    Fields,
    dead_record,
    history,
    history_json,
    retry_record,
)

STREAM = "ecommerce:orders"
ORIGIN_ID = "1700000000000-0"
NOW_MS = 1_700_000_050_000

#: DESIGN §3: the metadata every dead letter carries.
DEAD_LETTER_FIELDS = {
    "redrive-attempt",
    "redrive-origin-stream",
    "redrive-origin-id",
    "redrive-first-failed-ms",
    "redrive-error-type",
    "redrive-error-class",
    "redrive-error-message",
    "redrive-traceback",
    "redrive-reason",
    "redrive-dead-ms",
    "redrive-consumer",
    "redrive-replays",
}

PRODUCER_FIELDS = {
    b"data": '{"order_id":"o-1","city":"Zürich"}'.encode(),
    b"blob": b"\xff\xfe\x00\x80 not utf-8",
    b"\xc3(": b"a non-UTF-8 field name",
    b"empty": b"",
}


def failure(**overrides: object) -> Failure:
    values: dict[str, object] = {
        "error_type": "TimeoutError",
        "error_class": "transient",
        "message": "gateway timed out",
        "traceback": "Traceback (most recent call last):\n  ...\nTimeoutError",
        "at_ms": NOW_MS,
        "consumer": "worker-1",
        "duration_ms": 12.34567,
    }
    values.update(overrides)
    return Failure(**values)  # type: ignore[arg-type]


def message(attempt: int = 1, meta: dict[str, str] | None = None) -> Message:
    msg = Message(stream=STREAM, id=ORIGIN_ID, fields=dict(PRODUCER_FIELDS), attempt=attempt)
    msg.meta = meta or {}  # what the runtime read from a retry entry
    return msg


def as_pairs(fields: Fields) -> list[tuple[bytes | str, bytes | str]]:
    assert len(fields) % 2 == 0, "a field list alternates name, value"
    return list(zip(fields[::2], fields[1::2], strict=True))


def metadata(fields: Fields) -> dict[str, str]:
    """The ``redrive-*`` part as Redis would store and return it."""
    encoded = [f.encode() if isinstance(f, str) else f for f in fields]
    return {"redrive-" + k: v for k, v in split_meta(encoded)[1].items()}


# --- dead letters ---------------------------------------------------------------------------


def test_a_dead_letter_carries_every_design_field() -> None:
    record = dead_record(message(attempt=4), failure(), group="billing", reason="poison")

    meta = metadata(record)

    assert set(meta) >= DEAD_LETTER_FIELDS
    assert meta["redrive-attempt"] == "4"
    assert meta["redrive-origin-stream"] == STREAM
    assert meta["redrive-origin-id"] == ORIGIN_ID
    assert meta["redrive-group"] == "billing"
    assert meta["redrive-first-failed-ms"] == str(NOW_MS)
    assert meta["redrive-error-type"] == "TimeoutError"
    assert meta["redrive-error-class"] == "transient"
    assert meta["redrive-error-message"] == "gateway timed out"
    assert meta["redrive-traceback"].endswith("TimeoutError")
    assert meta["redrive-reason"] == "poison"
    assert meta["redrive-dead-ms"] == str(NOW_MS)
    assert meta["redrive-consumer"] == "worker-1"
    assert meta["redrive-replays"] == "0"


def test_producer_fields_come_first_and_stay_byte_identical() -> None:
    record = dead_record(message(), failure(), group="billing", reason="poison")

    pairs = as_pairs(record)
    producer = pairs[: len(PRODUCER_FIELDS)]

    assert producer == list(PRODUCER_FIELDS.items())
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in producer)
    assert all(isinstance(k, str) and k.startswith("redrive-") for k, _ in pairs[len(producer) :])


@given(
    st.dictionaries(
        st.binary(max_size=10).filter(lambda k: not k.startswith(b"redrive-")),
        st.binary(max_size=40),
        max_size=10,
    )
)
def test_any_producer_bytes_survive_a_dead_letter(fields: dict[bytes, bytes]) -> None:
    msg = Message(stream=STREAM, id=ORIGIN_ID, fields=fields)

    record = dead_record(msg, failure(), group="g", reason="permanent_error")

    encoded = [f.encode() if isinstance(f, str) else f for f in record]
    assert split_meta(encoded)[0] == fields


def test_first_failure_time_and_replays_are_kept_from_earlier_metadata() -> None:
    msg = message(attempt=3, meta={"first-failed-ms": "1700000001000", "replays": "2"})

    meta = metadata(dead_record(msg, failure(), group="g", reason="max_retries_exceeded"))

    assert meta["redrive-first-failed-ms"] == "1700000001000"
    assert meta["redrive-replays"] == "2"


def test_long_error_messages_and_tracebacks_are_capped() -> None:
    long_message = "m" * (MAX_ERROR_MESSAGE * 3)
    long_traceback = "start\n" + "t" * (MAX_TRACEBACK * 2) + "\nRuntimeError: the end"

    meta = metadata(
        dead_record(
            message(),
            failure(message=long_message, traceback=long_traceback),
            group="g",
            reason="permanent_error",
        )
    )

    assert meta["redrive-error-message"] == "m" * MAX_ERROR_MESSAGE
    assert len(meta["redrive-traceback"]) == MAX_TRACEBACK
    assert meta["redrive-traceback"].endswith("RuntimeError: the end")  # the tail matters most


# --- retries --------------------------------------------------------------------------------


def test_a_retry_record_schedules_the_next_attempt() -> None:
    record = retry_record(
        message(attempt=2),
        failure(),
        group="billing",
        next_attempt=3,
        due_ms=NOW_MS + 4000,
        delay_ms=4000,
    )

    meta = metadata(record)

    assert meta["redrive-attempt"] == "3"
    assert meta["redrive-due-ms"] == str(NOW_MS + 4000)
    assert meta["redrive-delay-ms"] == "4000"
    assert meta["redrive-origin-stream"] == STREAM
    assert meta["redrive-origin-id"] == ORIGIN_ID
    assert meta["redrive-group"] == "billing"
    assert "redrive-reason" not in meta  # a retry is not a dead letter
    assert "redrive-traceback" not in meta


def test_a_retry_record_keeps_producer_fields_byte_identical() -> None:
    record = retry_record(
        message(), failure(), group="g", next_attempt=2, due_ms=NOW_MS, delay_ms=0
    )

    assert as_pairs(record)[: len(PRODUCER_FIELDS)] == list(PRODUCER_FIELDS.items())


def test_each_redrive_field_appears_once() -> None:
    msg = message(attempt=2, meta={"attempt": "2", "history": "[]"})

    for record in (
        retry_record(msg, failure(), group="g", next_attempt=3, due_ms=1, delay_ms=1),
        dead_record(msg, failure(), group="g", reason="poison"),
    ):
        names = [name for name, _ in as_pairs(record) if isinstance(name, str)]
        assert len(names) == len(set(names))


# --- history --------------------------------------------------------------------------------


def test_the_first_failure_starts_the_history() -> None:
    items = json.loads(history(message(attempt=1), failure(duration_ms=12.34567)))

    assert items == [
        {
            "a": 1,
            "t": NOW_MS,
            "c": "worker-1",
            "e": "TimeoutError",
            "k": "transient",
            "m": "gateway timed out",
            "d": 12.346,
        }
    ]


def test_history_messages_are_short() -> None:
    items = json.loads(history(message(), failure(message="x" * 5000)))

    assert items[0]["m"] == "x" * MAX_HISTORY_MESSAGE


def test_history_appends_to_what_the_message_carried() -> None:
    earlier = json.dumps([{"a": 1}, {"a": 2}])

    items = json.loads(history(message(attempt=3, meta={"history": earlier}), failure()))

    assert [item["a"] for item in items] == [1, 2, 3]


@pytest.mark.parametrize("garbage", ["{not json", '{"a": 1}', "42", ""])
def test_unreadable_history_starts_afresh(garbage: str) -> None:
    items = json.loads(history(message(attempt=5, meta={"history": garbage}), failure()))

    assert [item["a"] for item in items] == [5]


@given(st.integers(min_value=0, max_value=3 * MAX_HISTORY))
def test_history_is_capped_keeping_the_first_and_the_latest(earlier_count: int) -> None:
    earlier = [{"a": n} for n in range(1, earlier_count + 1)]
    attempt = earlier_count + 1
    msg = message(attempt=attempt, meta={"history": json.dumps(earlier)})

    items = json.loads(history(msg, failure()))

    attempts = [item["a"] for item in items]
    assert len(attempts) == min(attempt, MAX_HISTORY)
    assert attempts[0] == 1  # how the trouble began
    assert attempts[-1] == attempt  # this failure
    assert attempts[1:] == list(range(attempt - len(attempts) + 2, attempt + 1))  # newest rest


def test_the_history_lands_in_the_record() -> None:
    record = dead_record(message(attempt=2), failure(), group="g", reason="poison")

    items = json.loads(metadata(record)["redrive-history"])

    assert [item["a"] for item in items] == [2]


@given(st.lists(st.text(max_size=30), min_size=1, max_size=3 * MAX_HISTORY))
def test_history_grown_one_failure_at_a_time_is_the_capped_list(messages: list[str]) -> None:
    # Appended as text while under the cap: the result must be what parsing would give,
    # even when an error message itself contains '{"a":' or quotes.
    raw = ""
    for attempt, text in enumerate(messages, start=1):
        meta = {"history": raw} if raw else None
        raw = history(message(attempt=attempt, meta=meta), failure(message=f'{{"a":{text}"'))

    items = json.loads(raw)
    attempts = [item["a"] for item in items]
    assert len(items) == min(len(messages), MAX_HISTORY)
    assert attempts[0] == 1
    assert attempts[-1] == len(messages)
    assert items[-1]["m"] == f'{{"a":{messages[-1]}"'[:MAX_HISTORY_MESSAGE]


@given(
    message=st.text(max_size=400),
    consumer=st.text(max_size=30),
    error_type=st.text(max_size=60),
    at_ms=st.integers(min_value=0, max_value=2**53),
    duration_ms=st.one_of(
        st.floats(min_value=0, max_value=1e9, allow_nan=False), st.integers(0, 10**9)
    ),
    attempt=st.integers(min_value=1, max_value=10**6),
)
def test_a_history_item_is_written_as_json_dumps_would(  # type: ignore[no-untyped-def]
    message, consumer, error_type, at_ms, duration_ms, attempt
) -> None:
    failure = Failure(error_type, "transient", message, "", at_ms, consumer, duration_ms)
    want = json.dumps(failure.history_item(attempt), separators=(",", ":"), ensure_ascii=False)
    assert history_json(failure, attempt) == want
