"""Typed calls of the Lua scripts: keyword arguments named by each script's contract.

Each function builds a :class:`Call` (the script, its KEYS and ARGV, how to read its
reply) and does no I/O. A call is run in one of two ways::

    call = calls.dead_letter(stream=key, dlq=dlq_key, group="g", consumer="c1",
                             entry_id=entry_id, delete=False, fields=fields)
    result = await call(client)            # EVALSHA, NOSCRIPT fallback, parsed

    replies = await channel.roundtrip([call.command(), ...], deadline)
    result = call.parse(replies[0])        # inside a round trip of one's own

Building a call costs about what building the EVALSHA tuple by hand does: the tuple is
built once, here, and nothing is validated (values are checked where they come from).
Ids in hot-path results stay the bytes Redis returned (the ids the runtime holds).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from redrive.core.text import text
from redrive.store.keys import AUDIT_MAXLEN
from redrive.store.scripts import Arg, Script, scripts

R = TypeVar("R")
Id = str | bytes
LeaseOp = Literal["claim", "take", "renew", "release"]

__all__ = [
    "AckResult", "Call", "DeadLetterResult", "Fence", "HeartbeatResult", "ImportResult",
    "LeaseOp", "PromoteResult", "ack", "dead_letter", "heartbeat", "import_dead_letters",
    "parse_fence", "promote_due", "purge", "renew", "replay", "replay_begin",
    "replay_copy", "replay_finish", "retire", "schedule_retry",
]  # fmt: skip


class Call(Generic[R]):
    """One script call: the script, the EVALSHA command, and how to read its reply.

    ``await call(client)`` runs it (by SHA; on NOSCRIPT it loads the script and runs it
    again) and returns the parsed result; ``command()`` is the raw EVALSHA for a round trip
    of one's own, whose reply ``parse`` reads (an error reply is the caller's to handle).
    """

    __slots__ = ("_command", "parse", "script")

    def __init__(self, script: Script, command: tuple[Arg, ...], parse: Callable[[Any], R]):
        self.script = script
        self._command = command  # ("EVALSHA", sha, numkeys, *keys, *args)
        self.parse = parse

    @property
    def keys(self) -> tuple[Arg, ...]:
        """KEYS of the call, in contract order."""
        return self._command[3 : 3 + int(self._command[2])]

    @property
    def args(self) -> tuple[Arg, ...]:
        """ARGV of the call, in contract order."""
        return self._command[3 + int(self._command[2]) :]

    def command(self) -> tuple[Arg, ...]:
        """The EVALSHA command (for ``store.channel``): built once, returned as is."""
        return self._command

    async def __call__(self, client: Redis) -> R:
        """Run on ``client`` and parse the reply (NOSCRIPT: load, run again)."""
        # keys are str by construction; the command tuple's element type is wider.
        return self.parse(await self.script(client, self.keys, self.args))  # type: ignore[arg-type]

    def queue(self, pipe: Pipeline) -> None:
        """Add to a redis-py pipeline; its reply (or NOSCRIPT error) is the caller's."""
        pipe.evalsha(*self._command[1:])  # type: ignore[arg-type]  # sha, numkeys, keys, args

    def __repr__(self) -> str:
        return f"<Call {self.script.name} keys={self.keys!r} args={len(self.args)}>"


class Fence(enum.IntEnum):
    """Outcome of a fenced move (``_lib.lua`` ``owner``): the codes the scripts return."""

    MOVED = 1  # the entry was pending and owned by this consumer: done
    NOT_PENDING = 0  # acked already (or never delivered): nothing done
    FENCED = -1  # pending, but owned by another consumer (reclaimed): nothing done


_FENCE = {1: Fence.MOVED, 0: Fence.NOT_PENDING, -1: Fence.FENCED}


@dataclass(frozen=True, slots=True)
class AckResult:
    """``ack``: how many were acked, and the ids refused (another's, or no longer pending)."""

    acked: int
    fenced: list[bytes]
    gone: list[bytes]


@dataclass(frozen=True, slots=True)
class DeadLetterResult:
    """``dead_letter``: the fence outcome and, when moved, the dead letter's id."""

    fence: Fence
    dead_id: bytes | None


