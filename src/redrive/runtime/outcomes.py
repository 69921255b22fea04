"""What a lane does with a handler run that returned something: the idempotency outcomes
(:mod:`redrive.runtime.idempotency`) and :class:`~redrive.runtime.idempotency.Effects`.

A run that returned ``None`` (nearly all) never comes here: the lane acks it itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from redrive.core.message import Message
from redrive.runtime.acks import AckBatcher, Move
from redrive.runtime.buffer import Buffer, Item
from redrive.runtime.idempotency import (
    MAX_PARK,
    Busy,
    Claims,
    Commit,
    Duplicate,
    EffectError,
    Effects,
    effects_of,
)
from redrive.runtime.moves import Settler
from redrive.runtime.settings import HandlerSpec
from redrive.runtime.source import Source
from redrive.runtime.stats import Stats
from redrive.store.idempotency import Committed, commit

log = logging.getLogger("redrive.idempotency")

#: What :meth:`Outcomes.settle` says a run was.
Settled = int
RAN, SKIPPED, PARKED = 0, 1, 2


class Outcomes:
    """Settles the runs whose handler (or the idempotency wrapper) returned a value."""

    def __init__(
        self,
        *,
        spec: HandlerSpec,
        buffer: Buffer,
        batcher: AckBatcher,
        settler: Settler,
        stats: Stats,
        claims: Claims | None,
    ) -> None:
        self.spec = spec
        self.buffer = buffer
        self.batcher = batcher
        self.settler = settler
        self.stats = stats
        self.claims = claims
        idem = spec.idempotency
        self.ttl_ms = idem.ttl_ms() if idem is not None else None
        self.parked = 0  # entries waiting for another consumer's claim to end

    def settle(self, item: Item, msg: Message, result: Any, own_key: bool = False) -> Settled:
        """Settle the run of ``item``'s entry: :data:`RAN` (the lane counts a success),
        :data:`SKIPPED` (a duplicate: nothing ran) or :data:`PARKED` (it waits for
        another run's claim; the lane must not finish it in the buffer). ``own_key``: a
        run of the plain handler whose claim was implicit, keyed on its entry id."""
        source, entry_id = item[0], item[1]
        if own_key:
            if result is None:  # the common case first
                self.batcher.ack_done(source, entry_id, entry_id)
                self.stats.committed += 1
                return RAN
            result = Commit(entry_id, tuple(result.items) if isinstance(result, Effects) else ())
        if type(result) is Commit and result.key is not None and not result.effects:
            self.batcher.ack_done(source, entry_id, result.key)  # the common case first
            self.stats.committed += 1
            return RAN
        if isinstance(result, Duplicate):
            self.batcher.ack(source, entry_id)
            self.stats.duplicates += 1
            return SKIPPED
        if isinstance(result, Busy):
            self.park(item, result.ms)
            return PARKED
        commit_of = result if isinstance(result, Commit) else effects_of(result)
        if commit_of is None:  # any other return value: a plain success
            self.batcher.ack(source, entry_id)
        elif commit_of.effects:
            self.batcher.send(self._commit(source, entry_id, msg, commit_of))
        elif commit_of.key is not None:
            self.batcher.ack_done(source, entry_id, commit_of.key)
            self.stats.committed += 1
        else:  # Effects() with nothing in it
            self.batcher.ack(source, entry_id)
        return RAN

    def park(self, item: Item, busy_ms: int) -> None:
        """Keep the entry (still pending here, held: its lease renewed) and run it again
        when the other run's claim may have ended: it then finds the key done (and is
        acked as a duplicate) or free (and runs)."""
        source, entry_id = item[0], item[1]
        self.stats.idempotency_busy += 1
        self.buffer.park()
        delay = min(MAX_PARK, busy_ms / 1000) * random.uniform(0.9, 1.1)
        self.parked += 1
        if self.parked == 1 or self.parked % 100 == 0:
            log.warning(
                "%s: entry %s waits: its idempotency key is claimed by another consumer "
                "(%d waiting)", source.key, entry_id.decode(), self.parked,
                extra={"stream": source.key, "decision": "idempotency_busy"},
            )  # fmt: skip
        asyncio.get_running_loop().call_later(delay, self._unpark, item)

    def _unpark(self, item: Item) -> None:
        self.parked -= 1
        self.buffer.unpark(item)

    def _commit(self, source: Source, entry_id: bytes, msg: Message, c: Commit) -> Move:
        claims = self.claims
        keyed = None
        if c.key is not None and claims is not None:
            keyed = (claims.done_key, claims.claims_key, c.key)
        call = commit(stream=source.key, group=self.spec.group, consumer=self.batcher.consumer,
                      delete=source.trusted, entry_id=entry_id, idempotency=keyed,
                      ttl_ms=self.ttl_ms, effects=c.effects)  # fmt: skip
        stats = self.stats

        def done(outcome: Committed) -> None:
            if outcome is Committed.COMMITTED:
                stats.committed += c.key is not None
            elif outcome is Committed.DUPLICATE:
                stats.duplicates += 1
            elif outcome is Committed.FENCED:
                stats.fenced += 1
            elif outcome is Committed.BUSY:  # pending still; re-read when it idles out
                stats.idempotency_busy += 1
            elif outcome is Committed.NOT_PENDING:
                stats.stale_acks += 1

        def failed(exc: Exception) -> None:
            if c.key is not None and claims is not None:
                claims.release(c.key, msg.entry_id)
            error = EffectError(f"the handler's effects could not be applied: {exc}")
            self.settler.failed(source, msg, error, 0.0)

        return Move(call, source, entry_id, done, failed)


__all__ = ["PARKED", "RAN", "SKIPPED", "Outcomes", "Settled"]
