"""The field lists redrive writes for a retry and for a dead letter (pure).

Producer fields are copied unchanged (bytes stay bytes: non-UTF-8 survives) and redrive's
metadata is appended under ``redrive-*`` names (docs/concepts.md#fields). The attempt history is a
compact JSON list, capped so a message that failed many times stays small.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redrive.core import fields as f
from redrive.core.message import Message

Fields = list[bytes | str]

MAX_ERROR_MESSAGE = 1024
MAX_HISTORY_MESSAGE = 200
MAX_TRACEBACK = 8192
MAX_HISTORY = 20

#: JSON string quoting as ``json.dumps(..., ensure_ascii=False)`` does it (the C version).
_quote = json.encoder.encode_basestring


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong in one attempt."""

    error_type: str
    error_class: str
    message: str
    traceback: str
    at_ms: int
    consumer: str
    duration_ms: float

    def history_item(self, attempt: int) -> dict[str, object]:
        """This failure as one compact history entry."""
        return {
            "a": attempt,
            "t": self.at_ms,
            "c": self.consumer,
            "e": self.error_type,
            "k": self.error_class,
            "m": self.message[:MAX_HISTORY_MESSAGE],
            "d": round(self.duration_ms, 3),
        }


def history_json(failure: Failure, attempt: int) -> str:
    """``json.dumps(failure.history_item(attempt), separators=(",", ":"),
    ensure_ascii=False)``, written out: on the failure path ``json.dumps`` builds an
    encoder per call, the larger part of a retry's cost."""
    q = _quote
    return (
        f'{{"a":{attempt!r},"t":{failure.at_ms!r},"c":{q(failure.consumer)},'
        f'"e":{q(failure.error_type)},"k":{q(failure.error_class)},'
        f'"m":{q(failure.message[:MAX_HISTORY_MESSAGE])},"d":{round(failure.duration_ms, 3)!r}}}'
    )


def history(msg: Message, failure: Failure) -> str:
    """The message's attempt history with this failure appended, capped at MAX_HISTORY.

    When capped, the first attempt is kept (it shows how the trouble began) and the
    oldest of the rest are dropped.
    """
    raw = msg.meta.get(f.HISTORY.meta)
    item = history_json(failure, msg.attempt)
    # Appended as text while under the cap (no parse, no re-encode: retries are frequent).
    # Item objects start with '{"a":' and a quote inside a message is escaped, so the
    # count is exact for the lists redrive writes.
    if raw and raw.startswith("[{") and raw.endswith("}]") and raw.count('{"a":') < MAX_HISTORY:
        return f"{raw[:-1]},{item}]"
    if not raw:
        return f"[{item}]"
    items: list[object] = []
    if raw:
        try:
            loaded = json.loads(raw)
            if isinstance(loaded, list):
                items = loaded
        except ValueError:
            items = []
    items.append(failure.history_item(msg.attempt))
    if len(items) > MAX_HISTORY:
        items = [items[0], *items[-(MAX_HISTORY - 1) :]]
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def _base(msg: Message, failure: Failure, group: str) -> Fields:
    out: Fields = []
    for key, value in msg.fields.items():
        out.append(key)
        out.append(value)
    meta = msg.meta
    out += [
        f.ORIGIN_STREAM.name, msg.stream,
        f.ORIGIN_ID.name, msg.id,
        f.GROUP.name, group,
        f.FIRST_FAILED_MS.name, meta.get(f.FIRST_FAILED_MS.meta) or str(failure.at_ms),
        f.ERROR_TYPE.name, failure.error_type,
        f.ERROR_CLASS.name, failure.error_class,
        f.ERROR_MESSAGE.name, failure.message[:MAX_ERROR_MESSAGE],
        f.REPLAYS.name, meta.get(f.REPLAYS.meta) or "0",
        f.HISTORY.name, history(msg, failure),
    ]  # fmt: skip
    # A replayed message keeps its provenance if it fails again, so its next dead letter
    # still says where it was replayed from, by whom and why (redrive.dlq.replay).
    for field in f.REPLAY_PROVENANCE:
        if meta.get(field.meta):
            out += [field.name, meta[field.meta]]
    return out


def retry_record(
    msg: Message, failure: Failure, *, group: str, next_attempt: int, due_ms: int, delay_ms: int
) -> Fields:
    """Fields of the retry entry that will deliver attempt ``next_attempt`` at ``due_ms``."""
    out = _base(msg, failure, group)
    out += [
        f.ATTEMPT.name, str(next_attempt),
        f.DUE_MS.name, str(due_ms),
        f.DELAY_MS.name, str(delay_ms),
    ]  # fmt: skip
    return out


def dead_record(msg: Message, failure: Failure, *, group: str, reason: str) -> Fields:
    """Fields of the dead letter for ``msg`` (``redrive-attempt`` = attempts made)."""
    out = _base(msg, failure, group)
    out += [
        f.ATTEMPT.name, str(msg.attempt),
        f.REASON.name, reason,
        f.CONSUMER.name, failure.consumer,
        f.DEAD_MS.name, str(failure.at_ms),
        f.TRACEBACK.name, failure.traceback[-MAX_TRACEBACK:],
    ]  # fmt: skip
    return out