@dataclass(frozen=True, slots=True)
class PromoteResult:
    """``promote_due``: retries moved, and the due time (ms) of the next one, if any."""

    moved: int
    next_ms: float | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    """``import_dead_letters``: records written, records skipped as already in the DLQ."""

    imported: int
    present: int


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """``heartbeat``: whether the consumer name is ours; if not, who holds it and how long
    its lease still runs (ms). ``release`` of a lease not ours gives neither."""

    ours: bool
    holder: str | None = None
    ttl_ms: int | None = None


def _flag(value: bool) -> str:
    return "1" if value else "0"


def parse_fence(reply: Any) -> Fence:
    """A fence code reply (1, 0, -1) as :class:`Fence`."""
    return _FENCE[reply]


def _ack(reply: Any) -> AckResult:
    return AckResult(reply[0], reply[1], reply[2])


def _dead_letter(reply: Any) -> DeadLetterResult:
    return DeadLetterResult(_FENCE[reply[0]], reply[1])


def _promote(reply: Any) -> PromoteResult:
    nxt = reply[1]
    return PromoteResult(reply[0], None if nxt is None else float(nxt))


def _ids(reply: Any) -> list[bytes]:
    return list(reply)


def _retired(reply: Any) -> bool:
    return bool(reply == 1)


def _new_id(reply: Any) -> str | None:
    return None if reply is None else text(reply)


def _count(reply: Any) -> int:
    return int(reply)


def _imported(reply: Any) -> ImportResult:
    return ImportResult(int(reply[0]), int(reply[1]))


def _target(reply: Any) -> str | None:
    return None if reply is None else text(reply)


def _heartbeat(reply: Any) -> HeartbeatResult:
    if reply[0] == 1:
        return HeartbeatResult(True)
    if len(reply) < 3:  # release of a lease not ours
        return HeartbeatResult(False)
    return HeartbeatResult(False, text(reply[1]), int(reply[2]))


# Argument names follow each script's contract comment (store/scripts/<name>.lua).


def ack(
    *, stream: str, group: str, consumer: str, delete: bool, ids: Sequence[Id]
) -> Call[AckResult]:
    """Ack the ``ids`` of ``stream`` that ``consumer`` still owns (``delete``: XDEL them,
    on retry streams), e.g. ``ack(stream=k, group="g", consumer="c1", delete=False,
    ids=[b"1-0"])``."""
    s = scripts().ack
    return Call(s, ("EVALSHA", s.sha, 1, stream, group, consumer, _flag(delete), *ids), _ack)


def schedule_retry(
    *,
    stream: str,
    due: str,
    group: str,
    consumer: str,
    entry_id: Id,
    due_ms: int,
    delete: bool,
    fields: Sequence[Arg],
    retry: str | None = None,
) -> Call[Fence]:
    """Move ``entry_id`` of ``stream`` into the retry schedule ``due`` at ``due_ms``; given
    ``retry`` (the retry stream: a retry without delay), straight into it instead."""
    s = scripts().schedule_retry
    if retry is not None:
        command: tuple[Arg, ...] = ("EVALSHA", s.sha, 3, stream, due, retry, group, consumer,
                                    entry_id, "now", _flag(delete), *fields)  # fmt: skip
    else:
        command = ("EVALSHA", s.sha, 2, stream, due, group, consumer, entry_id, due_ms,
                   _flag(delete), *fields)  # fmt: skip
    return Call(s, command, parse_fence)


def dead_letter(
    *,
    stream: str,
    dlq: str,
    group: str,
    consumer: str,
    entry_id: Id,
    delete: bool,
    fields: Sequence[Arg],
) -> Call[DeadLetterResult]:
    """Move ``entry_id`` of ``stream`` to ``dlq`` as a dead letter with ``fields``."""
    s = scripts().dead_letter
    command = ("EVALSHA", s.sha, 2, stream, dlq, group, consumer, entry_id, _flag(delete),
               *fields)  # fmt: skip
    return Call(s, command, _dead_letter)


def promote_due(*, due: str, retry: str, now_ms: int, limit: int) -> Call[PromoteResult]:
    """Move at most ``limit`` retries due by ``now_ms`` from ``due`` to the stream ``retry``."""
    s = scripts().promote_due
    return Call(s, ("EVALSHA", s.sha, 2, due, retry, now_ms, limit), _promote)


