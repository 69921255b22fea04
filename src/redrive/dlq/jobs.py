"""Supervised bulk jobs: replay or delete the dead letters a snapshot binds, in steps.

A job is stored in Redis (``redrive:job:{ID}``, a hash, indexed in ``redrive:jobs``), so it
outlives the process that submitted it: a :class:`~redrive.dlq.jobs_runner.JobRunner` (in
the dashboard, or any process) takes it under a lease, works through the snapshot's refs
from the job's cursor, and another runner resumes it if that one dies. Each entry moves
with the one atomic :func:`~redrive.dlq.replay.move` (a delete job: ``purge.lua`` in
batches); the progress is written after it, so a move repeated after a crash finds its
entry gone and counts it ``gone``: nothing is moved twice, nothing lost.

Statuses: ``queued`` (waiting for a runner) → ``running`` → ``done``; ``paused`` (by an
operator, or by the runner when the canary dies again or the replayed messages start
failing) → :func:`resume` → ``queued``; ``cancelled`` (final; what was not handled stays
in the DLQ). Every change is audited in ``redrive:audit`` under the job's operation id,
with who did it; the summary (``replay`` or ``purge``, with the count) is written once,
when the job ends.

Example::

    preview = await snapshot.take(client, Filter(streams=("ecommerce:orders",)))
    job = await submit(client, JobSpec("replay", preview.id, rate=50, canary=5))
    await pause(client, job.id, by="alice", reason="checking the gateway")
    await resume(client, job.id, by="alice")
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from redrive.core.text import text
from redrive.dlq import audit, snapshot
from redrive.dlq.replay import ReplayOptions, check_targets, target_of
from redrive.errors import ConfigError
from redrive.store import keys
from redrive.store.job_calls import job_state

ACTIONS = ("replay", "delete")
STATUSES = ("queued", "running", "paused", "cancelled", "done")
#: The audit action of each job action (a delete job is a purge, as ``redrive dlq purge``).
AUDIT_ACTION = {"replay": "replay", "delete": "purge"}
#: How long a finished job (and the snapshot it bound) is kept for listings (s).
RETAIN = 7 * 86_400
__all__ = ["Job", "JobSpec", "JobStateError", "UnknownJobError", "cancel", "get", "list_jobs",
           "pause", "resume", "submit"]  # fmt: skip


class UnknownJobError(ConfigError):
    """A job id that does not exist (or expired a week after it ended)."""


class JobStateError(ConfigError):
    """The job's status does not allow that (resume a cancelled job, pause a done one)."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to do with a snapshot's dead letters.

    ``to`` is the replay target (``None``: each entry's group retry stream, as the CLI);
    ``rate`` entries per second; ``canary`` entries first, then :func:`canary.watch
    <redrive.dlq.canary.watch>` them for ``canary_timeout`` s. After the canary the runner
    keeps watching: when ``relapse_min`` replayed entries, and ``relapse_share`` of the
    recent ones that had time to fail, are back in the DLQ, the job pauses itself. ``by``
    is who submitted it (the web passes ``"dashboard:<token id>"``). ``force`` replays
    entries past the loop guard, as ``--force``.

    Example::

        JobSpec("replay", preview.id, rate=100, canary=5, note="gateway fixed")
    """

    action: str
    snapshot: str
    to: str | None = None
    rate: float | None = None
    canary: int = 0
    note: str = ""
    by: str | None = None
    force: bool = False
    canary_timeout: float = 60.0
    relapse_share: float = 0.5
    relapse_min: int = 5

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"job action {self.action!r}: use one of {', '.join(ACTIONS)}")
        snapshot.check_id(self.snapshot)
        if self.rate is not None and not (0 < self.rate < math.inf):
            raise ConfigError(f"rate={self.rate!r}: use entries per second > 0, or None")
        if not 0 < self.relapse_share <= 1 or self.relapse_min < 1:
            raise ConfigError("relapse_share in (0, 1] and relapse_min >= 1, please")
        if self.action == "delete" and (self.to is not None or self.canary):
            raise ConfigError("a delete job takes no target and no canary")
        self.options()  # checks the target, the canary and its timeout

    def options(self) -> ReplayOptions:
        """The :class:`ReplayOptions` of each entry's replay (checked as the CLI's)."""
        return ReplayOptions(to=self.to, note=self.note, by=self.by, force=self.force,
                             rate=self.rate, canary=self.canary,
                             canary_timeout=self.canary_timeout)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored: its spec, status and progress (``done = moved + gone + refused``;
    for a delete job ``moved`` counts the deleted entries)."""

    id: str
    spec: JobSpec
    status: str
    total: int
    done: int
    moved: int
    gone: int
    refused: int
    reason: str
    op: str
    created_ms: int
    updated_ms: int
    streams: tuple[str, ...] = ()
    filter: str = ""
    canary_state: str = ""  # "", "watching", "ok", "died"
    runner: str = ""  # the runner holding it (its lease may have run out: see status)

    @property
    def left(self) -> int:
        """Bound entries not handled yet (still in the DLQ unless someone else moved them)."""
        return self.total - self.done

    @property
    def finished(self) -> bool:
        """True when the job will not run again (done or cancelled)."""
        return self.status in ("done", "cancelled")

    def operation(self, action: str | None = None, *, by: str | None = None) -> audit.Operation:
        """The job's audit operation (its id), as ``action`` by ``by`` if given."""
        return audit.Operation(action or AUDIT_ACTION[self.spec.action], by or self.spec.by or "",
                               self.spec.note, self.op)  # fmt: skip


