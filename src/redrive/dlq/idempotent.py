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


def key_of(entry: DeadLetter) -> str | None:
    """The Redis key of ``entry``'s idempotency key, if its handler had one."""
    return entry.meta.get(f.IDEMPOTENCY_KEY.meta) or None


async def done(client: Redis, entries: Sequence[DeadLetter]) -> dict[str, str]:
    """``STREAM@ID`` -> idempotency key, of the ``entries`` whose key is marked done."""
    keyed = [(e, k) for e in entries if (k := key_of(e))]
    if not keyed:
        return {}
    pipe = client.pipeline(transaction=False)  # keys in many slots: one GET each
    for _, key in keyed:
        pipe.get(key)
    values = await pipe.execute()
    return {
        e.ref: key
        for (e, key), value in zip(keyed, values, strict=True)
        if isinstance(value, bytes) and value.startswith(DONE_PREFIX)
    }


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
