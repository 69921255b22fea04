"""A dedicated connection for pipelined round trips on the hot path.

redis-py's ``Pipeline`` costs tens of microseconds per execute (pool checkout, per-reply
timeout contexts, result parsing). The reader does one round trip per batch, so it keeps
one connection for itself, sends all commands in one write and reads the replies raw,
under a single deadline for the whole round trip (kept above BLOCK: a dead peer is still
detected, a long BLOCK is never cut short).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = Sequence[str | bytes | int | float]

#: Errors after which a command's fate is unknown and the connection must be re-made.
#: (The builtin TimeoutError of a round-trip deadline is an OSError.)
TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class Channel:
    """One connection taken from ``client``'s pool, used by a single task at a time."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._conn: AbstractConnection | None = None

    async def roundtrip(self, commands: Sequence[Command], deadline: float) -> list[Any]:
        """Send ``commands`` in one write; return each raw reply or its ``ResponseError``.

        Transport errors and the deadline raise (redis-py's ``ConnectionError`` /
        ``TimeoutError``) after the connection is dropped, so the next call reconnects.
        """
        conn = self._conn
        if conn is None:
            conn = self._conn = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(deadline):
                await conn.send_packed_command(conn.pack_commands(commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response(disconnect_on_error=False))
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
        except BaseException:
            # The reply stream is out of step (timeout, reset, cancellation): start afresh.
            await conn.disconnect(nowait=True)
            raise

    async def close(self) -> None:
        """Give the connection back to the pool."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.client.connection_pool.release(conn)