def _spec_fields(spec: JobSpec) -> dict[str, str]:
    return {"action": spec.action, "snapshot": spec.snapshot, "to": spec.to or "",
            "rate": "" if spec.rate is None else repr(spec.rate), "canary": str(spec.canary),
            "note": spec.note, "by": spec.by or "", "force": "1" if spec.force else "",
            "canary_timeout": repr(spec.canary_timeout),
            "relapse_share": repr(spec.relapse_share),
            "relapse_min": str(spec.relapse_min)}  # fmt: skip


def _spec_of(got: dict[str, str]) -> JobSpec:
    return JobSpec(got["action"], got["snapshot"], got.get("to") or None,
                   float(got["rate"]) if got.get("rate") else None, int(got.get("canary", 0)),
                   got.get("note", ""), got.get("by") or None, bool(got.get("force")),
                   float(got.get("canary_timeout", 60)), float(got.get("relapse_share", 0.5)),
                   int(got.get("relapse_min", 5)))  # fmt: skip


def job_of(job_id: str, raw: dict[Any, Any]) -> Job:
    """A :class:`Job` from its stored hash (``HGETALL``)."""
    got = {text(k): text(v) for k, v in raw.items()}
    count = {name: int(got.get(name) or 0) for name in ("total", "moved", "gone", "refused")}
    return Job(job_id, _spec_of(got), got["status"], count["total"],
               count["moved"] + count["gone"] + count["refused"], count["moved"], count["gone"],
               count["refused"], got.get("reason", ""), got.get("op", ""),
               int(got.get("created_ms") or 0), int(got.get("updated_ms") or 0),
               tuple(s for s in got.get("streams", "").split("\n") if s),
               got.get("filter", ""), got.get("canary_state", ""),
               got.get("runner", ""))  # fmt: skip


def check_job_id(job_id: str) -> str:
    """``job_id`` if it has the shape of one (else :class:`UnknownJobError`)."""
    try:
        return snapshot.check_id(job_id)
    except snapshot.UnknownSnapshotError:
        raise UnknownJobError(f"job {job_id[:80]!r} is not a job id") from None


