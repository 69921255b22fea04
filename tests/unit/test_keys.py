"""Key names: every derived key hashes to the stream's cluster slot; reserved names refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.errors import ConfigError
from redrive.store.keys import (
    StreamKeys,
    dlq,
    hash_tag,
    retry_due,
    retry_stream,
    stats,
    validate_group_name,
    validate_stream_name,
)


def cluster_hashed_part(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the spec's hash-tag rule, written out).

    The first ``{`` and the first ``}`` after it enclose the tag, if it is non-empty;
    otherwise the whole key is hashed.
    """
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end != -1 and end != start + 1:
            return key[start + 1 : end]
    return key


def derived_keys(stream: str, group: str) -> list[str]:
    return [
        dlq(stream),
        retry_stream(stream, group),
        retry_due(stream, group),
        stats(stream, group),
    ]


brace_free = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="{}"),
    min_size=1,
    max_size=30,
)
groups = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters="-_."),
    min_size=1,
    max_size=20,
)


# --- the names themselves -------------------------------------------------------------------


def test_keys_of_a_plain_stream_wrap_it_in_a_hash_tag() -> None:
    keys = StreamKeys.of("ecommerce:orders", "billing")

    assert keys.stream == "ecommerce:orders"
    assert keys.dlq == "dlq:{ecommerce:orders}"
    assert keys.retry == "retry:{ecommerce:orders}:billing"
    assert keys.due == "retry:{ecommerce:orders}:billing:due"
    assert keys.stats == "redrive:stats:{ecommerce:orders}:billing"


def test_a_stream_with_its_own_hash_tag_keeps_it() -> None:
    keys = StreamKeys.of("{tenant}:orders", "billing")

    assert keys.dlq == "dlq:{tenant}:orders"
    assert keys.retry == "retry:{tenant}:orders:billing"
    assert keys.due == "retry:{tenant}:orders:billing:due"


@pytest.mark.parametrize("stream", ["orders{", "{orders", "a{b{c"])
def test_an_unclosed_brace_is_not_a_tag_and_the_name_is_wrapped(stream: str) -> None:
    tagged = hash_tag(stream)

    assert tagged == "{" + stream + "}"
    assert cluster_hashed_part(dlq(stream)) == cluster_hashed_part(stream) == stream


def test_two_groups_on_one_stream_have_separate_retry_keys() -> None:
    billing = StreamKeys.of("ecommerce:orders", "billing")
    shipping = StreamKeys.of("ecommerce:orders", "shipping")

    assert billing.retry != shipping.retry
    assert billing.due != shipping.due
    assert billing.stats != shipping.stats
    assert billing.dlq == shipping.dlq  # one dead-letter stream per source stream


@given(brace_free, groups)
def test_derived_keys_share_the_slot_of_a_plain_stream(stream: str, group: str) -> None:
    assert {cluster_hashed_part(k) for k in derived_keys(stream, group)} == {
        cluster_hashed_part(stream)
    }


@given(brace_free, brace_free, groups)
def test_derived_keys_share_the_slot_of_a_tagged_stream(tag: str, rest: str, group: str) -> None:
    stream = "{" + tag + "}" + rest

    assert {cluster_hashed_part(k) for k in derived_keys(stream, group)} == {tag}


@given(brace_free, groups, groups)
def test_retry_keys_of_different_groups_never_collide(stream: str, a: str, b: str) -> None:
    keys_a = {retry_stream(stream, a), retry_due(stream, a)}
    keys_b = {retry_stream(stream, b), retry_due(stream, b)}

    assert (keys_a == keys_b) is (a == b)
    assert keys_a.isdisjoint(keys_b) is (a != b)


@given(brace_free, brace_free)
def test_different_plain_streams_have_different_dead_letter_streams(s1: str, s2: str) -> None:
    assert (dlq(s1) == dlq(s2)) is (s1 == s2)


@pytest.mark.parametrize("stream", ["a}b", "a{}b", "{}{x}", "x{y"])
def test_stray_braces_are_refused_since_no_derived_key_could_share_their_slot(
    stream: str,
) -> None:
    # Redis Cluster hashes such a name whole; a derived key cannot carry a tag equal to a
    # name containing a brace, so the Lua moves would cross slots. Refuse, with a fix.
    with pytest.raises(ConfigError, match="hash tag"):
        StreamKeys.of(stream, "g")


def test_a_stream_that_is_only_a_tag_is_refused_as_the_twin_of_its_plain_name() -> None:
    # 'orders' and '{orders}' would otherwise share dlq:{orders} and retry:{orders}:g.
    with pytest.raises(ConfigError, match="name it 'orders'"):
        StreamKeys.of("{orders}", "g")
    assert StreamKeys.of("orders", "g").dlq == "dlq:{orders}"


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["ecommerce:orders", "{tenant}:orders", "retry", "dlqs:x"])
def test_ordinary_stream_names_are_accepted(stream: str) -> None:
    assert validate_stream_name(stream) == stream


@pytest.mark.parametrize("stream", ["", "   ", "\t\n"])
def test_an_empty_stream_name_is_refused(stream: str) -> None:
    with pytest.raises(ConfigError, match="stream name is empty"):
        validate_stream_name(stream)


@pytest.mark.parametrize(
    "stream", ["retry:{orders}:g", "dlq:{orders}", "dlq:orders", "redrive:streams"]
)
def test_a_stream_in_a_reserved_namespace_is_refused(stream: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_stream_name(stream)

    assert repr(stream) in str(caught.value)
    assert "prefix redrive reserves (retry:, dlq:, redrive:)" in str(caught.value)


@pytest.mark.parametrize("group", ["orders-service", "billing", "g1", "a.b_c"])
def test_ordinary_group_names_are_accepted(group: str) -> None:
    assert validate_group_name(group) == group


@pytest.mark.parametrize("group", ["", "a:b", "due:", "two words", "tab\there", "new\nline"])
def test_a_group_name_that_would_break_key_parsing_is_refused(group: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_group_name(group)

    assert repr(group) in str(caught.value)
    assert "without ':' or spaces" in str(caught.value)


def test_stream_keys_validate_both_names() -> None:
    with pytest.raises(ConfigError, match="reserves"):
        StreamKeys.of("dlq:{orders}", "billing")
    with pytest.raises(ConfigError, match="group name"):
        StreamKeys.of("orders", "bill:ing")


@given(brace_free.filter(lambda s: s.strip() and not s.startswith(("retry:", "dlq:", "redrive:"))))
def test_any_stream_outside_the_reserved_namespaces_gets_keys_outside_its_own_name(
    stream: str,
) -> None:
    keys = StreamKeys.of(stream, "g")

    assert stream not in {keys.retry, keys.due, keys.dlq, keys.stats}
    for key in (keys.retry, keys.due, keys.dlq, keys.stats):
        with pytest.raises(ConfigError):
            validate_stream_name(key)  # a derived key can never be mistaken for a source
