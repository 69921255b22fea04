"""The retry scheduler: moves due retries from the schedules to the retry streams.

One per worker process, for all its handlers (each handler's schedule is a
:class:`Schedule`); ``promote_due.lua`` is atomic, so many schedulers never double a retry.

- **Own retries on time.** A retry this process schedules is told to its schedule
  (``Schedule.scheduled(due_ms)``, once the move is committed); the loop sleeps until the
  earliest of them and promotes it then, so its lateness is the timer's and one round trip.
- **Everyone else's as a safety net.** Retries scheduled by other workers are promoted by
  those workers. A worker that stopped or died leaves its retries behind, so every schedule
  is also checked now and then: every ``interval``, spread so that the process checks at
  most :data:`CHECKS_PER_SECOND` schedules per second whatever its number of handlers (an
  idle Redis sees a bounded number of commands from it), and shortly after the next due
  time such a check reports (:data:`GRACE` later: its own worker goes first).
- A schedule whose call fails (Redis unreachable, a slot being migrated, anything else) is
  retried with backoff on its own: the other handlers' schedules keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time

from redis.asyncio import Redis

from redrive.store import calls

log = logging.getLogger("redrive.scheduler")

PROMOTE_BATCH = 100
#: How many schedules one process checks per second at most (each check: one EVALSHA and
#: one ZRANGE when nothing is due).
CHECKS_PER_SECOND = 10.0
#: How long after a reported due time another worker's retry is taken over (ms).
GRACE = 250.0
#: Backoff of a schedule whose promotion failed: first and longest wait (ms).
BACKOFF_MS = (100.0, 5_000.0)


async def pause(event: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when ``event`` is set."""
    if seconds <= 0:
        return
    # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as
    # the event fires, and the loop would then outlive its consumer.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def now_ms() -> float:
    return time.time() * 1000


class Schedule:
    """The retry schedule of one handler (``due_key`` → ``retry_key``) in the scheduler."""

    __slots__ = ("busy", "check_ms", "client", "due_key", "failures", "own", "owner",
                 "retry_key", "stream", "told_min")  # fmt: skip

    def __init__(
        self, owner: Scheduler, client: Redis, due_key: str, retry_key: str, stream: str
    ) -> None:
        self.owner = owner
        self.client = client
        self.due_key = due_key
        self.retry_key = retry_key
        self.stream = stream
        self.own: list[float] = []  # heap: due times of the retries this process scheduled
        self.check_ms = 0.0  # when to look for other workers' due retries (0: at once)
        self.failures = 0
        self.busy = False  # a promotion is under way
        self.told_min = float("inf")  # the earliest retry told while it was

    def scheduled(self, due_ms: float) -> None:
        """A retry this process scheduled now waits until ``due_ms``."""
        heapq.heappush(self.own, due_ms)
        if self.busy and due_ms < self.told_min:
            self.told_min = due_ms
        self.owner.woken(due_ms)

    @property
    def wake_ms(self) -> float:
        """When this schedule needs the loop next."""
        own = self.own[0] if self.own else self.check_ms
        return min(own, self.check_ms) if self.failures == 0 else self.check_ms


class Scheduler:
    """Promotes due retries of every registered schedule, each on its own."""

    def __init__(self, *, interval: float, checks_per_second: float = CHECKS_PER_SECOND) -> None:
        self.interval = interval
        self.checks_per_second = checks_per_second
        self.schedules: list[Schedule] = []
        self.wakes_at_ms = 0.0  # when the sleeping loop wakes next (0: awake)
        self._changed = asyncio.Event()
        self._rng = random.Random()

    def add(self, *, client: Redis, due_key: str, retry_key: str, stream: str) -> Schedule:
        """Register a handler's schedule; it is checked at once, then now and then."""
        schedule = Schedule(self, client, due_key, retry_key, stream)
        self.schedules.append(schedule)
        self._changed.set()
        return schedule

    def remove(self, schedule: Schedule) -> None:
        """Stop serving ``schedule`` (its consumer stopped)."""
        with contextlib.suppress(ValueError):
            self.schedules.remove(schedule)

    @property
    def check_every_ms(self) -> float:
        """How often each schedule is checked for other workers' retries."""
        return 1000 * max(self.interval, len(self.schedules) / self.checks_per_second)

    def woken(self, due_ms: float) -> None:
        """Wake the loop if it would sleep past ``due_ms`` (or is awake: it looks again)."""
        if not self.wakes_at_ms or due_ms < self.wakes_at_ms:
            self._changed.set()

    async def loop(self) -> None:
        """Promote what is due on each schedule, then sleep until the next one needs it."""
        while True:
            self._changed.clear()
            now = now_ms()
            ready = [s for s in self.schedules if s.wake_ms <= now]
            if ready:
                await asyncio.gather(*(self._promote(s) for s in ready))
                continue
            wake = min((s.wake_ms for s in self.schedules), default=now + self.check_every_ms)
            self.wakes_at_ms = wake
            await pause(self._changed, (wake - now_ms()) / 1000)
            self.wakes_at_ms = 0.0

    async def _promote(self, s: Schedule) -> None:
        """One promotion on ``s``; afterwards, when it needs the loop again."""
        started = now_ms()
        s.busy, s.told_min = True, float("inf")
        call = calls.promote_due(
            due=s.due_key, retry=s.retry_key, now_ms=int(started), limit=PROMOTE_BATCH
        )
        try:
            promoted = await call(s.client)
        except Exception as exc:  # any failure of one schedule: back off, the rest go on
            s.failures += 1
            first, longest = BACKOFF_MS
            s.check_ms = now_ms() + min(longest, first * 2 ** (s.failures - 1))
            if s.failures == 1 or s.failures % 20 == 0:
                log.warning(
                    "retry scheduler of %s: promoting due retries failed (%s: %s); retrying",
                    s.stream, type(exc).__name__, exc, extra={"stream": s.stream},
                )  # fmt: skip
            return
        finally:
            s.busy = False
        if s.failures:
            log.info("retry scheduler of %s: promoting again", s.stream)
            s.failures = 0
        own = s.own
        while own and own[0] <= started:
            heapq.heappop(own)
        if s.told_min <= started:
            # Committed while this call ran: the script may have run before it was added.
            heapq.heappush(own, s.told_min)
        if promoted.moved >= PROMOTE_BATCH:
            s.check_ms = 0.0  # more are due: go on at once
            return
        # Spread the checks: a little jitter keeps schedules added together apart.
        check = now_ms() + self.check_every_ms * (0.9 + 0.2 * self._rng.random())
        if promoted.next_ms is not None:
            check = min(check, promoted.next_ms + GRACE)
        s.check_ms = check
