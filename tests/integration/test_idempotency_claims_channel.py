"""A consumer's idempotency claims: the reader's claims ahead (``Claims.preclaim``) and the
claims and releases of runs (``Claims._send``, a task of its own) share one ``Channel``,
which is one connection "used by a single task at a time". When both are in flight at
once, the second read of the connection fails (or, worse, takes the other's reply).

Found by the exactly-once chaos run (issue 15): under load with failures (each failed
run releases its claim) the reader failed with ``RuntimeError: read() called while
another coroutine is already waiting for incoming data`` and restarted; the restarted
reader re-read its own pending entries and ran some that were already running, so one
process ran the same delivery twice (``rerun_own_finished`` in the report; the fused
commit kept the effects exactly once). Now they take turns on the channel (a lock).
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from redrive.core.idempotency import Idempotency
from redrive.core.message import Message
from redrive.runtime import idempotency
from redrive.runtime.idempotency import Claims
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.source import Source
from redrive.store.channel import Channel
from redrive.store.idempotency import Claim


async def _handler(msg: Message) -> None:
    """Never called: the spec only configures the claims."""


async def test_claims_ahead_and_claims_of_runs_can_be_in_flight_at_once(
    aredis: redis.asyncio.Redis, prefix: str
) -> None:
    stream = f"{prefix}orders"
    idem = Idempotency(ttl=None)
    spec = HandlerSpec(stream, "g", _handler, True, idempotency=idem)
    channel = Channel(aredis, stream)
    claims = Claims(channel=channel, spec=spec, idem=idem, consumer="c1")
    source = Source(f"retry:{stream}", stream, trusted=True)  # claimed in Redis
    # A large read: its claims keep Redis busy for a few ms, so the run's claim is
    # surely sent and waited for while the reader's reply is still awaited.
    read = [(source, f"1-{i}".encode(), [b"data", b"{}"]) for i in range(20_000)]
    try:
        await claims.preclaim(read[:1])  # the channel's connection is open from now on

        # A run's claim (the claims task) while the reader claims ahead what it just read.
        run_claim = claims.claim("9-9", "9-9")
        got, _ = await asyncio.wait_for(asyncio.gather(run_claim, claims.preclaim(read)), 10)
    finally:
        await channel.close()  # the connection back to the pool (else: unclosed at exit)

    assert got.claim is Claim.CLAIMED
    assert len(claims.ahead) == len(read)
    assert {result.claim for _, result in claims.ahead.values()} == {Claim.CLAIMED}


async def test_claims_made_ahead_for_entries_that_never_run_here_are_not_kept_for_ever(
    aredis: redis.asyncio.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "MAX_AHEAD", 3)
    stream = f"{prefix}orders"
    idem = Idempotency(ttl=None)
    spec = HandlerSpec(stream, "g", _handler, True, idempotency=idem)
    channel = Channel(aredis, stream)
    claims = Claims(channel=channel, spec=spec, idem=idem, consumer="c1")
    source = Source(f"retry:{stream}", stream, trusted=True)  # claimed in Redis
    try:
        await claims.preclaim([(source, f"1-{i}".encode(), [b"data", b"{}"]) for i in range(5)])
    finally:
        await channel.close()

    assert sorted(entry_id for _, entry_id in claims.ahead) == ["1-2", "1-3", "1-4"]
