"""Typed calls of the idempotency scripts (claim, release, ack-and-mark-done, commit) and
of the publish dedupe fallback; see :mod:`redrive.store.calls` for how calls are run.

A group's idempotency state is two keys in its stream's slot (``store/keys.py``): the
done marks, a sorted set of keys scored by when each mark ends (``inf``: for good), and
the claims, a hash of key -> ``<until ms>:<consumer>:<entry id>`` (the lease and the
run). Consumer names are unique while they live (their lease, ``runtime/liveness.py``),
so "this claim is mine" survives a restart (the entry is re-read under the same name),
while another entry with the same key, even in the same consumer, finds the key busy.
Two keys, not one per message: a batch costs a handful of calls, whatever its size.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redrive.store.calls import AckResult, Call, Id
from redrive.store.scripts import Arg, scripts

#: The commands a commit may carry as effects, and nothing else (``commit.lua`` checks
#: again): writes of one key each.
EFFECT_COMMANDS = frozenset({
    "INCRBY", "INCRBYFLOAT", "HINCRBY", "HINCRBYFLOAT", "HSET", "SET", "SADD", "SREM",
    "ZADD", "ZINCRBY", "RPUSH", "LPUSH", "XADD", "PFADD", "EXPIRE", "PEXPIRE", "DEL",
})  # fmt: skip


class Claim(enum.Enum):
    """What claiming a key found."""

    CLAIMED = "claimed"  # ours now: run the handler
    DONE = "done"  # a run of this key succeeded: ack without running (a duplicate)
    BUSY = "busy"  # another consumer holds it: leave the entry pending, ask again later


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """One key's claim: the verdict and, when busy, how long the other claim still holds."""

    claim: Claim
    busy_ms: int = 0


class Committed(enum.IntEnum):
    """Outcome of ``commit``."""

    COMMITTED = 1  # effects applied, key marked done, entry acked
    NOT_PENDING = 0  # acked already: nothing done
    FENCED = -1  # another consumer owns the entry: nothing done
    DUPLICATE = 2  # the key was done already: acked, effects not applied
    BUSY = 3  # another consumer holds the key's claim: nothing done, entry stays pending


@dataclass(frozen=True, slots=True)
class Effect:
    """One Redis write of a commit: ``command key *args``."""

    command: str
    key: str
    args: tuple[Arg, ...]


def claim(
    *,
    claims: str,
    done: str,
    consumer: str,
    keys: Sequence[Id],
    entry_ids: Sequence[Id],
    lease_ms: int,
) -> Call[list[ClaimResult]]:
    """Claim each of ``keys`` for ``consumer``'s run of the entry in ``entry_ids`` at the
    same place, for ``lease_ms``: each one claimed, done or busy."""
    s = scripts().idem_claim
    args: list[Arg] = [lease_ms, consumer]
    for key, entry_id in zip(keys, entry_ids, strict=True):
        args += (key, entry_id)
    return Call(s, ("EVALSHA", s.sha, 2, claims, done, *args), _claims)


def release(
    *, claims: str, consumer: str, keys: Sequence[Id], entry_ids: Sequence[Id]
) -> Call[int]:
    """Release the claims of ``keys`` that ``consumer``'s runs of ``entry_ids`` still hold
    (failed runs: their retries must run)."""
    s = scripts().idem_release
    args: list[Arg] = [consumer]
    for key, entry_id in zip(keys, entry_ids, strict=True):
        args += (key, entry_id)
    return Call(s, ("EVALSHA", s.sha, 1, claims, *args), int)


def ack_done(
    *,
    stream: str,
    done: str,
    claims: str,
    group: str,
    consumer: str,
    delete: bool,
    ttl_ms: int | None,
    ids: Sequence[Id],
    keys: Sequence[Id],
) -> Call[AckResult]:
    """Ack the ``ids`` ``consumer`` still owns and mark each one's idempotency key
    (``keys``, in the same order) done for ``ttl_ms`` (``None``: for good), in one step."""
    s = scripts().ack_done
    command = ("EVALSHA", s.sha, 3, stream, done, claims, group, consumer,
               "1" if delete else "0", ttl_ms or 0, *ids, *keys)  # fmt: skip
    return Call(s, command, _ack)


def commit(
    *,
    stream: str,
    group: str,
    consumer: str,
    delete: bool,
    entry_id: Id,
    idempotency: tuple[str, str, Id] | None,
    ttl_ms: int | None,
    effects: Sequence[Effect],
) -> Call[Committed]:
    """Apply ``effects``, mark the key done (if any) and ack ``entry_id``, in one step.

    ``idempotency`` is ``(done marks, claims, key)``; ``None`` for a handler without.
    """
    s = scripts().commit
    effect_keys = list(dict.fromkeys(e.key for e in effects))
    index = {k: i for i, k in enumerate(effect_keys, start=4)}
    done, claims, key = idempotency or (stream, stream, "")
    args: list[Arg] = [group, consumer, "1" if delete else "0", entry_id,
                       "0" if idempotency is None else "1", ttl_ms or 0, key]  # fmt: skip
    for effect in effects:
        args += [effect.command, index[effect.key], len(effect.args), *effect.args]
    keys = [stream, done, claims, *effect_keys]
    return Call(s, ("EVALSHA", s.sha, len(keys), *keys, *args), Committed)


def publish_dedupe(
    *, stream: str, dedupe_key: str, ttl_ms: int, maxlen: int | None, fields: Sequence[Arg]
) -> Call[tuple[bool, str]]:
    """XADD ``fields`` unless ``dedupe_key`` names an earlier publish: (new?, entry id)."""
    s = scripts().publish_dedupe
    command = ("EVALSHA", s.sha, 2, stream, dedupe_key, ttl_ms, maxlen or "", *fields)
    return Call(s, command, _published)


def _claims(reply: Any) -> list[ClaimResult]:
    out = []
    for code in reply:
        if code == 0:
            out.append(CLAIMED)
        elif code == -1:
            out.append(DONE)
        else:
            out.append(ClaimResult(Claim.BUSY, int(code)))
    return out


CLAIMED = ClaimResult(Claim.CLAIMED)
DONE = ClaimResult(Claim.DONE)


def _ack(reply: Any) -> AckResult:
    return AckResult(reply[0], reply[1], reply[2])


def _published(reply: Any) -> tuple[bool, str]:
    entry_id = reply[1]
    return reply[0] == 1, entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


__all__ = [
    "EFFECT_COMMANDS", "Claim", "ClaimResult", "Committed", "Effect", "ack_done", "claim",
    "commit", "publish_dedupe", "release",
]  # fmt: skip
