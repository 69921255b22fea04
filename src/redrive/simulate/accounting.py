"""Message-by-message accounting of one stream after a simulation run.

Every message the producer got an id for (``ok``), or whose reply was lost but whose
``sim-id`` is found in the stream (``indeterminate`` that landed), must end *succeeded*
(in the ledger) or *dead* (in ``dlq:{S}``). Otherwise it is still pending — or lost,
and then :func:`~redrive.verify.locate` says where its entry is now.

A message with more than one outcome is a duplicate. It is *explained* when a fault's
window (from ``slack`` seconds before it began to ``slack`` after it healed) contains its
first outcome and the fault hit a consumer that recorded one of its outcomes — the
at-least-once price of that fault. Any other duplicate is unexplained: a defect.

In an idempotent scenario the effect counters are checked too
(:mod:`redrive.simulate.effects`): exactly one effect per success, whatever the runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from redrive.core import fields as f
from redrive.core.text import text
from redrive.examples.ecommerce import ledger_key
from redrive.simulate.chaos import FaultEvent
from redrive.simulate.effects import EffectAccount, count_effects
from redrive.simulate.ledger import effects_key
from redrive.simulate.producer import FAILED, INDETERMINATE, OK, Record
from redrive.simulate.traffic import EXPECTED, SIM_ID
from redrive.store.keys import StreamKeys
from redrive.store.readers import entries
from redrive.verify import Snapshot, locate, read_ledger, read_snapshot

INJECTED = "redrive.simulate.faults.Injected"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recorded outcome of a message: a success or a dead letter."""

    at_ms: int
    consumer: str
    reason: str = "succeeded"
    error_type: str = ""
    process: str = ""  # consumer/pid/attempt of a success: one delivery run twice


@dataclass(slots=True)
class StreamAccount:
    """The accounting of one (stream, group)."""

    stream: str
    group: str
    produced: int = 0
    indeterminate_landed: int = 0
    failed_but_landed: int = 0
    succeeded: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    pending: int = 0
    lost: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    mismatched: int = 0
    mismatched_injected: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    effects: EffectAccount | None = None  # idempotent scenarios only

    @property
    def unexplained_duplicates(self) -> int:
        """Duplicates no fault window explains."""
        return sum(1 for d in self.duplicates if d["explained_by"] is None)

    @property
    def rerun_own_finished(self) -> int:
        """Extra successes of a message by the process that had already finished it."""
        return sum(d.get("rerun_own_finished", 0) for d in self.duplicates)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "stream": self.stream,
            "group": self.group,
            "produced": self.produced,
            "indeterminate_landed": self.indeterminate_landed,
            "failed_but_landed": self.failed_but_landed,
            "succeeded": self.succeeded,
            "dead": dict(sorted(self.dead.items())),
            "dead_total": sum(self.dead.values()),
            "pending": self.pending,
            "lost": len(self.lost),
            "lost_messages": self.lost,
            "duplicates": len(self.duplicates),
            "unexplained_duplicates": self.unexplained_duplicates,
            "rerun_own_finished": self.rerun_own_finished,
            "duplicate_messages": self.duplicates[:100],
            "unexpected": self.unexpected,
            "outcomes_by_kind": {k: dict(v) for k, v in sorted(self.by_kind.items())},
            "mismatched_outcomes": self.mismatched,
            "mismatched_by_injected_faults": self.mismatched_injected,
            "worker_counters": self.counters,
            "effects": None if self.effects is None else self.effects.to_json(),
        }


def account(
    client: redis.Redis,
    k: StreamKeys,
    records: Mapping[str, Record],
    events: list[FaultEvent],
    *,
    slack: float,
    idempotent: bool = False,
) -> StreamAccount:
    """Account for every message the producer sent to ``k.stream`` (and, when
    ``idempotent``, check its effect counters)."""
    acc = StreamAccount(k.stream, k.group)
    produced = _produced(client, k, records, acc)
    snap = read_snapshot(client, k)
    outcomes = _outcomes(client, k, snap)
    lost_ids: list[str] = []
    unsettled: set[str] = set()
    for entry_id, (sim_id, kind) in produced.items():
        found = outcomes.get(entry_id, [])
        if snap.unsettled(entry_id):
            unsettled.add(entry_id)
        result = _classify(acc, found, entry_id in unsettled)
        acc.by_kind[kind][result] += 1
        if result == "lost":
            lost_ids.append(entry_id)
        elif result not in ("pending", EXPECTED[kind]):
            acc.mismatched += 1
            acc.mismatched_injected += any(o.error_type.startswith(INJECTED) for o in found)
        if len(found) > 1:
            acc.duplicates.append(_duplicate(entry_id, sim_id, found, events, slack))
    where = locate(client, k, lost_ids)
    acc.lost = [
        {"id": i, "sim_id": produced[i][0], "kind": produced[i][1], "where": where[i]}
        for i in lost_ids
    ]
    acc.unexpected = sorted(set(outcomes) - set(produced))
    raw = cast(dict[bytes, bytes], client.hgetall(k.stats))
    acc.counters = {key.decode(): int(value) for key, value in sorted(raw.items())}
    if idempotent:
        reasons = {i: [o.reason for o in found] for i, found in outcomes.items()}
        acc.effects = count_effects(client, k.stream, reasons, produced, unsettled)
    return acc


