"""Dead letters of idempotent handlers whose key is done: replaying them would do nothing.

An idempotent handler's dead letter carries ``redrive-idempotency-key`` (the Redis key of
its idempotency key). If a duplicate of the message has succeeded since, that key is
marked done, and a replayed copy would only be acked as a duplicate: ``dlq replay`` and
the dashboard's jobs skip such entries (refused, with the reason) unless told to ignore
idempotency, which first clears the done mark so the handler really runs again.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from redrive.core import fields as f
from redrive.dlq.model import DeadLetter

DONE_PREFIX = b"d:"
#: GETs per round trip when asking which keys are done.
CHUNK = 1000


def key_of(entry: DeadLetter) -> str | None:
    """The Redis key of ``entry``'s idempotency key, if its handler had one."""
    return entry.meta.get(f.IDEMPOTENCY_KEY.meta) or None


async def done(client: Redis, entries: Sequence[DeadLetter]) -> dict[str, str]:
    """``STREAM@ID`` -> idempotency key, of the ``entries`` whose key is marked done."""
    keyed = [(e, k) for e in entries if (k := key_of(e))]
    found: dict[str, str] = {}
    for start in range(0, len(keyed), CHUNK):  # a replay may plan a million entries
        chunk = keyed[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)  # keys in many slots: one GET each
        for _, key in chunk:
            pipe.get(key)
        for (entry, key), value in zip(chunk, await pipe.execute(), strict=True):
            if isinstance(value, bytes) and value.startswith(DONE_PREFIX):
                found[entry.ref] = key
    return found


def refusal(key: str) -> str:
    """Why an entry whose key is done is not replayed."""
    return (
        f"already done: its idempotency key {key} is marked done (a duplicate succeeded); "
        "--ignore-idempotency replays it anyway"
    )


async def forget(client: Redis, entry: DeadLetter) -> None:
    """Clear ``entry``'s done mark, so its replay runs the handler again."""
    key = key_of(entry)
    if key is not None:
        await client.delete(key)


__all__ = ["done", "forget", "key_of", "refusal"]
