"""Publishing messages to a source stream: :func:`publish` (asyncio) and :func:`publish_sync`.

Both take a client the caller keeps and reuses: opening a connection per call costs more
than the XADDs themselves (docs/api.md#publishing has the figures). Bodies are checked
before anything is sent, so a bad body in a batch publishes nothing; then they go out
with pipelined ``XADD`` in chunks (one round trip per chunk, not per message). The body
goes in field ``data``, the convention of docs/concepts.md#fields: a ``dict`` is
JSON-encoded, ``bytes`` and ``str`` are sent as they are (not re-checked, so tests and
demos can publish poison on purpose). With ``opentelemetry-api`` installed and a span
active, its context goes with every entry (``traceparent`` / ``tracestate``, through the
global propagator): the worker's spans continue the caller's trace
(docs/monitoring.md#tracing-opentelemetry).

Example::

    client = redis.asyncio.Redis.from_url("redis://localhost:6379/0")
    ids = await publish(client, "ecommerce:orders", [{"order_id": "o-1"}, {"order_id": "o-2"}])
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rex

from redrive.core.codec import DATA_FIELD, encode_body
from redrive.errors import ConfigError, DecodeError, StoreError
from redrive.runtime.dedupe import DEFAULT_DEDUPE_TTL, check_dedupe, publish_deduped
from redrive.runtime.settings import otel_in_use
from redrive.store.keys import validate_stream_name

CHUNK = 500

#: One message body: a dict (JSON-encoded) or ``bytes`` / ``str`` (sent as is).
Body = Mapping[str, Any] | bytes | str


class PublishError(StoreError):
    """Redis failed part-way through a publish.

    ``published`` holds the ids of the chunks Redis confirmed, in order; of the chunk in
    flight any part may have been written (a lost reply says nothing), so at most
    ``total - len(published)`` messages are unaccounted for.
    """

    def __init__(self, message: str, *, published: list[str], total: int) -> None:
        super().__init__(message)
        self.published = published
        self.total = total


async def publish(
    client: redis.asyncio.Redis,
    stream: str,
    bodies: Iterable[Body],
    *,
    maxlen: int | None = None,
    chunk: int = CHUNK,
    dedupe_ids: Sequence[str] | None = None,
    dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
) -> list[str]:
    """XADD each body (field ``data``) to ``stream``; return the new ids in order.

    ``maxlen`` trims approximately (``MAXLEN ~``): entries not yet consumed may go.
    A single body where a list is expected (``publish(c, s, {"a": 1})``) is refused: it
    would otherwise be iterated (one message per key, or per byte). ``dedupe_ids`` (one
    per body) makes sending again harmless: a body whose dedupe id was published (within
    ``dedupe_ttl`` seconds) is not added twice, and its first entry's id is returned
    (:mod:`redrive.runtime.dedupe`: ``XADD … IDMP`` on Redis 8.6+, a script elsewhere).

    Example::

        ids = await publish(client, "ecommerce:orders", [{"order_id": "o-1"}], maxlen=100_000)
        ids = await publish(client, "ecommerce:payments", [payment], dedupe_ids=["pay-o-1"])
    """
    encoded = prepare(stream, bodies, maxlen=maxlen, chunk=chunk)
    ids: list[str] = []
    if dedupe_ids is not None:
        check_dedupe(dedupe_ids, len(encoded), dedupe_ttl)
        try:
            for start in range(0, len(encoded), chunk):
                ids += await publish_deduped(
                    client, stream, encoded[start : start + chunk],
                    dedupe_ids[start : start + chunk], ttl=dedupe_ttl, maxlen=maxlen,
                )  # fmt: skip
        except (rex.RedisError, OSError) as exc:
            raise _failed(stream, exc, ids, len(encoded)) from exc
        return ids
    try:
        for pipe in _pipelines(client, stream, encoded, maxlen, chunk):
            ids += [_text(entry_id) for entry_id in await pipe.execute()]
    except (rex.RedisError, OSError) as exc:
        raise _failed(stream, exc, ids, len(encoded)) from exc
    return ids


def publish_sync(
    client: redis.Redis,
    stream: str,
    bodies: Iterable[Body],
    *,
    maxlen: int | None = None,
    chunk: int = CHUNK,
) -> list[str]:
    """:func:`publish` with a blocking client, for scripts and ``def`` code.

    Example::

        client = redis.Redis.from_url("redis://localhost:6379/0")
        publish_sync(client, "ecommerce:orders", [b'{"order_id": "o-1"}'])
    """
    encoded = prepare(stream, bodies, maxlen=maxlen, chunk=chunk)
    ids: list[str] = []
    try:
        for pipe in _pipelines(client, stream, encoded, maxlen, chunk):
            ids += [_text(entry_id) for entry_id in pipe.execute()]
    except (rex.RedisError, OSError) as exc:
        raise _failed(stream, exc, ids, len(encoded)) from exc
    return ids


def _pipelines(
    client: Any, stream: str, encoded: list[bytes], maxlen: int | None, chunk: int
) -> Iterator[Any]:
    """One pipeline of XADDs per ``chunk`` bodies (an async or a blocking client's)."""
    # One context for the whole call: every body is published from the same span.
    context = trace_context()
    for start in range(0, len(encoded), chunk):
        pipe = client.pipeline(transaction=False)
        for raw in encoded[start : start + chunk]:
            fields: dict[Any, Any] = {DATA_FIELD: raw, **context}
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
        yield pipe


@functools.cache
def _injector() -> Any:
    try:
        from redrive.runtime.tracing import context_fields
    except ImportError:  # no opentelemetry-api: nothing to propagate
        return None
    return context_fields


def trace_context() -> dict[str, str]:
    """The caller's trace context as stream fields (``{}`` without opentelemetry or a span)."""
    if not otel_in_use():  # no span can be active: skip the import (a CLI's start-up)
        return {}
    inject = _injector()
    return {} if inject is None else dict(inject())


def prepare(
    stream: str, bodies: Iterable[Body], *, maxlen: int | None = None, chunk: int = CHUNK
) -> list[bytes]:
    """Check the arguments of a publish and encode every body, before any I/O."""
    validate_stream_name(stream)
    for name, value in (("maxlen", maxlen), ("chunk", chunk)):
        if value is not None and not (_is_int(value) and value >= 1):
            raise ConfigError(f"{name}={value!r}: use an integer >= 1")
    if isinstance(bodies, bytes | bytearray | memoryview | str | Mapping):
        raise ConfigError(
            f"bodies is one {type(bodies).__name__} body, not a list of bodies: "
            "pass [body] to publish it as one message"
        )
    if not isinstance(bodies, Iterable):
        raise ConfigError(f"bodies={bodies!r}: pass a list of dicts, bytes or str")
    return [_encode(body, number) for number, body in enumerate(bodies, start=1)]


def _encode(body: object, number: int) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, Mapping):
        try:
            return encode_body(body)
        except DecodeError as exc:
            raise ConfigError(f"body {number}: {exc}") from None
    raise ConfigError(
        f"body {number} is a {type(body).__name__}: give a dict (sent as JSON), or bytes "
        "or str (sent as is)"
    )


def _failed(stream: str, exc: BaseException, ids: list[str], total: int) -> PublishError:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return PublishError(
        f"publishing to {stream!r} failed after {len(ids)} of {total} messages were "
        f"confirmed ({type(exc).__name__}: {detail}); the chunk being sent may be partly "
        "published",
        published=ids,
        total=total,
    )


def check_json(text: str | bytes, where: str) -> bytes:
    """``text`` as UTF-8 bytes if it is one valid JSON value, else :class:`DecodeError`."""
    try:
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError:
        raise DecodeError(f"{where} is not UTF-8") from None
    try:
        json.loads(decoded)
    except ValueError as exc:
        raise DecodeError(f"{where} is not valid JSON: {exc}") from None
    return decoded.encode("utf-8")


def parse_json_lines(lines: Iterable[str | bytes]) -> list[bytes]:
    """Check every non-blank line; the first bad one raises, naming its line number."""
    bodies: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped:
            bodies.append(check_json(stripped, f"line {number}"))
    return bodies


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