def _classify(acc: StreamAccount, found: list[Outcome], unsettled: bool) -> str:
    if any(o.reason == "succeeded" for o in found):
        acc.succeeded += 1
        return "succeeded"
    if found:
        acc.dead[found[0].reason] += 1
        return found[0].reason
    if unsettled:
        acc.pending += 1
        return "pending"
    return "lost"


def _produced(
    client: redis.Redis, k: StreamKeys, records: Mapping[str, Record], acc: StreamAccount
) -> dict[str, tuple[str, str]]:
    """entry id → (sim-id, kind) of every message that is in (or went through) ``S``."""
    landed: dict[str, str] = {}
    for eid, fields in entries(client, k.stream):
        raw = fields.get(SIM_ID.encode())
        if raw is not None:
            landed.setdefault(raw.decode(), eid.decode())
    out: dict[str, tuple[str, str]] = {}
    for sim_id, rec in records.items():
        if rec.stream != k.stream:
            continue
        entry_id = rec.entry_id if rec.status == OK else landed.get(sim_id)
        if entry_id is None:
            continue  # failed, or indeterminate and never written: not produced
        acc.indeterminate_landed += rec.status == INDETERMINATE
        acc.failed_but_landed += rec.status == FAILED
        out[entry_id] = (sim_id, rec.kind)
    acc.produced = len(out)
    return out


def _outcomes(client: redis.Redis, k: StreamKeys, snap: Snapshot) -> dict[str, list[Outcome]]:
    """origin id → its successes (effects log) and dead letters (this group's), by time."""
    out: dict[str, list[Outcome]] = defaultdict(list)
    for _, e in entries(client, effects_key(k.stream)):
        worker = e[b"w"].decode()
        # One process's run of one attempt: two successes of the same attempt by one
        # process are the same delivery run twice (a retry after a lost reply is not).
        process = f"{worker}/{e.get(b'p', b'?').decode()}/{e.get(b'a', b'?').decode()}"
        out[e[b"id"].decode()].append(Outcome(int(e[b"t"]), worker, process=process))
    ledger = read_ledger(client, ledger_key(k.stream))
    for entry_id, count in ledger.items():  # the ledger and the log are written together
        missing = count - len(out.get(entry_id, ()))
        out[entry_id] += [Outcome(0, "?")] * max(0, missing)
    for origin, dead_letters in snap.dead.items():
        out[origin] += [_dead_outcome(d) for d in dead_letters]
    for found in out.values():
        found.sort(key=lambda o: o.at_ms)
    return out


def _dead_outcome(d: Mapping[bytes, bytes]) -> Outcome:
    return Outcome(
        int(d.get(f.DEAD_MS.key, b"0") or 0),
        text(d.get(f.CONSUMER.key, b"?")),
        text(d.get(f.REASON.key, b"?")),
        text(d.get(f.ERROR_TYPE.key, b"")),
    )


def _duplicate(
    entry_id: str, sim_id: str, found: list[Outcome], events: list[FaultEvent], slack: float
) -> dict[str, Any]:
    first = found[0].at_ms / 1000
    who = {o.consumer for o in found}
    runs = Counter(o.process for o in found if o.reason == "succeeded" and o.process)
    return {
        "id": entry_id,
        "sim_id": sim_id,
        "outcomes": [o.reason for o in found],
        # When and where each happened (ms, consumer/pid/attempt of a success), to trace one.
        "runs": [[o.at_ms, o.process or o.consumer] for o in found],
        "consumers": sorted(who),
        "explained_by": explain(first, who, events, slack),
        # Successes beyond the first by one and the same process: it re-ran work it had
        # finished (no kill or stop interrupts a run inside one process's life).
        "rerun_own_finished": sum(n - 1 for n in runs.values()),
    }


def explain(
    first: float, consumers: Iterable[str], events: list[FaultEvent], slack: float
) -> str | None:
    """The kind of the first fault whose window explains a duplicate, else ``None``."""
    names = set(consumers)
    for event in events:
        if not event.started - slack <= first <= event.healed + slack:
            continue
        if event.consumers is None or names & set(event.consumers):
            return event.kind
    return None
