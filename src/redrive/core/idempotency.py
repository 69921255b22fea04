"""Idempotency keys: which message is "the same", and how long its effect is remembered.

A handler with ``idempotency=Idempotency(...)`` runs at most once per key with effect:
the runtime claims the key before the run (a lease), and marks it done in the same
script that acks the entry. Pure: what a key is, its validation, and the check that a
key is remembered at least as long as the message can still come back (its retries,
then the dead-letter stream, from which a replay may bring it back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError

#: How long a done key is kept by default (seconds): a week.
DEFAULT_TTL = 7 * 86_400.0
#: The longest key accepted (after ``str()``): keys are part of a Redis key name.
MAX_KEY_CHARS = 512

KeyFunction = Callable[[Message], object]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Run a handler at most once with effect per key.

    ``key`` maps a message to its key (any value, made a string); the default is the
    message's original id, which stays the same across the retry stream, the DLQ and a
    replay (never the id of the entry being read). ``ttl`` is how long a done key is
    kept (seconds; ``None``: until deleted). ``lease`` is how long a claim holds before
    another consumer may take the key (seconds; default: the handler's
    ``visibility_timeout``); it must outlast the handler's run.

    Example::

        @app.handler("ecommerce:payments", group="payments",
                     idempotency=Idempotency(key=lambda msg: msg.data["order_id"],
                                             ttl=30 * 86_400),
                     dlq_max_age=14 * 86_400)
        async def charge(msg: Message) -> None: ...
    """

    key: KeyFunction | None = None
    ttl: float | None = DEFAULT_TTL
    lease: float | None = None

    def __post_init__(self) -> None:
        if self.key is not None and not callable(self.key):
            raise ConfigError(
                f"Idempotency(key={self.key!r}): pass a function of the message, "
                'e.g. key=lambda msg: msg.data["order_id"]'
            )
        for name in ("ttl", "lease"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise ConfigError(f"Idempotency({name}={value!r}): use seconds > 0, or None")

    def key_of(self, msg: Message) -> str:
        """The key of ``msg``; a :class:`ConfigError` names a key that cannot be used
        (the runtime dead-letters such a message as a permanent error)."""
        raw = msg.id if self.key is None else self.key(msg)
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if raw is None or not key:
            raise ConfigError(f"the idempotency key of {msg.stream} {msg.id} is empty ({raw!r})")
        if len(key) > MAX_KEY_CHARS:
            raise ConfigError(
                f"the idempotency key of {msg.stream} {msg.id} has {len(key)} characters; "
                f"at most {MAX_KEY_CHARS}: key on an id, not on the body"
            )
        return key

    def lease_ms(self, visibility_timeout: float) -> int:
        """The claim's lease in milliseconds."""
        return max(1, int((self.lease or visibility_timeout) * 1000))

    def ttl_ms(self) -> int | None:
        """How long a done key is kept, in milliseconds (``None``: for good)."""
        return None if self.ttl is None else max(1, int(self.ttl * 1000))


def retry_horizon(policies: Iterable[RetryPolicy]) -> float:
    """The longest a message can take from its first failure to its dead letter (s): the
    sum of each retry's longest delay, capped by ``max_age``; the worst of ``policies``."""
    worst = 0.0
    for policy in policies:
        total = 0.0
        for retry in range(policy.max_retries):
            if policy.jitter == "decorrelated":
                total += policy.max_delay
            else:
                growth = policy.base_delay * policy.multiplier ** min(retry, 1023)
                total += min(policy.max_delay, growth)
        if policy.max_age is not None:
            total = min(total, policy.max_age)
        worst = max(worst, total)
    return worst


def check_ttl(idempotency: Idempotency, horizon: float, dlq_max_age: float | None) -> None:
    """Refuse a ``ttl`` shorter than the retry horizon plus the DLQ's retention: a key
    forgotten before the message's last possible replay would let it run twice."""
    ttl = idempotency.ttl
    if ttl is None:
        return
    need = math.inf if dlq_max_age is None else horizon + dlq_max_age
    if ttl >= need:
        return
    if dlq_max_age is None:
        raise ConfigError(
            f"Idempotency(ttl={ttl:g}) is shorter than the dead-letter stream's retention, "
            "which is unbounded (dlq_max_age=None): a replay after the key expired would run "
            "the handler again. Set dlq_max_age=D with ttl >= D + "
            f"{horizon:g} (the retry horizon, s), or ttl=None to keep done keys for good"
        )
    raise ConfigError(
        f"Idempotency(ttl={ttl:g}) is shorter than the retry horizon ({horizon:g} s) plus "
        f"the dead-letter retention (dlq_max_age={dlq_max_age:g} s): use ttl >= {need:g}, "
        "or lower dlq_max_age"
    )


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


__all__ = ["DEFAULT_TTL", "Idempotency", "KeyFunction", "check_ttl", "retry_horizon"]
