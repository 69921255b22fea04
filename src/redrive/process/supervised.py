"""The child's side of ``redrive worker --processes N`` (``redrive worker … --supervised``).

A child imports the app first, then waits for one JSON line on stdin naming it::

    {"consumer": "shop-2", "reaped": 4711, "metrics_port": 9401}

``reaped`` (may be null) is the pid of the previous worker under that name, which the
supervisor has reaped: the child passes it to its consumer-name lease
(``REDRIVE_REAPED_WORKER``, :mod:`redrive.runtime.liveness`), which takes the dead
worker's name over at once. End of input before the line (the supervisor stopping, or
gone) ends the child with exit 0: it never consumed anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass
from types import FrameType

from redrive.errors import ConfigError
from redrive.runtime.liveness import REAPED_ENV

#: Set in a child's environment: the pid of the supervisor it must not outlive.
SUPERVISOR_ENV = "REDRIVE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the supervisor tells a child: its consumer name and its metrics port."""

    consumer: str
    metrics_port: int | None = None


def follow_supervisor() -> None:
    """Be sent SIGTERM when the supervisor dies (Linux), and stop cleanly until serving.

    Without the first, a kill -9 of the supervisor would leave its children running under
    their names, and a restarted supervisor would be refused those names. Until the
    worker's own signal handlers are installed (it then drains), SIGTERM/SIGINT end the
    child with exit 0: it holds nothing yet.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    expected = os.environ.pop(SUPERVISOR_ENV, None)
    if not expected or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != expected:  # it died before the prctl took effect
        raise ConfigError(f"the supervisor (pid {expected}) is gone: this child does not start")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def read_assignment() -> Assignment:
    """Wait for the supervisor's line on stdin; exit 0 at end of input."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        raise SystemExit(0)
    try:
        fields = json.loads(line)
        consumer, reaped, port = (
            fields["consumer"],
            fields.get("reaped"),
            fields.get("metrics_port"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unreadable assignment from the supervisor: {line!r} ({exc})") from None
    if reaped is not None:
        os.environ[REAPED_ENV] = f"{int(reaped)} {consumer}"
    return Assignment(str(consumer), None if port is None else int(port))
