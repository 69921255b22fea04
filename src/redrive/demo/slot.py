"""The key prefix a ``redrive demo`` run owns: ``demo:``, or ``demo2:``… while others run.

The demo never touches the names an application uses (``ecommerce:orders`` is what the
README tells people to build on): its streams are ``demo:ecommerce:orders`` and
``demo:ecommerce:payments``. A run holds a lease on its prefix (``redrive:demo:lease:demo``,
``SET NX`` with a TTL that a thread renews); a second demo started meanwhile takes the
next free prefix (``demo2:``), so neither deletes the other's streams and groups under
it (which is how two demos at once broke each other with NOGROUP).

A run deletes the keys of its prefix only if they are the demo's own: the marker
``redrive:demo:owned:demo`` is set the first time the demo writes there, and keys found
under a prefix without it belong to someone else (the run stops instead).

Example::

    with DemoSlot(client) as slot:
        print(slot.prefix)          # "demo:" unless another demo holds it
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable
from types import TracebackType

import redis
from redis.client import Pipeline

from redrive.errors import RedriveError

MAX_SLOTS = 8
PREFIXES = tuple("demo:" if i == 1 else f"demo{i}:" for i in range(1, MAX_SLOTS + 1))
LEASE_SECONDS = 15
RENEW_SECONDS = 3.0


class SlotError(RedriveError):
    """No demo prefix is free, or a prefix's keys were not created by the demo."""


def lease_key(prefix: str) -> str:
    """The lease of ``prefix`` (a string: the holder's token, with a TTL)."""
    return "redrive:demo:lease:" + prefix.rstrip(":")


def owned_key(prefix: str) -> str:
    """Set once the demo has written under ``prefix``: its keys there are the demo's."""
    return "redrive:demo:owned:" + prefix.rstrip(":")


class DemoSlot:
    """Claims the first free prefix on ``client``'s server and keeps it until closed."""

    def __init__(self, client: redis.Redis, *, lease_seconds: int = LEASE_SECONDS) -> None:
        self.client = client
        self.lease_seconds = lease_seconds
        self.token = secrets.token_hex(8)
        self.prefix = ""
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> DemoSlot:
        self.claim()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def claim(self) -> str:
        """Take the first free prefix and start renewing its lease; return the prefix."""
        for prefix in PREFIXES:
            if self.client.set(lease_key(prefix), self.token, nx=True, ex=self.lease_seconds):
                self.prefix = prefix
                self._renewer = threading.Thread(
                    target=self._renew_until_stopped, name="demo-lease", daemon=True
                )
                self._renewer.start()
                return prefix
        raise SlotError(
            f"{MAX_SLOTS} demos are already running on this server: wait for one to end"
        )

    def mark_owned(self) -> None:
        """Record that the demo writes under its prefix (before it writes anything)."""
        self.client.set(owned_key(self.prefix), self.token)

    def owned(self) -> bool:
        """True if the demo created the keys under its prefix (or none exist yet)."""
        return bool(self.client.exists(owned_key(self.prefix)))

    def release(self) -> None:
        """Stop renewing and drop the lease if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=RENEW_SECONDS + 1)
            self._renewer = None
        if self.prefix:
            with contextlib.suppress(redis.RedisError, OSError):
                self._if_ours(lambda pipe: pipe.delete(lease_key(self.prefix)))

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            with contextlib.suppress(redis.RedisError, OSError):  # retried at the next tick
                self._if_ours(lambda pipe: pipe.expire(lease_key(self.prefix), self.lease_seconds))

    def _if_ours(self, action: Callable[[Pipeline], object]) -> None:
        """Run ``action(pipe)`` in a transaction only while the lease holds our token."""
        key = lease_key(self.prefix)
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.get(key) != self.token.encode():
                    return
                pipe.multi()
                action(pipe)
                pipe.execute()
            except redis.WatchError:
                return  # someone else changed it: not ours any more
