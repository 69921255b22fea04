"""Throughput: redrive against a plain redis.asyncio loop, happy path and failure path.

Both consume the same number of pre-published messages from a private ``redis-server``
in the same run, in interleaved rounds (the 2-core machine is noisy). Two scenarios:

- ``noop``: a no-op handler; prints msgs/s for each and the ratio redrive / raw.
  Target (issue 12): ratio >= 0.95.
- ``retry``: 10% of the messages fail once and 1% always fail (``ConnectionError``,
  transient), ``RetryPolicy(max_retries=3, base_delay=0)``: the always-failing ones are
  dead-lettered after 4 runs. The clock stops when everything is settled: every message
  acked or dead-lettered, nothing pending, no retry scheduled. The raw loop re-adds a
  failure to the stream (XADD with a retry counter in the fields, or XADD to a dlq
  stream after the same number of runs) in the same pipeline as its XACKs. Prints both
  times, the CPU seconds of this process and of the redis-server in each loop (steadier
  than the times on a busy machine), and the ratio redrive / raw. Target (issue 12):
  ratio <= 1.3.
- ``idempotency``: the no-op handler with ``Idempotency`` off; on with the default key
  (the message's id: a new entry's claim is its pending entry, the done mark goes with
  the ack); and on with a key of the content (``order_id``: each read's keys are claimed
  in Redis, one more round trip a read). Prints msgs/s, CPU per message of both sides
  and scripts per message. Target (issue 15): on / off >= 0.7.

Both clocks start before the first read (redrive's includes its start-up, as in the
no-op scenario); both handlers decode the JSON body.

    .venv/bin/python bench/throughput.py [--messages 50000] [--rounds 3]
        [--scenario noop,retry,idempotency] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis

from redrive import App, HandlerOptions, Idempotency, Message, RetryPolicy
from redrive.runtime.settings import WorkerOptions
from redrive.runtime.worker import loop_factory
from redrive.store.keys import dlq, retry_due, retry_stream, stats
from redrive.testing import RedisProcess

T = TypeVar("T")
BODY = '{"order_id": %d, "amount": 12.5, "sku": "ABC-123", "qty": 2}'
#: The retry scenario: retries after the first run (4 runs in all), no delay.
MAX_RETRIES = 3
RETRY_POLICY = RetryPolicy(max_retries=MAX_RETRIES, base_delay=0)


def fails_always(order_id: int) -> bool:
    """1% of the messages never succeed."""
    return order_id % 100 == 0


def fails_once(order_id: int) -> bool:
    """10% of the messages fail on their first run only."""
    return order_id % 10 == 5


def server_cpu(server: RedisProcess) -> float:
    """CPU seconds the redis-server has used (utime + stime from /proc)."""
    if server.pid is None:
        return 0.0
    with open(f"/proc/{server.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def with_cpu(server: RedisProcess, run: Awaitable[T]) -> tuple[T, float, float]:
    """``run``'s result and the CPU seconds this process and the redis-server used."""
    cpu, redis_cpu = time.process_time(), server_cpu(server)
    result = await run
    return result, time.process_time() - cpu, server_cpu(server) - redis_cpu


def expected(n: int) -> tuple[int, int]:
    """(successes, dead letters) the retry scenario settles ``n`` messages into."""
    dead = sum(fails_always(i) for i in range(n))
    return n - dead, dead


async def publish(r: aioredis.Redis, stream: str, n: int) -> None:
    await r.delete(stream, f"redrive:stats:{{{stream}}}:redrive")
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"data": BODY % i})
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()


async def raw_loop(r: aioredis.Redis, stream: str, n: int) -> float:
    """The plain loop: XREADGROUP COUNT 100, then one XACK for the batch."""
    await r.xgroup_create(stream, "raw", id="0")
    done = 0
    start = time.perf_counter()
    while done < n:
        reply = await r.xreadgroup("raw", "c", {stream: ">"}, count=100, block=1000)
        ids = [entry_id for _, entries in reply for entry_id, _ in entries]
        if ids:
            await r.xack(stream, "raw", *ids)
        done += len(ids)
    return n / (time.perf_counter() - start)


async def redrive_loop(
    url: str,
    r: aioredis.Redis,
    stream: str,
    n: int,
    metrics: bool = True,
    idempotency: Idempotency | None = None,
) -> float:
    """redrive with a no-op async handler, until every message is handled and acked."""
    app = App(url)
    handled = 0
    finished = asyncio.Event()
    options: HandlerOptions = {}
    if idempotency is not None:
        options = {"idempotency": idempotency, "dlq_max_age": 86_400.0}

    @app.handler(stream, group="redrive", **options)
    async def noop(msg: object) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            finished.set()

    stop = asyncio.Event()
    start = time.perf_counter()
    options = WorkerOptions(consumer="c", metrics=metrics)
    task = asyncio.create_task(app.serve(options=options, stop=stop))
    await finished.wait()
    while (await r.xpending(stream, "redrive"))["pending"]:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return n / elapsed


