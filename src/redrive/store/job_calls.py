"""Typed calls of the supervised jobs' scripts (``job_lease``, ``job_step``, ``job_state``).

As :mod:`redrive.store.calls`: each function builds a :class:`~redrive.store.calls.Call`
and does no I/O; argument names follow each script's contract comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redrive.core.text import text
from redrive.store.calls import Call
from redrive.store.scripts import Arg, scripts

JobLeaseOp = Literal["claim", "renew", "release"]
__all__ = ["JobLeaseOp", "JobStateResult", "job_lease", "job_state", "job_step"]


@dataclass(frozen=True, slots=True)
class JobStateResult:
    """``job_state``: the status before, whether it changed (1), was already the new one
    (0) or may not change from there (-1), and the live lease holder (``""``: none)."""

    before: str
    code: int
    runner: str


def _job_state(reply: Any) -> JobStateResult | None:
    if reply is None:
        return None
    return JobStateResult(text(reply[0]), int(reply[1]), text(reply[2]))


def job_lease(*, job: str, op: JobLeaseOp, runner: str, lease_ms: int) -> Call[str]:
    """Claim, renew or release ``runner``'s lease on ``job``; the result is the job's
    status after it, or ``held`` / ``lost`` / ``unknown``."""
    s = scripts().job_lease
    return Call(s, ("EVALSHA", s.sha, 1, job, op, runner, lease_ms), text)


def job_step(
    *,
    job: str,
    runner: str,
    lease_ms: int,
    moved: int,
    gone: int,
    refused: int,
    fields: Sequence[Arg] = (),
) -> Call[str]:
    """Add handled entries to ``job``'s progress (and set ``fields``), renewing the lease;
    the result is the job's status after it, or ``lost``."""
    s = scripts().job_step
    command = ("EVALSHA", s.sha, 1, job, runner, lease_ms, moved, gone, refused, *fields)
    return Call(s, command, text)


def job_state(
    *, job: str, status: str, reason: str, allowed: Sequence[str]
) -> Call[JobStateResult | None]:
    """Move ``job`` to ``status`` if it is in one of ``allowed`` (``None``: no job)."""
    s = scripts().job_state
    return Call(s, ("EVALSHA", s.sha, 1, job, status, reason, *allowed), _job_state)
