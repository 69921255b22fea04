"""Middleware wraps every handler (async and def alike); hooks see the worker's Redis."""

from __future__ import annotations

import json

import redis.asyncio

from redrive import App, RetryPolicy
from redrive.runtime.app import AppContext
from redrive.runtime.settings import AsyncHandler, HandlerSpec
from tests.integration.helpers import dead_letters, running, until


async def test_middleware_wraps_async_and_sync_handlers_in_order(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()
    trail: list[str] = []

    def tag(name: str):  # type: ignore[no-untyped-def]
        def middleware(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
            async def call(msg):  # type: ignore[no-untyped-def]
                trail.append(f"{name}>{spec.stream.removeprefix(prefix)}")
                return await call_next(msg)

            return call

        return middleware

    app.use(tag("outer"))
    app.use(tag("inner"))

    @app.handler(f"{prefix}a", group="g")
    async def handle_a(msg):  # type: ignore[no-untyped-def]
        trail.append("a")

    @app.handler(f"{prefix}b", group="g")
    def handle_b(msg):  # type: ignore[no-untyped-def]
        trail.append("b")

    await aredis.xadd(f"{prefix}a", {"data": b"{}"})
    await aredis.xadd(f"{prefix}b", {"data": b"{}"})
    async with running(app, redis_url):
        await until(lambda: "a" in trail and "b" in trail, what="both handlers")
    assert trail[trail.index("a") - 2 : trail.index("a") + 1] == ["outer>a", "inner>a", "a"]
    assert trail[trail.index("b") - 2 : trail.index("b") + 1] == ["outer>b", "inner>b", "b"]


async def test_a_middleware_failure_is_a_handler_failure(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()

    def refuse(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        async def call(msg):  # type: ignore[no-untyped-def]
            raise ValueError("middleware said no")

        return call

    app.use(refuse)

    @app.handler(f"{prefix}s", group="g", retry=RetryPolicy(max_retries=0))
    async def handle(msg):  # type: ignore[no-untyped-def]
        raise AssertionError("never reached")

    await aredis.xadd(f"{prefix}s", {"data": b"{}"})
    async with running(app, redis_url):
        await until(lambda: _one_dead(aredis, f"{prefix}s"), what="the dead letter")
    [dead] = await dead_letters(aredis, f"{prefix}s")
    assert dead["redrive-error-message"] == b"middleware said no"


async def test_hooks_get_the_workers_client_before_and_after_consuming(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()
    events: list[str] = []

    @app.on_startup
    async def started(ctx: AppContext) -> None:
        await ctx.redis.set(f"{prefix}started", ctx.url)
        events.append("startup")

    @app.on_shutdown
    async def stopped(ctx: AppContext) -> None:
        events.append("shutdown")

    @app.handler(f"{prefix}s", group="g")
    async def handle(msg):  # type: ignore[no-untyped-def]
        events.append(json.dumps(msg.data))

    await aredis.xadd(f"{prefix}s", {"data": b'{"n": 1}'})
    async with running(app, redis_url):
        await until(lambda: len(events) >= 2, what="startup and the message")
    assert events == ["startup", '{"n": 1}', "shutdown"]
    assert await aredis.get(f"{prefix}started") == redis_url.encode()


async def _one_dead(r: redis.asyncio.Redis, stream: str) -> bool:
    return len(await dead_letters(r, stream)) == 1