async def raw_requeue_loop(r: aioredis.Redis, stream: str, n: int) -> float:
    """The plain loop with failures: re-add (or dead-letter) them in the acks' pipeline.

    Returns the seconds until every message succeeded or sits in the dlq stream.
    """
    await r.delete(dlq(stream))
    await r.xgroup_create(stream, "raw", id="0")
    want_ok, want_dead = expected(n)
    ok = dead = 0
    start = time.perf_counter()
    while ok < want_ok or dead < want_dead:
        reply = await r.xreadgroup("raw", "c", {stream: ">"}, count=100, block=1000)
        if not reply:
            continue
        pipe = r.pipeline(transaction=False)
        ids = []
        for _, entries in reply:
            for entry_id, fields in entries:
                ids.append(entry_id)
                order_id = json.loads(fields[b"data"])["order_id"]
                retries = int(fields.get(b"retries", 0))
                if not (fails_always(order_id) or (fails_once(order_id) and retries == 0)):
                    ok += 1
                elif retries < MAX_RETRIES:
                    pipe.xadd(stream, {b"data": fields[b"data"], b"retries": retries + 1})
                else:
                    pipe.xadd(dlq(stream), {b"data": fields[b"data"], b"retries": retries})
                    dead += 1
        pipe.xack(stream, "raw", *ids)
        await pipe.execute()
    return time.perf_counter() - start


async def settled(r: aioredis.Redis, stream: str, group: str, dead: int) -> bool:
    """Every message dead-lettered or acked: nothing pending, no retry waiting."""
    pipe = r.pipeline(transaction=False)
    pipe.xlen(dlq(stream))
    pipe.xpending(stream, group)
    pipe.xpending(retry_stream(stream, group), group)
    pipe.zcard(retry_due(stream, group))
    pipe.xinfo_groups(retry_stream(stream, group))
    in_dlq, source, retries, due, groups = await pipe.execute()
    unread = sum(g["lag"] or 0 for g in groups if g["name"] == group.encode())
    return (
        in_dlq == dead
        and not source["pending"]
        and not retries["pending"]
        and not due
        and not unread
    )


async def redrive_retry_loop(url: str, r: aioredis.Redis, stream: str, n: int) -> tuple[float, int]:
    """redrive with the failing handler; (seconds to settle, times the breaker opened)."""
    group = "redrive"
    await r.delete(dlq(stream), retry_stream(stream, group), retry_due(stream, group))
    app = App(url)
    want_ok, want_dead = expected(n)
    ok = last_runs = 0
    handled = asyncio.Event()

    @app.handler(stream, group=group, retry=RETRY_POLICY)
    async def flaky(msg: Message) -> None:
        nonlocal ok, last_runs
        order_id = msg.data["order_id"]
        if fails_always(order_id) or (fails_once(order_id) and msg.attempt == 1):
            if msg.attempt > MAX_RETRIES:
                last_runs += 1
                if ok == want_ok and last_runs == want_dead:
                    handled.set()
            raise ConnectionError("the gateway hung up")
        ok += 1
        if ok == want_ok and last_runs == want_dead:
            handled.set()

    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(app.serve(options=WorkerOptions(consumer="c"), stop=stop))
    await handled.wait()
    while not await settled(r, stream, group, want_dead):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    opened = int(await r.hget(stats(stream, group), "breaker_opened") or 0)
    return elapsed, opened


async def noop_scenario(
    server: RedisProcess, r: aioredis.Redis, messages: int, rounds: int
) -> None:
    raw: list[float] = []
    ours: list[float] = []
    for i in range(rounds):
        await publish(r, "bench:raw", messages)
        rate, cpu, rcpu = await with_cpu(server, raw_loop(r, "bench:raw", messages))
        raw.append(rate)
        per = f"CPU {cpu / messages * 1e6:.1f} + redis {rcpu / messages * 1e6:.1f} us/msg"
        await publish(r, "bench:redrive", messages)
        rate, cpu, rcpu = await with_cpu(
            server, redrive_loop(server.url, r, "bench:redrive", messages)
        )
        ours.append(rate)
        ours_per = f"CPU {cpu / messages * 1e6:.1f} + redis {rcpu / messages * 1e6:.1f} us/msg"
        print(f"noop round {i + 1}: raw {raw[-1]:>9,.0f} msg/s ({per})   "
              f"redrive {ours[-1]:>9,.0f} msg/s ({ours_per})")  # fmt: skip
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    print(
        f"noop median: raw {raw_m:,.0f} msg/s, redrive {ours_m:,.0f} msg/s, "
        f"ratio {ours_m / raw_m:.2f} (target >= 0.95)"
    )


