"""``until_idle``: wait until an app's streams have nothing left to do.

An app is idle when, for every handler, the source stream and its retry stream hold no
entry the group has not read, the group has nothing pending on either (every delivered
entry acked, retried or dead-lettered, the batched acks flushed), and the retry schedule
holds nothing due (and, with ``wait_scheduled=True``, nothing waiting for later either).

Each handler's keys are read in one MULTI (they share a hash slot): a snapshot taken
in several round trips could miss an entry moving between them (a retry promoted from the
schedule to the retry stream between two reads) and call a busy app idle.

Example::

    await until_idle(app, redis_url, timeout=5.0)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio

from redrive.core.ids import id_key
from redrive.errors import RedriveError
from redrive.store.channel import Channel, Command
from redrive.store.connection import async_client
from redrive.store.keys import StreamKeys

if TYPE_CHECKING:
    from redrive.runtime.app import App

POLL_SECONDS = 0.02
ROUNDTRIP_SECONDS = 5.0


class NotIdle(RedriveError, TimeoutError):
    """``until_idle`` timed out; ``outstanding`` says what each handler still has to do."""

    def __init__(self, timeout: float, outstanding: Sequence[Outstanding]) -> None:
        self.outstanding = tuple(outstanding)
        listed = "; ".join(item.describe() for item in self.outstanding)
        super().__init__(f"not idle after {timeout:g}s: {listed}")


@dataclass(frozen=True, slots=True)
class Outstanding:
    """What one handler (stream, group) still has to do; all zero/False when idle.

    ``unread`` names the streams (source, retry) holding entries the group has not read
    yet, ``no_group`` those without the group (no worker created it yet); ``pending``
    counts entries delivered but not settled on both; ``due`` counts scheduled retries
    whose time has come and ``scheduled`` those waiting for later.
    """

    stream: str
    group: str
    unread: tuple[str, ...] = ()
    no_group: tuple[str, ...] = ()
    pending: int = 0
    due: int = 0
    scheduled: int = 0

    def busy(self, *, wait_scheduled: bool) -> bool:
        """True if anything is left (later retries count only with ``wait_scheduled``)."""
        later = self.scheduled if wait_scheduled else 0
        return bool(self.unread or self.no_group or self.pending or self.due or later)

    def describe(self) -> str:
        """One line: ``orders (svc): unread on orders; 2 pending; 1 scheduled for later``."""
        parts = [f"no group on {key}" for key in self.no_group]
        parts += [f"unread on {key}" for key in self.unread]
        if self.pending:
            parts.append(f"{self.pending} pending")
        if self.due:
            parts.append(f"{self.due} retries due")
        if self.scheduled:
            parts.append(f"{self.scheduled} retries scheduled for later")
        return f"{self.stream} ({self.group}): {', '.join(parts) or 'idle'}"


async def outstanding(client: redis.asyncio.Redis, stream: str, group: str) -> Outstanding:
    """What ``group`` still has to do on ``stream``, read in one MULTI (see the module).

    Sent raw over one connection to the keys' node (a cluster client's pipelines run
    MULTI through a thread of their own, on another event loop).
    """
    keys = StreamKeys.of(stream, group)
    now_ms = int(time.time() * 1000)
    commands: list[Command] = [["MULTI"]]
    for key in (keys.stream, keys.retry):
        commands += [["XINFO", "GROUPS", key], ["XREVRANGE", key, "+", "-", "COUNT", 1]]
    commands += [["ZCOUNT", keys.due, "-inf", now_ms], ["ZCARD", keys.due], ["EXEC"]]
    channel = Channel(client, keys.stream)
    try:
        replies = (await channel.roundtrip(commands, ROUNDTRIP_SECONDS))[-1]
    finally:
        await channel.close()
    if isinstance(replies, Exception):
        raise replies
    unread: list[str] = []
    no_group: list[str] = []
    pending = 0
    for i, key in enumerate((keys.stream, keys.retry)):
        found = _group(replies[2 * i], group)
        if found is None:
            no_group.append(key)
            continue
        if _unread(found, replies[2 * i + 1]):
            unread.append(key)
        pending += int(found["pending"])
    due, total = int(replies[4]), int(replies[5])
    return Outstanding(stream, group, tuple(unread), tuple(no_group), pending, due, total - due)


async def until_idle(
    app: App,
    redis_url: str,
    *,
    timeout: float = 10.0,
    wait_scheduled: bool = True,
) -> None:
    """Return once every handler of ``app`` is idle on ``redis_url`` (see the module).

    ``wait_scheduled=False`` returns with retries still scheduled for later (a test of
    what happens before the backoff ends). Raises :class:`NotIdle` naming what is still
    outstanding after ``timeout`` seconds. The app must be running (or have run) for it
    to become idle: see :func:`redrive.testing.running`.

    Example::

        await until_idle(app, redis_url, timeout=5.0, wait_scheduled=False)
    """
    client = async_client(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            found = [await outstanding(client, s.stream, s.group) for s in app.specs]
            busy = [item for item in found if item.busy(wait_scheduled=wait_scheduled)]
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise NotIdle(timeout, busy)
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await client.aclose()


def _group(groups: object, name: str) -> dict[str, Any] | None:
    """The raw XINFO GROUPS row of ``name`` as a dict; None if missing (or the stream is:
    then the reply is an error)."""
    if not isinstance(groups, list):
        return None
    for raw in groups:
        # A map on a RESP3 connection, a flat [name, value, …] list on RESP2.
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        row = {_text(key): value for key, value in pairs}
        if _text(row.get("name")) == name:
            return row
    return None


def _unread(group: dict[str, Any], last: object) -> bool:
    """True if the stream's newest entry is after what the group has delivered."""
    if not isinstance(last, list) or not last:
        return False  # an empty stream has nothing to read
    newest = _text(last[0][0])
    return id_key(newest) > id_key(_text(group["last-delivered-id"]))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