def renew(*, stream: str, group: str, consumer: str, ids: Sequence[Id]) -> Call[list[bytes]]:
    """Reset the idle time of the ``ids`` ``consumer`` still owns; returns those it lost."""
    s = scripts().renew
    return Call(s, ("EVALSHA", s.sha, 1, stream, group, consumer, *ids), _ids)


def retire(*, stream: str, group: str, consumer: str) -> Call[bool]:
    """Delete ``consumer`` from ``group`` if it has nothing pending on ``stream``."""
    s = scripts().retire
    return Call(s, ("EVALSHA", s.sha, 1, stream, group, consumer), _retired)


def replay(
    *,
    dlq: str,
    target: str,
    audit: str,
    dead_id: Id,
    fields: Sequence[Arg],
    record: Sequence[Arg],
    audit_maxlen: int = AUDIT_MAXLEN,
) -> Call[str | None]:
    """Move dead letter ``dead_id`` to ``target`` as ``fields``, with audit ``record``;
    the result is its new id, ``None`` when the dead letter is gone."""
    s = scripts().replay
    command = ("EVALSHA", s.sha, 3, dlq, target, audit, dead_id, audit_maxlen, len(fields),
               *fields, *record)  # fmt: skip
    return Call(s, command, _new_id)


def purge(
    *,
    dlq: str,
    audit: str,
    record: Sequence[Arg],
    ids: Sequence[Id],
    audit_maxlen: int = AUDIT_MAXLEN,
) -> Call[int]:
    """Delete the dead letters ``ids`` with audit ``record``; the result counts deletions."""
    s = scripts().purge
    command = ("EVALSHA", s.sha, 2, dlq, audit, audit_maxlen, len(record), *record, *ids)
    return Call(s, command, _count)


def replay_begin(*, dlq: str, moving: str, dead_id: Id, target: str) -> Call[str | None]:
    """Note that ``dead_id`` moves to ``target`` (another slot); the result is the target
    it moves to (an unfinished earlier replay's wins), ``None`` when it is gone."""
    s = scripts().replay_begin
    return Call(s, ("EVALSHA", s.sha, 2, dlq, moving, dead_id, target), _target)


def replay_copy(*, target: str, marker: str, fields: Sequence[Arg]) -> Call[str]:
    """Copy a dead letter to ``target`` as ``fields`` unless ``marker`` names its copy;
    the result is its id there (the earlier copy's, if any)."""
    s = scripts().replay_copy
    return Call(s, ("EVALSHA", s.sha, 2, target, marker, *fields), text)


def replay_finish(
    *,
    dlq: str,
    audit: str,
    moving: str,
    dead_id: Id,
    record: Sequence[Arg],
    audit_maxlen: int = AUDIT_MAXLEN,
) -> Call[bool]:
    """Delete the copied dead letter ``dead_id`` with audit ``record``; False: it was gone."""
    s = scripts().replay_finish
    command = ("EVALSHA", s.sha, 3, dlq, audit, moving, dead_id, audit_maxlen, *record)
    return Call(s, command, _retired)


def import_dead_letters(
    *,
    dlq: str,
    audit: str,
    imported: str,
    check: bool,
    ttl_s: int,
    record: Sequence[Arg],
    entries: Sequence[tuple[str, Sequence[Arg]]],
    audit_maxlen: int = AUDIT_MAXLEN,
) -> Call[ImportResult]:
    """Append ``entries`` (digest, fields) to ``dlq``; with ``check``, one whose digest in
    ``imported`` names an entry still there is skipped. One audit ``record`` per call."""
    s = scripts().import_dead_letters
    command: list[Arg] = ["EVALSHA", s.sha, 3, dlq, audit, imported, audit_maxlen,
                          _flag(check), ttl_s, len(record), *record]  # fmt: skip
    for digest, fields in entries:
        command += (digest, len(fields), *fields)
    return Call(s, tuple(command), _imported)


def heartbeat(
    *, lease: str, op: LeaseOp, token: str, ttl_ms: int, replacing: str | None = None
) -> Call[HeartbeatResult]:
    """Claim, take (over ``replacing``), renew or release the consumer-name ``lease``."""
    s = scripts().heartbeat
    command: tuple[Arg, ...] = ("EVALSHA", s.sha, 1, lease, op, token, ttl_ms)
    if replacing is not None:
        command += (replacing,)
    return Call(s, command, _heartbeat)
