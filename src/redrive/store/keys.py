"""Every Redis key name redrive uses is built here (docs/concepts.md#keys lists them).

Derived keys carry the source stream's hash tag so that, in Redis Cluster, a Lua script
can touch the stream, its retry keys and its dead-letter stream together. A stream name
that already has a hash tag (``{tenant}:orders``) keeps it instead of nesting braces.

Retry keys are per consumer group (``retry:{S}:<group>``): two groups reading one stream
each retry their own failures; a shared retry stream would hand group A's retries to B.
"""

from __future__ import annotations

from dataclasses import dataclass

from redrive.errors import ConfigError

PREFIX = "redrive:"
STREAMS_INDEX = PREFIX + "streams"  # set of source streams that have consumers
AUDIT = PREFIX + "audit"


def consumer_lease(name: str) -> str:
    """String key held by the live worker that uses consumer name ``name``."""
    return f"{PREFIX}consumer:{name}"


AUDIT_MAXLEN = 100_000  # approximate cap of the audit streams


def hash_tag(stream: str) -> str:
    """``stream`` with a hash tag: its own tag if it has one, else the whole name in braces."""
    return stream if _has_tag(stream) else "{" + stream + "}"


def _has_tag(stream: str) -> bool:
    start = stream.find("{")
    return start != -1 and stream.find("}", start + 1) > start + 1


def validate_stream_name(stream: str) -> str:
    """Reject names that cannot be a source stream, with a message saying why."""
    if not stream or not stream.strip():
        raise ConfigError("stream name is empty: pass a name such as 'ecommerce:orders'")
    if ("{" in stream or "}" in stream) and not _has_tag(stream):
        # Redis Cluster would hash the name whole, and no derived key can carry a tag
        # equal to a name with a brace in it: the Lua moves would cross slots.
        raise ConfigError(
            f"stream {stream!r} has braces but no hash tag: use a tag such as "
            "'{tenant}:orders' or no braces at all"
        )
    if stream.startswith("{") and stream.endswith("}") and stream.find("}") == len(stream) - 1:
        raise ConfigError(
            f"stream {stream!r} is only a hash tag and would share redrive's keys with "
            f"{stream[1:-1]!r}: name it {stream[1:-1]!r}"
        )
    if stream.startswith(("retry:", "dlq:", PREFIX)):
        raise ConfigError(
            f"stream {stream!r} uses a prefix redrive reserves (retry:, dlq:, redrive:)"
        )
    return stream


def validate_group_name(group: str) -> str:
    """Reject an empty group name or one containing ':' (used as a key separator)."""
    if not group or ":" in group or any(c.isspace() for c in group):
        raise ConfigError(
            f"group name {group!r}: use a non-empty name without ':' or spaces, "
            "such as 'orders-service'"
        )
    return group


def dlq(stream: str) -> str:
    """Dead-letter stream of ``stream``: ``dlq:{S}``."""
    return "dlq:" + hash_tag(stream)


def retry_stream(stream: str, group: str) -> str:
    """Due retries of ``group`` on ``stream``: ``retry:{S}:<group>``."""
    return f"retry:{hash_tag(stream)}:{group}"


def retry_due(stream: str, group: str) -> str:
    """Retries waiting for their time (sorted set, score = due ms)."""
    return f"retry:{hash_tag(stream)}:{group}:due"


def stats(stream: str, group: str) -> str:
    """Per-group counters (hash) kept by workers."""
    return f"{PREFIX}stats:{hash_tag(stream)}:{group}"


def starts(stream: str, group: str) -> str:
    """Handler starts of *suspect* entries (hash: ``s:<id>``/``r:<id>`` → runs).

    An entry re-delivered after a crash is a suspect; its runs are counted here, so the
    crash-loop limit counts runs of that entry, not deliveries it merely sat through.
    """
    return f"{PREFIX}starts:{hash_tag(stream)}:{group}"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """All keys of one (stream, group) pair."""

    stream: str
    group: str
    retry: str
    due: str
    dlq: str
    stats: str
    starts: str

    @classmethod
    def of(cls, stream: str, group: str) -> StreamKeys:
        """Build and validate the key set for ``stream`` read by ``group``."""
        validate_stream_name(stream)
        validate_group_name(group)
        return cls(
            stream=stream,
            group=group,
            retry=retry_stream(stream, group),
            due=retry_due(stream, group),
            dlq=dlq(stream),
            stats=stats(stream, group),
            starts=starts(stream, group),
        )


