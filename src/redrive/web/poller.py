"""One shared poll of Redis behind every open page's live updates (server-sent events).

Ten open tabs cost one collection per interval, not ten: each subscriber gets the latest
rendered fragments through a queue of one (a slow tab skips frames, never piles them
up). The poll runs only while a page is subscribed and stops with the last one, so an
idle dashboard sends Redis nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("redrive.web")

Frame = dict[str, str]
#: The least interval between two polls (seconds): the issue's floor.
MIN_INTERVAL = 1.0


class Poller:
    """Calls ``produce`` every ``interval`` seconds while anyone subscribes."""

    def __init__(self, produce: Callable[[], Awaitable[Frame]], interval: float = 1.0) -> None:
        self.produce = produce
        self.interval = max(MIN_INTERVAL, interval)
        self.polls = 0
        self._subscribers: set[asyncio.Queue[Frame | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._latest: Frame | None = None

    @property
    def running(self) -> bool:
        """Whether the poll loop runs now."""
        return self._task is not None and not self._task.done()

    def subscribe(self) -> asyncio.Queue[Frame | None]:
        """A queue of frames (``None``: the server is closing); starts the poll if idle."""
        queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        if self._latest is not None:
            queue.put_nowait(self._latest)
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name="dashboard poller")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Frame | None]) -> None:
        """Stop sending to ``queue``; the loop ends at its next tick if nobody is left."""
        self._subscribers.discard(queue)

    async def close(self) -> None:
        """Tell every subscriber the server is closing and stop the loop."""
        for queue in list(self._subscribers):
            _offer(queue, None)
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while self._subscribers:
            try:
                frame = await self.produce()
            except Exception:  # the frame producer words Redis errors; this is a bug
                log.exception("dashboard poll failed")
                frame = {}
            self.polls += 1
            self._latest = frame
            for queue in list(self._subscribers):
                _offer(queue, frame)
            await asyncio.sleep(self.interval)
        self._latest = None  # stale once nobody watched: the next page polls afresh


def _offer(queue: asyncio.Queue[Frame | None], frame: Frame | None) -> None:
    """Replace whatever ``queue`` holds with ``frame`` (the newest wins)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(frame)