async def submit(client: Redis, spec: JobSpec) -> Job:
    """Store a job bound to ``spec.snapshot``'s refs (queued for a runner); audited.

    The snapshot becomes the job's: it no longer expires while the job may need it (a
    week after the job ends it does). One snapshot binds one job: submitting it again
    (a second click) returns that job; another action on it is refused. Raises
    :class:`~redrive.dlq.snapshot.UnknownSnapshotError` for an expired snapshot,
    :class:`ConfigError` for an empty one.
    """
    preview = await snapshot.load(client, spec.snapshot)
    if preview.count == 0:
        raise ConfigError(f"snapshot {spec.snapshot} binds no dead letters: nothing to do")
    await audit.require_trails(client, list(preview.by_stream))
    if spec.action == "replay":  # a missing group or a wrong target, said before it runs
        options = spec.options()
        planned = [(e, target_of(e, spec.to) or "") for e in preview.sample]
        await check_targets(client, [(e, t) for e, t in planned if t], options)
    job_id = secrets.token_urlsafe(9)
    bound = await _bind(client, spec.snapshot, job_id)
    if bound != job_id:  # submitted before (a second click on "confirm"): that job
        earlier = await get(client, bound)
        if earlier.spec.action != spec.action:
            raise ConfigError(
                f"snapshot {spec.snapshot} is bound to {earlier.spec.action} job {bound} "
                "already: preview again for another action"
            )
        return earlier
    op = audit.Operation.start(AUDIT_ACTION[spec.action], by=spec.by, note=spec.note)
    now = int(time.time() * 1000)
    fields = {**_spec_fields(spec), "by": op.by, "status": "queued", "total": str(preview.count),
              "moved": "0", "gone": "0", "refused": "0", "reason": "", "op": op.op,
              "created_ms": str(now), "updated_ms": str(now), "runner": "", "lease_until": "0",
              "streams": "\n".join(preview.by_stream), "filter": preview.filter}  # fmt: skip
    await client.hset(keys.job(job_id), mapping=fields)  # type: ignore[arg-type]
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.JOBS, {job_id: now})
    pipe.sadd(keys.JOBS_ACTIVE, job_id)
    await pipe.execute()
    job = await get(client, job_id)
    await _record(client, job, "job-submitted", op.by, {"snapshot": spec.snapshot})
    return job


async def _bind(client: Redis, snapshot_id: str, job_id: str) -> str:
    """Make the snapshot the job's (no expiry); returns the id of the job bound to it:
    ``job_id``, or the one an earlier submit bound (one snapshot, one job)."""
    pipe = client.pipeline(transaction=True)
    pipe.persist(keys.snapshot(snapshot_id))
    pipe.persist(keys.snapshot_refs(snapshot_id))
    pipe.exists(keys.snapshot(snapshot_id))
    *_, found = await pipe.execute()
    if not found:  # it expired since it was loaded
        raise snapshot.UnknownSnapshotError(f"snapshot {snapshot_id} has expired: preview again")
    # No TTL any more, so the hash cannot vanish before this write creates a bare one.
    await client.hsetnx(keys.snapshot(snapshot_id), "job", job_id)
    bound = await client.hget(keys.snapshot(snapshot_id), "job")
    if bound is None:  # deleted by hand in between
        raise snapshot.UnknownSnapshotError(f"snapshot {snapshot_id} is gone: preview again")
    return text(bound)


async def get(client: Redis, job_id: str) -> Job:
    """The job ``job_id`` as stored now (:class:`UnknownJobError` if there is none)."""
    raw = await client.hgetall(keys.job(check_job_id(job_id)))
    if not raw:
        raise UnknownJobError(f"job {job_id} does not exist (or ended over a week ago)")
    return job_of(job_id, raw)


async def list_jobs(client: Redis, *, limit: int = 50) -> list[Job]:
    """The newest ``limit`` jobs, newest first."""
    if limit < 1:
        raise ConfigError(f"limit={limit}: use an integer >= 1")
    newest: list[Any] = await client.zrevrange(keys.JOBS, 0, limit - 1)
    ids = [text(i) for i in newest]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    found = await pipe.execute() if ids else []
    expired = [i for i, raw in zip(ids, found, strict=True) if not raw]
    if expired:
        await client.zrem(keys.JOBS, *expired)
    return [job_of(i, raw) for i, raw in zip(ids, found, strict=True) if raw]


