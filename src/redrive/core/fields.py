"""redrive's own message fields, each name spelled once (pure; DESIGN §3).

Every metadata field starts with ``redrive-``. A field is met in three spellings, all
here: ``name`` as written (``"redrive-origin-id"``), ``key`` as raw replies carry it
(``b"redrive-origin-id"``) and ``meta``, its name in a decoded metadata dict without the
prefix (``"origin-id"``, as in :attr:`redrive.Message.meta`).

Example::

    fields.get(ORIGIN_ID.key, b"")      # a raw XRANGE entry
    msg.meta.get(ORIGIN_ID.meta)        # decoded metadata
    [ORIGIN_ID.name, msg.id]            # a field list to write
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "redrive-"
META_PREFIX = PREFIX.encode()


class Field(NamedTuple):
    """One metadata field in its three spellings (see the module docstring)."""

    meta: str
    name: str
    key: bytes


def _field(meta: str) -> Field:
    name = PREFIX + meta
    return Field(meta, name, name.encode())


# Where the message came from and who failed it.
ORIGIN_STREAM = _field("origin-stream")
ORIGIN_ID = _field("origin-id")
GROUP = _field("group")
CONSUMER = _field("consumer")
# The failure.
ATTEMPT = _field("attempt")
FIRST_FAILED_MS = _field("first-failed-ms")
ERROR_TYPE = _field("error-type")
ERROR_CLASS = _field("error-class")
ERROR_MESSAGE = _field("error-message")
TRACEBACK = _field("traceback")
HISTORY = _field("history")
# A retry.
DUE_MS = _field("due-ms")
DELAY_MS = _field("delay-ms")
# A dead letter.
REASON = _field("reason")
DEAD_MS = _field("dead-ms")
# Replays (redrive.dlq.replay).
REPLAYS = _field("replays")
REPLAYED_FROM = _field("replayed-from")
REPLAYED_BY = _field("replayed-by")
REPLAYED_MS = _field("replayed-ms")
REPLAY_NOTE = _field("replay-note")
# Tracing (redrive.runtime.tracing). The producer's context travels in the fields its
# propagator writes (W3C: ``traceparent`` / ``tracestate``, producer fields that every copy
# keeps); redrive's own context on the copies it writes is always W3C, in these fields: on
# a retry entry the attempt that scheduled it, on a dead letter its ``dead_letter`` span,
# on a replayed entry the replay's ``send`` span.
TRACEPARENT = _field("traceparent")
TRACESTATE = _field("tracestate")
#: The W3C field a producer's context is found in (docs/monitoring.md#tracing-opentelemetry).
W3C_TRACEPARENT = "traceparent"
#: A dead letter of an idempotent handler: the message's idempotency key, and the sorted
#: set of its group's done marks (``store/keys.py``). A replay of a message whose key is
#: done is skipped (``dlq replay --ignore-idempotency``).
IDEMPOTENCY_KEY = _field("idempotency-key")
IDEMPOTENCY_DONE = _field("idempotency-done")

#: What a replayed message carries about its replay, kept if it fails again.
REPLAY_PROVENANCE = (REPLAYED_FROM, REPLAYED_BY, REPLAYED_MS, REPLAY_NOTE)


def trace_ids(traceparent: str | bytes | None) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a W3C ``traceparent`` value, or ``None`` if it is not one.

    Example::

        trace_ids("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        # ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    """
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("ascii", "replace")
    parts = (traceparent or "").strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    trace_id, span_id = parts[1].lower(), parts[2].lower()
    hexdigits = set("0123456789abcdef")
    if not set(trace_id + span_id) <= hexdigits or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id, span_id
