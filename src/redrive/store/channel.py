"""A dedicated connection for pipelined round trips on the hot path.

redis-py's ``Pipeline`` costs tens of microseconds per execute (pool checkout, per-reply
timeout contexts, result parsing). The reader does one round trip per batch, so it keeps
one connection for itself, sends all commands in one write and reads the replies raw,
under a single deadline for the whole round trip (kept above BLOCK: a dead peer is still
detected, a long BLOCK is never cut short).

On Redis Cluster the connection goes to the master that owns ``key``'s slot (every
command a channel sends touches keys of that one slot). A MOVED, ASK, CLUSTERDOWN or
TRYAGAIN reply, or a transport error, drops the connection and re-resolves the owner on
the next round trip (after a failover that is the promoted replica); the caller sees a
:class:`Redirected` error, which is one of :data:`TRANSPORT_ERRORS`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from redrive.errors import ConfigError
from redrive.store.cluster import CLUSTER_TRANSIENT, REDIRECTS, SlotOwner, is_cluster

Command = Sequence[str | bytes | int | float]


class Redirected(RedisConnectionError):
    """A cluster node refused a round trip because it does not serve the slot (now).

    A transport error for the caller: what was sent may not all have run, so the
    caller treats it like a lost reply (acks are sent again, own pending re-read).
    ``replies`` are the round trip's replies: a caller may see which commands were the
    refused ones (a refused read delivered nothing).
    """

    def __init__(self, message: str, replies: list[Any] | None = None) -> None:
        super().__init__(message)
        self.replies = replies or []

    @property
    def last_refused(self) -> bool:
        """Whether the round trip's last command was refused (so it did not run)."""
        return bool(self.replies) and isinstance(self.replies[-1], REDIRECTS)


#: Errors after which a command's fate is unknown and the connection must be re-made.
#: (The builtin TimeoutError of a round-trip deadline is an OSError.) On Redis Cluster a
#: failover adds CLUSTERDOWN, TRYAGAIN and an uncovered slot: nothing ran, try again later.
TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, *CLUSTER_TRANSIENT)


def pack(commands: Sequence[Command]) -> bytes:
    """RESP-encode ``commands`` in one buffer.

    What redis-py's ``pack_commands`` does, for the argument types the hot path sends
    (str, bytes, int, float), at a third of its cost: a failure move carries thirty
    arguments, and packing them was a tenth of the failure path.
    """
    out: list[bytes] = []
    append = out.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, bytes):
                raw = arg
            elif isinstance(arg, str):
                raw = arg.encode()
            elif isinstance(arg, int | float) and not isinstance(arg, bool):
                raw = repr(arg).encode()
            else:
                raise ConfigError(f"cannot send {type(arg).__name__} {arg!r} to Redis")
            append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class Channel:
    """One connection taken from ``client``'s pool, used by a single task at a time.

    ``key`` is required for a cluster client: the channel talks to its slot's owner.
    """

    def __init__(self, client: Redis, key: str | None = None, *, track_id: bool = False) -> None:
        self.client = client
        self._conn: AbstractConnection | None = None
        #: Learn the connection's CLIENT ID (on its first round trip), for :meth:`unblock`.
        self.track_id = track_id
        self.conn_id: int | None = None
        self._id_refused = False
        self._owner: SlotOwner | None = None
        if is_cluster(client):
            if key is None:
                raise ConfigError("a channel on Redis Cluster needs the key whose slot it uses")
            self._owner = SlotOwner(client, key)  # type: ignore[arg-type]

    async def roundtrip(self, commands: Sequence[Command], deadline: float) -> list[Any]:
        """Send ``commands`` in one write; return each raw reply or its ``ResponseError``.

        Transport errors and the deadline raise (redis-py's ``ConnectionError`` /
        ``TimeoutError``) after the connection is dropped, so the next call reconnects.
        """
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._acquire()
        # A new or reconnected connection has a new id (asked once: an ACL may refuse it).
        asked = self.track_id and self.conn_id is None and not self._id_refused
        if asked:
            commands = [("CLIENT", "ID"), *commands]
        try:
            async with asyncio.timeout(deadline):
                await conn.send_packed_command(pack(commands))
                if asked:  # known at once: the read that follows may block
                    self._learn_id(await self._reply(conn))
                replies = [await self._reply(conn) for _ in range(len(commands) - asked)]
        except BaseException:
            # The reply stream is out of step (timeout, reset, cancellation): start afresh.
            self.conn_id = None
            await conn.disconnect(nowait=True)
            if self._owner is not None:
                await self._drop(conn, None)
            raise
        if self._owner is not None:
            await self._check_slot(conn, replies)
        return replies

    @staticmethod
    async def _reply(conn: AbstractConnection) -> Any:
        # No per-reply socket timeout (math.inf): the round trip's deadline bounds it, so
        # a client may keep a short socket timeout for its other commands.
        try:
            return await conn.read_response(timeout=math.inf, disconnect_on_error=False)
        except ResponseError as exc:
            return exc

    def _learn_id(self, reply: Any) -> None:
        self.conn_id = reply if isinstance(reply, int) else None
        self._id_refused = self.conn_id is None  # an ACL without CLIENT ID

    async def unblock(self) -> bool:
        """End the command this channel's connection is blocked in (an XREADGROUP BLOCK)
        now, as if its BLOCK ran out: ``CLIENT UNBLOCK``, sent on another connection.

        ``False`` when it could not be done (no id known, the ACL user may not, Redis
        unreachable): the blocked command then returns when its BLOCK ends.
        """
        conn, conn_id = self._conn, self.conn_id
        if conn is None or conn_id is None:
            return False
        try:
            if self._owner is not None:
                node = self.client.get_node(host=conn.host, port=conn.port)  # type: ignore[attr-defined]
                reply = await self.client.execute_command(  # type: ignore[no-untyped-call]
                    "CLIENT", "UNBLOCK", conn_id, target_nodes=node
                )
            else:
                reply = await self.client.execute_command("CLIENT", "UNBLOCK", conn_id)  # type: ignore[no-untyped-call]
        except (ResponseError, *TRANSPORT_ERRORS):
            return False
        return bool(reply)

    async def _acquire(self) -> AbstractConnection:
        if self._owner is not None:
            return await self._owner.acquire()
        conn: AbstractConnection = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        return conn

    async def _check_slot(self, conn: AbstractConnection, replies: list[Any]) -> None:
        for reply in replies:
            if isinstance(reply, rex.ClusterDownError | rex.TryAgainError):
                # The node answered and still serves the slot: the cluster is failing over
                # elsewhere, or the slot is migrating. Keep the connection and the slot map
                # (a refresh now could ask a hung node); the caller tries again shortly.
                raise Redirected(f"cluster node answered {type(reply).__name__}: {reply}", replies)
            if isinstance(reply, REDIRECTS):
                await self._drop(conn, reply)
                raise Redirected(f"cluster node answered {type(reply).__name__}: {reply}", replies)

    async def _drop(self, conn: AbstractConnection, reply: ResponseError | None) -> None:
        """Give a cluster connection back and re-resolve the slot's owner next time."""
        assert self._owner is not None
        self._conn = None
        self._owner.release(conn)
        if reply is None:
            self._owner.forget()
        else:
            await self._owner.redirected(reply)

    async def close(self) -> None:
        """Give the connection back to the pool."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if self._owner is not None:
            self._owner.release(conn)
        else:
            await self.client.connection_pool.release(conn)