async def pause(client: Redis, job_id: str, *, by: str | None = None, reason: str = "") -> Job:
    """Pause a queued or running job; its runner stops between two entries (within ~1 s)."""
    who = by or audit.operator()
    why = f"paused by {who}" + (f": {reason}" if reason else "")
    return await _change(client, job_id, "paused", why, ("queued", "running"), who)


async def resume(client: Redis, job_id: str, *, by: str | None = None) -> Job:
    """Queue a paused job again; a runner goes on from its cursor."""
    who = by or audit.operator()
    return await _change(client, job_id, "queued", f"resumed by {who}", ("paused",), who)


async def cancel(client: Redis, job_id: str, *, by: str | None = None) -> Job:
    """Cancel a job for good; what it has not handled stays in the DLQ."""
    who = by or audit.operator()
    allowed = ("queued", "running", "paused")
    return await _change(client, job_id, "cancelled", f"cancelled by {who}", allowed, who)


_VERB = {"paused": "pause", "queued": "resume", "cancelled": "cancel"}
_EVENT = {"paused": "job-paused", "queued": "job-resumed", "cancelled": "job-cancelled"}


async def _change(
    client: Redis, job_id: str, status: str, why: str, allowed: tuple[str, ...], who: str
) -> Job:
    call = job_state(job=keys.job(check_job_id(job_id)), status=status, reason=why,
                     allowed=allowed)  # fmt: skip
    result = await call(client)
    if result is None:
        raise UnknownJobError(f"job {job_id} does not exist (or ended over a week ago)")
    if result.code < 0:
        raise JobStateError(
            f"job {job_id} is {result.before}: only a {' or '.join(allowed)} job can be "
            f"{_VERB[status]}d"
        )
    job = await get(client, job_id)
    if result.code > 0:
        await _record(client, job, _EVENT[status], who, {"reason": why})
        if status == "cancelled" and not result.runner:
            await finish(client, job)  # no runner holds it: nobody else will
    return job


async def pause_itself(client: Redis, job: Job, reason: str, by: str) -> Job:
    """A runner pauses a running job with ``reason`` (canary died, relapses); audited."""
    call = job_state(job=keys.job(job.id), status="paused", reason=reason,
                     allowed=("running", "queued"))  # fmt: skip
    result = await call(client)
    paused = await get(client, job.id)
    if result is not None and result.code > 0:
        await _record(client, paused, "job-paused", by, {"reason": reason})
    return paused


async def finish(client: Redis, job: Job) -> None:
    """Write the job's summary to the audit log, once (whoever gets here first), and let
    the job and its snapshot expire after :data:`RETAIN`."""
    if not await client.hsetnx(keys.job(job.id), "summarized", "1"):
        return
    job = await get(client, job.id)
    details = {"job": job.id, "snapshot": job.spec.snapshot, "filter": job.filter,
               "status": job.status, "total": job.total, "gone": job.gone,
               "refused": job.refused, "left": job.left}  # fmt: skip
    await audit.record(client, job.operation(), count=job.moved, streams=job.streams,
                       details=details)  # fmt: skip
    pipe = client.pipeline(transaction=False)
    for key in (keys.job(job.id), keys.snapshot(job.spec.snapshot),
                keys.snapshot_refs(job.spec.snapshot)):  # fmt: skip
        pipe.expire(key, RETAIN)
    pipe.srem(keys.JOBS_ACTIVE, job.id)
    await pipe.execute()


async def _record(client: Redis, job: Job, event: str, by: str, extra: dict[str, object]) -> None:
    details = {"job": job.id, "status": job.status, "total": job.total, "left": job.left,
               **extra}  # fmt: skip
    await audit.record(client, job.operation(event, by=by), count=job.moved,
                       streams=job.streams, details=details)  # fmt: skip


def dumps(value: object) -> str:
    """Compact JSON for the job hash's canary fields."""
    return json.dumps(value, separators=(",", ":"))
