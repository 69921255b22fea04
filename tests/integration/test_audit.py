"""``redrive audit``: every entry of a stream is acked, pending, unread, retrying or dead,
and a pending entry whose payload was trimmed is reported as the loss it is."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import redis

from redrive.store.keys import StreamKeys
from redrive.verify.conservation import audit_stream


def _arrange(r: redis.Redis, k: StreamKeys) -> dict[str, str]:
    """Six entries, one in each place, and one pending entry deleted from the stream."""
    ids = [r.xadd(k.stream, {"data": json.dumps({"n": n})}).decode() for n in range(6)]
    r.xgroup_create(k.stream, k.group, id="0")
    r.xreadgroup(k.group, "c1", {k.stream: ">"}, count=5)  # 5 delivered, 1 unread
    r.xack(k.stream, k.group, ids[0])  # handled
    r.xack(k.stream, k.group, ids[1])  # moved to the DLQ ...
    r.xadd(k.dlq, {"redrive-origin-stream": k.stream, "redrive-origin-id": ids[1],
                   "redrive-group": k.group, "redrive-reason": "poison"})  # fmt: skip
    r.xack(k.stream, k.group, ids[2])  # ... and to a retry stream
    r.xadd(k.retry, {"redrive-origin-id": ids[2], "redrive-attempt": "2"})
    r.xdel(k.stream, ids[4])  # pending, payload gone (trimmed)
    return {"acked": ids[0], "dead": ids[1], "retrying": ids[2], "pending": ids[3],
            "trimmed": ids[4], "unread": ids[5]}  # fmt: skip


def test_audit_places_every_entry_and_flags_a_trimmed_pending_one(
    redis_url: str, prefix: str
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    r = redis.Redis.from_url(redis_url)
    try:
        placed = _arrange(r, k)
        (audit,) = audit_stream(r, k.stream)
    finally:
        r.close()
    counts = {p: audit.counts[p] for p in ("acked", "dead", "retrying", "pending", "unread")}
    assert counts == dict.fromkeys(counts, 1)
    assert audit.entries == 5
    assert audit.trimmed_pending == [placed["trimmed"]]
    assert not audit.double_booked
    assert not audit.ok


def test_audit_cli_exits_1_on_a_trimmed_entry_and_0_once_it_is_settled(
    redis_url: str, prefix: str
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    r = redis.Redis.from_url(redis_url)
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "audit", k.stream,
            "--group", "g", "--json"]  # fmt: skip
    try:
        placed = _arrange(r, k)
        before = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        r.xack(k.stream, k.group, placed["trimmed"])  # as a payload_trimmed tombstone would
        after = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    finally:
        r.close()
    assert before.returncode == 1, before.stderr
    assert json.loads(before.stdout)["trimmed_pending_sample"] == [placed["trimmed"]]
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["ok"] is True


def test_audit_of_a_stream_without_groups_is_a_usage_error(redis_url: str, prefix: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "audit",
         f"{prefix}nothing"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert b"no consumer group" in done.stderr


def test_audit_of_a_group_that_does_not_exist_exits_2_and_names_the_groups(
    redis_url: str, prefix: str, r: redis.Redis
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    _arrange(r, k)
    base = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "audit", k.stream]
    for flag in ("-g", "--group"):
        done = subprocess.run([*base, flag, "gone"], capture_output=True, timeout=30, check=False)
        assert done.returncode == 2 and done.stdout == b"", done.stdout
        assert done.stderr.decode().strip() == (
            f"Error: stream '{k.stream}' has no consumer group 'gone' (its groups: g)"
        )


def test_audit_prints_whole_headers_and_refs_when_piped(
    redis_url: str, prefix: str, r: redis.Redis
) -> None:
    k = StreamKeys.of(f"{prefix}orders", "g")
    placed = _arrange(r, k)
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "audit", k.stream]
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False, text=True)
    header, row, *problems = done.stdout.splitlines()
    assert done.returncode == 1
    assert header.split("\t") == [
        "stream", "group", "entries", "acked", "pending", "unread", "retrying", "dead",
        "double-booked", "trimmed pending",
    ]  # fmt: skip
    assert row.split("\t") == [k.stream, "g", "5", "1", "1", "1", "1", "1", "0", "1"]
    assert problems == [f"trimmed {k.stream}@{placed['trimmed']}: pending, payload gone (lost)"]


def test_audit_with_redis_down_is_one_line_exit_2() -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url in (f"redis://127.0.0.1:{port}/0", f"redis+cluster://127.0.0.1:{port}"):
        done = subprocess.run(
            [sys.executable, "-m", "redrive.cli", "--redis-url", url, "audit", "orders"],
            capture_output=True, timeout=30, check=False, text=True,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("Error: cannot connect") and done.stderr.count("\n") == 1