# -- monitoring (issue 5) ---------------------------------------------------------------

#: Hash: health check id -> last state (OK/WARN/CRIT), so each change is alerted once.
HEALTH_STATE = PREFIX + "health:state"


def metrics(stream: str, group: str) -> str:
    """Per-second metrics of ``group`` (stream, one entry per consumer and second)."""
    return f"{PREFIX}metrics:{hash_tag(stream)}:{group}"


def audit_trail(stream: str) -> str:
    """Per-entry audit records of DLQ operations on ``stream`` (``redrive:audit:{S}``).

    Shares the slot of ``dlq:{S}``, so a replay or purge script can write the move and
    its audit record in one atomic call; ``AUDIT`` keeps one summary per operation.
    """
    return f"{PREFIX}audit:{hash_tag(stream)}"


def dlq_retention(stream: str) -> str:
    """Retention gauges of ``dlq:{S}`` (hash: expiring, evicted, last run)."""
    return f"{PREFIX}dlq-retention:{hash_tag(stream)}"


# -- DLQ operations across slots (issue 16) ----------------------------------------------


def dlq_imported(stream: str) -> str:
    """Hash: digest of an imported record -> its id in ``dlq:{S}`` (same slot), so a
    record imported twice, even by two imports at once, is written once."""
    return f"{PREFIX}dlq-imported:{hash_tag(stream)}"


def replay_moving(stream: str) -> str:
    """Hash: DLQ id -> target of a replay into another slot that has begun (same slot
    as ``dlq:{S}``); its field goes with the dead letter, in one script."""
    return f"{PREFIX}replay-moving:{hash_tag(stream)}"


def replay_copy(target: str, ref: str) -> str:
    """String: the id in ``target`` of the copy of dead letter ``ref`` (``S@ID``), in
    ``target``'s slot: the copy step of a replay into another slot is done at most once."""
    return f"{PREFIX}replay-copy:{hash_tag(target)}:{ref}"


# -- idempotency (issue 15) --------------------------------------------------------------


def idempotency_done(stream: str, group: str) -> str:
    """Sorted set: the done marks of ``group`` on ``stream``, idempotency key -> when the
    mark ends (ms; ``inf``: for good). In the slot of ``S`` and ``retry:{S}``, so one
    script acks an entry and marks its key done."""
    return f"{PREFIX}idem:{hash_tag(stream)}:{group}:done"


def idempotency_claims(stream: str, group: str) -> str:
    """Hash: the claims of ``group`` on ``stream``, idempotency key ->
    ``<until ms>:<consumer>:<entry id>`` (the lease and the run holding it), same slot."""
    return f"{PREFIX}idem:{hash_tag(stream)}:{group}:claims"


def publish_dedupe(stream: str, dedupe_id: str) -> str:
    """String: the entry id a publish with ``dedupe_id`` wrote to ``stream`` (the Lua
    fallback of ``XADD … IDMP`` for servers before Redis 8.6), in ``S``'s slot."""
    return f"{PREFIX}dedupe:{hash_tag(stream)}:{dedupe_id}"


# -- snapshots and supervised jobs (issue 13) --------------------------------------------

#: Sorted set: job id -> created ms (every job, for listings; newest first by score).
JOBS = PREFIX + "jobs"
#: Set: ids of jobs that may still need a runner (queued, running, paused, or finished
#: and not yet summarised in the audit log); runners read it instead of every job.
JOBS_ACTIVE = PREFIX + "jobs:active"


def snapshot(snapshot_id: str) -> str:
    """Hash: a preview's count, filter, per-stream counts, sample and creation time."""
    return f"{PREFIX}snapshot:{{{snapshot_id}}}"


def snapshot_refs(snapshot_id: str) -> str:
    """List: the ``STREAM@ID`` of every dead letter a snapshot binds, in bound order
    (same slot as :func:`snapshot`)."""
    return f"{PREFIX}snapshot:{{{snapshot_id}}}:refs"


def job(job_id: str) -> str:
    """Hash: a supervised job's spec, status, progress, lease and canary state."""
    return f"{PREFIX}job:{{{job_id}}}"
