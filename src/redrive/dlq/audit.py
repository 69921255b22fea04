"""The audit trail of DLQ operations: who did what to how many dead letters, and when.

Two levels, both streams:

- ``redrive:audit`` — one record per operation (replay, purge, import, retention):
  ``op``, ``action``, ``by``, ``count``, ``streams``, ``filter``, ``note``, ``ts-ms``.
- ``redrive:audit:{S}`` — one record per moved entry (replay) or per deleted batch
  (purge), written by the same Lua call that moves or deletes, so the trail can never
  miss a change that happened (nor record one that did not).

Both are checked (:func:`require_trails`) before anything moves: a Lua call that has
deleted cannot take the delete back when its audit XADD then fails on a key of another
type, and the operator would be told "error" about a change that did happen.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from redrive.core.text import text
from redrive.dlq.model import WrongTypeError, key_types, pairs_of, wrong_type
from redrive.store import keys
from redrive.store.keys import AUDIT_MAXLEN

OPERATOR_ENV = "REDRIVE_OPERATOR"
FieldT = str | bytes | bytearray | memoryview | int | float


def operator() -> str:
    """Who is acting: ``$REDRIVE_OPERATOR``, else ``user@host``."""
    named = os.environ.get(OPERATOR_ENV)
    if named:
        return named
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Operation:
    """One operator action; its ``op`` id ties the per-entry records to the summary."""

    action: str
    by: str
    note: str = ""
    op: str = ""

    @classmethod
    def start(cls, action: str, *, by: str | None = None, note: str = "") -> Operation:
        """A new operation with a fresh id, by ``by`` (default: :func:`operator`)."""
        return cls(action, by or operator(), note, uuid.uuid4().hex[:12])

    def entry_fields(self) -> list[str]:
        """Fields every per-entry audit record starts with."""
        fields = ["op", self.op, "action", self.action, "by", self.by]
        fields += ["ts-ms", str(int(time.time() * 1000))]
        return fields + (["note", self.note] if self.note else [])


async def require_trails(client: Redis, streams: Sequence[str]) -> None:
    """Raise :class:`~redrive.dlq.WrongTypeError` unless ``redrive:audit`` and the
    ``redrive:audit:{S}`` of each of ``streams`` are streams (or missing)."""
    names = [keys.AUDIT, *(keys.audit_trail(s) for s in sorted(set(streams)))]
    for name, kind in zip(names, await key_types(client, names), strict=True):
        if kind not in ("stream", "none"):
            outcome = "nothing changed, as every change is recorded there"
            raise WrongTypeError(wrong_type(name, kind, outcome))


async def record(
    client: Redis,
    op: Operation,
    *,
    count: int,
    streams: Sequence[str],
    details: Mapping[str, Any] | None = None,
) -> str:
    """Append the summary of ``op`` to ``redrive:audit``; returns its entry id."""
    fields: dict[FieldT, FieldT] = {
        "op": op.op,
        "action": op.action,
        "by": op.by,
        "count": str(count),
        "streams": ",".join(streams),
        "ts-ms": str(int(time.time() * 1000)),
    }
    if op.note:
        fields["note"] = op.note
    for name, value in (details or {}).items():
        fields[name] = str(value)
    entry_id = await client.xadd(keys.AUDIT, fields, maxlen=AUDIT_MAXLEN, approximate=True)
    return text(entry_id)


async def recent(client: Redis, *, limit: int = 50) -> list[dict[str, str]]:
    """The newest ``limit`` summaries of ``redrive:audit``, newest first, each with its
    entry ``id`` (for the dashboard's audit page; ``redrive audit`` checks streams)."""
    reply: Any = await client.xrevrange(keys.AUDIT, count=limit)
    # pairs_of: a client from dlq.connect returns raw field lists, others a dict.
    return [{"id": text(i), **{text(k): text(v) for k, v in pairs_of(f)}} for i, f in reply]
