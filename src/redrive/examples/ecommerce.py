"""The e-commerce example: an orders service and a payments service.

Each handler does what a real service does, and fails the way real services fail:

1. validate the body (:mod:`~redrive.examples.ecommerce_schema`): a missing or wrongly typed
   field raises ``ValidationError`` → permanent → dead-lettered at once;
2. call a dependency (inventory, payment gateway) that may time out: the builtin
   ``TimeoutError`` → transient → retried with backoff;
3. apply a business rule that may fail (:class:`OutOfStock`, :class:`PaymentDeclined`) →
   a processing error → retried, then dead-lettered with ``max_retries_exceeded``;
4. record the effect in a ledger (``HINCRBY redrive:demo:ledger:{S} <origin id> 1``), so
   a reconciliation can count what succeeded, and how often (duplicates).

Faults are controllable per message through its ``simulate`` object, e.g.
``{"simulate": {"timeout_first": 2}}`` (time out twice, then succeed) or
``{"simulate": {"decline": true}}`` (always fail the business rule).

Run it::

    redrive worker redrive.examples.ecommerce:app
    redrive publish ecommerce:orders --data '{"order_id": "o-1", "customer_id": "c-1",
        "items": [{"sku": "tea", "qty": 1}], "total_cents": 450}'
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path

import redis.asyncio

from redrive.core import fields
from redrive.core.breaker import BreakerPolicy
from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import ConfigError
from redrive.examples.ecommerce_schema import Order, Payment, Simulate
from redrive.runtime.app import App, AppContext
from redrive.store.keys import hash_tag

Handler = Callable[[Message], Awaitable[None]]

ORDERS = "ecommerce:orders"
ORDERS_GROUP = "orders-service"
PAYMENTS = "ecommerce:payments"
PAYMENTS_GROUP = "payments-service"
STREAMS = ((ORDERS, ORDERS_GROUP), (PAYMENTS, PAYMENTS_GROUP))

#: Environment knobs read by :func:`build_app` (the demo sets them for its workers).
ENV_BASE_DELAY = "REDRIVE_DEMO_BASE_DELAY"
ENV_SEED = "REDRIVE_DEMO_SEED"
ENV_BREAKER_OPEN = "REDRIVE_DEMO_BREAKER_OPEN"
ENV_PREFIX = "REDRIVE_DEMO_PREFIX"  # put before both stream names by the module's ``app``

MAX_QTY_IN_STOCK = 100
CARD_LIMIT_CENTS = 1_000_000


class _Default(Enum):
    FROM_ENV = "from the environment"


FROM_ENV = _Default.FROM_ENV

#: Records one successful handling of a message (by ``msg.stream`` and ``msg.id``).
Ledger = Callable[[Message], Awaitable[None]]


class OutOfStock(Exception):
    """The inventory cannot reserve an order's items (a processing error: retried)."""


class PaymentDeclined(Exception):
    """The payment gateway declined a charge (a processing error: retried)."""


def ledger_key(stream: str) -> str:
    """The ledger hash of ``stream``: ``redrive:demo:ledger:{S}``, field = origin id."""
    return "redrive:demo:ledger:" + hash_tag(stream)


class FakeGateway:
    """An in-process stand-in for a remote service, with seeded latency.

    The latency of a call depends only on (seed, service, key, attempt), so two runs with
    one seed behave the same whichever worker handles a message.
    """

    def __init__(self, service: str, *, seed: int = 0, max_latency: float = 0.002) -> None:
        if max_latency < 0:
            raise ConfigError(f"max_latency={max_latency!r}: use seconds >= 0")
        self.service = service
        self.seed = seed
        self.max_latency = max_latency

    async def call(self, key: str, attempt: int, simulate: Simulate) -> None:
        """Wait the simulated latency; raise ``TimeoutError`` on the attempts asked for."""
        rng = random.Random(f"{self.seed}:{self.service}:{key}:{attempt}")
        latency = rng.uniform(0.0, self.max_latency)
        await asyncio.sleep(latency)
        if attempt <= simulate.timeout_first:
            raise TimeoutError(
                f"{self.service} did not answer for {key} (attempt {attempt}, "
                f"simulated timeout_first={simulate.timeout_first})"
            )


def reserve_stock(order: Order) -> None:
    """The inventory's business rule: raise :class:`OutOfStock` if it cannot reserve."""
    if order.simulate.decline:
        raise OutOfStock(f"order {order.order_id}: items out of stock (simulated)")
    for item in order.items:
        if item.qty > MAX_QTY_IN_STOCK:
            raise OutOfStock(f"order {order.order_id}: only {MAX_QTY_IN_STOCK} of {item.sku}")


def authorize(payment: Payment) -> None:
    """The gateway's business rule: raise :class:`PaymentDeclined` if it declines."""
    if payment.simulate.decline:
        raise PaymentDeclined(f"payment {payment.payment_id} declined (simulated)")
    if payment.amount_cents > CARD_LIMIT_CENTS:
        raise PaymentDeclined(f"payment {payment.payment_id} is over the card limit")


