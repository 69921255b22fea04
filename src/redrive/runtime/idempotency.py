"""Exactly-once effects: idempotency claims before a run, the done mark fused with the ack.

A handler with ``idempotency=Idempotency(...)`` is wrapped (outermost, before any
middleware) so that each run first claims its key (``idem_claim.lua``, a lease):

- claimed → the handler runs; on success the lane hands the batcher the entry *and* its
  key, and ``ack_done.lua`` acks it and marks the key done in one step; on failure the
  claim is released (the retry must run) and the failure goes its usual way;
- done → the entry is acked without running, counted as a duplicate;
- claimed by another live consumer → the entry is neither run, acked nor dead-lettered:
  it waits (parked, still this consumer's) and asks again when that claim may end.

A new entry keyed on its own id (the default key) claims nothing: its pending entry is
its claim (``Claims.implicit``), and the lane runs the handler without the wrapper, its
success still marked done with the ack.

A handler may return :class:`Effects`: Redis writes applied by ``commit.lua`` in the
same step as the done mark and the ack, so "effect happened" and "message acked" never
disagree, even without an idempotency key. Claims of the lanes that ask at once go out
in one round trip on a channel of their own (:class:`Claims`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from redrive.core.idempotency import Idempotency
from redrive.core.message import Message
from redrive.errors import ConfigError, Reject
from redrive.runtime.settings import AsyncHandler, HandlerSpec
from redrive.runtime.source import Source
from redrive.store import idempotency as calls
from redrive.store.calls import Call, Id
from redrive.store.channel import TRANSPORT_ERRORS, Channel
from redrive.store.idempotency import Claim, ClaimResult, Effect
from redrive.store.keys import idempotency_claims, idempotency_done
from redrive.store.scripts import Arg

log = logging.getLogger("redrive.idempotency")

DEADLINE = 10.0
#: The longest a parked entry waits before its key is asked again (s).
MAX_PARK = 1.0
#: Claims made ahead kept at most (far above what a consumer reads ahead).
MAX_AHEAD = 20_000


class EffectError(Reject):
    """A handler's :class:`Effects` could not be applied (a key of the wrong type, …), or
    its idempotency key could not be made: the message is dead-lettered (a permanent
    error, the message's fault), with nothing applied."""


class Effects:
    """Redis writes a handler returns, applied in one step with the message's ack.

    Each method adds one write of one key and returns ``self``, to chain. On Redis
    Cluster every key must be in the stream's slot: give it the stream's hash tag
    (``orders:{ecommerce:orders}:count``).

    Example::

        async def handle(msg: Message) -> Effects:
            order = msg.data
            return (Effects()
                    .incr(f"{{ecommerce:orders}}:paid:{order['order_id']}")
                    .xadd("{ecommerce:orders}:events", {"paid": order["order_id"]}))
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Effect] = []

    def _add(self, command: str, key: str, *args: Arg) -> Effects:
        if not isinstance(key, str) or not key:
            raise ConfigError(f"Effects.{command.lower()}: the key must be a non-empty str")
        self.items.append(Effect(command, key, args))
        return self

    def incr(self, key: str, by: int = 1) -> Effects:
        """``INCRBY key by``."""
        return self._add("INCRBY", key, int(by))

    def hincr(self, key: str, field: str, by: int = 1) -> Effects:
        """``HINCRBY key field by``."""
        return self._add("HINCRBY", key, field, int(by))

    def hset(self, key: str, mapping: Mapping[str, Arg]) -> Effects:
        """``HSET key field value …``."""
        return self._add("HSET", key, *_flat(mapping))

    def set(self, key: str, value: Arg, *, px: int | None = None) -> Effects:
        """``SET key value [PX px]``."""
        return self._add("SET", key, value, *(("PX", int(px)) if px else ()))

    def sadd(self, key: str, *members: Arg) -> Effects:
        """``SADD key member …``."""
        return self._add("SADD", key, *members)

    def zadd(self, key: str, mapping: Mapping[str, float]) -> Effects:
        """``ZADD key score member …``."""
        args: list[Arg] = []
        for member, score in mapping.items():
            args += [float(score), member]
        return self._add("ZADD", key, *args)

    def rpush(self, key: str, *values: Arg) -> Effects:
        """``RPUSH key value …``."""
        return self._add("RPUSH", key, *values)

    def xadd(self, stream: str, fields: Mapping[str, Arg], *, maxlen: int | None = None) -> Effects:
        """``XADD stream [MAXLEN ~ n] * field value …``: a follow-up event."""
        head: tuple[Arg, ...] = ("MAXLEN", "~", int(maxlen)) if maxlen else ()
        return self._add("XADD", stream, *head, "*", *_flat(fields))

    def expire(self, key: str, seconds: int) -> Effects:
        """``EXPIRE key seconds``."""
        return self._add("EXPIRE", key, int(seconds))


def _flat(mapping: Mapping[str, Arg]) -> list[Arg]:
    out: list[Arg] = []
    for name, value in mapping.items():
        out += [name, value]
    return out


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The key was done: ack the entry without running it."""


@dataclass(frozen=True, slots=True)
class Busy:
    """Another consumer holds the key's claim for ``ms`` more: park the entry."""

    ms: int


@dataclass(frozen=True, slots=True)
class Commit:
    """The run succeeded: ack, mark ``key`` done (if any) and apply ``effects``."""

    key: Id | None  # the idempotency key
    effects: tuple[Effect, ...] = ()


DUPLICATE = Duplicate()
#: What the idempotency wrapper (or a handler returning :class:`Effects`) hands the lane.
Outcome = Duplicate | Busy | Commit


#: A claim made ahead of its run: the idempotency key and what the claim found.
Taken = tuple[Id, ClaimResult]


class Claims:
    """One consumer's claims and releases, on a channel of its own (pinned to the
    stream's slot).

    The reader claims the keys of every entry it reads in one round trip, before they
    are queued (:meth:`preclaim`), so a run finds its claim made (:meth:`taken`) and its
    lane need not wait. Entries that come another way (re-delivered, or read again after
    waiting for a busy key) are claimed when they run, batched: the lanes that ask at
    once share one round trip.
    """

    def __init__(
        self, *, channel: Channel, spec: HandlerSpec, idem: Idempotency, consumer: str
    ) -> None:
        self.channel = channel
        self.stream, self.group = spec.stream, spec.group
        self.idem = idem
        self.consumer = consumer
        self.lease_ms = idem.lease_ms(spec.visibility_timeout)
        self.claims_key = idempotency_claims(spec.stream, spec.group)
        # A new entry of the source stream keyed on its own id (the default key) cannot
        # share its key with any other entry that could run now: a retry, a dead letter
        # or a replay of the message is made only once the entry is settled. Nobody has
        # run it, so its key is not done, and its pending entry, this consumer's and
        # renewed while it runs (``renew.lua``), is its claim: asking Redis would always
        # say "claimed". A lease longer than the visibility timeout (which outlasts a
        # paused consumer's reclaim) still claims in Redis.
        self.implicit = idem.key is None and self.lease_ms <= spec.visibility_timeout * 1000
        self.done_key = idempotency_done(spec.stream, spec.group)
        self.asked: list[tuple[Id, Id, asyncio.Future[ClaimResult]]] = []
        self.releases: list[tuple[Id, Id]] = []
        #: Claims made by :meth:`preclaim`, by (stream key, entry id), until their run.
        self.ahead: dict[tuple[str, str], Taken] = {}
        self._task: asyncio.Task[None] | None = None
        # The reader's claims ahead and the claims task share the channel: a channel is
        # one connection, for one round trip at a time (two at once would read each
        # other's replies).
        self._turn = asyncio.Lock()

    def key_of(self, msg: Message) -> str:
        """``msg``'s idempotency key (:class:`EffectError` if it cannot be made)."""
        try:
            return self.idem.key_of(msg)
        except ConfigError as exc:  # a key that cannot be made: the message is at fault
            raise EffectError(str(exc)) from None

    def taken(self, msg: Message) -> Taken | None:
        """The claim :meth:`preclaim` made for ``msg``'s run, if any (removed)."""
        return self.ahead.pop((msg.key, msg.entry_id), None)

    async def preclaim(self, entries: list[tuple[Source, bytes, list[bytes]]]) -> None:
        """Claim the keys of ``entries`` (just read) in one round trip.

        Best effort: an entry whose key cannot be made, or a round trip that fails,
        leaves the claim to the run itself.
        """
        wanted: list[tuple[tuple[str, str], Id, Id]] = []
        by_id = self.idem.key is None  # the default key: the original id
        for source, entry_id, flat in entries:
            if by_id and not source.trusted:  # a new entry: its own id is the original
                if not self.implicit:  # (implicit: the lanes know it, ``Buffer.fresh``)
                    ref = (source.key, entry_id.decode())
                    wanted.append((ref, entry_id, entry_id))  # as Redis sent it: no decoding
                continue
            ref = (source.key, entry_id.decode())
            try:
                key = self.key_of(source.message(entry_id, flat))
            except EffectError:
                continue
            wanted.append((ref, key, entry_id))
        if not wanted:
            return
        call = self._claim([k for _, k, _ in wanted], [e for _, _, e in wanted])
        try:
            async with self._turn:
                [reply] = await self.channel.roundtrip([call.command()], DEADLINE)
            if isinstance(reply, NoScriptError):
                reply = await call.script(self.channel.client, call.keys, call.args)  # type: ignore[arg-type]
            if isinstance(reply, Exception):
                raise reply
        except (*TRANSPORT_ERRORS, ResponseError) as exc:
            log.debug("%s: claims ahead of the runs failed (%s); each run claims", self.stream, exc)
            return
        ahead = self.ahead
        for (ref, claimed, _), result in zip(wanted, call.parse(reply), strict=True):
            ahead[ref] = (claimed, result)
        self._trim_ahead()

    def _trim_ahead(self) -> None:
        ahead = self.ahead
        # An entry that never runs here (another consumer took it, a shutdown) leaves its
        # claim behind: keep the newest only. A run whose claim was dropped asks again and,
        # holding that very claim, gets it.
        excess = len(ahead) - MAX_AHEAD
        if excess > 0:
            for stale in list(itertools.islice(ahead, excess)):
                del ahead[stale]

    def _claim(self, keys: list[Id], entry_ids: list[Id]) -> Call[list[ClaimResult]]:
        return calls.claim(claims=self.claims_key, done=self.done_key, consumer=self.consumer,
                           keys=keys, entry_ids=entry_ids, lease_ms=self.lease_ms)  # fmt: skip

    async def claim(self, key: Id, entry_id: Id) -> ClaimResult:
        """Claim ``key`` for this consumer's run of ``entry_id``: claimed, done, busy."""
        fut = asyncio.get_running_loop().create_future()
        self.asked.append((key, entry_id, fut))
        self._kick()
        result: ClaimResult = await fut
        return result

    def release(self, key: Id, entry_id: Id) -> None:
        """Release the claim of ``key`` by the run of ``entry_id`` with the next round trip."""
        self.releases.append((key, entry_id))
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send(), name="claims")

    async def _send(self) -> None:
        failures = 0
        while self.asked or self.releases:
            asked, self.asked = self.asked, []
            released, self.releases = self.releases, []
            try:
                await self._roundtrip(asked, released)
                failures = 0
            except TRANSPORT_ERRORS as exc:
                self.asked[:0] = [(k, v, f) for k, v, f in asked if not f.done()]
                self.releases[:0] = released
                failures += 1
                if failures & (failures - 1) == 0:  # 1st, 2nd, 4th…: an outage, not a flood
                    log.warning("%s: idempotency claims failed %d times (%s); retrying; "
                                "the runs that wait for them are paused", self.stream,
                                failures, exc, extra={"stream": self.stream})  # fmt: skip
                await asyncio.sleep(min(0.5, 0.05 * 2**failures))
            except BaseException as exc:
                for _, _, fut in asked:
                    if not fut.done():
                        fut.set_exception(exc)
                raise

    async def _roundtrip(
        self,
        asked: list[tuple[Id, Id, asyncio.Future[ClaimResult]]],
        released: list[tuple[Id, Id]],
    ) -> None:
        sent: list[Call[Any]] = []
        if released:
            sent.append(calls.release(claims=self.claims_key, consumer=self.consumer,
                                      keys=[k for k, _ in released],
                                      entry_ids=[e for _, e in released]))  # fmt: skip
        claim = self._claim([k for k, _, _ in asked], [e for _, e, _ in asked]) if asked else None
        if claim is not None:
            sent.append(claim)
        async with self._turn:
            replies = await self.channel.roundtrip([c.command() for c in sent], DEADLINE)
        for call, sent_reply in zip(sent, replies, strict=True):
            reply = sent_reply
            if isinstance(reply, NoScriptError):  # a restarted server: load, run again
                reply = await call.script(self.channel.client, call.keys, call.args)  # type: ignore[arg-type]
            elif isinstance(reply, Exception):
                raise reply
            if call is claim:
                for (_, _, fut), result in zip(asked, claim.parse(reply), strict=True):
                    if not fut.done():
                        fut.set_result(result)


def wrap(
    spec: HandlerSpec, idem: Idempotency, claims: Claims, call_next: AsyncHandler
) -> AsyncHandler:
    """The handler behind its idempotency claim (see the module docstring)."""

    async def idempotent(msg: Message) -> Outcome:
        ahead = claims.taken(msg)
        if ahead is not None:
            key, got = ahead
        else:
            key = claims.key_of(msg)
            got = await claims.claim(key, msg.entry_id)
        if got.claim is Claim.DONE:
            return DUPLICATE
        if got.claim is Claim.BUSY:
            return Busy(got.busy_ms)
        try:
            result = await call_next(msg)
        except BaseException:
            claims.release(key, msg.entry_id)
            raise
        return Commit(key, tuple(result.items) if isinstance(result, Effects) else ())

    return idempotent


def effects_of(result: Any) -> Commit | None:
    """A handler without idempotency that returned :class:`Effects`: its commit."""
    return Commit(None, tuple(result.items)) if isinstance(result, Effects) else None


__all__ = [
    "DUPLICATE",
    "MAX_PARK",
    "Busy",
    "Claims",
    "Commit",
    "Duplicate",
    "EffectError",
    "Effects",
    "Outcome",
    "effects_of",
    "wrap",
]  # fmt: skip
