"""OpenTelemetry spans across real Redis: one message's whole story, end to end.

produce -> fail -> retry -> dead letter -> replay -> success: every span named, of its
kind, with its key attributes, parents and links, all reachable from the producer's trace;
a message published by plain redis-py is traced from the worker on. Each test has its own
SDK provider with an in-memory exporter, passed to ``App`` (never the global provider).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence

import pytest
import redis
import redis.asyncio

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from redrive import App, Idempotency, RetryPolicy, dlq, publish, publish_sync
from redrive.core import fields as f
from redrive.dlq import view
from redrive.dlq.fingerprint import fingerprint
from redrive.store import keys
from tests.integration.dlq_support import record, run_cli
from tests.integration.helpers import dead_letters, running, until


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def _ids(span: ReadableSpan) -> tuple[int, int]:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.trace_id, ctx.span_id


def _parent(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def _links(span: ReadableSpan) -> dict[str, tuple[int, int]]:
    return {str(link.attributes["redrive.link"]): (link.context.trace_id, link.context.span_id)
            for link in span.links if link.attributes}  # fmt: skip


def _reachable(spans: Sequence[ReadableSpan], trace_id: int) -> set[tuple[int, int]]:
    """Spans reachable from ``trace_id`` over parent and link edges (either direction)."""
    edges: dict[tuple[int, int], set[tuple[int, int]]] = {_ids(s): set() for s in spans}
    for s in spans:
        for other in [*([_parent(s)] if _parent(s) else []), *_links(s).values()]:
            assert other is not None
            edges[_ids(s)].add(other)
            edges.setdefault(other, set()).add(_ids(s))
    seen = {ids for ids in edges if ids[0] == trace_id}
    todo = list(seen)
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _story_app(stream: str, provider: TracerProvider, broken: dict[str, bool]) -> App:
    app = App(tracer_provider=provider)
    policy = RetryPolicy(max_retries=1, base_delay=0.05, jitter="none")

    @app.handler(stream, group="billing", retry=policy, breaker=None)
    async def charge(msg):  # type: ignore[no-untyped-def]
        if broken["gateway"]:
            raise ConnectionError(f"gateway down for order {msg.data['order']}")

    return app


async def test_a_message_story_is_one_connected_graph_of_spans(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    provider, exporter = _provider()
    broken = {"gateway": True}
    client = dlq.connect(redis_url)
    async with running(_story_app(stream, provider, broken), redis_url):
        with provider.get_tracer("shop").start_as_current_span("checkout") as checkout:
            [msg_id] = await publish(aredis, stream, [{"order": 7}])
        await until(lambda: _count(aredis, stream), what="the dead letter")
        await until(lambda: bool(_named(exporter.get_finished_spans(), f"dead_letter {stream}")),
                    what="the dead_letter span to end")  # fmt: skip
        [dead] = (await dlq.list_dead_letters(client, dlq.Filter(streams=(stream,)))).entries
        broken["gateway"] = False
        which = dlq.Filter(streams=(stream,), ids=(dead.id,))
        report = await dlq.replay(client, which, dlq.ReplayOptions(), tracer_provider=provider)
        await until(lambda: len(_named(exporter.get_finished_spans(), f"process {stream}")) == 3,
                    what="the replayed run")  # fmt: skip
    await client.aclose()
    spans = exporter.get_finished_spans()
    origin = _ids(checkout)  # type: ignore[arg-type]
    first, second, replayed = _named(spans, f"process {stream}")
    [retry] = _named(spans, f"retry {stream}")
    [dead_span] = _named(spans, f"dead_letter {stream}")
    [replay] = _named(spans, f"replay {keys.dlq(stream)}")
    [send] = _named(spans, f"send {keys.retry_stream(stream, 'billing')}")

    # The first run continues the producer's trace; its failure schedules a retry.
    assert first.kind is SpanKind.CONSUMER and _parent(first) == origin
    assert first.attributes is not None and {
        k: first.attributes[k]
        for k in ("messaging.system", "messaging.destination.name", "messaging.consumer.group.name",
                  "messaging.message.id", "messaging.operation.type", "redrive.attempt",
                  "redrive.delivery_count", "redrive.outcome", "error.type")
    } == {"messaging.system": "redis", "messaging.destination.name": stream,
          "messaging.consumer.group.name": "billing", "messaging.message.id": msg_id,
          "messaging.operation.type": "process", "redrive.attempt": 1,
          "redrive.delivery_count": 1, "redrive.outcome": "retry_scheduled",
          "error.type": "ConnectionError"}  # fmt: skip
    assert retry.kind is SpanKind.CLIENT and _parent(retry) == _ids(first)
    assert retry.attributes is not None and retry.attributes["redrive.delay_ms"] == 50
    assert retry.attributes["redrive.reason"] == "transient"
    assert retry.attributes["redrive.fence"] == "moved"
    # The retry is a new trace, linked to where the message was made and to attempt 1.
    assert second.parent is None and _ids(second)[0] != origin[0]
    assert _links(second) == {"creation": origin, "previous_attempt": _ids(first)}
    assert second.attributes is not None and second.attributes["redrive.attempt"] == 2
    assert second.attributes["redrive.outcome"] == "dead_lettered"
    assert dead_span.kind is SpanKind.CLIENT and _parent(dead_span) == _ids(second)
    assert dead_span.attributes is not None
    assert dead_span.attributes["redrive.reason"] == "max_retries_exceeded"
    assert dead_span.attributes["redrive.fingerprint"] == fingerprint(dead)
    assert retry.attributes["redrive.fingerprint"] == fingerprint(dead), "one kind of failure"
    # The dead letter names its span; the producer's context travelled unchanged.
    shown = view.detail(dead)["trace"]
    assert (int(shown["trace_id"], 16), int(shown["span_id"], 16)) == _ids(dead_span)
    assert int(shown["origin_trace_id"], 16) == origin[0]
    # The replay: one operation span, a send per message linked to its past.
    assert report.moved and replay.kind is SpanKind.INTERNAL and replay.parent is None
    assert send.kind is SpanKind.PRODUCER and _parent(send) == _ids(replay)
    assert _links(send) == {"creation": origin, "dead_letter": _ids(dead_span)}
    assert replayed.parent is None and _links(replayed) == {
        "creation": origin,
        "replay": _ids(send),
    }
    assert replayed.attributes is not None and replayed.attributes["redrive.outcome"] == "succeeded"
    assert replayed.attributes["messaging.message.id"] == msg_id
    story = [first, second, replayed, retry, dead_span, replay, send]
    assert {_ids(s) for s in story} <= _reachable(spans, origin[0])


async def test_a_message_from_plain_redis_py_is_traced_from_the_worker_on(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    provider, exporter = _provider()
    app = App(tracer_provider=provider)
    runs: list[int] = []

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=2, base_delay=0), breaker=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        runs.append(msg.attempt)
        if msg.attempt == 1:
            raise TimeoutError("slow")

    async with running(app, redis_url):
        await aredis.xadd(stream, {"data": json.dumps({"n": 1})})  # no context at all
        await until(lambda: len(_named(exporter.get_finished_spans(), f"process {stream}")) == 2,
                    what="two runs")  # fmt: skip
    first, second = _named(exporter.get_finished_spans(), f"process {stream}")
    assert runs == [1, 2]
    assert first.parent is None and not first.links, "a trace starts at the worker"
    assert _links(second) == {"previous_attempt": _ids(first)}, "no creation context to link"
    assert second.attributes is not None and second.attributes["redrive.outcome"] == "succeeded"
    [retry] = _named(exporter.get_finished_spans(), f"retry {stream}")
    assert retry.attributes is not None and retry.attributes["messaging.destination.name"] == (
        keys.retry_stream(stream, "g")
    ), "a retry without delay goes straight to the retry stream"


async def test_a_handlers_own_spans_and_publishes_continue_its_run(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis, r: redis.Redis
) -> None:
    """A ``def`` handler (thread pool) sees its run's span as the current one: its spans
    nest under it and what it publishes continues its trace."""
    orders, emails = f"{prefix}orders", f"{prefix}emails"
    provider, exporter = _provider()
    tracer = provider.get_tracer("shop")
    app = App(tracer_provider=provider)

    @app.handler(orders, group="g", breaker=None)
    def charge(msg):  # type: ignore[no-untyped-def]
        with tracer.start_as_current_span("charge card"):
            pass
        publish_sync(r, emails, [{"to": "a@b.c"}])

    @app.handler(emails, group="g", breaker=None)
    async def email(msg):  # type: ignore[no-untyped-def]
        return None

    async with running(app, redis_url):
        await aredis.xadd(orders, {"data": b"{}"})
        await until(lambda: bool(_named(exporter.get_finished_spans(), f"process {emails}")),
                    what="the e-mail's run")  # fmt: skip
    spans = exporter.get_finished_spans()
    [run] = _named(spans, f"process {orders}")
    [card] = _named(spans, "charge card")
    [sent] = _named(spans, f"process {emails}")
    assert _parent(card) == _ids(run) and _parent(sent) == _ids(run)


async def test_a_reclaimed_entry_carries_its_delivery_count(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    provider, exporter = _provider()
    app = App(tracer_provider=provider)

    @app.handler(stream, group="g", visibility_timeout=0.3, breaker=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        return None

    await aredis.xgroup_create(stream, "g", id="0", mkstream=True)
    await aredis.xadd(stream, {"data": b"{}"})
    await aredis.xreadgroup("g", "crashed", {stream: ">"}, count=1)  # read, never settled
    async with running(app, redis_url):
        await until(lambda: bool(_named(exporter.get_finished_spans(), f"process {stream}")),
                    what="the reclaimed run")  # fmt: skip
    [run] = _named(exporter.get_finished_spans(), f"process {stream}")
    assert run.attributes is not None and run.attributes["redrive.delivery_count"] == 2


async def test_tracing_beside_idempotency(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    """An idempotent handler is traced too: a duplicate's run is a span (acked without
    running the handler), and a dead letter carries its trace beside its idempotency key."""
    stream = f"{prefix}payments"
    provider, exporter = _provider()
    app = App(tracer_provider=provider)
    keyed = Idempotency(key=lambda msg: msg.data["order_id"], ttl=86_400.0)
    runs: list[str] = []

    @app.handler(stream, group="pay", idempotency=keyed, dlq_max_age=43_200.0,
                 retry=RetryPolicy(max_retries=0), breaker=None)  # fmt: skip
    async def pay(msg):  # type: ignore[no-untyped-def]
        runs.append(msg.data["order_id"])
        if msg.data["order_id"] == "bad":
            raise ValueError("declined")

    async with running(app, redis_url):
        for order in ("o-1", "o-1", "bad"):
            await aredis.xadd(stream, {"data": json.dumps({"order_id": order})})
        await until(lambda: _count(aredis, stream), what="the dead letter")
        await until(lambda: len(_named(exporter.get_finished_spans(), f"process {stream}")) == 3,
                    what="three runs")  # fmt: skip
    assert sorted(runs) == ["bad", "o-1"], "the duplicate did not run the handler"
    runs_spans = _named(exporter.get_finished_spans(), f"process {stream}")
    outcomes = [s.attributes["redrive.outcome"] for s in runs_spans if s.attributes]
    assert sorted(outcomes) == ["dead_lettered", "succeeded", "succeeded"]
    [dead] = await dead_letters(aredis, stream)
    assert f.trace_ids(dead[f.TRACEPARENT.name]) and dead[f.IDEMPOTENCY_KEY.name]


async def test_a_producer_written_redrive_context_is_ignored(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    """A source stream's ``redrive-*`` fields are untrusted: a forged ``redrive-traceparent``
    neither parents nor links the run."""
    stream = f"{prefix}orders"
    provider, exporter = _provider()
    app = App(tracer_provider=provider)

    @app.handler(stream, group="g", retry=RetryPolicy(max_retries=0), breaker=None)
    async def handle(msg):  # type: ignore[no-untyped-def]
        raise ValueError("bad")

    forged = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    async with running(app, redis_url, trace_child_of_producer=False):
        await aredis.xadd(stream, {"data": b"{}", f.TRACEPARENT.name: forged})
        await until(lambda: _count(aredis, stream), what="the dead letter")
        await until(lambda: bool(_named(exporter.get_finished_spans(), f"dead_letter {stream}")),
                    what="the dead_letter span")  # fmt: skip
    [run] = _named(exporter.get_finished_spans(), f"process {stream}")
    assert run.parent is None and not run.links
    [dead] = await dead_letters(aredis, stream)
    assert dead[f.TRACEPARENT.name].decode() != forged


async def test_dlq_show_prints_the_trace_and_its_link(
    redis_url: str, prefix: str, aredis: redis.asyncio.Redis
) -> None:
    stream = f"{prefix}orders"
    own = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    producer = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    flat = [*record(stream, "1-0", fields={b"data": b"{}", b"traceparent": producer.encode()}),
            f.TRACEPARENT.name, own]  # fmt: skip
    dead_id = (await aredis.execute_command("XADD", keys.dlq(stream), "*", *flat)).decode()
    await aredis.sadd(keys.STREAMS_INDEX, stream)
    url = "https://tempo.example/trace/{trace_id}"

    code, out, _ = await _cli(redis_url, "dlq", "show", f"{stream}@{dead_id}", "--trace-url", url)
    assert code == 0
    assert f"trace: {'1' * 32}  span: {'2' * 16}" in out
    assert f"https://tempo.example/trace/{'1' * 32}" in out
    assert "producer's trace: 0af7651916cd43dd8448eb211c80319c" in out
    code, out, _ = await _cli(redis_url, "dlq", "show", f"{stream}@{dead_id}", "--json")
    assert code == 0 and json.loads(out)["trace"]["trace_id"] == "1" * 32
    code, out, err = await _cli(redis_url, "dlq", "show", dead_id, "--trace-url", "x/{trace}")
    assert code == 2 and "--trace-url" in err and "Traceback" not in err


async def _cli(url: str, *argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run_cli, ["--redis-url", url, *argv])


async def _count(r: redis.asyncio.Redis, stream: str) -> bool:
    return bool(await r.xlen(keys.dlq(stream)))