class RedisLedger:
    """The default ledger: ``HINCRBY`` on the Redis the worker consumes from.

    It is connected by the app's start-up hook (:meth:`connect`), which hands it the
    worker's shared application client (``AppContext.redis``): the same server, one pool
    for every hook and handler of the process.
    """

    def __init__(self) -> None:
        self.client: redis.asyncio.Redis | None = None

    async def connect(self, ctx: AppContext) -> None:
        """Start-up hook: write to the worker's Redis."""
        self.client = ctx.redis

    async def __call__(self, msg: Message) -> None:
        """Count one successful handling of ``msg`` (by its origin id)."""
        if self.client is None:
            raise ConfigError("the ledger is used before the worker started")
        await self.client.hincrby(ledger_key(msg.stream), msg.id, 1)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: use a number") from None


def default_retry() -> RetryPolicy:
    """3 retries; the base delay comes from ``REDRIVE_DEMO_BASE_DELAY`` (default 1 s)."""
    base = _env_float(ENV_BASE_DELAY, 1.0)
    return RetryPolicy(max_retries=3, base_delay=base, max_delay=max(base, 30.0))


def default_breaker() -> BreakerPolicy:
    """The default breaker, open for ``REDRIVE_DEMO_BREAKER_OPEN`` seconds (default 5).

    The demo shortens it: its simulated timeouts come back in bursts (every retry of a
    burst is due at once), which can trip the breaker, and a 5 s pause would dwarf a
    demo that otherwise settles in about two seconds.
    """
    return BreakerPolicy(open_seconds=_env_float(ENV_BREAKER_OPEN, 5.0))


def build_app(
    redis_url: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    breaker: BreakerPolicy | _Default | None = FROM_ENV,
    seed: int | None = None,
    max_latency: float = 0.002,
    concurrency: int = 16,
    ledger: Ledger | None = None,
    data_dir: Path | None = None,
    prefix: str = "",
) -> App:
    """Build the orders and payments services as one app.

    Example::

        app = build_app("redis://localhost:6379/0", retry=RetryPolicy(base_delay=0.1))
        await app.serve(stop=stop_event)

    ``redis_url=None`` resolves the URL when the app is served. ``ledger`` replaces the
    Redis ledger (any ``async (msg)`` callable). ``retry``, ``breaker`` (``None``
    disables it) and ``seed`` default to :func:`default_retry`, :func:`default_breaker`
    and ``REDRIVE_DEMO_SEED`` (0). ``prefix`` is put before both stream names, so tests
    and simulations can run side by side.
    """
    app = App(redis_url, data_dir=data_dir)
    if ledger is None:
        default = RedisLedger()
        app.on_startup(default.connect)
        ledger = default
    seed = int(_env_float(ENV_SEED, 0)) if seed is None else seed
    register = functools.partial(
        app.handler,
        retry=retry or default_retry(),
        breaker=default_breaker() if breaker is FROM_ENV else breaker,
        concurrency=concurrency,
    )
    inventory = FakeGateway("inventory", seed=seed, max_latency=max_latency)
    gateway = FakeGateway("payment-gateway", seed=seed, max_latency=max_latency)
    _add_services(register, prefix, inventory, gateway, ledger)
    return app


def _add_services(
    register: Callable[..., Callable[[Handler], Handler]],
    prefix: str,
    inventory: FakeGateway,
    gateway: FakeGateway,
    ledger: Ledger,
) -> None:
    """Register the orders and payments handlers (``register`` = ``app.handler`` + options)."""

    @register(prefix + ORDERS, group=ORDERS_GROUP)
    async def handle_order(msg: Message) -> None:
        order = Order.parse(msg.data)
        await inventory.call(order.order_id, _gateway_attempt(msg), order.simulate)
        reserve_stock(order)
        await ledger(msg)

    @register(prefix + PAYMENTS, group=PAYMENTS_GROUP)
    async def handle_payment(msg: Message) -> None:
        payment = Payment.parse(msg.data)
        await gateway.call(payment.payment_id, _gateway_attempt(msg), payment.simulate)
        authorize(payment)
        await ledger(msg)


def _gateway_attempt(msg: Message) -> int:
    """The attempt as the fake gateway sees it: a replayed message arrives after the
    simulated outage is over (an operator replays once the dependency is back), so it
    is past every ``timeout_first``."""
    return msg.attempt if msg.meta.get(fields.REPLAYS.meta, "0") == "0" else 1_000_000


#: The app ``redrive worker redrive.examples.ecommerce:app`` runs. Nothing is resolved at
#: import: the Redis URL is chosen when the worker starts. ``redrive demo`` sets
#: ``REDRIVE_DEMO_PREFIX`` (``demo:``) so its workers read its own streams.
app = build_app(prefix=os.environ.get(ENV_PREFIX, ""))
