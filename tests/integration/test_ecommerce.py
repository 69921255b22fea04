"""The e-commerce example: bad payloads die at once, timeouts heal, declines exhaust retries."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from redrive import Message, RetryPolicy
from redrive.examples.ecommerce import ORDERS, PAYMENTS, build_app, ledger_key
from redrive.examples.ecommerce_traffic import plan_traffic
from tests.integration.helpers import dead_letters, running, until

FAST = RetryPolicy(max_retries=3, base_delay=0.02)


def _order(order_id: str, **extra: Any) -> bytes:
    body = {
        "order_id": order_id,
        "customer_id": "c-1",
        "items": [{"sku": "tea", "qty": 2}],
        "total_cents": 900,
        **extra,
    }
    return json.dumps(body).encode()


def _payment(payment_id: str, **extra: Any) -> bytes:
    body = {
        "payment_id": payment_id,
        "order_id": "o-1",
        "amount_cents": 900,
        "currency": "EUR",
        **extra,
    }
    return json.dumps(body).encode()


class Recorder:
    """A ledger that remembers the attempt on which each message succeeded.

    Keyed by (stream, id): two streams can hand out the same id in the same millisecond.
    """

    def __init__(self) -> None:
        self.succeeded: dict[tuple[str, str], list[int]] = {}

    async def __call__(self, msg: Message) -> None:
        self.succeeded.setdefault((msg.stream, msg.id), []).append(msg.attempt)


async def test_schema_errors_are_dead_lettered_on_the_first_attempt(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    orders, payments = prefix + ORDERS, prefix + PAYMENTS
    ledger = Recorder()
    app = build_app(redis_url, retry=FAST, breaker=None, prefix=prefix, ledger=ledger)
    no_customer = {"order_id": "o-1", "items": [{"sku": "tea", "qty": 1}], "total_cents": 1}
    bad_orders = {
        "missing field": json.dumps(no_customer).encode(),
        "wrong type": _order("o-2", total_cents="9.00"),
        "malformed": _order("o-3")[:20],
    }
    ids = {name: await aredis.xadd(orders, {"data": b}) for name, b in bad_orders.items()}
    declined_card = await aredis.xadd(payments, {"data": _payment("p-1", currency="euro")})
    good = (await aredis.xadd(orders, {"data": _order("o-4")})).decode()

    async with running(app, redis_url, block_ms=100):
        await until(lambda: (orders, good) in ledger.succeeded, what="the good order")
        await until(_dlq_len(aredis, orders, 3), what="three dead orders")
        await until(_dlq_len(aredis, payments, 1), what="one dead payment")

    dead = {d["redrive-origin-id"]: d for d in await dead_letters(aredis, orders)}
    assert {name: dead[i]["redrive-reason"] for name, i in ids.items()} == {
        "missing field": b"permanent_error",
        "wrong type": b"permanent_error",
        "malformed": b"poison",
    }
    assert all(d["redrive-attempt"] == b"1" for d in dead.values())
    assert b"customer_id" in dead[ids["missing field"]]["redrive-error-message"]
    assert b"total_cents" in dead[ids["wrong type"]]["redrive-error-message"]
    [card] = await dead_letters(aredis, payments)
    assert card["redrive-origin-id"] == declined_card
    assert (card["redrive-reason"], card["redrive-attempt"]) == (b"permanent_error", b"1")
    assert ledger.succeeded == {(orders, good): [1]}


async def test_timeouts_are_retried_until_the_gateway_answers(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    orders, payments = prefix + ORDERS, prefix + PAYMENTS
    ledger = Recorder()
    app = build_app(redis_url, retry=FAST, breaker=None, prefix=prefix, ledger=ledger)
    order = await aredis.xadd(orders, {"data": _order("o-1", simulate={"timeout_first": 2})})
    payment = await aredis.xadd(payments, {"data": _payment("p-1", simulate={"timeout_first": 2})})

    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(ledger.succeeded) == 2, what="both messages to succeed")

    assert ledger.succeeded == {(orders, order.decode()): [3], (payments, payment.decode()): [3]}
    assert await dead_letters(aredis, orders) == []


async def test_declines_exhaust_their_retries(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    payments = prefix + PAYMENTS
    app = build_app(redis_url, retry=FAST, breaker=None, prefix=prefix)
    declined = await aredis.xadd(payments, {"data": _payment("p-1", simulate={"decline": True})})
    stuck = await aredis.xadd(payments, {"data": _payment("p-2", simulate={"timeout_first": 9})})
    paid = await aredis.xadd(payments, {"data": _payment("p-3")})

    async with running(app, redis_url, block_ms=100):
        await until(_dlq_len(aredis, payments, 2), what="two dead payments")

    dead = {d["redrive-origin-id"]: d for d in await dead_letters(aredis, payments)}
    assert dead[declined]["redrive-reason"] == b"max_retries_exceeded"
    assert dead[declined]["redrive-attempt"] == b"4"  # the first attempt and 3 retries
    assert dead[declined]["redrive-error-class"] == b"processing"
    assert dead[declined]["redrive-error-type"].endswith(b"PaymentDeclined")
    assert dead[stuck]["redrive-reason"] == b"max_retries_exceeded"
    assert dead[stuck]["redrive-error-class"] == b"transient"
    # The default ledger writes to the Redis the app was served from.
    assert await aredis.hgetall(ledger_key(payments)) == {paid: b"1"}


def test_traffic_plan_is_reproducible_and_mixes_every_fault() -> None:
    first, again = plan_traffic(500, seed=3), plan_traffic(500, seed=3)
    assert [p.bodies for p in first] == [p.bodies for p in again]
    assert [p.bodies for p in first] != [p.bodies for p in plan_traffic(500, seed=4)]
    assert sum(len(p.bodies) for p in first) == 500
    kinds = first[0].kinds + first[1].kinds
    assert set(kinds) == {
        "ok", "timeout_then_ok", "timeout_exhausted", "declined",
        "malformed_json", "missing_field", "wrong_type",
    }  # fmt: skip


def _dlq_len(r: redis.asyncio.Redis, stream: str, n: int) -> Any:
    from redrive.store.keys import dlq

    async def check() -> bool:
        return int(await r.xlen(dlq(stream))) >= n

    return check
