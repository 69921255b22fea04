"""The body codec and field lists: find data, decode strictly, cap size, separate metadata."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.codec import (
    DATA_FIELD,
    META_PREFIX,
    body,
    check_size,
    decode_body,
    encode_body,
    has_meta,
    split_meta,
    stream_id_ms,
    strip_meta,
)
from redrive.errors import DecodeError

Pair = tuple[bytes, bytes]

plain_names = st.binary(max_size=12).filter(lambda n: not n.startswith(META_PREFIX))
meta_names = st.binary(max_size=12).map(lambda n: META_PREFIX + n)
values = st.binary(max_size=16)
pairs = st.lists(st.tuples(st.one_of(plain_names, meta_names), values), max_size=12)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def flatten(items: list[Pair]) -> list[bytes]:
    return [part for pair in items for part in pair]


# --- body -----------------------------------------------------------------------------------


def test_body_is_found_when_data_comes_first() -> None:
    assert body([b"data", b'{"id":1}', b"source", b"web"]) == b'{"id":1}'


def test_body_is_found_after_other_fields() -> None:
    assert body([b"source", b"web", b"kind", b"order", b"data", b"[]"]) == b"[]"


def test_a_value_that_reads_data_is_not_taken_for_the_field_name() -> None:
    assert body([b"label", b"data", b"data", b"42"]) == b"42"
    assert body([b"label", b"data"]) is None


@pytest.mark.parametrize("flat", [[], [b"source", b"web"], [b"Data", b"1", b"DATA", b"2"]])
def test_no_data_field_means_no_body(flat: list[bytes]) -> None:
    assert body(flat) is None


@given(
    st.lists(st.tuples(plain_names.filter(lambda n: n != DATA_FIELD), values), max_size=10),
    st.data(),
    values,
)
def test_body_finds_data_at_any_position(
    others: list[Pair], data: st.DataObject, raw: bytes
) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(others)))
    fields = [*others[:position], (DATA_FIELD, raw), *others[position:]]

    assert body(flatten(fields)) == raw


# --- size cap -------------------------------------------------------------------------------


def test_a_body_at_the_cap_passes() -> None:
    check_size([b"data", b"x" * 100], 100)


def test_a_body_over_the_cap_is_payload_too_large() -> None:
    with pytest.raises(DecodeError) as caught:
        check_size([b"source", b"web", b"data", b"x" * 101], 100)

    assert caught.value.reason == "payload_too_large"
    assert "101 bytes" in str(caught.value)
    assert "100-byte cap" in str(caught.value)


def test_only_the_body_counts_towards_the_cap() -> None:
    check_size([b"attachment", b"x" * 10_000, b"data", b"{}"], 100)
    check_size([b"attachment", b"x" * 10_000], 100)


# --- decoding -------------------------------------------------------------------------------


def test_no_body_decodes_to_none() -> None:
    assert decode_body(None) is None


def test_utf8_json_decodes() -> None:
    assert decode_body('{"city":"Zürich","n":[1,2]}'.encode()) == {"city": "Zürich", "n": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"name":"caf\xe9"}', "not UTF-8"),  # Latin-1, not UTF-8
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a":1} trailing', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a UTF-8 BOM
        (b"1" * 5000, "not valid JSON"),  # over Python's int-digits limit
    ],
)
def test_a_bad_body_is_poison(raw: bytes, says: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_body(raw)

    assert caught.value.reason == "poison"
    assert says in str(caught.value)


@given(st.binary())
def test_any_bytes_decode_or_raise_decode_error(raw: bytes) -> None:
    try:
        decode_body(raw)
    except DecodeError as exc:
        assert exc.reason == "poison"


def test_a_deeply_nested_body_is_poison() -> None:
    with pytest.raises(DecodeError):
        decode_body(b"[" * 100_000)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"x":-Infinity}'])
def test_non_standard_json_numbers_are_poison(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_body(raw)


# --- encoding -------------------------------------------------------------------------------


def test_encoding_is_compact_utf8() -> None:
    assert encode_body({"city": "Zürich", "n": [1, 2]}) == '{"city":"Zürich","n":[1,2]}'.encode()


@given(json_values)
def test_encode_then_decode_gives_the_value_back(value: Any) -> None:
    assert decode_body(encode_body(value)) == value


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", "\ud800"])
def test_a_value_json_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(DecodeError, match="cannot be encoded as JSON"):
        encode_body(value)


def test_a_circular_value_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)

    with pytest.raises(DecodeError, match="cannot be encoded as JSON"):
        encode_body(loop)


@pytest.mark.parametrize("value", [math.nan, math.inf, {"x": -math.inf}])
def test_non_finite_floats_are_refused(value: object) -> None:
    with pytest.raises(DecodeError):
        encode_body(value)


# --- metadata -------------------------------------------------------------------------------


def test_has_meta_looks_at_field_names_only() -> None:
    assert has_meta([b"data", b"{}", b"redrive-attempt", b"3"])
    assert not has_meta([b"data", b"redrive-attempt"])
    assert not has_meta([b"Redrive-attempt", b"3"])  # field names are case-sensitive
    assert not has_meta([])


def test_strip_meta_drops_a_producers_forged_metadata() -> None:
    forged = [b"redrive-attempt", b"99", b"data", b"{}", b"redrive-reason", b"poison"]

    assert strip_meta(forged) == [b"data", b"{}"]


@given(pairs)
def test_strip_meta_keeps_exactly_the_producer_fields_in_order(items: list[Pair]) -> None:
    stripped = strip_meta(flatten(items))

    assert stripped == flatten([(k, v) for k, v in items if not k.startswith(META_PREFIX)])
    assert not has_meta(stripped)


@given(pairs)
def test_split_meta_separates_producer_fields_from_metadata(items: list[Pair]) -> None:
    user, meta = split_meta(flatten(items))

    assert user == {k: v for k, v in items if not k.startswith(META_PREFIX)}
    expected_meta = {
        k[len(META_PREFIX) :].decode("utf-8", "replace"): v.decode("utf-8", "replace")
        for k, v in items
        if k.startswith(META_PREFIX)
    }
    assert meta == expected_meta
    assert list(user) == list(dict.fromkeys(k for k, _ in items if not k.startswith(META_PREFIX)))


def test_split_meta_names_metadata_without_its_prefix() -> None:
    flat = [b"data", b"{}", b"redrive-attempt", b"2", b"redrive-origin-id", b"1-0"]

    user, meta = split_meta(flat)

    assert user == {b"data": b"{}"}
    assert meta == {"attempt": "2", "origin-id": "1-0"}


def test_split_meta_keeps_non_utf8_producer_values_as_bytes() -> None:
    user, _ = split_meta([b"blob", b"\xff\x00\xfe", b"redrive-attempt", b"1"])

    assert user == {b"blob": b"\xff\x00\xfe"}


# --- stream ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_id", "ms"),
    [(b"1700000000000-0", 1_700_000_000_000), ("1700000000123-42", 1_700_000_000_123), ("5", 5)],
)
def test_stream_id_ms_is_the_time_part(entry_id: bytes | str, ms: int) -> None:
    assert stream_id_ms(entry_id) == ms


@given(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=0, max_value=2**63))
def test_stream_id_ms_round_trips_any_id(ms: int, seq: int) -> None:
    assert stream_id_ms(f"{ms}-{seq}".encode()) == ms
