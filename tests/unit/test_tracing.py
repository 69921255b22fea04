"""Tracing without Redis: when it is on, trace ids, the context fields, span parents."""

from __future__ import annotations

import click
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from redrive import App, ConfigError
from redrive.cli.dlq_render import check_trace_url, trace_links
from redrive.core import fields as f
from redrive.core.records import Failure
from redrive.dlq.model import DeadLetter
from redrive.dlq.view import trace_of
from redrive.runtime import tracing
from redrive.runtime.publish import trace_context
from redrive.runtime.settings import WorkerOptions
from redrive.runtime.source import Source
from redrive.runtime.worker import tracer_of

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FAILURE = Failure("TimeoutError", "transient", "slow", "", 1, "c1", 1.0)


def _sdk(**kw: object) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(**kw)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _tracing(provider: TracerProvider, child_of_producer: bool = True) -> tracing.ConsumerTracing:
    tracer = tracing.tracer_for(provider)
    assert tracer is not None
    return tracing.ConsumerTracing(
        tracer, stream="s", group="g", consumer="c", child_of_producer=child_of_producer
    )


def test_trace_ids_of_a_traceparent() -> None:
    assert f.trace_ids(PARENT) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert f.trace_ids(PARENT.encode()) == f.trace_ids(PARENT)
    for bad in (None, "", "00-abc-def-01", "00-" + "0" * 32 + "-b7ad6b7169203331-01",
                "00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01"):  # fmt: skip
        assert f.trace_ids(bad) is None, bad


def test_tracing_is_on_only_when_something_records() -> None:
    provider, _ = _sdk()
    assert tracing.tracer_for(None) is None, "no global provider set: off"
    assert tracing.tracer_for(trace.NoOpTracerProvider()) is None
    assert tracing.tracer_for(provider) is not None
    assert tracer_of(provider, WorkerOptions(tracing=False)) is None
    assert tracer_of(None, WorkerOptions()) is None
    with pytest.raises(ConfigError, match="TracerProvider"):
        App(tracer_provider=object())


def test_own_context_round_trips_through_fields() -> None:
    provider, _ = _sdk()
    span = provider.get_tracer("t").start_span("x")
    flat = tracing.own_fields(span)
    assert flat[0] == f.TRACEPARENT.name
    ctx = tracing.own_context({f.TRACEPARENT.meta: flat[1]})
    assert (ctx.trace_id, ctx.span_id) == (span.get_span_context().trace_id,
                                           span.get_span_context().span_id)  # fmt: skip
    assert not tracing.own_context({}).is_valid


def test_a_first_delivery_continues_the_producer_and_a_retry_links_to_it() -> None:
    provider, exporter = _sdk()
    traced = _tracing(provider)
    fresh = Source("s", "s", trusted=False).message(b"1-0", [b"traceparent", PARENT.encode()])
    run = traced.start_run(fresh)
    run.end()
    [span] = exporter.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == int("b7ad6b7169203331", 16)
    own = [v.encode() for v in tracing.own_fields(run)]
    retry_fields = [b"traceparent", PARENT.encode(), b"redrive-attempt", b"2",
                    b"redrive-origin-id", b"1-0", *own]  # fmt: skip
    retry = Source("retry:{s}:g", "s", trusted=True).message(b"5-0", retry_fields)
    ctx, links = traced.parent(retry)
    assert trace.get_current_span(ctx).get_span_context().is_valid is False, "a new trace"
    assert [dict(link.attributes or {})["redrive.link"] for link in links] == [
        tracing.CREATION,
        tracing.PREVIOUS,
    ]
    assert links[1].context.span_id == run.get_span_context().span_id


def test_child_of_producer_off_links_the_first_delivery_instead() -> None:
    provider, _ = _sdk()
    fresh = Source("s", "s", trusted=False).message(b"1-0", [b"traceparent", PARENT.encode()])
    ctx, links = _tracing(provider, child_of_producer=False).parent(fresh)
    assert not trace.get_current_span(ctx).get_span_context().is_valid
    assert [link.context.span_id for link in links] == [int("b7ad6b7169203331", 16)]


def test_a_sampled_out_run_builds_no_attributes_and_still_settles() -> None:
    provider, exporter = _sdk(sampler=ALWAYS_OFF)
    traced = _tracing(provider)
    msg = Source("s", "s", trusted=False).message(b"1-0", [b"data", b"{}"])
    run = traced.start_run(msg)
    assert not run.is_recording()
    settle = traced.settling(msg, "dead_letter", FAILURE, destination="dlq:{s}", reason="poison")
    settle.landed("moved")
    assert settle.fields[0] == f.TRACEPARENT.name, "the context travels even when not sampled"
    assert exporter.get_finished_spans() == ()


