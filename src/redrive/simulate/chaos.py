"""Process and network faults, run one after another at their scheduled times.

Each fault is bounded in time and healed before it returns, so once :meth:`Chaos.run`
is done nothing is broken any more and the final drain measures the system, not the
fault. Every fault is logged as a :class:`FaultEvent` (when it began and healed, which
consumers it hit) — the reconciliation attributes duplicates to these windows — and,
in the background, how long the entries it stranded took to settle (recovery time).

Crashes the fault middleware injects are not scheduled: the :meth:`Chaos.supervise`
loop notices the dead worker, logs a ``crash`` event and restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from redis import exceptions as rex
from redis.asyncio import Redis

from redrive.errors import RedriveError
from redrive.simulate.faults import CRASH_EXIT_CODE
from redrive.simulate.proxy import Proxy
from redrive.simulate.scenario import ChaosFault
from redrive.simulate.workers import Slot, WorkerPool
from redrive.store.keys import StreamKeys
from redrive.store.local import RedisProcess

log = logging.getLogger("redrive.simulate")

RECOVERY_DEADLINE = 120.0
#: A worker that exits this often in a row on its own, while Redis answers, cannot start
#: (a bad environment, an import error): the run stops and shows why instead of looping.
MAX_FAILED_STARTS = 3
STARTUP_GRACE = 10.0  # seconds: a worker that ran longer did start
START_FAILURE_CODES = (1, 2)  # an exception at import, a CLI error; not os._exit crashes
POLL = 0.1
RESET_EVERY = 0.25
_ERRORS = (rex.RedisError, OSError)


class WorkerStartError(RedriveError):
    """A simulated worker cannot start: the run stops and says why."""


@dataclass(slots=True)
class FaultEvent:
    """One fault as it happened; times are epoch seconds."""

    kind: str
    started: float
    healed: float
    consumers: tuple[str, ...] | None  # hit consumers; None: every consumer (Redis itself)
    stranded: int = 0
    # From the fault's start until every entry it stranded had settled; None: not (yet).
    recovery_s: float | None = None
    detail: str = ""

    def to_json(self, t0: float) -> dict[str, Any]:
        """A JSON-ready dict with times relative to the run's start."""
        return {
            "kind": self.kind,
            "at_s": round(self.started - t0, 3),
            "healed_s": round(self.healed - t0, 3),
            "consumers": list(self.consumers) if self.consumers is not None else "all",
            "stranded": self.stranded,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "detail": self.detail,
        }


