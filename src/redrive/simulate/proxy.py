"""A loopback TCP proxy (asyncio) that can reset, blackhole or delay connections.

One proxy sits between one worker and Redis, so a fault can cut a single worker off
(a network partition of one host) while the others carry on.

- ``reset()``: every open connection is closed with a TCP RST (``SO_LINGER`` 0), as a
  load balancer or a crashed NAT would; new connections are accepted as before.
- ``blackhole(True)``: bytes stop flowing both ways (nothing is read, so they pile up in
  the kernel's buffers) and new connections hang after accept; ``blackhole(False)`` lets
  everything flow again — a partition that heals.
- ``delay = seconds``: every chunk waits that long before it is forwarded.

Example::

    proxy = Proxy("127.0.0.1", redis_port)
    await proxy.start()
    url = proxy.url            # hand this to the worker
    proxy.reset()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

LISTEN_HOST = "127.0.0.1"  # loopback only: the proxy never listens on a public address
CHUNK = 65536


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = 0.0
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.resets = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{LISTEN_HOST}:{self.port}/0"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, LISTEN_HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.blackhole(False)
        self.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def blackhole(self, on: bool) -> None:
        """Stop (``True``) or resume (``False``) forwarding in both directions."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def reset(self) -> int:
        """Abort every open connection with a TCP RST; returns how many were cut."""
        links = list(self._links)
        for client, upstream in links:
            _abort(client)
            _abort(upstream)
        self._links.clear()
        self.resets += len(links)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _abort(writer)  # Redis is down: the client sees its connection refused
                return
            link = (writer, up_writer)
            self._links.add(link)
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
            )
            self._links.discard(link)
            for w in link:
                w.close()
        except asyncio.CancelledError:
            # close() cancels this connection's task; ending quietly keeps asyncio from
            # logging a traceback per open connection (its callback reads the exception).
            _abort(writer)
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()  # a blackhole begun meanwhile holds this chunk
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other, so a dead upstream is seen by the client.
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger 0: close() sends RST instead of FIN, as an abrupt network failure does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(OSError, RuntimeError):
        transport.abort()
