"""Seeded traffic for the e-commerce example: good messages and every kind of fault.

One seed gives the same messages in the same order, so a demo or simulation run can be
reproduced exactly. Each message has a *kind* whose outcome is known in advance:

=====================  =================================================  ====================
kind                   body                                               outcome
=====================  =================================================  ====================
``ok``                 valid                                              succeeds, attempt 1
``timeout_then_ok``    ``simulate.timeout_first`` = 1 or 2                succeeds after retries
``timeout_exhausted``  ``simulate.timeout_first`` = 10                    ``max_retries_exceeded``
``declined``           ``simulate.decline`` = true                        ``max_retries_exceeded``
``malformed_json``     truncated JSON                                     ``poison``
``missing_field``      a required field removed                           ``permanent_error``
``wrong_type``         a number sent as a string                          ``permanent_error``
=====================  =================================================  ====================
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redrive.examples.ecommerce import ORDERS, PAYMENTS

#: kind → (weight, expected outcome: "succeeded" or a dead-letter reason)
KINDS: dict[str, tuple[float, str]] = {
    "ok": (0.72, "succeeded"),
    "timeout_then_ok": (0.10, "succeeded"),
    "timeout_exhausted": (0.02, "max_retries_exceeded"),
    "declined": (0.04, "max_retries_exceeded"),
    "malformed_json": (0.04, "poison"),
    "missing_field": (0.04, "permanent_error"),
    "wrong_type": (0.04, "permanent_error"),
}
SKUS = ("tea", "coffee", "mug", "kettle", "filter", "grinder")
ORDER_SHARE = 0.6


@dataclass(slots=True)
class StreamTraffic:
    """The bodies planned for one stream and the outcome each kind should have."""

    stream: str
    bodies: list[bytes] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    def expected(self) -> Counter[str]:
        """How many messages should succeed and how many die, by reason."""
        out: Counter[str] = Counter()
        for kind, count in self.kinds.items():
            out[KINDS[kind][1]] += count
        return out


def plan_traffic(total: int, seed: int) -> list[StreamTraffic]:
    """``total`` messages split 60/40 between orders and payments, faults mixed in."""
    if total < 2:
        raise ValueError(f"total={total}: plan at least 2 messages (one per stream)")
    rng = random.Random(seed)
    orders = max(1, min(total - 1, round(total * ORDER_SHARE)))
    plans = [StreamTraffic(ORDERS), StreamTraffic(PAYMENTS)]
    for plan, count in zip(plans, (orders, total - orders), strict=True):
        for n in range(count):
            kind = rng.choices(list(KINDS), weights=[w for w, _ in KINDS.values()])[0]
            plan.kinds[kind] += 1
            plan.bodies.append(_body(plan.stream, n, kind, rng))
    return plans


def _body(stream: str, n: int, kind: str, rng: random.Random) -> bytes:
    text = json.dumps(shaped_body(stream, n, kind, rng), separators=(",", ":")).encode()
    if kind == "malformed_json":
        return text[: len(text) // 2]  # cut mid-object, as a crashed producer would
    return text


def shaped_body(
    stream: str, n: int, kind: str, rng: random.Random, *, digits: int = 6
) -> dict[str, Any]:
    """An order or payment shaped for ``kind``: simulated faults, a missing field, or a
    wrong type (the simulator adds its own kinds on top)."""
    if stream == ORDERS:
        body = order_body(n, rng, digits=digits)
    else:
        body = payment_body(n, rng, digits=digits)
    if kind == "timeout_then_ok":
        body["simulate"] = {"timeout_first": rng.randint(1, 2)}
    elif kind == "timeout_exhausted":
        body["simulate"] = {"timeout_first": 10}
    elif kind == "declined":
        body["simulate"] = {"decline": True}
    elif kind == "missing_field":
        del body[rng.choice(sorted(k for k in body if k.endswith("_id")))]
    elif kind == "wrong_type":
        amount = "total_cents" if stream == ORDERS else "amount_cents"
        body[amount] = f"{body[amount] / 100:.2f}"  # "12.50": a string, not cents
    return body


def order_body(n: int, rng: random.Random, *, digits: int = 6) -> dict[str, Any]:
    """A valid order (the schema of :mod:`ecommerce_schema`), numbered ``n``."""
    lines = [(rng.choice(SKUS), rng.randint(1, 5)) for _ in range(rng.randint(1, 3))]
    return {
        "order_id": f"o-{n:0{digits}d}",
        "customer_id": f"c-{rng.randrange(1000):04d}",
        "items": [{"sku": sku, "qty": qty} for sku, qty in lines],
        "total_cents": sum(qty * 450 for _, qty in lines),
    }


def payment_body(n: int, rng: random.Random, *, digits: int = 6) -> dict[str, Any]:
    """A valid payment for one of the first ``n`` orders."""
    return {
        "payment_id": f"p-{n:0{digits}d}",
        "order_id": f"o-{rng.randrange(max(1, n)):0{digits}d}",
        "amount_cents": rng.randint(100, 50_000),
        "currency": rng.choice(("EUR", "USD", "GBP")),
    }
