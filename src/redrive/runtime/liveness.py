"""One live worker per consumer name.

Two live workers with one name share a pending list: when one restarts, its re-read of
"its own" pending entries re-delivers the other's in-flight work (seen: 200 of 1,000
handled twice). So a worker holds a lease on its name, ``redrive:consumer:<name>``, with a
short TTL it renews, and a second worker with that name is refused.

A holder that died is told apart from a live one without waiting where possible: on the
same host, a holder whose pid is gone (kill -9, then a restart under the same name) or is
our own pid (a container restarted as pid 1) is taken over at once. A holder on another
host is live if its lease is renewed while we wait; if it is not renewed within the TTL
it was dead, and the name is ours.

A supervisor (``redrive worker --processes N``) that reaped a child knows for certain that
the child is dead, even if its pid has since been reused: it starts the replacement with
``REDRIVE_REAPED_WORKER="<pid> <name>"``, and a holder of that name on this host with that
pid is taken over at once, never refused or waited for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from redis.asyncio import Redis

from redrive.errors import ConfigError
from redrive.store import calls
from redrive.store.calls import HeartbeatResult, LeaseOp
from redrive.store.keys import consumer_lease
from redrive.store.process import pid_alive

log = logging.getLogger("redrive.worker")

TTL_MS = 6_000
#: ``"<pid> <consumer name>"`` of a worker its supervisor reaped (see the module docstring).
REAPED_ENV = "REDRIVE_REAPED_WORKER"
RENEW_EVERY = TTL_MS / 3 / 1000
#: Tokens of the leases this process holds (several Apps may run in one process).
_HELD: set[str] = set()


class NameTaken(ConfigError):
    """Another live worker uses this consumer name."""


class NameLease:
    """The lease of one consumer name, held while the worker runs."""

    def __init__(self, client: Redis, name: str) -> None:
        self.client = client
        self.name = name
        self.key = consumer_lease(name)
        self.host = socket.gethostname()
        self.token = f"{self.host} {os.getpid()} {os.urandom(4).hex()}"
        pid, _, reaped_name = os.environ.get(REAPED_ENV, "").partition(" ")
        self.reaped = pid if reaped_name == name and pid.isdigit() else None

    async def _call(self, op: LeaseOp, replacing: str | None = None) -> HeartbeatResult:
        call = calls.heartbeat(
            lease=self.key, op=op, token=self.token, ttl_ms=TTL_MS, replacing=replacing
        )
        return await call(self.client)

    async def claim(self) -> None:
        """Take the name, or raise :class:`NameTaken` if a live worker holds it."""
        reply = await self._call("claim")
        if not reply.ours:
            holder, ttl = reply.holder or "?", reply.ttl_ms or 0
            seen = self._judge(holder)
            if seen == "live":
                raise self._taken(holder)
            if seen == "dead" and (await self._call("take", holder)).ours:
                log.info("consumer name %s: took over from %s (not running)", self.name, holder)
            else:
                await self._wait_for_expiry(holder, ttl)
        _HELD.add(self.token)

    def _judge(self, holder: str) -> str:
        """``live``, ``dead`` or ``unknown`` (another host: only its renewals can tell)."""
        host, _, rest = holder.partition(" ")
        pid = rest.partition(" ")[0]
        if holder in _HELD:
            return "live"  # another App of this very process
        if host != self.host or not pid.isdigit():
            return "unknown"
        if pid == self.reaped:
            return "dead"  # our supervisor reaped it: dead even if the pid was reused
        # Our own pid but not our lease: a previous life (a container restarted as pid 1).
        if int(pid) == os.getpid() or not pid_alive(int(pid)):
            return "dead"
        return "live"

    def _taken(self, holder: str) -> NameTaken:
        return NameTaken(
            f"consumer name {self.name!r} is in use by a live worker ({holder}): "
            "two workers with one name would share a pending list; pass another "
            "--consumer, or stop that worker first"
        )

    async def _wait_for_expiry(self, holder: str, ttl: int) -> None:
        log.warning(
            "consumer name %s is held by %s: waiting up to %.0fs to see if it is alive",
            self.name, holder, TTL_MS / 1000,
        )  # fmt: skip
        waited = 0.0
        while waited <= TTL_MS / 1000 + 1:
            await asyncio.sleep(0.25)
            waited += 0.25
            reply = await self._call("claim")
            if reply.ours:
                return  # it expired: the holder was dead
            now_holder, now_ttl = reply.holder, reply.ttl_ms or 0
            if now_holder != holder or now_ttl > ttl + 100:
                break  # renewed (or taken by another): alive
            ttl = now_ttl
        raise self._taken(holder)

    async def keep(self) -> None:
        """Renew the lease until cancelled."""
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                reply = await self._call("renew")
            except Exception as exc:  # Redis away: the lease may lapse; the fence guards
                log.debug("consumer name lease renewal failed: %s", exc)
                continue
            if not reply.ours:
                log.error(
                    "consumer name %s was taken by %s while this worker was away: two "
                    "workers now share it; stop one",
                    self.name, reply.holder,
                )  # fmt: skip

    async def release(self) -> None:
        """Give the name back (graceful shutdown)."""
        _HELD.discard(self.token)
        try:
            await self._call("release")
        except Exception as exc:  # it expires on its own
            log.debug("consumer name lease release failed: %s", exc)
