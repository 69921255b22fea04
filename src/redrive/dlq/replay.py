"""Replay (redrive) dead letters: each entry moves in one Lua call, with provenance.

**Target.** By default a dead letter goes back to the retry stream of the group that
failed it, ``retry:{S}:<group>``: only that group reads it (replaying into ``S`` would make
*every* group of ``S`` process it again), and the key is one redrive writes, so the
provenance below is trusted there — a worker drops ``redrive-*`` fields it finds on a
source stream. ``to="T"`` sends it to stream ``T`` instead (producer fields plus the same
provenance fields, which a worker reading ``T`` as a source ignores).

**Provenance and budget.** The replayed message keeps its origin stream and id (the
handler's ``msg.id`` stays the idempotency key), carries ``redrive-replays`` + 1,
``redrive-replayed-from`` (the DLQ id), ``-replayed-by``, ``-replayed-ms``, the operator's
``-replay-note`` and a marker in its history, and restarts at ``redrive-attempt`` 1: a
fresh retry budget.

**Atomicity.** ``replay.lua`` checks the entry still exists, XADDs it to the target,
XDELs it from the DLQ and appends the per-entry audit record, in one step: a crash (even
``kill -9``) between two entries leaves every entry in exactly one place.

**A target in another slot** (``--to T`` on a Redis Cluster, ``T`` without ``S``'s hash
tag) cannot be written by the script that deletes from ``dlq:{S}``, so the move is three
steps, each idempotent: ``replay_begin.lua`` notes ``ID -> T`` in
``redrive:replay-moving:{S}`` (an unfinished earlier replay's target wins: a re-run never
copies to a second stream); ``replay_copy.lua`` XADDs to ``T`` unless the marker
``redrive:replay-copy:{T}:S@ID`` names a copy already (then that copy's id is the
answer); ``replay_finish.lua`` XDELs the dead letter with its audit record, and the
marker expires a day later (so a concurrent replay of the entry still finds it). A crash
between the copy and the delete leaves the entry in both places until the replay is run
again, which then only deletes it: moved exactly once, never lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from redrive.core import fields as f
from redrive.core.records import MAX_HISTORY
from redrive.core.text import text
from redrive.dlq import audit, canary, idempotent
from redrive.dlq.model import DeadLetter, WrongTypeError, key_types, wrong_type
from redrive.dlq.query import Filter, OnSkip, UnknownIdError, select
from redrive.dlq.ratelimit import TokenBucket
from redrive.errors import ConfigError
from redrive.runtime.settings import otel_in_use
from redrive.store import calls, cluster, keys

if TYPE_CHECKING:
    from redrive.runtime.tracing import ReplayTracing

DEFAULT_MAX_REPLAYS = 3
#: How long the copy marker of an entry replayed into another slot outlives its delete (s).
COPY_MARKER_TTL = 86_400
INTERRUPTED = "interrupted"
Progress = Callable[[int, int], None]
T = TypeVar("T")
__all__ = ["Moved", "ReplayOptions", "ReplayReport", "UnknownIdError", "canary_for",
           "check_targets", "plan", "replay", "stop_reason", "unless"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay. ``max_replays`` is the loop guard: entries replayed that often
    already are refused unless ``force``. ``rate`` is entries per second (``None``: as
    fast as Redis answers). ``canary`` replays that many first and stops if one dies.
    An idempotent handler's dead letter whose key is done (a duplicate succeeded since) is
    refused unless ``ignore_idempotency``, which clears the done mark first
    (:mod:`redrive.dlq.idempotent`)."""

    to: str | None = None
    note: str = ""
    by: str | None = None
    force: bool = False
    max_replays: int = DEFAULT_MAX_REPLAYS
    dry_run: bool = False
    rate: float | None = None
    canary: int = 0
    canary_timeout: float = 60.0
    everything: bool = False
    ignore_idempotency: bool = False

    def __post_init__(self) -> None:
        if self.to is not None and self.to.startswith(("dlq:", keys.PREFIX)):
            raise ConfigError(f"--to {self.to!r}: replay into a stream, not a redrive key")
        if self.to is not None and not self.to.startswith("retry:"):
            keys.validate_stream_name(self.to)
        if self.max_replays < 1 or self.canary < 0 or self.canary_timeout <= 0:
            raise ConfigError("max_replays >= 1, canary >= 0 and canary_timeout > 0, please")
        if self.canary and self.to is not None and self.to.startswith("retry:"):
            raise ConfigError("--canary with --to a retry stream: leave --to out instead")


