"""The retry schedule's members decode without msgpack, for every size Lua emits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.store.schedule import member_fields, unpack_strings


def _str(value: bytes) -> bytes:
    """msgpack str as cmsgpack writes it: fixstr, str8, str16 or str32."""
    n = len(value)
    if n < 32:
        return bytes([0xA0 | n]) + value
    if n < 2**8:
        return b"\xd9" + n.to_bytes(1, "big") + value
    if n < 2**16:
        return b"\xda" + n.to_bytes(2, "big") + value
    return b"\xdb" + n.to_bytes(4, "big") + value


def _array(items: list[bytes]) -> bytes:
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return head + b"".join(_str(i) for i in items)


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_any_array_of_strings_round_trips(items: list[bytes]) -> None:
    assert unpack_strings(_array(items)) == items


def test_long_strings_bin_and_array32_headers_decode() -> None:
    big = b"x" * 70_000  # str32
    assert unpack_strings(b"\x91" + _str(big)) == [big]
    assert unpack_strings(b"\x92\xc4\x02\xff\xfe\xc5\x00\x01z") == [b"\xff\xfe", b"z"]
    assert unpack_strings(b"\xdd\x00\x00\x00\x01\xa1a") == [b"a"]


def test_member_fields_pairs_names_and_values_the_last_name_winning() -> None:
    member = _array([b"data", b"{}", b"redrive-origin-id", b"1-0", b"data", b"[]"])
    assert member_fields(member) == {b"data": b"[]", b"redrive-origin-id": b"1-0"}


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\xa1a\xa1b",  # a map, not an array
        b"\x91\x01",  # an integer where a string belongs
        b"",  # nothing at all
        b"\x92\xa1a",  # one string of two
        b"\x91\xa5ab",  # a string shorter than its header says
        b"\xdc\x00",  # a length cut short
    ],
)
def test_anything_but_an_array_of_strings_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_strings(data)
