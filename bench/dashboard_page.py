"""The dashboard's DLQ list at 1M dead letters: time to serve one page (target <= 200 ms).

A private ``redis-server`` is filled with ``--count`` dead letters over ``--streams``
streams by pipelined XADD of records built by the runtime's own ``dead_record`` (90 %
timeouts, 10 % poison), plus the stream index the library reads (``redrive:streams``).
Then the page ``GET /dlq`` is served through the whole app (security middleware,
``dlq.newest``, templates) by Starlette's TestClient, ``--repeat`` times per case, and
the median and worst times are printed: the first page, a page deep inside (a cursor
half-way down), filters by stream, reason, fingerprint and text, and a filter that
matches nothing (bounded by the page's read budget), after a baseline: one plain
redis-py ``XREVRANGE COUNT 50``.

    .venv/bin/python bench/dashboard_page.py [--count 1000000] [--streams 4] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis
from starlette.testclient import TestClient

from redrive.core.message import Message
from redrive.core.records import Failure, dead_record
from redrive.dlq.fingerprint import compute
from redrive.store import keys
from redrive.testing import RedisProcess
from redrive.web import Access, DashboardSettings, allowed_hosts, create_app

TOKEN = "bench-token-0123456789abcdef"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/handlers.py", line 41, in handle\n'
    "    charge(order)\n"
    '  File "/srv/app/gateway.py", line 12, in charge\n'
    "    raise TimeoutError(msg)\n"
)
KINDS = (  # (share in tenths, error type, message, reason)
    (9, "TimeoutError", "timeout after 3012 ms", "max_retries_exceeded"),
    (1, "DecodeError", "invalid JSON at char 17", "poison"),
)


def records(stream: str) -> list[list[bytes | str]]:
    """One dead letter of each kind for ``stream``, repeated by share (ten in all)."""
    out = []
    for share, error_type, message, reason in KINDS:
        msg = Message(stream=stream, id="1-0", fields={b"data": b'{"order_id": 1}'}, attempt=4)
        failure = Failure(error_type, "transient", message, TRACEBACK, int(time.time() * 1000),
                          "c1", 12.5)  # fmt: skip
        out += [dead_record(msg, failure, group="orders", reason=reason)] * share
    return out


def fill(r: redis.Redis, streams: list[str], count: int) -> float:
    """``count`` dead letters spread over ``streams``; returns the seconds it took."""
    started = time.perf_counter()
    per = count // len(streams)
    for stream in streams:
        kinds = records(stream)
        for base in range(0, per, 10_000):
            pipe = r.pipeline(transaction=False)
            for i in range(base, min(per, base + 10_000)):
                pipe.execute_command("XADD", keys.dlq(stream), "*", *kinds[i % 10])
            pipe.execute()
        r.sadd(keys.STREAMS_INDEX, stream)
        r.xgroup_create(stream, "orders", id="0", mkstream=True)
    return time.perf_counter() - started


def cases(r: redis.Redis, streams: list[str]) -> dict[str, str]:
    """Name -> the page's path."""
    key = keys.dlq(streams[0])
    newest_ms = int(r.xrevrange(key, count=1)[0][0].decode().split("-")[0])
    oldest_ms = int(r.xrange(key, count=1)[0][0].decode().split("-")[0])
    # An id half-way in time: a cursor there is a page deep inside the list.
    mid_id = r.xrevrange(key, max=str((newest_ms + oldest_ms) // 2), count=1)[0][0].decode()
    timeout_fp = compute("TimeoutError", "timeout after 3012 ms", TRACEBACK)
    return {
        "first page (all streams)": "/dlq",
        "page at a cursor half-way down": f"/dlq?cursor={streams[0]}@{mid_id}",
        "one stream": f"/dlq?stream={streams[0]}",
        "reason=poison (10 %)": "/dlq?reason=poison",
        "fingerprint (90 %)": f"/dlq?fingerprint={timeout_fp}",
        "text 'invalid JSON'": "/dlq?q=invalid+JSON",
        "matches nothing (read budget)": "/dlq?error_type=NoSuchError",
    }


def timed(client: TestClient, path: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, reply.text[:200]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with RedisProcess() as server:
        r = redis.Redis.from_url(server.url)
        streams = [f"bench:s{i}" for i in range(args.streams)]
        seconds = fill(r, streams, args.count)
        total = sum(r.xlen(keys.dlq(s)) for s in streams)
        print(f"filled {total:,} dead letters over {len(streams)} streams in {seconds:.1f} s")
        access = Access(TOKEN, allowed_hosts("127.0.0.1", 8765))
        app = create_app(DashboardSettings(server.url, access, run_jobs=False))
        with TestClient(app, base_url="http://127.0.0.1:8765") as client:
            client.get(f"/login?token={TOKEN}")
            client.get("/dlq")  # warm the templates
            print(f"{'GET /dlq (50 rows)':<48} {'median ms':>10} {'max ms':>8}")
            plain = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                r.xrevrange(keys.dlq(streams[0]), count=50)
                plain.append((time.perf_counter() - started) * 1000)
            print(f"{'baseline: a plain redis-py XREVRANGE COUNT 50':<48} "
                  f"{statistics.median(plain):>10.1f} {max(plain):>8.1f}")  # fmt: skip
            for name, path in cases(r, streams).items():
                times = timed(client, path, args.repeat)
                print(f"{name:<48} {statistics.median(times):>10.1f} {max(times):>8.1f}")
        r.close()


if __name__ == "__main__":
    main()