@dataclass(frozen=True, slots=True)
class Moved:
    """One replayed entry: where it was and where it went."""

    stream: str
    dlq_id: str
    target: str
    target_id: str

    @property
    def ref(self) -> str:
        """``STREAM@ID`` of the dead letter it was."""
        return f"{self.stream}@{self.dlq_id}"


@dataclass(slots=True)
class ReplayReport:
    """What a replay did (or, with ``dry_run``, would do)."""

    planned: list[tuple[DeadLetter, str]] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)
    moved: list[Moved] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # STREAM@ID of entries someone else moved
    canary: canary.CanaryResult | None = None
    stopped: str = ""
    dry_run: bool = False
    op: str = ""

    @property
    def interrupted(self) -> bool:
        """The operator stopped it (Ctrl-C) between two entries."""
        return self.stopped == INTERRUPTED

    @property
    def left(self) -> int:
        """Planned entries that are still in the DLQ (not replayed, not gone)."""
        return len(self.planned) - len(self.moved) - len(self.gone)


def target_of(entry: DeadLetter, to: str | None) -> str | None:
    """Where ``entry`` goes: ``to``, else its group's retry stream (``None``: unknown)."""
    if to is not None:
        return to
    if not entry.group or not entry.meta.get(f.ORIGIN_STREAM.meta, entry.stream):
        return None
    return keys.retry_stream(entry.stream, entry.group)


def refusal(entry: DeadLetter, options: ReplayOptions) -> str | None:
    """Why ``entry`` may not be replayed with ``options``, or ``None``."""
    if not entry.user_pairs:
        return f"no payload to replay (reason {entry.reason or 'unknown'})"
    if target_of(entry, options.to) is None:
        return "no redrive-group on the entry: pass --to STREAM"
    if entry.replays >= options.max_replays and not options.force:
        return f"loop guard: replayed {entry.replays} times already (--force to override)"
    return None


def replay_fields(entry: DeadLetter, op: audit.Operation, now_ms: int) -> list[bytes | str]:
    """The fields of the replayed message (see the module docstring)."""
    meta = entry.meta
    out: list[bytes | str] = [v for pair in entry.user_pairs for v in pair]
    out += [f.ORIGIN_STREAM.name, meta.get(f.ORIGIN_STREAM.meta) or entry.stream,
            f.ORIGIN_ID.name, meta.get(f.ORIGIN_ID.meta) or entry.id,
            f.ATTEMPT.name, "1",
            f.REPLAYS.name, str(entry.replays + 1),
            f.REPLAYED_FROM.name, entry.id,
            f.REPLAYED_BY.name, op.by,
            f.REPLAYED_MS.name, str(now_ms),
            f.HISTORY.name, _history(entry, op, now_ms)]  # fmt: skip
    for kept in (f.GROUP, f.FIRST_FAILED_MS):
        if meta.get(kept.meta):
            out += [kept.name, meta[kept.meta]]
    if op.note:
        out += [f.REPLAY_NOTE.name, op.note]
    return out


def _history(entry: DeadLetter, op: audit.Operation, now_ms: int) -> str:
    marker: dict[str, object] = {"replay": entry.replays + 1, "t": now_ms, "by": op.by}
    marker["from"] = entry.id
    if op.note:
        marker["note"] = op.note[:200]
    items: list[object] = [*entry.history, marker]
    if len(items) > MAX_HISTORY:  # same cap as records.history: keep the first attempt
        items = [items[0], *items[-(MAX_HISTORY - 1) :]]
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


async def plan(
    client: Redis, flt: Filter, options: ReplayOptions, on_skip: OnSkip | None = None
) -> ReplayReport:
    """Select the entries and sort them into planned and refused; nothing moves.

    A DLQ of the index that is not a stream is left alone, and ``on_skip`` told.
    """
    if flt.is_empty and not options.everything:
        raise ConfigError("say what to replay: --id, a filter, --fingerprint or --all")
    report = ReplayReport(dry_run=options.dry_run)
    async for entry in select(client, flt, on_skip=on_skip):
        why = refusal(entry, options)
        if why is None:
            report.planned.append((entry, target_of(entry, options.to) or ""))
        else:
            report.refused.append((entry, why))
    if not options.ignore_idempotency:
        await _refuse_done(client, report)
    await check_targets(client, report.planned, options)
    return report


async def _refuse_done(client: Redis, report: ReplayReport) -> None:
    done = await idempotent.done(client, [e for e, _ in report.planned])
    if done:
        report.refused += [(e, idempotent.refusal(done[e.ref])) for e, _ in report.planned
                           if e.ref in done]  # fmt: skip
        report.planned = [(e, t) for e, t in report.planned if e.ref not in done]


