"""How much the reader asks for: room in the buffer, and the breaker's allowance."""

from __future__ import annotations

import time

from redrive.core.breaker import BreakerPolicy, CircuitBreaker, Verdict
from redrive.runtime.buffer import Buffer
from redrive.runtime.reader import Reader
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.stats import Stats
from tests.unit.runtime.fakes import MAIN, RETRY, entries


def reader(breaker: CircuitBreaker | None = None) -> Reader:
    spec = HandlerSpec("orders", "g", print, False, concurrency=4, prefetch=10)
    return Reader(
        spec=spec, consumer="c1", block_ms=100, main=MAIN, retry=RETRY,
        channel=None, buffer=Buffer((MAIN, RETRY)), batcher=None, recovery=None,  # type: ignore[arg-type]
        groups=None, breaker=breaker, stats=Stats(metrics=False),  # type: ignore[arg-type]
    )  # fmt: skip


async def test_the_reader_tops_the_buffer_up_to_twice_the_read_ahead() -> None:
    r = reader()
    assert await r.room() == 4 + 2 * 10
    r.buffer.add(MAIN, entries(*(f"{i}-0" for i in range(9))), now=0.0)
    assert await r.room() == 4 + 2 * 10 - 9


async def test_an_open_breaker_reads_nothing_and_a_half_open_one_only_its_probes() -> None:
    policy = BreakerPolicy(threshold=0.5, window=4, min_calls=4, open_seconds=0.05, probes=2,
                           certainty=0.0, streak=None)  # fmt: skip
    breaker = CircuitBreaker(policy)
    now = time.monotonic()
    for _ in range(4):
        breaker.record(Verdict.DEPENDENCY, fresh=True, now=now)
    r = reader(breaker)

    assert await r.room() == 0  # open: nothing is read, nothing burned through retries
    time.sleep(0.06)
    assert await r.room() == 2  # half-open: just the probes
