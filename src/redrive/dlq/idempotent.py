"""Dead letters of idempotent handlers whose key is done: replaying them would do nothing.

An idempotent handler's dead letter carries ``redrive-idempotency-key`` (the message's
idempotency key) and ``redrive-idempotency-done`` (its group's done marks, a sorted set:
key -> when the mark ends). If a duplicate of the message has succeeded since, the key
is marked done there, and a replayed copy would only be acked as a duplicate: ``dlq
replay`` and the dashboard's jobs skip such entries (refused, with the reason) unless
told to ignore idempotency, which first clears the done mark so the handler really runs
again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from redis.asyncio import Redis

from redrive.core import fields as f
from redrive.dlq.model import DeadLetter

#: Keys asked per round trip (one ZMSCORE) when asking which keys are done.
CHUNK = 1000


def key_of(entry: DeadLetter) -> tuple[str, str] | None:
    """``(done marks, idempotency key)`` of ``entry``, if its handler had idempotency."""
    key, done = entry.meta.get(f.IDEMPOTENCY_KEY.meta), entry.meta.get(f.IDEMPOTENCY_DONE.meta)
    return (done, key) if key and done else None


async def done(client: Redis, entries: Sequence[DeadLetter]) -> dict[str, str]:
    """``STREAM@ID`` -> idempotency key, of the ``entries`` whose key is marked done."""
    by_set: dict[str, list[tuple[DeadLetter, str]]] = defaultdict(list)
    for entry in entries:
        if (marked := key_of(entry)) is not None:
            by_set[marked[0]].append((entry, marked[1]))
    found: dict[str, str] = {}
    if not by_set:
        return found
    seconds, micros = await client.time()  # the clock the marks were scored on
    now = seconds * 1000 + micros // 1000
    for marks, keyed in by_set.items():
        for start in range(0, len(keyed), CHUNK):  # a replay may plan a million entries
            chunk = keyed[start : start + CHUNK]
            scores = await client.zmscore(marks, [key for _, key in chunk])
            for (entry, key), score in zip(chunk, scores, strict=True):
                if score is not None and (math.isinf(score) or score > now):
                    found[entry.ref] = key
    return found


def refusal(key: str) -> str:
    """Why an entry whose key is done is not replayed."""
    return (
        f"already done: its idempotency key {key!r} is marked done (a duplicate succeeded); "
        "--ignore-idempotency replays it anyway"
    )


async def forget(client: Redis, entry: DeadLetter) -> None:
    """Clear ``entry``'s done mark, so its replay runs the handler again."""
    marked = key_of(entry)
    if marked is not None:
        await client.zrem(*marked)


__all__ = ["done", "forget", "key_of", "refusal"]
