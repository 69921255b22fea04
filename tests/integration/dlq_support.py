"""Helpers for the DLQ tests: dead letters built by the real record builder, CLI runs."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence

import redis.asyncio
import redis.exceptions

from redrive.core.message import Message
from redrive.core.records import Failure, dead_record
from redrive.store import keys

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/handlers.py", line 41, in handle\n'
    "    charge(order)\n"
    '  File "/srv/app/gateway.py", line 12, in charge\n'
    "    raise TimeoutError(msg)\n"
)


def record(
    stream: str,
    origin_id: str,
    *,
    fields: dict[bytes, bytes] | None = None,
    group: str = "orders",
    error_type: str = "TimeoutError",
    message: str = "timeout after 3012 ms",
    reason: str = "max_retries_exceeded",
    replays: int = 0,
    dead_ms: int = 1_700_000_000_000,
) -> list[bytes | str]:
    """The fields the runtime would write for a dead letter (via ``dead_record``)."""
    msg = Message(
        stream=stream, id=origin_id, fields=fields or {b"data": b'{"order_id": 1}'}, attempt=4
    )
    if replays:
        msg.meta = {"replays": str(replays)}
    failure = Failure(error_type, "transient", message, TRACEBACK, dead_ms, "c1", 12.5)
    return dead_record(msg, failure, group=group, reason=reason)


async def seed(
    r: redis.asyncio.Redis,
    stream: str,
    n: int,
    *,
    start: int = 0,
    with_group: bool = True,
    **kw: object,
) -> list[str]:
    """Add ``n`` dead letters to ``dlq:{stream}`` (origin ids ``1-<i>``); their DLQ ids.

    The group that failed them (``group``, default ``orders``) is created on ``stream``
    as a worker would have (replay refuses a group that does not exist) unless
    ``with_group=False``.
    """
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        flat = record(stream, f"1-{i}", **kw)  # type: ignore[arg-type]
        pipe.execute_command("XADD", keys.dlq(stream), "*", *flat)
    pipe.sadd(keys.STREAMS_INDEX, stream)
    replies = await pipe.execute()
    if with_group:
        with contextlib.suppress(redis.exceptions.ResponseError):  # BUSYGROUP: seeded before
            await r.xgroup_create(stream, str(kw.get("group", "orders")), id="0", mkstream=True)
    return [i.decode() for i in replies[:-1]]


def run_cli(argv: Sequence[str], stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``redrive ARGV`` in this process; returns (exit code, stdout, stderr)."""
    from redrive.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


async def origins(r: redis.asyncio.Redis, key: str) -> list[str]:
    """``redrive-origin-id`` of every entry of stream ``key``, in order."""
    entries = await r.xrange(key)
    return [f[b"redrive-origin-id"].decode() for _, f in entries]
