"""Stream ids order as pairs of integers, never as text; replies become text one way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redrive.core.ids import exclusive, id_key, is_after, sort_ids, stream_id_ms
from redrive.core.text import text

parts = st.integers(min_value=0, max_value=2**64 - 1)


@given(parts, parts, parts, parts)
def test_ids_order_as_their_pairs_of_integers(ms1: int, s1: int, ms2: int, s2: int) -> None:
    a, b = f"{ms1}-{s1}", f"{ms2}-{s2}"
    assert (id_key(a) < id_key(b)) == ((ms1, s1) < (ms2, s2))
    assert is_after(a, b) == ((ms1, s1) > (ms2, s2))
    assert id_key(a.encode()) == id_key(a) == (ms1, s1)


def test_text_order_would_be_wrong_and_id_order_is_not() -> None:
    ids = ["10-0", "9-5", "9-10", "100"]
    assert sorted(ids) == ["10-0", "100", "9-10", "9-5"]  # what a string sort does
    assert sort_ids(ids) == ["9-5", "9-10", "10-0", "100"]


def test_a_bare_ms_id_has_sequence_zero_and_everything_is_after_no_mark() -> None:
    assert id_key("5") == (5, 0) == id_key(b"5-0")
    assert is_after("0-0", None)
    assert not is_after("5-0", "5")
    assert stream_id_ms(b"1700000000000-7") == 1700000000000


def test_exclusive_starts_just_after_an_id() -> None:
    assert exclusive("5-1") == "(5-1"
    assert exclusive(b"5-1") == "(5-1"


def test_text_decodes_bytes_replaces_bad_bytes_and_leaves_str() -> None:
    assert text(b"orders") == "orders"
    assert text("orders") == "orders"
    assert text(b"caf\xc3\xa9") == "café"
    assert text(b"bad\xff") == "bad\ufffd"