async def retry_scenario(
    server: RedisProcess, r: aioredis.Redis, messages: int, rounds: int
) -> None:
    _, want_dead = expected(messages)
    runs = messages + sum(fails_once(i) for i in range(messages)) + want_dead * MAX_RETRIES
    print(f"retry: {messages:,} messages, {runs:,} runs, {want_dead:,} dead-lettered")
    raw: list[float] = []
    ours: list[float] = []
    for i in range(rounds):
        await publish(r, "bench:raw-retry", messages)
        raw_s, raw_cpu, raw_redis = await with_cpu(
            server, raw_requeue_loop(r, "bench:raw-retry", messages)
        )
        raw.append(raw_s)
        await publish(r, "bench:redrive-retry", messages)
        (seconds, opened), cpu, redis_cpu = await with_cpu(
            server, redrive_retry_loop(server.url, r, "bench:redrive-retry", messages)
        )
        ours.append(seconds)
        print(
            f"retry round {i + 1}: raw {raw_s:>6.2f} s (CPU {raw_cpu:.2f} + redis {raw_redis:.2f})"
            f"   redrive {seconds:>6.2f} s (CPU {cpu:.2f} + redis {redis_cpu:.2f})"
            f"   ratio {seconds / raw_s:.2f}   breaker opened {opened}x"
        )
    raw_m, ours_m = statistics.median(raw), statistics.median(ours)
    print(
        f"retry median: raw {raw_m:.2f} s ({messages / raw_m:,.0f} msg/s), redrive "
        f"{ours_m:.2f} s ({messages / ours_m:,.0f} msg/s), ratio redrive/raw "
        f"{ours_m / raw_m:.2f} (target <= 1.3)"
    )


async def script_calls(r: aioredis.Redis) -> int:
    """EVALSHA calls so far (round trips carry one per stream and per claim batch)."""
    stat = (await r.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stat.get("calls", 0))


async def idempotency_scenario(
    server: RedisProcess, r: aioredis.Redis, messages: int, rounds: int
) -> None:
    off: list[float] = []
    on: list[float] = []
    by_order: list[float] = []
    by_id = Idempotency(ttl=2 * 86_400.0)  # the default key: the message's original id
    # A key of the message's content: each read's keys are claimed in Redis.
    keyed = Idempotency(key=lambda msg: str(msg.data["order_id"]), ttl=2 * 86_400.0)
    for i in range(rounds):
        rows = []
        for name, idem, rates in (("off", None, off), ("on", by_id, on),
                                  ("order_id", keyed, by_order)):  # fmt: skip
            stream = f"bench:idem-{name}-{i}"
            await publish(r, stream, messages)
            calls = await script_calls(r)
            rate, cpu, rcpu = await with_cpu(
                server, redrive_loop(server.url, r, stream, messages, idempotency=idem)
            )
            rates.append(rate)
            scripts = (await script_calls(r) - calls) / messages
            us = f"CPU {cpu / messages * 1e6:.1f} + redis {rcpu / messages * 1e6:.1f} us/msg"
            rows.append(f"{name} {rate:>9,.0f} msg/s ({us}, {scripts:.3f} scripts/msg)")
        print(f"idempotency round {i + 1}: " + "   ".join(rows))
    off_m, on_m = statistics.median(off), statistics.median(on)
    keyed_m = statistics.median(by_order)
    print(
        f"idempotency median: off {off_m:,.0f} msg/s, on {on_m:,.0f} msg/s, "
        f"ratio {on_m / off_m:.2f} (target >= 0.7); keyed on order_id {keyed_m:,.0f} msg/s, "
        f"ratio {keyed_m / off_m:.2f}"
    )


async def main(messages: int, rounds: int, scenarios: list[str]) -> None:
    with RedisProcess() as server:
        r = aioredis.Redis.from_url(server.url)
        if "noop" in scenarios:
            await noop_scenario(server, r, messages, rounds)
        if "retry" in scenarios:
            await retry_scenario(server, r, messages, rounds)
        if "idempotency" in scenarios:
            await idempotency_scenario(server, r, messages, rounds)
        await r.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenario", default="noop,retry", help="noop, retry, idempotency (comma-separated)"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="event loop of both sides (uvloop: redrive[uvloop])",
    )  # fmt: skip
    args = parser.parse_args()
    chosen = args.scenario.split(",")
    unknown = set(chosen) - {"noop", "retry", "idempotency"}
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}: use noop, retry, idempotency")
    print(f"event loop: {args.loop}")
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(main(args.messages, args.rounds, chosen))
