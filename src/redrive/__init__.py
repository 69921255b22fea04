"""redrive — production-grade Redis Streams consumers.

Retries with backoff, separate retry streams, a dead-letter stream per source stream,
crash recovery and fencing, all with atomic moves (Lua) so nothing is ever lost.

Example::

    from redrive import App, Message, RetryPolicy, WorkerOptions, context

    app = App()

    @app.handler("ecommerce:orders", group="orders-service", retry=RetryPolicy(max_retries=3))
    async def handle(msg: Message) -> None:
        await context().redis.hincrby("orders:seen", msg.id, 1)

    app.run(options=WorkerOptions(metrics=False))   # or: redrive worker module:app

The whole public API is listed in docs/api.md.
"""

from redrive.core.breaker import BreakerPolicy
from redrive.core.classify import ErrorClass, Rules
from redrive.core.idempotency import Idempotency
from redrive.core.message import Message
from redrive.core.retry import RetryPolicy
from redrive.errors import (
    ConfigError,
    DecodeError,
    HandlerTimeout,
    RedriveError,
    Reject,
    Retry,
    StoreError,
    ValidationError,
)
from redrive.runtime.app import App
from redrive.runtime.context import AppContext, Hook, context
from redrive.runtime.idempotency import EffectError, Effects
from redrive.runtime.publish import Body, PublishError, publish, publish_sync
from redrive.runtime.settings import (
    AsyncHandler,
    Handler,
    HandlerOptions,
    HandlerSpec,
    Middleware,
    WorkerOptions,
)

__all__ = [
    "App",
    "AppContext",
    "AsyncHandler",
    "Body",
    "BreakerPolicy",
    "ConfigError",
    "DecodeError",
    "EffectError",
    "Effects",
    "ErrorClass",
    "Handler",
    "HandlerOptions",
    "HandlerSpec",
    "HandlerTimeout",
    "Hook",
    "Idempotency",
    "Message",
    "Middleware",
    "PublishError",
    "RedriveError",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Rules",
    "StoreError",
    "ValidationError",
    "WorkerOptions",
    "context",
    "publish",
    "publish_sync",
]
__version__ = "0.1.0"
