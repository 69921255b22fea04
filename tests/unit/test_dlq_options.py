"""Argument parsing of the DLQ tools (times, rates, export records) and the token bucket."""

from __future__ import annotations

import pytest

from redrive.dlq.export_import import ImportFileError, decode_bytes, encode_bytes, parse_file
from redrive.dlq.query import Filter, parse_duration, parse_time
from redrive.dlq.ratelimit import TokenBucket, parse_rate
from redrive.errors import ConfigError

NOW = 1_800_000_000_000


def test_times_are_durations_iso_times_or_ms() -> None:
    assert parse_time("2h", NOW) == NOW - 7_200_000
    assert parse_time("1700000000000-5", NOW) == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20", NOW) == 1_700_000_000_000
    assert parse_duration("500ms") == 500
    for bad in ("yesterday", "2h ago", "-5m", ""):
        with pytest.raises(ConfigError):
            parse_time(bad, NOW)


def test_filter_checks_its_arguments_before_any_io() -> None:
    with pytest.raises(ConfigError, match="expected an id"):
        Filter(ids=("latest",))
    with pytest.raises(ConfigError, match="not a valid pattern"):
        Filter(grep="(")
    assert Filter().is_empty and not Filter(since_ms=0).is_empty


def test_rates() -> None:
    assert parse_rate("100") == parse_rate("100/s") == parse_rate("6000/m") == 100
    for bad in ("0", "fast", "10/d", "inf"):
        with pytest.raises(ConfigError):
            parse_rate(bad)


async def test_token_bucket_paces_n_events_over_n_minus_1_intervals() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(100, clock=lambda: now[0], sleep=sleep)
    for _ in range(500):
        await bucket.take()
    assert now[0] == pytest.approx(4.99)


def test_bytes_round_trip_through_json_safe_values() -> None:
    for raw in (b"", b"plain", "é".encode(), b"\xff\x00\xfe", bytes(range(256))):
        assert decode_bytes(encode_bytes(raw)) == raw
    assert encode_bytes(b"\xff") == {"b64": "/w=="}


def test_a_corrupt_line_names_its_number() -> None:
    good = '{"v":1,"stream":"orders","id":"1-0","fields":[["data","{}"]]}'
    with pytest.raises(ImportFileError, match="line 3"):
        parse_file([good, "", '{"v":1,"stream":"orders"'])
    with pytest.raises(ImportFileError, match="reserves"):
        parse_file(['{"v":1,"stream":"dlq:x","id":"1-0","fields":[["a","b"]]}'])


def test_dead_letters_are_named_stream_at_id() -> None:
    from redrive.dlq.model import split_ref

    assert split_ref("1700000000000-3") == (None, "1700000000000-3")
    assert split_ref("ecommerce:orders@1700000000000-3") == ("ecommerce:orders", "1700000000000-3")
    assert split_ref("team@corp:orders@5") == ("team@corp:orders", "5-0"), "the last @ splits"
    for bad in ("@1-0", "orders@", "orders@latest", "dlq:{x}@1-0"):
        with pytest.raises(ConfigError):
            split_ref(bad)
    with pytest.raises(ConfigError, match="not among the STREAMs given"):
        Filter(streams=("a",), ids=("b@1-0",))
    with pytest.raises(ConfigError, match="use one of poison, permanent_error"):
        Filter(reason="bogus")
