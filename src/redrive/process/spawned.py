"""One child process of a supervisor: its output passed through, tagged, and its stdin.

The supervisor (:mod:`redrive.process.supervisor`) starts each child without a name; the
child imports the app, then reads one JSON line on stdin (:meth:`Spawned.assign`) that
tells it its consumer name (see :mod:`redrive.process.supervised` for the child's side).
Until then it is a warm standby: a replacement that has paid its start-up already.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import IO

#: How many of a child's last stderr lines are kept for the crash report.
TAIL_LINES = 20
_WRITE = threading.Lock()


def tagged(name: str, raw: bytes) -> str:
    """One line of child ``name``'s output as the supervisor prints it.

    A JSON object (``--log-format json``) gains a ``"consumer"`` field and stays one JSON
    object per line; any other line gets a ``[name] `` prefix.
    """
    text = raw.decode(errors="replace").rstrip("\r\n")
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            record = json.loads(text)
            if isinstance(record, dict):
                return json.dumps({**record, "consumer": name})
    return f"[{name}] {text}"


def describe_exit(code: int) -> str:
    """``exit code 2`` or ``SIGKILL`` (a negative Popen return code)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
        return f"signal {-code}"
    return f"exit code {code}"


class Spawned:
    """A running child: its process, the name its output is tagged with, its last lines.

    ``tag`` starts as ``standby`` and becomes the consumer name once assigned; ``started``
    is when it was assigned (its uptime for the restart rules), or spawned until then.
    """

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str], *, tag: str, now: float
    ) -> None:
        self.popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A group of its own: a Ctrl-C at the terminal (or a signal to the supervisor's
            # group) reaches the supervisor only, which forwards it once. Twice, the second
            # could land after the child drained and its handlers were gone.
            process_group=0,
        )
        self.tag = tag
        self.started = now
        self.assigned = False
        self.killed = False
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        outputs = ((self.popen.stdout, "stdout", False), (self.popen.stderr, "stderr", True))
        self.relays = [
            threading.Thread(target=self._relay, args=out, daemon=True, name=f"relay {out[1]}")
            for out in outputs
        ]
        for relay in self.relays:
            relay.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    def assign(self, name: str, now: float, fields: Mapping[str, object]) -> None:
        """Make this child the worker ``name``: one JSON line on its stdin."""
        self.tag, self.started, self.assigned = name, now, True
        line = json.dumps({"consumer": name, **fields}).encode() + b"\n"
        stdin = self.popen.stdin
        assert stdin is not None
        # A child that died meanwhile is seen exiting by the supervisor's next poll.
        with contextlib.suppress(OSError):
            stdin.write(line)
            stdin.flush()

    def release(self) -> None:
        """Close its stdin: an unassigned child then exits 0 without ever consuming."""
        with contextlib.suppress(OSError):
            if self.popen.stdin is not None:
                self.popen.stdin.close()

    def send(self, sig: signal.Signals) -> None:
        """Send ``sig`` if it still runs."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def finish(self) -> None:
        """After it exited: wait (briefly) until its last lines are relayed."""
        for relay in self.relays:
            relay.join(1.0)
        self.release()

    def last_line(self) -> str:
        """The last non-empty line it wrote on stderr (of a JSON record: its ``msg``)."""
        for line in reversed(list(self.tail)):  # a copy: its relay may still append
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        return str(record.get("msg", line))
            if line:
                return line
        return ""

    def _relay(self, pipe: IO[bytes], sink: str, keep: bool) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                if keep:
                    self.tail.append(raw.decode(errors="replace").strip())
                with _WRITE, contextlib.suppress(OSError, ValueError):
                    # Our own output gone (a closed terminal): keep reading, or it blocks.
                    stream = getattr(sys, sink)
                    stream.write(tagged(self.tag, raw) + "\n")
                    stream.flush()
