"""A chaos test app: each success is one ``HINCRBY <ledger> <msg.id> 1``.

A worker subprocess imports it as ``tests.chaos.apps.ledger:app``; the environment says
what to consume and how (the handler options are read once, at import):

- ``CHAOS_REDIS_URL`` where the ledger lives (the same server the worker consumes),
- ``CHAOS_STREAM``, ``CHAOS_GROUP``, ``CHAOS_LEDGER``: keys of the test,
- ``CHAOS_VISIBILITY`` (s), ``CHAOS_MAX_DELIVERIES``, ``CHAOS_CONCURRENCY``,
  ``CHAOS_PREFETCH``: handler options,
- ``CHAOS_SLEEP`` (s): how long each message takes, so a batch is in flight;
  ``CHAOS_SLEEP_CAP`` (s) caps it, so a restarted worker gets through slow messages,
- ``CHAOS_WORKER``: the worker's name; successes are also counted per worker in
  ``<ledger>:<worker>``, so a test can tell who handled what.

The message body steers one message: ``{"sleep": 0.5}`` overrides the sleep and
``{"crash": true}`` makes the handler kill its worker (``os._exit(1)``) on every delivery.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio

from redrive import App, Message, RetryPolicy

STREAM = os.environ.get("CHAOS_STREAM", "chaos:orders")
GROUP = os.environ.get("CHAOS_GROUP", "chaos")
LEDGER = os.environ.get("CHAOS_LEDGER", "chaos:ledger")
SLEEP = float(os.environ.get("CHAOS_SLEEP", "0"))
SLEEP_CAP = float(os.environ.get("CHAOS_SLEEP_CAP", "inf"))
WORKER = os.environ.get("CHAOS_WORKER", "anonymous")

app = App()
_ledger: list[redis.asyncio.Redis] = []


def _client() -> redis.asyncio.Redis:
    if not _ledger:
        _ledger.append(redis.asyncio.Redis.from_url(os.environ["CHAOS_REDIS_URL"]))
    return _ledger[0]


@app.handler(
    STREAM,
    group=GROUP,
    retry=RetryPolicy(max_retries=3, base_delay=0.05),
    breaker=None,
    visibility_timeout=float(os.environ.get("CHAOS_VISIBILITY", "60")),
    max_deliveries=int(os.environ.get("CHAOS_MAX_DELIVERIES", "5")),
    concurrency=int(os.environ.get("CHAOS_CONCURRENCY", "4")),
    prefetch=int(os.environ.get("CHAOS_PREFETCH", "8")),
)
async def handle(msg: Message) -> None:
    """Take ``sleep`` seconds, crash if told to, else record the success in the ledger."""
    body = msg.data if isinstance(msg.data, dict) else {}
    if body.get("crash"):
        os._exit(1)  # a segfault, an OOM kill: no except, no finally, no flush
    await asyncio.sleep(min(float(body.get("sleep", SLEEP)), SLEEP_CAP))
    async with _client().pipeline(transaction=True) as pipe:
        pipe.hincrby(LEDGER, msg.id, 1)
        pipe.hincrby(f"{LEDGER}:{WORKER}", msg.id, 1)
        await pipe.execute()
