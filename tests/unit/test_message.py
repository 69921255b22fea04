"""Message: fields and data are built lazily, a poison body fails on access, not on receipt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.codec import encode_body
from redrive.core.message import Message, delivered
from redrive.errors import ConfigError, DecodeError

ORDER = {"order_id": "o-1", "amount": 42}


def from_flat(flat: list[bytes]) -> Message:
    """What the runtime builds for an entry of the source stream."""
    eid = "1700000000000-0"
    return delivered("ecommerce:orders", eid, "ecommerce:orders", eid, 1, None, flat, {})


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
    assert Message(stream="s", id="1-0", fields={b"source": b"web"}).data is None
    assert Message(stream="s", id="1-0").data is None


def test_data_is_decoded_once() -> None:
    msg = from_flat([b"data", encode_body(ORDER)])

    first = msg.data
    first["amount"] = 0  # a handler mutating the decoded body

    assert msg.data is first
    assert msg.data["amount"] == 0


def test_data_comes_from_the_fields_dict_when_one_is_given() -> None:
    msg = delivered("s", "1-0", "s", "1-0", 1, {b"data": b"[1,2,3]"}, [b"data", b"ignored"], {})

    assert msg.data == [1, 2, 3]


def test_data_given_up_front_is_not_decoded_again() -> None:
    msg = Message(stream="s", id="1-0", fields={b"data": b"{not json"}, data={"already": "decoded"})

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
    msg = Message(stream="ecommerce:orders", id="1700000000000-0")

    assert (msg.key, msg.entry_id, msg.attempt, msg.meta) == (
        "ecommerce:orders",
        "1700000000000-0",
        1,
        {},
    )


def test_a_retry_delivery_keeps_the_original_id_but_reads_from_the_retry_key() -> None:
    msg = delivered(
        "ecommerce:orders",
        "1700000000000-0",
        "retry:{ecommerce:orders}:billing",
        "1700000009999-0",
        3,
        {},
        [],
        {"attempt": "3"},
    )

    assert msg.id == "1700000000000-0"
    assert msg.key == "retry:{ecommerce:orders}:billing"
    assert msg.entry_id == "1700000009999-0"
    assert msg.meta == {"attempt": "3"}


def test_repr_names_stream_id_and_attempt_but_not_the_body() -> None:
    msg = Message(stream="orders", id="1-0", fields={b"data": b'{"card":"4111"}'}, attempt=2)

    text = repr(msg)

    assert text == "Message(stream='orders', id='1-0', attempt=2)"
    assert "4111" not in text


def test_messages_do_not_grow_attributes() -> None:
    msg = Message.build()

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


def test_the_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Message("s", "1-0")  # type: ignore[misc]


def test_build_encodes_data_as_a_producer_would() -> None:
    msg = Message.build({"order_id": "o-1", "items": ("a", "b")}, attempt=2)

    assert msg.data == {"order_id": "o-1", "items": ["a", "b"]}  # through JSON, as delivered
    assert msg.fields == {b"data": encode_body({"order_id": "o-1", "items": ["a", "b"]})}
    assert (msg.stream, msg.id, msg.attempt) == ("test", "0-1", 2)
    assert (msg.key, msg.entry_id, msg.meta) == ("test", "0-1", {})


def test_build_takes_extra_fields_as_str_or_bytes() -> None:
    msg = Message.build(
        {"n": 1}, stream="orders", id="5-0", fields={"source": "web", b"b": b"\xff"}
    )

    assert msg.fields == {b"data": b'{"n":1}', b"source": b"web", b"b": b"\xff"}
    assert msg.field("source") == "web"


def test_build_can_make_a_poison_message() -> None:
    msg = Message.build(fields={"data": b"{not json"})

    with pytest.raises(DecodeError):
        _ = msg.data


def test_build_without_data_has_no_data_field() -> None:
    assert Message.build().fields == {}
    assert Message.build().data is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": {"a": 1}, "fields": {"data": b"{}"}}, "give data or fields"),
        ({"attempt": 0}, "attempt=0"),
        ({"data": {"when": object()}}, "cannot be encoded as JSON"),
    ],
)
def test_build_refuses_what_no_delivery_could_be(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ConfigError, DecodeError), match=message):
        Message.build(**kwargs)  # type: ignore[arg-type]
