"""redrive — production-grade Redis Streams consumers.

Retries with backoff, separate retry streams, a dead-letter stream per source stream,
crash recovery and fencing, all with atomic moves (Lua) so nothing is ever lost.

Example::

    from redrive import App, RetryPolicy

    app = App()

    @app.handler("ecommerce:orders", group="orders-service", retry=RetryPolicy(max_retries=3))
    async def handle(msg):
        print(msg.data)
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
from redrive.runtime.app import App

__all__ = [
    "App",
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
]
__version__ = "0.1.0"
