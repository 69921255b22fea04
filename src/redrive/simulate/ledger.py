"""What simulated workers record in Redis, with their own client, for the reconciliation.

- the ledger (``HINCRBY``, the same hash the demo uses: origin id → successes), and an
  effects log (one stream entry per success: id, worker, pid, time, attempt), written in one
  MULTI so they always agree; the log's times let a duplicate be matched to a fault;
- the lateness of every retry delivery (handler start minus ``redrive-due-ms``) in a
  side hash, so the report can give retry lateness p50/p99;
- in an idempotent scenario (``[handler] idempotent = true``), the *effect* of each
  success: ``HINCRBY redrive:sim:effect:{S} <id> 1``, returned as
  :class:`~redrive.runtime.idempotency.Effects` so the runtime applies it in the script
  that marks the key done and acks the entry. The ledger and the effects log above stay
  written by the handler itself, outside that commit: they count *runs*, the effect
  counter counts what took effect.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from redis import exceptions as rex
from redis.asyncio import Redis

from redrive.core import fields
from redrive.core.message import Message
from redrive.errors import ConfigError
from redrive.examples.ecommerce import ledger_key
from redrive.runtime.app import AppContext
from redrive.runtime.idempotency import Effects
from redrive.runtime.settings import AsyncHandler, HandlerSpec
from redrive.store.keys import hash_tag

SIM = "redrive:sim:"


def effects_key(stream: str) -> str:
    """Stream of successes of ``stream``'s messages (fields ``id``, ``w``, ``t``, ``a``)."""
    return f"{SIM}effects:{hash_tag(stream)}"


def lateness_key(stream: str) -> str:
    """Hash ``<id>:<attempt>:<entry id>`` → ms between a retry's due time and its start."""
    return f"{SIM}lateness:{hash_tag(stream)}"


def effect_key(stream: str) -> str:
    """Hash origin id → how often its effect was applied (idempotent scenarios)."""
    return f"{SIM}effect:{hash_tag(stream)}"


def sim_keys(stream: str) -> list[str]:
    """Every simulation key of ``stream`` (besides redrive's own)."""
    return [ledger_key(stream), effects_key(stream), lateness_key(stream), effect_key(stream)]


class SimLedger:
    """The ledger callable handed to the e-commerce services; connected at start-up."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.client: Redis | None = None

    async def connect(self, ctx: AppContext) -> None:
        """Start-up hook: use the worker's own client."""
        self.client = ctx.redis

    async def __call__(self, msg: Message) -> None:
        """Record one success of ``msg`` (ledger and effects log, atomically)."""
        if self.client is None:
            raise ConfigError("the simulation ledger is used before the worker started")
        now_ms = int(time.time() * 1000)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hincrby(ledger_key(msg.stream), msg.id, 1)
            pipe.xadd(
                effects_key(msg.stream),
                {"id": msg.id, "w": self.worker, "p": os.getpid(), "t": now_ms, "a": msg.attempt},
            )
            await pipe.execute()

    def observe_lateness(self, spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        """Middleware: note how late each retry starts (best effort, never fails it)."""

        async def call(msg: Message) -> Any:
            due = msg.meta.get(fields.DUE_MS.meta)
            if due is not None and due.isdigit() and self.client is not None:
                late = int(time.time() * 1000) - int(due)
                field = f"{msg.id}:{msg.attempt}:{msg.entry_id}"
                with contextlib.suppress(rex.RedisError, OSError):
                    await self.client.hset(lateness_key(msg.stream), field, late)
            return await call_next(msg)

        return call

    def fused_effect(self, spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        """Middleware: a success returns its effect, applied with the ack (exactly once)."""

        async def call(msg: Message) -> Any:
            await call_next(msg)
            return Effects().hincr(effect_key(msg.stream), msg.id)

        return call

    def effect_outside(self, spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        """Middleware of a broken build (tests only): the effect is written by the run
        itself, before its commit, so a run whose commit never lands still counts."""

        async def call(msg: Message) -> Any:
            await call_next(msg)
            if self.client is None:
                raise ConfigError("the simulation ledger is used before the worker started")
            await self.client.hincrby(effect_key(msg.stream), msg.id, 1)

        return call
