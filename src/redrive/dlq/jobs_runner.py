"""The job runner: takes queued jobs under a lease and works through them in steps.

**Lease.** A runner claims a job (``job_lease.lua``: a queued job, or a running one whose
lease ran out because its runner died) and renews the lease every step and, while it
waits (a rate, a canary), from a keeper task; the keeper also sees a pause or cancel
within half a second and interrupts the wait. Every progress write (``job_step.lua``)
checks that the lease is still this runner's: one that lost it (stalled past the lease)
writes nothing and stops; the entry it may have moved meanwhile moved atomically, and the
new holder finds it gone. Two runners never both run one job.

**Steps.** A replay job moves its canary entries first, stores them (``watch``) and the
DLQs' last ids before them (``marks``) in the job, then watches them (a runner that dies
meanwhile leaves that to the next one); after the canary, it replays batch by batch at
its rate, checking every second whether the replayed messages relapse
(:mod:`redrive.dlq.jobs_watch`). A delete job deletes runs of one stream's refs, up to
500 at a time, with ``purge.lua``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from redrive.core.text import text
from redrive.dlq import canary, idempotent, jobs, snapshot
from redrive.dlq.jobs import Job
from redrive.dlq.jobs_watch import Relapses
from redrive.dlq.model import DeadLetter, WrongTypeError, pairs_of, split_ref
from redrive.dlq.purge import delete_batch
from redrive.dlq.ratelimit import TokenBucket
from redrive.dlq.replay import (
    ReplayOptions,
    canary_for,
    check_targets,
    move,
    refusal,
    stop_reason,
    target_of,
    unless,
)
from redrive.errors import ConfigError
from redrive.store import keys
from redrive.store.job_calls import JobLeaseOp, job_lease, job_step

BATCH = 100  # replay refs read per step
DELETE_BATCH = 500  # delete refs per purge call
IDLE_SECONDS = 1.0  # how often an idle runner looks for work
CHECK_SECONDS = 1.0  # how often a replay checks for relapses
__all__ = ["JobRunner"]
log = logging.getLogger("redrive.dlq.jobs")


@dataclass(slots=True)
class _Work:
    """What a runner keeps in memory for a job it holds (rebuilt after a restart)."""

    options: ReplayOptions
    bucket: TokenBucket | None
    relapses: Relapses
    checked: set[tuple[str, str, str]] = field(default_factory=set)
    watch: list[canary.Canary] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)
    checked_at: float = 0.0


class JobRunner:
    """Runs queued jobs until stopped; many may run at once (each job has one at a time).

    ``name`` says who acts in the audit log (``runner:<name>``); each runner adds a token
    of its own, so two processes with one name still hold separate leases.

    Example::

        stop = asyncio.Event()
        task = asyncio.create_task(JobRunner(client, name="dashboard").run(stop))
        ...
        stop.set(); await task
    """

    def __init__(self, client: Redis, *, name: str, lease_ms: int = 10_000) -> None:
        if lease_ms < 300:
            raise ConfigError(f"lease_ms={lease_ms}: use at least 300 ms")
        self.client = client
        self.name = name
        self.identity = f"{name}:{secrets.token_hex(4)}"
        self.lease_ms = lease_ms
        self._held: str | None = None
        self._work: dict[str, _Work] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run jobs until ``stop`` is set; then give the held job back at once.

        A Redis error (a restart, a dropped connection) is logged and the runner tries
        again after a second: the job it held goes on from its cursor."""
        while not stop.is_set():
            try:
                busy = await self._step(stop)
            except RedisError as exc:
                log.warning("job runner %s: %s; trying again in %.0f s", self.name, exc,
                            IDLE_SECONDS)  # fmt: skip
                busy = False
            if not busy:
                await unless(stop, asyncio.sleep(IDLE_SECONDS))
        with contextlib.suppress(RedisError):  # unreleased, the lease runs out by itself
            await self._release()

    async def run_once(self) -> bool:
        """One step of work: a batch of one job (or its canary watch); True if it did any."""
        return await self._step(asyncio.Event())

    async def _step(self, stop: asyncio.Event) -> bool:
        job = await self._next_job()
        if job is None:
            return False
        interrupt = asyncio.Event()
        keeper = asyncio.create_task(self._keep(job.id, interrupt, stop))
        try:
            if job.spec.action == "delete":
                status = await self._delete(job, interrupt)
            else:
                status = await self._replay(job, interrupt)
        except (ConfigError, WrongTypeError) as exc:  # a target or snapshot that cannot be used
            status = (await jobs.pause_itself(self.client, job, str(exc), self._by)).status
        except RedisError:
            raise  # the connection's trouble, not the job's: run() tries again
        except Exception as exc:  # a bug: pause this job (with why) rather than loop on it
            log.exception("job runner %s: job %s failed", self.name, job.id)
            why = f"runner error: {type(exc).__name__}: {exc}"
            status = (await jobs.pause_itself(self.client, job, why, self._by)).status
        finally:
            keeper.cancel()
        # "interrupted": a pause, cancel or stop cut a wait short; the next look at the
        # held job (or the release at stop) deals with it.
        if status not in ("running", "interrupted"):
            await self._let_go(job.id, status)
        return True

    @property
    def _by(self) -> str:
        return f"runner:{self.name}"

    async def _lease(self, job_id: str, op: JobLeaseOp) -> str:
        call = job_lease(job=keys.job(job_id), op=op, runner=self.identity,
                         lease_ms=self.lease_ms)  # fmt: skip
        return await call(self.client)

    async def _next_job(self) -> Job | None:
        """The held job while it runs, else the oldest runnable one it can claim."""
        if self._held is not None:
            status = await self._lease(self._held, "renew")
            if status == "running":
                return await jobs.get(self.client, self._held)
            await self._let_go(self._held, status)
        for job_id in await self._runnable():
            if await self._lease(job_id, "claim") == "running":
                self._held = job_id
                return await jobs.get(self.client, job_id)
        return None

    async def _runnable(self) -> list[str]:
        """Queued or running jobs, oldest first. On the way, it tidies the active set:
        forgets summarised jobs and summarises finished ones nobody holds (their runner
        died before it could)."""
        raw = [text(i) for i in await self.client.smembers(keys.JOBS_ACTIVE)]
        if not raw:
            return []  # idle: one SMEMBERS a second
        pipe = self.client.pipeline(transaction=False)
        for job_id in raw:
            pipe.hmget(keys.job(job_id), "status", "created_ms", "summarized", "lease_until")
        found = await pipe.execute()
        now_ms = await self._now_ms()
        candidates: list[tuple[int, str]] = []
        for job_id, (status, created, summarized, until) in zip(raw, found, strict=True):
            if status is None or summarized:
                await self.client.srem(keys.JOBS_ACTIVE, job_id)
            elif text(status) in ("queued", "running"):
                candidates.append((int(created or 0), job_id))
            elif text(status) in ("done", "cancelled") and int(until or 0) <= now_ms:
                await jobs.finish(self.client, await jobs.get(self.client, job_id))
        return [job_id for _, job_id in sorted(candidates)]

    async def _now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _let_go(self, job_id: str, status: str) -> None:
        """After the last step of a job here: forget it; a finished job is summarised."""
        self._held = None
        self._work.pop(job_id, None)
        if status in ("paused", "queued"):
            await self._lease(job_id, "release")
        if status in ("done", "cancelled"):
            await self._lease(job_id, "release")
            await jobs.finish(self.client, await jobs.get(self.client, job_id))

    async def _release(self) -> None:
        if self._held is not None:
            await self._lease(self._held, "release")
            self._held = None

    async def _keep(self, job_id: str, interrupt: asyncio.Event, stop: asyncio.Event) -> None:
        """Renew the lease while a step waits; interrupt it on a pause, cancel or stop."""
        tick = min(0.5, self.lease_ms / 3000)
        while not interrupt.is_set():
            await unless(stop, asyncio.sleep(tick))
            if stop.is_set() or await self._lease(job_id, "renew") != "running":
                interrupt.set()

    async def _progress(
        self, job: Job, moved: int = 0, gone: int = 0, refused: int = 0, **extra: str
    ) -> str:
        fields = [v for pair in extra.items() for v in pair]
        call = job_step(job=keys.job(job.id), runner=self.identity, lease_ms=self.lease_ms,
                        moved=moved, gone=gone, refused=refused, fields=fields)  # fmt: skip
        return await call(self.client)

    async def _work_for(self, job: Job) -> _Work:
        work = self._work.get(job.id)
        if work is not None:
            return work
        spec = job.spec
        streams = [*job.streams, *([spec.to] if spec.to else [])]
        now_marks = {s: await canary.last_id(self.client, keys.dlq(s)) for s in streams}
        stored = await self.client.hmget(keys.job(job.id), "marks", "watch")
        marks = json.loads(text(stored[0])) if stored[0] else {}
        watch = [canary.Canary(*c) for c in json.loads(text(stored[1]))] if stored[1] else []
        bucket = TokenBucket(spec.rate) if spec.rate and spec.action == "replay" else None
        if spec.rate and spec.action == "delete":
            bucket = TokenBucket(spec.rate / _delete_size(spec.rate))
        relapses = Relapses(now_marks, share=spec.relapse_share, least=spec.relapse_min)
        work = _Work(spec.options(), bucket, relapses, watch=watch, marks=marks)
        self._work[job.id] = work
        return work

    async def _replay(self, job: Job, interrupt: asyncio.Event) -> str:
        work = await self._work_for(job)
        canaries = min(job.spec.canary, job.total)
        if canaries and not job.canary_state:
            streams = [*job.streams, *([job.spec.to] if job.spec.to else [])]
            work.marks = {s: await canary.last_id(self.client, keys.dlq(s)) for s in streams}
            return await self._progress(job, marks=jobs.dumps(work.marks),
                                        canary_state="watching")  # fmt: skip
        if job.canary_state == "watching" and job.done >= canaries:
            return await self._watch(job, work, interrupt)
        limit = canaries - job.done if job.canary_state == "watching" else BATCH
        refs = await snapshot.refs(self.client, job.spec.snapshot, job.done, job.done + limit - 1)
        if not refs:
            raise ConfigError(f"snapshot {job.spec.snapshot} lost its refs: job cannot go on")
        for entry in await _fetch_all(self.client, refs):
            if work.bucket is not None:
                await unless(interrupt, work.bucket.take())
            if interrupt.is_set():
                return "interrupted"
            status = await self._replay_one(job, work, entry)
            if status != "running":
                return status
            if why := await self._relapsed(job, work):
                return (await jobs.pause_itself(self.client, job, why, self._by)).status
        return "running"

    async def _replay_one(self, job: Job, work: _Work, entry: DeadLetter | None) -> str:
        if entry is None:
            return await self._progress(job, gone=1)
        if refusal(entry, work.options) is not None or await idempotent.done(self.client, [entry]):
            return await self._progress(job, refused=1)
        target = target_of(entry, work.options.to) or ""
        if (entry.stream, entry.group, target) not in work.checked:
            await check_targets(self.client, [(entry, target)], work.options)
            work.checked.add((entry.stream, entry.group, target))
        done = await move(self.client, entry, target, job.operation())
        if done is None:
            return await self._progress(job, gone=1)
        watched = canary_for(entry, work.options, *done)
        if job.canary_state == "watching":
            work.watch.append(watched)
            rows = [[c.dlq_id, c.stream, c.group, c.target_id, c.origin] for c in work.watch]
            return await self._progress(job, moved=1, watch=jobs.dumps(rows))
        work.relapses.track(watched)
        return await self._progress(job, moved=1)

    async def _watch(self, job: Job, work: _Work, interrupt: asyncio.Event) -> str:
        timeout = job.spec.canary_timeout
        result = await unless(interrupt, canary.watch(self.client, work.watch, work.marks, timeout))
        if result is None:
            return "interrupted"
        if result.ok:
            return await self._progress(job, canary_state="ok")
        status = await self._progress(job, canary_state="died")
        if status != "running":
            return status
        why = stop_reason(result, job.left)
        return (await jobs.pause_itself(self.client, job, why, self._by)).status

    async def _relapsed(self, job: Job, work: _Work) -> str | None:
        if not work.relapses.replayed or time.monotonic() - work.checked_at < CHECK_SECONDS:
            return None
        work.checked_at = time.monotonic()
        await work.relapses.read(self.client)
        why = work.relapses.verdict()
        if why is None:
            return None
        return f"{why}; {(await jobs.get(self.client, job.id)).left} entries not replayed"

    async def _delete(self, job: Job, interrupt: asyncio.Event) -> str:
        work = await self._work_for(job)
        size = _delete_size(job.spec.rate) if job.spec.rate else DELETE_BATCH
        refs = await snapshot.refs(self.client, job.spec.snapshot, job.done, job.done + size - 1)
        if not refs:
            raise ConfigError(f"snapshot {job.spec.snapshot} lost its refs: job cannot go on")
        if work.bucket is not None:
            await unless(interrupt, work.bucket.take())
        status = "running"
        for stream, ids in _runs(refs):
            if interrupt.is_set():
                return "interrupted"
            deleted = await delete_batch(self.client, job.operation(), stream, ids)
            status = await self._progress(job, moved=deleted, gone=len(ids) - deleted)
            if status != "running":
                return status
        return status


