"""Fingerprints group one kind of failure and keep different kinds apart."""

from __future__ import annotations

from redrive.dlq.fingerprint import compute, normalise_message, top_frames

TB = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/handlers.py", line {line}, in handle\n'
    '  File "/srv/app/gateway.py", line 12, in charge\n'
)


def test_numbers_in_the_message_do_not_split_a_group() -> None:
    a = compute("TimeoutError", "timeout after 3012 ms", TB.format(line=41))
    b = compute("TimeoutError", "timeout after 2991 ms", TB.format(line=41))
    assert a == b


def test_different_exception_types_stay_apart() -> None:
    assert compute("TimeoutError", "timeout after 3012 ms") != compute(
        "ConnectionError", "timeout after 3012 ms"
    )


def test_a_deploy_that_moves_lines_keeps_the_group_but_other_frames_split_it() -> None:
    assert compute("E", "m", TB.format(line=41)) == compute("E", "m", TB.format(line=57))
    elsewhere = TB.format(line=41).replace("charge", "refund")
    assert compute("E", "m", TB.format(line=41)) != compute("E", "m", elsewhere)


def test_ids_quoted_values_and_hex_are_masked() -> None:
    text = "order 'o-17' (id 1700000000000-3, txn 9f86d081884c7d65) failed at 0xdeadbeef"
    assert normalise_message(text) == "order <str> (id <id>, txn <hex>) failed at <hex>"
    uuid = "user 123e4567-e89b-12d3-a456-426614174000 not found"
    assert normalise_message(uuid) == "user <uuid> not found"


def test_top_frames_are_innermost_file_and_function() -> None:
    assert top_frames(TB.format(line=1)) == ["handlers.py:handle", "gateway.py:charge"]
    assert top_frames("") == []
