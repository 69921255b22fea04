"""redrive — production-grade Redis Streams consumers.

Retries with backoff, separate retry streams, a dead-letter stream per source stream,
crash recovery and fencing, all with atomic moves (Lua) so nothing is ever lost.

Example::

    from redrive import App, RetryPolicy

    app = App()

    @app.handler("ecommerce:orders", group="orders-service", retry=RetryPolicy(max_retries=3))
    async def handle(msg):
        print(msg.data)

    app.run(options=WorkerOptions(metrics=False))   # or: redrive worker module:app
"""

from redrive.core.breaker import BreakerPolicy
from redrive.core.classify import ErrorClass, Rules
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
from redrive.runtime.app import App, AppContext
from redrive.runtime.settings import WorkerOptions

__all__ = [
    "App",
    "AppContext",
    "BreakerPolicy",
    "ConfigError",
    "DecodeError",
    "ErrorClass",
    "HandlerTimeout",
    "Message",
    "RedriveError",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Rules",
    "StoreError",
    "ValidationError",
    "WorkerOptions",
]
__version__ = "0.1.0"