async def check_targets(
    client: Redis, planned: list[tuple[DeadLetter, str]], options: ReplayOptions
) -> None:
    """Raise unless every planned entry's target can take it: a stream (or missing) and,
    for the default target, its group exists (:class:`ConfigError` says what to do)."""
    for target in sorted({t for _, t in planned}):
        [kind] = await key_types(client, [target])
        if kind not in ("none", "stream"):
            raise WrongTypeError(wrong_type(target, kind, "nothing replayed"))
    if options.to is not None:
        return
    # A retry stream is read only by its group: without the group, a replayed entry would
    # leave the DLQ for a key nobody reads, invisible to every tool.
    wanted: dict[tuple[str, str], int] = {}
    for entry, _ in planned:
        wanted[(entry.stream, entry.group)] = wanted.get((entry.stream, entry.group), 0) + 1
    for (stream, group), count in sorted(wanted.items()):
        if group not in await _groups(client, stream):
            raise ConfigError(
                f"group {group!r} of stream {stream!r} does not exist, so nothing would read "
                f"{keys.retry_stream(stream, group)}: {count} dead letter(s) not replayed. "
                "Start that group's worker first, or pass --to STREAM"
            )


async def _groups(client: Redis, stream: str) -> set[str]:
    try:
        infos = await client.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return set()
    names = (i["name"] for i in infos)
    return {text(n) for n in names}


async def move(
    client: Redis,
    entry: DeadLetter,
    target: str,
    op: audit.Operation,
    *,
    ignore_idempotency: bool = False,
    tracing: ReplayTracing | None = None,
) -> tuple[str, str] | None:
    """Replay one entry; returns ``(target, id there)`` (``None``: already gone). The
    target differs from ``target`` only when an unfinished replay of the entry into
    another slot chose it first (see the module docstring). ``ignore_idempotency``
    clears the entry's done mark first, so its handler runs again. With ``tracing``, a
    ``send`` span covers the move and the replayed entry carries it
    (``redrive-traceparent``)."""
    if ignore_idempotency:
        await idempotent.forget(client, entry)
    if tracing is None:
        return await _move(client, entry, target, op, [])
    from redrive.runtime.tracing import own_fields

    origin = entry.meta.get(f.ORIGIN_ID.meta) or entry.id
    span = tracing.send(dict(entry.user_pairs), entry.meta, target=target, message_id=origin,
                        dlq_id=entry.id)  # fmt: skip
    done = await _move(client, entry, target, op, own_fields(span))
    tracing.sent(span, None if done is None else done[1])
    return done


async def _move(
    client: Redis, entry: DeadLetter, target: str, op: audit.Operation, extra: list[str]
) -> tuple[str, str] | None:
    fields = [*replay_fields(entry, op, int(time.time() * 1000)), *extra]
    origin = entry.meta.get(f.ORIGIN_ID.meta) or entry.id
    record = [*op.entry_fields(), "stream", entry.stream, "dlq-id", entry.id,
              "origin-id", origin, "reason", entry.reason]  # fmt: skip
    if cluster.is_cluster(client) and not cluster.same_slot(entry.key, target):
        return await _move_across(client, entry, target, fields, record)
    call = calls.replay(
        dlq=entry.key,
        target=target,
        audit=keys.audit_trail(entry.stream),
        dead_id=entry.id,
        fields=fields,
        record=[*record, "target", target],
    )
    new_id = await call(client)
    return None if new_id is None else (target, new_id)


async def _move_across(
    client: Redis,
    entry: DeadLetter,
    target: str,
    fields: list[bytes | str],
    record: list[str],
) -> tuple[str, str] | None:
    moving = keys.replay_moving(entry.stream)
    begin = calls.replay_begin(dlq=entry.key, moving=moving, dead_id=entry.id, target=target)
    chosen = await begin(client)
    if chosen is None:
        return None
    marker = keys.replay_copy(chosen, entry.ref)
    new_id = await calls.replay_copy(target=chosen, marker=marker, fields=fields)(client)
    finish = calls.replay_finish(
        dlq=entry.key,
        audit=keys.audit_trail(entry.stream),
        moving=moving,
        dead_id=entry.id,
        record=[*record, "target", chosen, "target-id", new_id],
    )
    finished = await finish(client)
    # Kept a while, not deleted: a concurrent replay of the same entry that began before
    # the delete may still reach its copy step, and must find this copy.
    await client.expire(marker, COPY_MARKER_TTL)
    return (chosen, new_id) if finished else None