class Chaos:
    """Runs a scenario's faults against the pool, the proxies and the Redis process."""

    def __init__(
        self,
        pool: WorkerPool,
        proxies: list[Proxy],
        redis_proc: RedisProcess,
        monitor: Redis,
        keys: list[StreamKeys],
    ) -> None:
        self.pool = pool
        self.proxies = proxies
        self.redis_proc = redis_proc
        self.monitor = monitor
        self.keys = keys
        self.events: list[FaultEvent] = []
        self._watchers: set[asyncio.Task[None]] = set()

    async def run(self, faults: tuple[ChaosFault, ...], t0: float) -> None:
        """Run ``faults`` in order, each no earlier than ``t0 + fault.at``."""
        actions: dict[str, Callable[[ChaosFault, FaultEvent], Coroutine[Any, Any, None]]] = {
            "kill_worker": self._kill_worker,
            "stop_worker": self._stop_worker,
            "kill_redis": self._kill_redis,
            "proxy_reset": self._proxy_reset,
            "proxy_blackhole": self._proxy_blackhole,
            "proxy_delay": self._proxy_delay,
        }
        for fault in faults:
            await asyncio.sleep(max(0.0, t0 + fault.at - time.time()))
            stranded = await self._pending(self._consumers_of(fault))
            event = FaultEvent(fault.kind, time.time(), 0.0, self._consumers_of(fault))
            self._record(event, stranded)  # watched from the start: recovery may come first
            await actions[fault.kind](fault, event)
            event.healed = time.time()

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart workers that died on their own (injected crashes) until ``stop``.

        Raises :class:`WorkerStartError` when one keeps exiting by itself while Redis is up.
        """
        while not stop.is_set():
            for slot in self.pool.reap_crashed():
                code = slot.exits[-1]
                kind = "crash" if code == CRASH_EXIT_CODE else "worker_exit"
                early = time.monotonic() - slot.started < STARTUP_GRACE
                failed = code in START_FAILURE_CODES and early
                slot.failed_starts = slot.failed_starts + 1 if failed else 0
                if slot.failed_starts >= MAX_FAILED_STARTS and await self._redis_up():
                    raise WorkerStartError(
                        f"worker {slot.name} exited {slot.failed_starts} times in a row "
                        f"(rc={code}) with Redis up: {self.pool.last_log_line(slot)}"
                    )
                stranded = await self._pending((slot.name,))
                now = time.time()
                event = FaultEvent(kind, now, now, (slot.name,), detail=f"rc={code}")
                self._record(event, stranded)
                if slot.proc is None:  # a fault may have restarted it while we asked Redis
                    self.pool.spawn(slot)
            await asyncio.sleep(POLL)

    async def _redis_up(self) -> bool:
        try:
            return bool(await self.monitor.ping())
        except _ERRORS:
            return False  # a kill_redis fault: workers that cannot connect exit, and retry

    async def settle_watchers(self, timeout: float) -> None:
        """Wait (bounded) for the recovery measurements still running."""
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=timeout)
        for task in self._watchers:
            task.cancel()

    # -- the faults ---------------------------------------------------------------------

    def _consumers_of(self, fault: ChaosFault) -> tuple[str, ...] | None:
        return None if fault.kind == "kill_redis" else (self.pool.slot(fault.target).name,)

    async def _kill_worker(self, fault: ChaosFault, event: FaultEvent) -> None:
        slot = self.pool.slot(fault.target)
        old = slot.name
        self.pool.kill(slot)
        await asyncio.sleep(fault.duration)
        self.pool.spawn(slot, new_name=fault.restart == "new")
        event.consumers = (old,) if old == slot.name else (old, slot.name)
        event.detail = f"restarted as {'same' if old == slot.name else 'new'} name {slot.name}"

    async def _stop_worker(self, fault: ChaosFault, event: FaultEvent) -> None:
        slot: Slot = self.pool.slot(fault.target)
        self.pool.signal(slot, signal.SIGSTOP)
        await asyncio.sleep(fault.duration)
        self.pool.signal(slot, signal.SIGCONT)
        event.detail = f"stopped {fault.duration:g} s"

    async def _kill_redis(self, fault: ChaosFault, event: FaultEvent) -> None:
        self.redis_proc.kill()
        await asyncio.sleep(fault.duration)
        # start() blocks until the AOF is loaded and PING answers: keep the proxies running.
        await asyncio.to_thread(self.redis_proc.start)
        event.detail = f"down {fault.duration:g} s, AOF appendfsync always"

    async def _proxy_reset(self, fault: ChaosFault, event: FaultEvent) -> None:
        proxy = self.proxies[fault.target - 1]
        cut = proxy.reset()
        end = time.time() + fault.duration
        while time.time() < end:  # a flapping link: cut again and again
            await asyncio.sleep(RESET_EVERY)
            cut += proxy.reset()
        event.detail = f"{cut} connections reset"

    async def _proxy_blackhole(self, fault: ChaosFault, event: FaultEvent) -> None:
        proxy = self.proxies[fault.target - 1]
        proxy.blackhole(True)
        await asyncio.sleep(fault.duration)
        proxy.blackhole(False)
        event.detail = f"no bytes for {fault.duration:g} s"

    async def _proxy_delay(self, fault: ChaosFault, event: FaultEvent) -> None:
        proxy = self.proxies[fault.target - 1]
        proxy.delay = fault.delay_ms / 1000
        await asyncio.sleep(fault.duration)
        proxy.delay = 0.0
        event.detail = f"+{fault.delay_ms:g} ms per chunk for {fault.duration:g} s"

    # -- recovery -----------------------------------------------------------------------

    def _record(self, event: FaultEvent, stranded: set[tuple[str, bytes]]) -> None:
        event.stranded = len(stranded)
        self.events.append(event)
        log.info("fault %s (%d entries pending)", event.kind, event.stranded)
        task = asyncio.get_running_loop().create_task(self._watch(event, stranded))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, event: FaultEvent, stranded: set[tuple[str, bytes]]) -> None:
        """Time from the fault's start until every entry then pending has settled."""
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while stranded and time.monotonic() < deadline:
            stranded &= await self._pending(None)
            if stranded:
                await asyncio.sleep(POLL)
        if not stranded:
            event.recovery_s = time.time() - event.started

    async def _pending(self, consumers: tuple[str, ...] | None) -> set[tuple[str, bytes]]:
        """(key, id) of every entry pending in the groups (of ``consumers`` only, if given)."""
        for _ in range(50):  # Redis may be down (a kill_redis fault): try for ~5 s
            try:
                return await self._pending_once(consumers)
            except _ERRORS:
                await asyncio.sleep(POLL)
        return set()

    async def _pending_once(self, consumers: tuple[str, ...] | None) -> set[tuple[str, bytes]]:
        out: set[tuple[str, bytes]] = set()
        for k in self.keys:
            for key in (k.stream, k.retry):
                try:
                    rows = await self.monitor.xpending_range(key, k.group, "-", "+", 100_000)
                except rex.ResponseError:
                    continue  # NOGROUP: no worker has created the group yet
                for row in cast(list[dict[str, Any]], rows):
                    owner = row["consumer"].decode()
                    if consumers is None or owner in consumers:
                        out.add((key, row["message_id"]))
        return out
