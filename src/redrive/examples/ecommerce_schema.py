"""Message schemas of the e-commerce example: small typed dataclasses, checked by hand.

Every ``parse`` raises :class:`~redrive.errors.ValidationError` for a missing or wrongly
typed field, which redrive classifies as permanent: the message goes to the dead-letter
stream at once (reason ``permanent_error``), since retrying cannot fix a bad payload.

Example::

    order = Order.parse({"order_id": "o-1", "customer_id": "c-9",
                         "items": [{"sku": "tea", "qty": 2}], "total_cents": 800})
    order.simulate.timeout_first   # 0: no simulated faults
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redrive.errors import ValidationError

T = TypeVar("T")
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _field(data: Mapping[str, Any], name: str, kind: type[T], what: str) -> T:
    if name not in data:
        raise ValidationError(f"{what}: missing field {name!r}")
    return _typed(data[name], kind, f"{what}: field {name!r}")


def _typed(value: object, kind: type[T], where: str) -> T:
    # bool is a subclass of int in Python but not a number in a JSON schema.
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        raise ValidationError(f"{where} must be {expected}, got {type(value).__name__}")
    return value


def _non_empty(value: str, where: str) -> str:
    if not value.strip():
        raise ValidationError(f"{where} must not be empty")
    return value


@dataclass(frozen=True, slots=True)
class Simulate:
    """Faults a message asks the fake services to produce (for demos and tests).

    ``timeout_first=N`` makes the gateway time out on attempts 1..N and answer after;
    ``decline=True`` makes the business rule fail on every attempt (payment declined,
    out of stock). Decided by the attempt number alone, so runs are reproducible.
    """

    timeout_first: int = 0
    decline: bool = False

    @classmethod
    def parse(cls, value: object) -> Simulate:
        """The ``simulate`` object of a message; absent means no faults."""
        if value is None:
            return cls()
        data = _mapping(value, "simulate")
        unknown = set(data) - {"timeout_first", "decline"}
        if unknown:
            raise ValidationError(f"simulate: unknown keys {sorted(unknown)}")
        timeout_first = _typed(data.get("timeout_first", 0), int, "simulate.timeout_first")
        if timeout_first < 0:
            raise ValidationError("simulate.timeout_first must be >= 0")
        return cls(timeout_first, _typed(data.get("decline", False), bool, "simulate.decline"))


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of an order."""

    sku: str
    qty: int

    @classmethod
    def parse(cls, value: object, index: int) -> LineItem:
        """Validate ``items[index]``."""
        what = f"order.items[{index}]"
        data = _mapping(value, what)
        qty = _field(data, "qty", int, what)
        if qty < 1:
            raise ValidationError(f"{what}: field 'qty' must be >= 1, got {qty}")
        return cls(_non_empty(_field(data, "sku", str, what), f"{what}.sku"), qty)


@dataclass(frozen=True, slots=True)
class Order:
    """An order placed by a customer (stream ``ecommerce:orders``)."""

    order_id: str
    customer_id: str
    items: tuple[LineItem, ...]
    total_cents: int
    simulate: Simulate

    @classmethod
    def parse(cls, data: object) -> Order:
        """Validate a decoded order body; raise :class:`ValidationError` if it is bad."""
        body = _mapping(data, "order")
        raw_items = _field(body, "items", list, "order")
        if not raw_items:
            raise ValidationError("order: field 'items' must not be empty")
        total = _field(body, "total_cents", int, "order")
        if total < 0:
            raise ValidationError(f"order: field 'total_cents' must be >= 0, got {total}")
        return cls(
            order_id=_non_empty(_field(body, "order_id", str, "order"), "order.order_id"),
            customer_id=_field(body, "customer_id", str, "order"),
            items=tuple(LineItem.parse(item, i) for i, item in enumerate(raw_items)),
            total_cents=total,
            simulate=Simulate.parse(body.get("simulate")),
        )


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment for an order (stream ``ecommerce:payments``)."""

    payment_id: str
    order_id: str
    amount_cents: int
    currency: str
    simulate: Simulate

    @classmethod
    def parse(cls, data: object) -> Payment:
        """Validate a decoded payment body; raise :class:`ValidationError` if it is bad."""
        body = _mapping(data, "payment")
        amount = _field(body, "amount_cents", int, "payment")
        if amount < 1:
            raise ValidationError(f"payment: field 'amount_cents' must be >= 1, got {amount}")
        currency = _field(body, "currency", str, "payment")
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise ValidationError(f"payment: currency {currency!r} is not an ISO code like 'EUR'")
        return cls(
            payment_id=_non_empty(_field(body, "payment_id", str, "payment"), "payment.payment_id"),
            order_id=_field(body, "order_id", str, "payment"),
            amount_cents=amount,
            currency=currency,
            simulate=Simulate.parse(body.get("simulate")),
        )