async def replay(
    client: Redis,
    flt: Filter,
    options: ReplayOptions,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    on_skip: OnSkip | None = None,
    *,
    tracer_provider: Any = None,
) -> ReplayReport:
    """Replay the dead letters ``flt`` selects (see the module docstring).

    With ``opentelemetry-api`` and a provider that records (``tracer_provider``, else the
    global one), the operation is a ``replay`` span with a ``send`` span per entry
    (docs/monitoring.md#tracing-opentelemetry).

    Setting ``stop`` (the CLI does on Ctrl-C) ends the replay between two entries: the
    report says ``stopped == "interrupted"``, the rest stay in the DLQ, and the audit
    record is marked ``interrupted``.

    Example::

        report = await replay(client, Filter(streams=("ecommerce:orders",),
                                             error_type="TimeoutError"),
                              ReplayOptions(rate=100, canary=5, note="gateway fixed"))
        print(len(report.moved), "replayed;", report.stopped or "done")
    """
    report = await plan(client, flt, options, on_skip)
    if options.dry_run or not report.planned:
        return report
    await audit.require_trails(client, [e.stream for e, _ in report.planned])
    op = audit.Operation.start("replay", by=options.by, note=options.note)
    report.op = op.op
    tracing = _tracing(tracer_provider, report, op)
    try:
        await _run(client, report, options, op, progress, stop, tracing)
    finally:
        if tracing is not None:
            tracing.finish(len(report.moved), report.stopped)
        streams = sorted({m.stream for m in report.moved})
        details: dict[str, object] = {"filter": flt.describe(), "refused": len(report.refused)}
        if report.stopped:
            details["stopped"] = report.stopped
        if report.interrupted:
            details["interrupted"] = "true"
            details["left"] = report.left
        await audit.record(client, op, count=len(report.moved), streams=streams, details=details)
    return report


async def _run(
    client: Redis,
    report: ReplayReport,
    options: ReplayOptions,
    op: audit.Operation,
    progress: Progress | None,
    stop: asyncio.Event | None,
    tracing: ReplayTracing | None,
) -> None:
    bucket = TokenBucket(options.rate) if options.rate else None
    total = len(report.planned)
    first, rest = report.planned[: options.canary], report.planned[options.canary :]
    for batch, watched in ((first, True), (rest, False)):
        marks = {e.stream: await canary.last_id(client, e.key) for e, _ in batch if watched}
        watch: list[canary.Canary] = []
        for entry, target in batch:
            if bucket is not None:
                await unless(stop, bucket.take())
            if stop is not None and stop.is_set():
                report.stopped = INTERRUPTED
                return
            done = await move(client, entry, target, op, tracing=tracing,
                              ignore_idempotency=options.ignore_idempotency)  # fmt: skip
            if done is None:
                report.gone.append(entry.ref)
            else:
                report.moved.append(Moved(entry.stream, entry.id, *done))
                watch.append(canary_for(entry, options, *done))
            if progress is not None:
                progress(len(report.moved) + len(report.gone), total)
        if watched and watch:
            result = await unless(stop, canary.watch(client, watch, marks, options.canary_timeout))
            if result is None:
                report.stopped = INTERRUPTED
                return
            report.canary = result
            if not result.ok:
                report.stopped = stop_reason(result, len(rest))
                return


def _tracing(provider: Any, report: ReplayReport, op: audit.Operation) -> ReplayTracing | None:
    if not otel_in_use(provider):
        return None
    try:
        from redrive.runtime.tracing import ReplayTracing
    except ImportError:  # no opentelemetry-api: no spans
        return None
    return ReplayTracing.start(provider, sorted({e.key for e, _ in report.planned}), op.op)


async def unless(stop: asyncio.Event | None, work: Awaitable[T]) -> T | None:
    """``await work``, or ``None`` as soon as ``stop`` is set (``work`` is cancelled).

    Also ends a rate wait or a canary watch of a supervised job (:mod:`redrive.dlq.jobs`)."""
    if stop is None:
        return await work
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, waiter):
        if pending not in done:
            pending.cancel()
    return task.result() if task in done else None


def canary_for(
    entry: DeadLetter, options: ReplayOptions, target: str, new_id: str
) -> canary.Canary:
    """The :class:`~redrive.dlq.canary.Canary` that watches ``entry`` replayed as
    ``new_id`` into ``target``: what its consumers are and the origin its relapse carries."""
    if options.to is None:
        origin = entry.meta.get(f.ORIGIN_ID.meta) or entry.id
        return canary.Canary(entry.id, entry.stream, entry.group, new_id, origin)
    return canary.Canary(entry.id, target, "", new_id, new_id)


def stop_reason(result: canary.CanaryResult, left: int) -> str:
    """Why canaries stopped a replay with ``left`` entries not replayed, in one line."""
    if result.died:
        return f"canary died again ({', '.join(result.died)}); {left} entries not replayed"
    return f"canary not settled in time ({', '.join(result.unsettled)}); {left} not replayed"
