"""Error classification: exception type → transient / permanent / processing (pure).

- transient: the outside world hiccuped (timeouts, connection errors) → retry.
- permanent: the message itself is bad (decode, validation, missing or wrongly typed
  fields) → dead-letter at once; retrying cannot help.
- processing: anything else (a business rule failed) → retry, then dead-letter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

import redis.exceptions

from redrive.errors import ConfigError, DecodeError, Reject, Retry, ValidationError


class ErrorClass(StrEnum):
    """The three classes of handler failure."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    PROCESSING = "processing"


ExcTypes = tuple[type[BaseException], ...]

DEFAULT_TRANSIENT: ExcTypes = (
    TimeoutError,
    ConnectionError,
    # redis-py's own (not subclasses of the builtins): a handler's Redis call timing out
    # is as transient as any other. Only the classes are used, no I/O.
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
#: Permanent failures that blame the message, not the code: they go to the DLQ at once,
#: whatever the breaker says, and never count as a storm of handler failures.
BAD_INPUT: ExcTypes = (
    DecodeError,
    ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    Reject,
)
DEFAULT_PERMANENT: ExcTypes = (
    DecodeError,
    ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    KeyError,
    TypeError,
)


@dataclass(frozen=True, slots=True)
class Rules:
    """Per-handler classification rules, consulted before the defaults.

    Example::

        Rules(transient=(httpx.ReadTimeout,), permanent=(pydantic.ValidationError,))

    The most specific match wins (the exception's MRO is walked in order), so a rule for
    ``ReadTimeout`` beats a rule for its base class.
    """

    transient: ExcTypes = ()
    permanent: ExcTypes = ()
    processing: ExcTypes = ()
    _table: dict[type[BaseException], ErrorClass] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table: dict[type[BaseException], ErrorClass] = {}
        for cls in DEFAULT_TRANSIENT:
            table[cls] = ErrorClass.TRANSIENT
        for cls in DEFAULT_PERMANENT:
            table[cls] = ErrorClass.PERMANENT
        for klass, types in (
            (ErrorClass.TRANSIENT, self.transient),
            (ErrorClass.PERMANENT, self.permanent),
            (ErrorClass.PROCESSING, self.processing),
        ):
            if not isinstance(types, tuple):
                raise ConfigError(
                    f"Rules({klass.value}={types!r}): pass a tuple of exception types, "
                    f"e.g. ({getattr(types, '__name__', 'MyError')},)"
                )
            for exc_type in types:
                if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                    raise ConfigError(
                        f"Rules({klass.value}=...): {exc_type!r} is not an exception type"
                    )
                table[exc_type] = klass
        object.__setattr__(self, "_table", table)

    def classify(self, exc: BaseException) -> ErrorClass:
        """Return the class of ``exc``; explicit ``Retry``/``Reject`` always win."""
        if isinstance(exc, Retry):
            return ErrorClass.TRANSIENT
        if isinstance(exc, Reject):
            return ErrorClass.PERMANENT
        table = self._table
        for cls in type(exc).__mro__:
            found = table.get(cls)
            if found is not None:
                return found
        return ErrorClass.PROCESSING

    def is_bad_input(self, exc: BaseException) -> bool:
        """Whether ``exc`` blames the message: decode and validation errors, ``Reject``,
        and the types this handler lists as ``permanent`` itself.

        Other permanent errors (``TypeError``, ``KeyError`` by default) may as well be a
        bug in the handler: a storm of them pauses the handler (``BreakerPolicy``).
        """
        return isinstance(exc, (*BAD_INPUT, *self.permanent))


DEFAULT_RULES = Rules()