async def _fetch_all(client: Redis, refs: list[str]) -> list[DeadLetter | None]:
    """The dead letters ``refs`` name, in one round trip (``None``: gone already). Read
    ahead of their moves, which is safe: a dead letter never changes, and the move
    script checks it is still there."""
    pipe = client.pipeline(transaction=False)
    named = [split_ref(ref) for ref in refs]
    for stream, entry_id in named:
        pipe.execute_command("XRANGE", keys.dlq(stream or ""), entry_id, entry_id)
    replies = await pipe.execute() if refs else []
    out: list[DeadLetter | None] = []
    for (stream, _), reply in zip(named, replies, strict=True):
        key = keys.dlq(stream or "")
        out.append(DeadLetter(stream or "", key, text(reply[0][0]), pairs_of(reply[0][1]))
                   if reply else None)  # fmt: skip
    return out


def _delete_size(rate: float) -> int:
    """Refs per purge call of a rate-limited delete: about one second's worth."""
    return max(1, min(DELETE_BATCH, math.ceil(rate)))


def _runs(refs: list[str]) -> list[tuple[str, list[str]]]:
    """Consecutive refs of one stream, in order: progress stays a prefix of the refs, so
    the cursor (the count handled) never skips an entry after a crash."""
    out: list[tuple[str, list[str]]] = []
    for ref in refs:
        stream, entry_id = split_ref(ref)
        name = stream or ""
        if out and out[-1][0] == name:
            out[-1][1].append(entry_id)
        else:
            out.append((name, [entry_id]))
    return out
