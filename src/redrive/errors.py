"""The one error hierarchy of redrive.

``RedriveError`` is the root; library code raises its subclasses so callers can catch
everything redrive raises with one ``except``. Names avoid shadowing Python's own
``ConnectionError`` / ``TimeoutError``.

Two classes are *control flow*, not failures: a handler raises :class:`Retry` or
:class:`Reject` to decide the outcome of a message explicitly.
"""

from __future__ import annotations


class RedriveError(Exception):
    """Base class of every error redrive raises."""


class ConfigError(RedriveError, ValueError):
    """A setting or argument is invalid; the message says what to fix."""


class StoreError(RedriveError):
    """Redis could not be reached or answered unexpectedly."""


class EmbeddedServerError(StoreError):
    """The embedded ``redis-server`` could not be started or found."""


class DecodeError(RedriveError):
    """A message body could not be decoded (malformed JSON, not UTF-8, too large)."""

    def __init__(self, message: str, *, reason: str = "poison") -> None:
        super().__init__(message)
        self.reason = reason


class ValidationError(RedriveError):
    """A message decoded but does not match the handler's schema (a permanent error)."""


class HandlerTimeout(RedriveError, TimeoutError):
    """A handler ran past its time limit (``timeout``) and was cancelled.

    Transient (a ``TimeoutError``): retried, then dead-lettered with reason
    ``handler_timeout``.
    """


class Retry(RedriveError):
    """Raised by a handler to ask for a retry, optionally after ``delay`` seconds.

    Example::

        @app.handler("ecommerce:orders", group="orders")
        async def handle(msg):
            if not gateway.ready():
                raise Retry(delay=5.0)

    The retry consumes one attempt of the policy; when none are left the message is
    dead-lettered with reason ``max_retries_exceeded``.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        if delay is not None and not (0 <= delay < float("inf")):
            raise ConfigError(f"Retry(delay={delay!r}): delay must be a finite number >= 0")
        self.delay = delay


class Reject(RedriveError):
    """Raised by a handler to send a message straight to the dead-letter stream.

    Example::

        if order["amount"] < 0:
            raise Reject("negative amount")
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
