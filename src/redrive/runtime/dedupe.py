"""Publishing with a dedupe id: a producer that sends a message again (a lost reply, a
restart) does not add it twice.

Where the server has it (Redis 8.6 and later), ``XADD … IDMP <producer> <dedupe id>``
does it inside Redis; the stream's IDMP settings (``XCFGSET``: how long and how many ids
per producer, at most a day and 10,000) bound that window. Elsewhere a Lua script
(``publish_dedupe.lua``) keeps ``redrive:dedupe:{S}:<id>`` -> entry id for ``ttl``
seconds and adds the entry only when no such key exists, both in one step. Either way a
duplicate returns the id of the entry published first.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from redrive.core.codec import DATA_FIELD
from redrive.errors import ConfigError
from redrive.store import idempotency as calls
from redrive.store.cluster import is_cluster
from redrive.store.keys import publish_dedupe

#: How long the fallback remembers a dedupe id by default (seconds).
DEFAULT_DEDUPE_TTL = 86_400.0
#: The producer id under which ``XADD … IDMP`` tracks redrive's dedupe ids.
PRODUCER = "redrive"
IDMP_SINCE = (8, 6)

_has_idmp: weakref.WeakKeyDictionary[redis.asyncio.Redis, bool] = weakref.WeakKeyDictionary()


async def server_has_idmp(client: redis.asyncio.Redis) -> bool:
    """Whether the server knows ``XADD … IDMP`` (asked once per client)."""
    known = _has_idmp.get(client)
    if known is None:
        info: dict[str, Any] = await client.info("server")
        # A cluster client answers per node: every master must have it.
        nodes = [info] if "redis_version" in info else [v for v in info.values() if
                                                          isinstance(v, dict)]  # fmt: skip
        known = _has_idmp[client] = bool(nodes) and all(
            _version(node) >= IDMP_SINCE for node in nodes
        )
    return known


def _version(info: dict[str, Any]) -> tuple[int, ...]:
    version = str(info.get("redis_version", "0"))
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def check_dedupe(dedupe_ids: Sequence[str], count: int, ttl: float) -> None:
    """Validate before any I/O: one non-empty id per body, a positive TTL."""
    if len(dedupe_ids) != count:
        raise ConfigError(f"dedupe_ids: {len(dedupe_ids)} ids for {count} bodies; give one each")
    for dedupe_id in dedupe_ids:
        if not isinstance(dedupe_id, str) or not dedupe_id or len(dedupe_id) > 512:
            raise ConfigError(f"dedupe id {dedupe_id!r}: use a non-empty str of <= 512 chars")
    if not ttl > 0:
        raise ConfigError(f"dedupe_ttl={ttl!r}: use seconds > 0")


async def publish_deduped(
    client: redis.asyncio.Redis,
    stream: str,
    encoded: Sequence[bytes],
    dedupe_ids: Sequence[str],
    *,
    ttl: float,
    maxlen: int | None,
) -> list[str]:
    """XADD each encoded body unless its dedupe id was published; every entry's id."""
    if await server_has_idmp(client):
        return await _with_idmp(client, stream, encoded, dedupe_ids, maxlen)
    ttl_ms = max(1, int(ttl * 1000))
    made = [
        calls.publish_dedupe(
            stream=stream,
            dedupe_key=publish_dedupe(stream, dedupe_id),
            ttl_ms=ttl_ms,
            maxlen=maxlen,
            fields=[DATA_FIELD, raw],
        )
        for raw, dedupe_id in zip(encoded, dedupe_ids, strict=True)
    ]
    if is_cluster(client):  # a cluster pipeline refuses EVALSHA: one call each
        return [(await call(client))[1] for call in made]
    pipe = client.pipeline(transaction=False)
    for call in made:
        call.queue(pipe)
    replies = await pipe.execute(raise_on_error=False)
    ids = []
    for call, reply in zip(made, replies, strict=True):
        if isinstance(reply, NoScriptError):  # a fresh or restarted server: load, run again
            ids.append((await call(client))[1])
        elif isinstance(reply, Exception):
            raise reply
        else:
            ids.append(call.parse(reply)[1])
    return ids


async def _with_idmp(
    client: redis.asyncio.Redis,
    stream: str,
    encoded: Sequence[bytes],
    dedupe_ids: Sequence[str],
    maxlen: int | None,
) -> list[str]:
    pipe = client.pipeline(transaction=False)
    trim = ("MAXLEN", "~", maxlen) if maxlen else ()
    for raw, dedupe_id in zip(encoded, dedupe_ids, strict=True):
        pipe.execute_command("XADD", stream, "IDMP", PRODUCER, dedupe_id, *trim, "*",
                             DATA_FIELD, raw)  # fmt: skip
    return [i.decode() if isinstance(i, bytes) else str(i) for i in await pipe.execute()]


__all__ = ["DEFAULT_DEDUPE_TTL", "check_dedupe", "publish_deduped", "server_has_idmp"]
