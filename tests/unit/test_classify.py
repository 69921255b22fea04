"""Classification: defaults, per-handler rules, the most specific rule wins, Retry/Reject win."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.classify import DEFAULT_RULES, ErrorClass, Rules
from redrive.errors import ConfigError, DecodeError, Reject, Retry, ValidationError

TRANSIENT = ErrorClass.TRANSIENT
PERMANENT = ErrorClass.PERMANENT
PROCESSING = ErrorClass.PROCESSING


class ReadTimeout(TimeoutError):
    """Stands in for an HTTP client's timeout, a subclass of the builtin."""


class PaymentDeclined(Exception):
    """A business failure: neither transient nor a bad message."""


def json_error() -> json.JSONDecodeError:
    try:
        json.loads("{not json")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("json.loads accepted malformed input")


def unicode_error() -> UnicodeDecodeError:
    return UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError("slow"), TRANSIENT),
        (ConnectionError("down"), TRANSIENT),
        (ConnectionRefusedError("refused"), TRANSIENT),
        (ConnectionResetError("reset"), TRANSIENT),
        (ReadTimeout("read"), TRANSIENT),
        (KeyError("order_id"), PERMANENT),
        (TypeError("str + int"), PERMANENT),
        (ValidationError("amount < 0"), PERMANENT),
        (DecodeError("bad body"), PERMANENT),
        (json_error(), PERMANENT),
        (unicode_error(), PERMANENT),
        (ValueError("out of stock"), PROCESSING),
        (RuntimeError("boom"), PROCESSING),
        (PaymentDeclined(), PROCESSING),
        (IndexError("list"), PROCESSING),  # a sibling of KeyError, not a subclass
        (OSError("disk"), PROCESSING),  # the base of ConnectionError is not transient
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_default_classification(exc: BaseException, expected: ErrorClass) -> None:
    assert DEFAULT_RULES.classify(exc) is expected


def test_a_rule_for_a_subclass_beats_the_default_for_its_base() -> None:
    rules = Rules(permanent=(ReadTimeout,))

    assert rules.classify(ReadTimeout()) is PERMANENT
    assert rules.classify(TimeoutError()) is TRANSIENT  # the base keeps its default


def test_a_default_for_a_subclass_beats_a_rule_for_its_base() -> None:
    # Most specific wins in both directions: ConnectionError is nearer than OSError.
    rules = Rules(processing=(OSError,))

    assert rules.classify(ConnectionError()) is TRANSIENT
    assert rules.classify(FileNotFoundError()) is PROCESSING


def test_a_rule_overrides_the_default_for_the_same_type() -> None:
    rules = Rules(processing=(KeyError,), transient=(ValidationError,))

    assert rules.classify(KeyError("sku")) is PROCESSING
    assert rules.classify(ValidationError("schema")) is TRANSIENT


def test_rules_reach_user_exceptions_through_inheritance() -> None:
    class GatewayError(Exception):
        pass

    class GatewayBusy(GatewayError):
        pass

    rules = Rules(transient=(GatewayError,))

    assert rules.classify(GatewayBusy()) is TRANSIENT
    assert DEFAULT_RULES.classify(GatewayBusy()) is PROCESSING


@pytest.mark.parametrize(
    "rules",
    [
        DEFAULT_RULES,
        Rules(permanent=(Retry,)),
        Rules(processing=(Retry, Exception)),
        Rules(permanent=(Exception,), processing=(BaseException,)),
    ],
)
def test_retry_is_always_transient(rules: Rules) -> None:
    assert rules.classify(Retry(delay=3)) is TRANSIENT


@pytest.mark.parametrize(
    "rules",
    [
        DEFAULT_RULES,
        Rules(transient=(Reject,)),
        Rules(processing=(Reject, Exception)),
        Rules(transient=(Exception,), processing=(BaseException,)),
    ],
)
def test_reject_is_always_permanent(rules: Rules) -> None:
    assert rules.classify(Reject("negative amount")) is PERMANENT


def test_subclasses_of_retry_and_reject_keep_their_meaning() -> None:
    class RetryLater(Retry):
        pass

    class Refuse(Reject):
        pass

    rules = Rules(permanent=(RetryLater,), transient=(Refuse,))

    assert rules.classify(RetryLater()) is TRANSIENT
    assert rules.classify(Refuse("no")) is PERMANENT


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"transient": (TimeoutError(),)}, "TimeoutError()"),
        ({"permanent": ("KeyError",)}, "'KeyError'"),
        ({"processing": (int,)}, "<class 'int'>"),
    ],
)
def test_a_rule_that_is_not_an_exception_type_is_refused(
    kwargs: dict[str, tuple[object, ...]], shown: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Rules(**kwargs)  # type: ignore[arg-type]

    assert shown in str(caught.value)
    assert "is not an exception type" in str(caught.value)
    assert f"Rules({next(iter(kwargs))}=...)" in str(caught.value)


def test_a_bare_type_instead_of_a_tuple_gets_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Rules(transient=TimeoutError)  # type: ignore[arg-type]


def test_rules_are_values() -> None:
    assert Rules(transient=(ReadTimeout,)) == Rules(transient=(ReadTimeout,))
    assert Rules(transient=(ReadTimeout,)) != Rules(permanent=(ReadTimeout,))


# --- property: the deepest rule along a chain of subclasses wins ---------------------------


@given(st.lists(st.sampled_from([None, *ErrorClass]), min_size=1, max_size=8))
def test_the_rule_nearest_in_the_mro_wins(levels: list[ErrorClass | None]) -> None:
    # A chain Level0 <- Level1 <- ... ; each level has a rule or none.
    chain: list[type[Exception]] = []
    base: type[Exception] = PaymentDeclined
    for depth in range(len(levels)):
        base = type(f"Level{depth}", (base,), {})
        chain.append(base)
    by_class: dict[ErrorClass, tuple[type[Exception], ...]] = {k: () for k in ErrorClass}
    for cls, klass in zip(chain, levels, strict=True):
        if klass is not None:
            by_class[klass] += (cls,)
    rules = Rules(
        transient=by_class[TRANSIENT],
        permanent=by_class[PERMANENT],
        processing=by_class[PROCESSING],
    )
    deepest = next((k for k in reversed(levels) if k is not None), PROCESSING)

    assert rules.classify(chain[-1]()) is deepest
