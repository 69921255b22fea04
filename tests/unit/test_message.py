"""Message: fields and data are built lazily, a poison body fails on access, not on receipt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.codec import encode_body
from redrive.core.message import Message
from redrive.errors import DecodeError

ORDER = {"order_id": "o-1", "amount": 42}


def from_flat(flat: list[bytes], **kwargs: object) -> Message:
    return Message("ecommerce:orders", "1700000000000-0", None, flat=flat, **kwargs)  # type: ignore[arg-type]


def test_data_is_decoded_from_the_flat_field_list() -> None:
    msg = from_flat([b"source", b"web", b"data", encode_body(ORDER)])

    assert msg.data == ORDER


def test_fields_are_built_from_the_flat_field_list() -> None:
    msg = from_flat([b"data", b"{}", b"blob", b"\xff\x00"])

    assert msg.fields == {b"data": b"{}", b"blob": b"\xff\x00"}


def test_a_poison_body_fails_when_read_not_when_received() -> None:
    msg = from_flat([b"data", b"{not json"])  # constructing must not raise

    assert msg.fields == {b"data": b"{not json"}
    with pytest.raises(DecodeError) as caught:
        _ = msg.data
    assert caught.value.reason == "poison"


def test_a_message_without_data_has_none() -> None:
    assert from_flat([b"source", b"web"]).data is None
    assert Message("s", "1-0", {b"source": b"web"}).data is None
    assert Message("s", "1-0", None).data is None


def test_data_is_decoded_once() -> None:
    msg = from_flat([b"data", encode_body(ORDER)])

    first = msg.data
    first["amount"] = 0  # a handler mutating the decoded body

    assert msg.data is first
    assert msg.data["amount"] == 0


def test_data_comes_from_the_fields_dict_when_one_is_given() -> None:
    msg = Message("s", "1-0", {b"data": b"[1,2,3]"}, flat=[b"data", b"ignored"])

    assert msg.data == [1, 2, 3]


def test_data_given_up_front_is_not_decoded_again() -> None:
    msg = Message("s", "1-0", {b"data": b"{not json"}, data={"already": "decoded"})

    assert msg.data == {"already": "decoded"}


def test_data_can_be_replaced_by_middleware() -> None:
    msg = from_flat([b"data", b"{not json"])

    msg.data = {"validated": True}

    assert msg.data == {"validated": True}


def test_field_decodes_utf8_with_replacement() -> None:
    msg = from_flat([b"city", "Zürich".encode(), b"blob", b"ok\xff"])

    assert msg.field("city") == "Zürich"
    assert msg.field("blob") == "ok\ufffd"
    assert msg.field("missing") is None


def test_key_and_entry_id_default_to_the_original_stream_and_id() -> None:
    msg = Message("ecommerce:orders", "1700000000000-0", {})

    assert (msg.key, msg.entry_id, msg.attempt, msg.meta) == (
        "ecommerce:orders",
        "1700000000000-0",
        1,
        {},
    )


def test_a_retry_delivery_keeps_the_original_id_but_reads_from_the_retry_key() -> None:
    msg = Message(
        "ecommerce:orders",
        "1700000000000-0",
        {},
        attempt=3,
        key="retry:{ecommerce:orders}:billing",
        entry_id="1700000009999-0",
        meta={"attempt": "3"},
    )

    assert msg.id == "1700000000000-0"
    assert msg.key == "retry:{ecommerce:orders}:billing"
    assert msg.entry_id == "1700000009999-0"
    assert msg.meta == {"attempt": "3"}


def test_repr_names_stream_id_and_attempt_but_not_the_body() -> None:
    msg = Message("orders", "1-0", {b"data": b'{"card":"4111"}'}, attempt=2)

    text = repr(msg)

    assert text == "Message(stream='orders', id='1-0', attempt=2)"
    assert "4111" not in text


def test_messages_do_not_grow_attributes() -> None:
    msg = Message("s", "1-0", {})

    with pytest.raises(AttributeError):
        msg.extra = 1  # type: ignore[attr-defined]


@given(
    st.lists(
        st.tuples(st.binary(max_size=8).filter(lambda n: n != b"data"), st.binary(max_size=8)),
        max_size=8,
        unique_by=lambda pair: pair[0],
    ),
    st.integers(min_value=-(10**9), max_value=10**9),
)
def test_data_and_fields_agree_for_any_layout(
    others: list[tuple[bytes, bytes]], number: int
) -> None:
    raw = encode_body({"n": number})
    flat = [part for pair in [*others, (b"data", raw)] for part in pair]

    msg = from_flat(flat)

    assert msg.data == {"n": number}
    assert msg.fields[b"data"] == raw
    assert len(msg.fields) == len(others) + 1


def test_a_repeated_data_field_reads_the_same_whatever_the_access_order() -> None:
    flat = [b"data", b"1", b"data", b"2"]
    data_first = from_flat(flat)
    fields_first = from_flat(flat)
    _ = fields_first.fields

    assert data_first.data == fields_first.data
