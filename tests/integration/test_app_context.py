"""redrive.context(): handlers, middleware and hooks share one plain client per worker."""

from __future__ import annotations

import asyncio

import redis.asyncio

import redrive
from redrive import App, AppContext, ErrorClass, Message, RetryPolicy
from redrive.runtime.settings import AsyncHandler, HandlerSpec
from tests.integration.helpers import dead_letters, running, until


async def test_an_async_handler_reaches_the_workers_client_through_its_context(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()
    seen: list[AppContext] = []

    @app.on_startup
    async def started(ctx: AppContext) -> None:
        seen.append(ctx)

    @app.handler(f"{prefix}orders", group="g")
    async def handle(msg: Message) -> None:
        ctx = redrive.context()
        seen.append(ctx)
        await ctx.redis.hincrby(f"{prefix}seen", msg.id, 1)

    ids = [await aredis.xadd(f"{prefix}orders", {"data": b"{}"}) for _ in range(3)]
    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(seen) == 4, what="the hook and three runs")

    assert await aredis.hgetall(f"{prefix}seen") == {i: b"1" for i in ids}
    assert all(ctx is seen[0] for ctx in seen), "one context per worker, hooks included"
    assert seen[0].url == redis_url


async def test_middleware_sees_the_context_too(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()

    def count(spec: HandlerSpec, call_next: AsyncHandler) -> AsyncHandler:
        async def call(msg: Message) -> object:
            await redrive.context().redis.incr(f"{prefix}calls")
            return await call_next(msg)

        return call

    app.use(count)
    done = asyncio.Event()

    @app.handler(f"{prefix}s", group="g")
    async def handle(msg: Message) -> None:
        done.set()

    await aredis.xadd(f"{prefix}s", {"data": b"{}"})
    async with running(app, redis_url, block_ms=100):
        await asyncio.wait_for(done.wait(), 10)
    assert await aredis.get(f"{prefix}calls") == b"1"


async def test_a_def_handler_reaches_the_blocking_client(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    app = App()

    @app.handler(f"{prefix}s", group="g", retry=RetryPolicy(max_retries=0))
    def handle(msg: Message) -> None:
        redrive.context().sync_redis.incr(f"{prefix}sync-calls")

    await aredis.xadd(f"{prefix}s", {"data": b"{}"})
    async with running(app, redis_url, block_ms=100):
        await until(lambda: _settled(aredis, f"{prefix}sync-calls", f"{prefix}s"), what="the run")
    assert await aredis.get(f"{prefix}sync-calls") == b"1"


async def _settled(r: redis.asyncio.Redis, counter: str, stream: str) -> bool:
    return bool(await r.exists(counter)) or bool(await dead_letters(r, stream))


async def test_hooks_get_a_client_that_parses_replies_as_redis_py_does(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # The consumers' own clients skip redis-py's parsing of XREADGROUP (raw replies for
    # speed); a hook or handler reading a stream of its own must get the usual shapes.
    app = App()
    replies: list[object] = []

    @app.on_startup
    async def read_own_stream(ctx: AppContext) -> None:
        await ctx.redis.xgroup_create(f"{prefix}side", "side", id="0", mkstream=True)
        entry_id = await ctx.redis.xadd(f"{prefix}side", {"k": "v"})
        reply = await ctx.redis.xreadgroup("side", "me", {f"{prefix}side": ">"}, count=1)
        replies.append((entry_id, reply))

    @app.handler(f"{prefix}s", group="g")
    async def handle(msg: Message) -> None:
        reply = await redrive.context().redis.xreadgroup(
            "side", "me", {f"{prefix}side": "0"}, count=1
        )
        replies.append(reply)

    await aredis.xadd(f"{prefix}s", {"data": b"{}"})
    async with running(app, redis_url, block_ms=100):
        await until(lambda: len(replies) == 2, what="the hook and the handler")

    entry_id, from_hook = replies[0]  # type: ignore[misc]
    parsed = [[f"{prefix}side".encode(), [(entry_id, {b"k": b"v"})]]]
    assert from_hook == parsed
    assert replies[1] == parsed


async def test_two_apps_in_one_process_each_see_their_own_context(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    apps = [App(), App()]
    contexts: dict[int, set[int]] = {0: set(), 1: set()}
    for n, app in enumerate(apps):

        @app.handler(f"{prefix}s{n}", group="g")
        async def handle(msg: Message, n: int = n) -> None:
            contexts[n].add(id(redrive.context()))

        await aredis.xadd(f"{prefix}s{n}", {"data": b"{}"})
    async with running(apps[0], redis_url, consumer="a"), running(apps[1], redis_url, consumer="b"):
        await until(lambda: all(contexts.values()), what="both handlers")
    assert len(contexts[0]) == len(contexts[1]) == 1
    assert contexts[0] != contexts[1]


async def test_retry_by_class_for_permanent_errors_retries_them(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    # Once silently ignored; core/decision.py honours it now, and the runtime passes it on.
    app = App()
    runs: list[int] = []
    retry = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.01)

    @app.handler(f"{prefix}s", group="g", retry_by_class={ErrorClass.PERMANENT: retry})
    async def handle(msg: Message) -> None:
        runs.append(msg.attempt)
        raise KeyError("customer")  # permanent, not bad input: dead-lettered at once by default

    await aredis.xadd(f"{prefix}s", {"data": b"{}"})
    async with running(app, redis_url, block_ms=100, scheduler_interval=0.01):
        await until(lambda: _dead(aredis, f"{prefix}s"), what="the dead letter")

    [dead] = await dead_letters(aredis, f"{prefix}s")
    assert runs == [1, 2, 3]
    assert dead["redrive-reason"] == b"max_retries_exceeded"


async def _dead(r: redis.asyncio.Redis, stream: str) -> bool:
    return len(await dead_letters(r, stream)) == 1
