"""The lanes: outcomes go to the batcher or the settler; stalls, time limits, context."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any

from redrive.errors import HandlerTimeout
from redrive.runtime.buffer import Buffer
from redrive.runtime.dispatch import Lanes
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.stats import Stats
from tests.unit.runtime.fakes import MAIN, RETRY, FakeIsolation, FakeLeases, FakeSettler, entries
from tests.unit.runtime.test_acks import batcher

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


def lanes(
    fn: Callable[..., Any],
    *,
    is_async: bool = True,
    leases: FakeLeases | None = None,
    middleware: tuple[Any, ...] = (),
    **spec: Any,
) -> Lanes:
    buffer = Buffer((MAIN, RETRY))
    return Lanes(
        spec=HandlerSpec("orders", "g", fn, is_async, concurrency=2, breaker=None, **spec),
        middleware=middleware,
        buffer=buffer,
        batcher=batcher(),
        settler=FakeSettler(),  # type: ignore[arg-type]
        isolation=FakeIsolation(),  # type: ignore[arg-type]
        leases=leases or FakeLeases(),  # type: ignore[arg-type]
        breaker=None,
        stats=Stats("orders", "g", "c1", metrics=False),
    )


async def drain(ln: Lanes) -> None:
    """Run the lanes until the (sealed) buffer is empty."""
    ln.buffer.seal()
    await asyncio.wait_for(asyncio.gather(*ln.start()), 5)
    ln.close()


async def test_a_success_is_acked_and_a_failure_settled_never_both() -> None:
    async def handle(msg: Any) -> None:
        if msg.data["n"] == 2:
            raise ValueError("bad n")

    ln = lanes(handle)
    ln.buffer.add(MAIN, entries("1-0"), now=time.perf_counter())
    ln.buffer.add(MAIN, entries("2-0", body=b'{"n": 2}'), now=time.perf_counter())

    await drain(ln)

    assert ln.batcher.ids[MAIN] == [b"1-0"]
    settler: FakeSettler = ln.settler  # type: ignore[assignment]
    assert [(m.id, type(e)) for _, m, e in settler.failures] == [("2-0", ValueError)]
    assert ln.buffer.inflight == 0 and ln.buffer.held_total() == 0
    assert ln.stats.succeeded == 1


async def test_an_entry_held_through_a_stall_is_not_run_when_another_consumer_took_it() -> None:
    ran: list[str] = []

    async def handle(msg: Any) -> None:
        ran.append(msg.id)

    leases = FakeLeases(lost={b"1-0"})
    ln = lanes(handle, leases=leases, visibility_timeout=1.0)
    long_ago = time.perf_counter() - 10  # held past 0.6 x the visibility timeout
    ln.buffer.add(MAIN, entries("1-0"), now=long_ago)

    await drain(ln)

    assert leases.asked == [b"1-0"]  # its lease was checked before running it
    assert ran == [] and ln.batcher.ids[MAIN] == []


async def test_a_def_handler_sees_the_context_its_middleware_set() -> None:
    seen: list[str] = []

    def tenant(spec: Any, call_next: Any) -> Any:
        async def call(msg: Any) -> Any:
            TENANT.set(msg.data["tenant"])
            return await call_next(msg)

        return call

    def handle(msg: Any) -> None:  # runs in the thread pool
        seen.append(TENANT.get())

    ln = lanes(handle, is_async=False, middleware=(tenant,))
    ln.buffer.add(MAIN, entries("1-0", body=b'{"tenant": "acme"}'), now=time.perf_counter())

    await drain(ln)

    assert seen == ["acme"]


async def test_a_run_past_its_time_limit_is_cancelled_and_settled_as_a_timeout() -> None:
    async def handle(msg: Any) -> None:
        await asyncio.sleep(60)

    ln = lanes(handle, timeout=0.05)
    ln.buffer.add(MAIN, entries("1-0"), now=time.perf_counter())
    tasks = ln.start()
    await asyncio.sleep(0.1)

    assert ln.expire_hung(time.perf_counter()) == 1
    ln.buffer.seal()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)

    settler: FakeSettler = ln.settler  # type: ignore[assignment]
    assert [type(e) for _, _, e in settler.failures] == [HandlerTimeout]
    assert ln.batcher.ids[MAIN] == []
    assert not any(run.expired for run in ln.runs)  # forgiven: the lane watches its next run
