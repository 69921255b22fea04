"""Tracing overhead: redrive with OpenTelemetry spans against tracing off, in one run.

Messages are pre-published with a producer's W3C ``traceparent`` each (the worker
extracts it; the producer sampled 1% of them), then consumed by one worker from a
private ``redis-server``. Modes, in a different order each round (the machine is noisy):

- ``off``: ``WorkerOptions(tracing=False)``, no span code at all;
- ``api``: tracing on, but no SDK: no provider passed, the global one unset (what a
  process with only ``opentelemetry-api`` installed runs). Target (issue 14): >= 0.97x off;
- ``sdk``: an SDK ``TracerProvider`` passed to ``App``, always-on sampling (every span
  recorded), a ``BatchSpanProcessor`` with an exporter that drops the batches (the cost
  of the SDK and of redrive's attributes, not of a network). Target: >= 0.80x off;
- ``sampled`` (only with ``--modes``): the same SDK with the default sampler's shape,
  ``ParentBased(TraceIdRatioBased(0.01))``: a run follows its producer's decision, so 1%
  of the spans record.

Handlers: ``noop`` (an ``async def`` that does nothing: the worst case, as the SDK's own
cost per span is several times redrive's per message) and ``io`` (awaits 2 ms, as a
handler calling a database would, ``--io-ms``; concurrency 16). Prints msg/s (and this process's
CPU µs per message, steadier on a busy machine) per mode and round, and the ratios of the
medians and of the best rounds.

    .venv/bin/python bench/tracing.py [--messages 20000] [--rounds 3] [--handler noop,io]
        [--io-ms 2] [--modes off,api,sdk,sampled]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from redrive import App, Message
from redrive.runtime.settings import WorkerOptions
from redrive.runtime.worker import tracer_of
from redrive.testing import RedisProcess

BODY = '{"order_id": %d, "amount": 12.5, "sku": "ABC-123", "qty": 2}'
#: A producer's context per message; the producer sampled 1% (flag 01), as a head sampler.
TRACEPARENT = "00-%032x-%016x-%s"
MODES = ("off", "api", "sdk")
TARGETS = {"api": ">= 0.97", "sdk": ">= 0.80"}


class DropExporter(SpanExporter):
    """Counts the spans it is given and drops them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def publish(r: aioredis.Redis, stream: str, n: int) -> None:
    await r.delete(stream)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        parent = TRACEPARENT % (i + 1, i + 1, "01" if i % 100 == 0 else "00")
        pipe.xadd(stream, {"data": BODY % i, "traceparent": parent})
        if i % 1000 == 999:
            await pipe.execute()
    await pipe.execute()


async def consume(url: str, r: aioredis.Redis, stream: str, n: int, mode: str, io: float) -> float:
    """msg/s until every message is handled and acked."""
    provider: Any = None
    exporter = DropExporter()
    if mode in ("sdk", "sampled"):
        sampler = ParentBased(TraceIdRatioBased(0.01)) if mode == "sampled" else ALWAYS_ON
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    app = App(url, tracer_provider=provider)
    options = WorkerOptions(consumer="c", metrics=False, tracing=mode != "off")
    if mode == "api":  # the same code as off: the worker decides at start that nothing records
        assert tracer_of(provider, options) is None
    handled = 0
    finished = asyncio.Event()

    @app.handler(stream, group="g", concurrency=16, breaker=None)
    async def handle(msg: Message) -> None:
        nonlocal handled
        if io:
            await asyncio.sleep(io)
        handled += 1
        if handled == n:
            finished.set()

    stop = asyncio.Event()
    start, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(app.serve(options=options, stop=stop))
    await finished.wait()
    while (await r.xpending(stream, "g"))["pending"]:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    if provider is not None:
        provider.shutdown()  # flushes: every span reached the exporter
        if mode == "sdk":
            assert exporter.spans >= n, f"only {exporter.spans} of {n} spans exported"
    return n / elapsed, (time.process_time() - cpu) / n * 1e6


def report(
    handler: str, n: int, results: dict[str, list[float]], cpu: dict[str, list[float]]
) -> None:
    """Medians (msg/s, CPU per message) and best rounds, each mode against ``off``."""
    rate = {m: statistics.median(v) for m, v in results.items()}
    best = {m: max(v) for m, v in results.items()}
    us = {m: statistics.median(v) for m, v in cpu.items()}
    others = [m for m in results if m != "off"]
    print(f"{handler} median ({n} messages): "
          + ", ".join(f"{m} {rate[m]:,.0f}" for m in results) + " msg/s; "
          + ", ".join(f"{m}/off {rate[m] / rate['off']:.3f}" for m in others)
          + f" (targets: api {TARGETS['api']}, sdk {TARGETS['sdk']})")  # fmt: skip
    print(f"{handler} CPU per message (median): "
          + ", ".join(f"{m} {us[m]:.1f} µs" for m in results) + "; "
          + ", ".join(f"{m}/off {us[m] / us['off']:.3f}" for m in others))  # fmt: skip
    # Best of the rounds: on a shared machine the least disturbed run of each mode.
    print(f"{handler} best: " + ", ".join(f"{m} {best[m]:,.0f}" for m in results) + " msg/s; "
          + ", ".join(f"{m}/off {best[m] / best['off']:.3f}" for m in others))  # fmt: skip


async def main(
    messages: int, rounds: int, handlers: list[str], io_ms: float, modes: tuple[str, ...]
) -> None:
    orders = list(itertools.permutations(modes))
    with RedisProcess() as server:
        r = aioredis.Redis.from_url(server.url)
        for handler in handlers:
            n = messages if handler == "noop" else max(messages // 4, 1000)
            results: dict[str, list[float]] = {m: [] for m in modes}
            cpu: dict[str, list[float]] = {m: [] for m in modes}
            for mode in modes:  # warm-up, not counted: imports, script loading, the SDK
                await publish(r, f"bench:warm:{mode}", 2000)
                await consume(server.url, r, f"bench:warm:{mode}", 2000, mode, 0.0)
                await r.delete(f"bench:warm:{mode}")
            for i in range(rounds):
                # Every order in turn (six rounds: each once), so no mode always follows
                # the same other one.
                for mode in orders[i % len(orders)]:
                    gc.collect()  # the SDK's garbage is not the next mode's cost
                    stream = f"bench:{handler}:{mode}:{i}"
                    await publish(r, stream, n)
                    io = io_ms / 1000 if handler == "io" else 0.0
                    rate, us = await consume(server.url, r, stream, n, mode, io)
                    results[mode].append(rate)
                    cpu[mode].append(us)
                    await r.delete(stream)
                rates = "   ".join(
                    f"{m} {results[m][-1]:>8,.0f} ({cpu[m][-1]:.0f} µs)" for m in modes
                )
                print(f"{handler} round {i + 1}: {rates} msg/s (CPU per message)")
            report(handler, n, results, cpu)
        await r.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handler", default="noop,io")
    parser.add_argument("--io-ms", type=float, default=2.0, help="what the io handler awaits")
    parser.add_argument("--modes", default=",".join(MODES), help="off,api,sdk[,sampled]")
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    if modes[0] != "off" or not set(modes) <= {*MODES, "sampled"}:
        parser.error("--modes: off first, then any of api, sdk, sampled")
    asyncio.run(main(args.messages, args.rounds, args.handler.split(","), args.io_ms, modes))
