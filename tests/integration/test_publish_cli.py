"""``redrive publish``: one body or JSON lines, all checked first, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from redrive.testing import free_port


def publish(url: str, *args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "--redis-url", url, "publish", *args],
        input=data,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


def bodies(client: redis.Redis, stream: str) -> list[object]:
    return [json.loads(fields[b"data"]) for _, fields in client.xrange(stream)]


def test_data_option_publishes_one_message(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    stream = prefix + "orders"
    done = publish(redis_url, stream, "--data", '{"order_id": "o-1", "qty": 2}')
    assert done.returncode == 0, done.stderr
    [(entry_id, fields)] = client.xrange(stream)
    assert done.stdout.strip() == entry_id.decode()
    assert json.loads(fields[b"data"]) == {"order_id": "o-1", "qty": 2}


def test_stdin_lines_are_published_in_order_in_chunks(
    redis_url: str, prefix: str, client: redis.Redis
) -> None:
    stream = prefix + "orders"
    lines = [json.dumps({"n": n}) for n in range(1201)]  # three pipelined chunks
    done = publish(
        redis_url, stream, "--json", stdin="\n".join(lines[:600]) + "\n\n" + "\n".join(lines[600:])
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(printed) == 1201 and {p["stream"] for p in printed} == {stream}
    assert [p["id"] for p in printed] == [i.decode() for i, _ in client.xrange(stream)]
    assert bodies(client, stream) == [{"n": n} for n in range(1201)]


def test_quiet_prints_only_the_count(redis_url: str, prefix: str) -> None:
    stream = prefix + "orders"
    assert publish(redis_url, stream, "-q", stdin='{"a": 1}\n[2]\n').stdout == "2\n"
    done = publish(redis_url, stream, "-q", "--json", stdin='"three"\n')
    assert json.loads(done.stdout) == {"stream": stream, "published": 1}


def test_a_bad_line_publishes_nothing(redis_url: str, prefix: str, client: redis.Redis) -> None:
    stream = prefix + "orders"
    done = publish(redis_url, stream, stdin='{"ok": 1}\n{"ok": 2}\n{"ok": \n{"ok": 4}\n')
    assert done.returncode == 2
    assert done.stderr.startswith("Error: line 3 is not valid JSON")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert client.exists(stream) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dlq:orders", "--data", "{}"], "Error: stream 'dlq:orders' uses a prefix"),
        (["orders", "--data", "{nope"], "Error: --data is not valid JSON"),
    ],
)
def test_usage_errors_are_one_line(redis_url: str, args: list[str], message: str) -> None:
    done = publish(redis_url, *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1


def test_unreachable_redis_is_one_line() -> None:
    done = publish(f"redis://127.0.0.1:{free_port()}/0", "orders", "--data", "{}")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: cannot connect to redis://127.0.0.1:")
    assert done.stderr.count("\n") == 1


def test_maxlen_trims_approximately(redis_url: str, prefix: str, client: redis.Redis) -> None:
    stream = prefix + "events"
    done = publish(redis_url, stream, "-q", "--maxlen", "100", stdin="{}\n" * 1500)
    assert done.stdout == "1500\n"
    # MAXLEN ~ trims whole radix-tree nodes only, so a few more than 100 may remain.
    assert 100 <= client.xlen(stream) < 1500
