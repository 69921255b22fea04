"""Publishing JSON messages to a source stream (what ``redrive publish`` does).

Bodies are checked before anything is sent, so a bad line in a batch publishes nothing;
then they go out with pipelined ``XADD`` in chunks (one round trip per chunk, not per
message). The body goes in field ``data``, the convention of DESIGN §3.

Example::

    bodies = parse_json_lines(['{"order_id": "o-1"}', '{"order_id": "o-2"}'])
    ids = publish_to("redis://localhost:6379/0", "ecommerce:orders", bodies)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import redis
from redis import exceptions as rex

from redrive.core.codec import DATA_FIELD
from redrive.errors import ConfigError, DecodeError, StoreError
from redrive.store.connection import describe_error, sync_client
from redrive.store.keys import validate_stream_name

CHUNK = 500


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


def publish_bodies(
    client: redis.Redis,
    stream: str,
    bodies: Sequence[bytes],
    *,
    maxlen: int | None = None,
    chunk: int = CHUNK,
) -> list[str]:
    """XADD each body (as field ``data``) in pipelined chunks; return the new ids in order.

    Bodies are sent as given (not re-checked), so tests and demos can publish poison.
    ``maxlen`` trims approximately (``MAXLEN ~``): entries not yet consumed may go.
    """
    validate_stream_name(stream)
    if maxlen is not None and maxlen < 1:
        raise ConfigError(f"maxlen={maxlen!r}: use an integer >= 1")
    ids: list[str] = []
    for start in range(0, len(bodies), chunk):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start : start + chunk]:
            pipe.xadd(stream, {DATA_FIELD: body}, maxlen=maxlen, approximate=True)
        ids += [_text(entry_id) for entry_id in pipe.execute()]
    return ids


def publish_to(
    url: str, stream: str, bodies: Sequence[bytes], *, maxlen: int | None = None
) -> list[str]:
    """Connect to ``url`` and publish; a Redis failure becomes a one-line StoreError."""
    validate_stream_name(stream)
    client = sync_client(url)
    try:
        return publish_bodies(client, stream, bodies, maxlen=maxlen)
    except (rex.RedisError, OSError) as exc:
        # A chunk may have been partly applied before the failure: say so, never guess.
        raise StoreError(
            f"{describe_error(exc, url)} (some of the {len(bodies)} messages may be published)"
        ) from exc
    finally:
        client.close()


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