async def test_a_failed_run_ends_when_it_is_settled_with_its_outcome() -> None:
    provider, exporter = _sdk()
    traced = _tracing(provider)

    async def fails(msg: object) -> None:
        raise TimeoutError("slow")

    msg = Source("s", "s", trusted=False).message(b"1-0", [b"data", b"{}"])
    with pytest.raises(TimeoutError):
        await traced.wrap(fails)(msg)
    assert exporter.get_finished_spans() == (), "open until the settler decides"
    assert traced.wants_traceback()
    settle = traced.settling(msg, "retry", FAILURE, destination="retry:{s}:g:due",
                             reason="transient", delay_ms=1000)  # fmt: skip
    settle.landed("fenced")
    run, retry = exporter.get_finished_spans()
    assert run.attributes is not None and run.attributes["redrive.outcome"] == "retry_scheduled"
    assert run.attributes["error.type"] == "TimeoutError"
    assert retry.parent is not None and retry.parent.span_id == run.context.span_id
    assert retry.attributes is not None and retry.attributes["redrive.fence"] == "fenced"
    assert retry.attributes["redrive.delay_ms"] == 1000
    assert retry.status.status_code is trace.StatusCode.ERROR
    assert not traced.wants_traceback()


def test_publish_injects_the_current_context_only_inside_a_span() -> None:
    provider, _ = _sdk()
    assert trace_context() == {}
    with provider.get_tracer("t").start_as_current_span("checkout") as span:
        fields = trace_context()
    assert f.trace_ids(fields["traceparent"]) == (
        format(span.get_span_context().trace_id, "032x"),
        format(span.get_span_context().span_id, "016x"),
    )


def test_dlq_show_links_the_dead_letters_trace() -> None:
    own = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    entry = DeadLetter("s", "dlq:{s}", "1-0", ((b"data", b"{}"), (b"traceparent", PARENT.encode()),
                                              (f.TRACEPARENT.key, own.encode())))  # fmt: skip
    out = {"trace": trace_of(entry)}
    trace_links(out, check_trace_url("https://tempo.example/trace/{trace_id}?span={span_id}"))
    assert out["trace"] == {
        "trace_id": "1" * 32, "span_id": "2" * 16,
        "origin_trace_id": "0af7651916cd43dd8448eb211c80319c",
        "url": f"https://tempo.example/trace/{'1' * 32}?span={'2' * 16}",
        "origin_url": "https://tempo.example/trace/0af7651916cd43dd8448eb211c80319c?span=",
    }  # fmt: skip
    assert trace_of(DeadLetter("s", "dlq:{s}", "1-0", ((b"data", b"{}"),))) is None
    for bad in ("https://x/{trace}", "https://x/{0}", "https://x/", "https://x/{trace_id"):
        with pytest.raises(click.BadParameter):
            check_trace_url(bad)


async def test_off_means_no_span_code_on_any_path() -> None:
    import redis.asyncio

    from redrive.runtime.consumer import Consumer
    from redrive.runtime.settings import HandlerSpec

    async def handle(msg: object) -> None:
        return None

    client = redis.asyncio.Redis()
    spec = HandlerSpec(stream="s", group="g", fn=handle, is_async=True)
    off = Consumer(spec, WorkerOptions(), client, client)
    assert off.lanes.fn is handle, "the handler runs unwrapped"
    assert (off.lanes.tracing, off.settler.tracing, off.recovery.tracing) == (None, None, None)
    provider, _ = _sdk()
    on = Consumer(spec, WorkerOptions(), client, client, tracer=tracing.tracer_for(provider))
    assert on.lanes.fn is not handle and on.settler.tracing is on.lanes.tracing is not None
    await client.aclose()


def test_redrive_runs_without_opentelemetry_installed() -> None:
    """With ``opentelemetry`` not importable (a subprocess blocks it), publishing adds no
    fields, a worker and a replay decide "no tracing", and nothing raises; also when
    ``OTEL_PYTHON_TRACER_PROVIDER`` makes redrive try the import."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed: its imports fail\n"
        "from redrive import App\n"
        "from redrive.dlq.replay import ReplayReport, _tracing\n"
        "from redrive.dlq.audit import Operation\n"
        "from redrive.runtime.publish import trace_context\n"
        "from redrive.runtime.settings import WorkerOptions\n"
        "from redrive.runtime.worker import tracer_of\n"
        "App()\n"
        "assert trace_context() == {} and tracer_of(None, WorkerOptions()) is None\n"
        "assert _tracing(None, ReplayReport(), Operation.start('replay', by='t')) is None\n"
        "assert 'redrive.runtime.tracing' not in sys.modules\n"
        "print('ok')\n"
    )
    for extra in ({}, {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | extra
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=60, check=False)  # fmt: skip
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
