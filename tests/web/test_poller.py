"""The shared poller: one poll for every open page, idle when none is open."""

from __future__ import annotations

import asyncio

from redrive.web.poller import Poller


async def test_one_poll_serves_every_subscriber_and_stops_with_the_last() -> None:
    calls = 0

    async def produce() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"overview": f"frame {calls}"}

    poller = Poller(produce, interval=0.01)  # raised to the 1 s floor
    assert poller.interval == 1.0 and not poller.running and calls == 0  # idle: no poll
    a, b = poller.subscribe(), poller.subscribe()
    first_a = await asyncio.wait_for(a.get(), 2)
    first_b = await asyncio.wait_for(b.get(), 2)
    assert first_a == first_b == {"overview": "frame 1"} and calls == 1
    poller.unsubscribe(a)
    poller.unsubscribe(b)
    async with asyncio.timeout(3):
        while poller.running:  # ends at its next tick
            await asyncio.sleep(0.05)
    assert calls == 1
    await poller.close()


async def test_close_tells_subscribers() -> None:
    async def produce() -> dict[str, str]:
        return {}

    poller = Poller(produce)
    queue = poller.subscribe()
    await asyncio.wait_for(queue.get(), 2)
    await poller.close()
    assert await asyncio.wait_for(queue.get(), 1) is None
