"""Misuse of the App is refused where it is written (registration), before any I/O.

Each case was once accepted and failed later in the worker; each message says what to
write instead.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import redrive
from redrive import App, BreakerPolicy, ConfigError, ErrorClass, RetryPolicy, Rules
from redrive.runtime.settings import HandlerOptions, HandlerSpec
from redrive.testing import free_port


async def handle(msg: Any) -> None: ...


def test_retry_as_a_number_is_refused_with_the_policy_to_write() -> None:
    app = App()
    with pytest.raises(ConfigError, match=r"retry=3: use retry=RetryPolicy\(max_retries=3\)"):
        app.handler("orders", group="g", retry=3)(handle)  # type: ignore[typeddict-item]
    assert app.specs == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry": "fast"}, r"retry='fast': use retry=RetryPolicy\(\)"),
        ({"rules": (KeyError,)}, r"rules=\(<class 'KeyError'>,\): use rules=Rules\("),
        ({"breaker": 0.5}, r"breaker=0.5: use BreakerPolicy\(...\), or None"),
        ({"retry_by_class": [RetryPolicy()]}, "retry_by_class=.*use a dict"),
        ({"retry_by_class": {"transient": RetryPolicy()}}, "entry 'transient'.*map an ErrorClass"),
        ({"retry_by_class": {ErrorClass.TRANSIENT: 3}}, "entry .*: 3: map an ErrorClass"),
        ({"visibility_timeout": "60"}, "visibility_timeout='60': use a number of seconds > 0"),
        ({"visibility_timeout": float("inf")}, "visibility_timeout=inf"),
        ({"dlq_max_age": "1d"}, "dlq_max_age='1d'"),
        ({"timeout": True}, "timeout=True"),
        ({"concurrency": 0}, "concurrency=0: use an integer >= 1"),
        ({"prefetch": 2.5}, "prefetch=2.5: use an integer >= 1"),
    ],
)
def test_options_of_the_wrong_type_are_refused(options: dict[str, Any], message: str) -> None:
    app = App()
    with pytest.raises(ConfigError, match=message):
        app.handler("orders", group="g", **options)(handle)
    assert app.specs == []


def test_an_unknown_option_names_the_closest_one() -> None:
    with pytest.raises(ConfigError, match="no option 'retires': did you mean 'retry'"):
        App().handler("orders", group="g", retires=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("start_id", ["0", "$", "0-0", "1700000000000", "1700000000000-5"])
def test_start_ids_redis_accepts_are_accepted(start_id: str) -> None:
    app = App()
    app.handler("orders", group="g", start_id=start_id)(handle)
    assert app.specs[0].start_id == start_id


@pytest.mark.parametrize(
    "start_id", ["banana", "", ">", "-", "1-2-3", "-5", " 0", "18446744073709551616", 0]
)
def test_start_ids_redis_would_refuse_are_refused(start_id: object) -> None:
    app = App()
    with pytest.raises(ConfigError, match=r"start_id=.*: use '0' .*'\$'.*'<ms>-<seq>'"):
        app.handler("orders", group="g", start_id=start_id)(handle)  # type: ignore[arg-type]
    assert app.specs == []


def test_a_non_callable_handler_is_refused() -> None:
    app = App()
    with pytest.raises(ConfigError, match="handler 'not a function' is not callable"):
        app.handler("orders", group="g")("not a function")  # type: ignore[type-var]
    assert app.specs == []


def test_a_one_argument_middleware_is_refused() -> None:
    app = App()

    def one_arg(call_next: Any) -> Any:
        return call_next

    with pytest.raises(ConfigError, match=r"middleware .*one_arg must take \(spec, call_next\)"):
        app.use(one_arg)
    assert app.middleware == []


def test_sync_hooks_are_refused_at_registration() -> None:
    app = App()

    def warm(ctx: Any) -> None: ...

    with pytest.raises(ConfigError, match=r"startup hook .*warm must be a coroutine function"):
        app.on_startup(warm)  # type: ignore[type-var]
    with pytest.raises(ConfigError, match=r"shutdown hook .*warm must be a coroutine function"):
        app.on_shutdown(warm)  # type: ignore[type-var]
    assert (app.startup, app.shutdown) == ([], [])


def test_hooks_that_take_no_context_or_are_not_callable_are_refused() -> None:
    app = App()

    async def no_ctx() -> None: ...

    with pytest.raises(ConfigError, match="must take one argument, the AppContext"):
        app.on_startup(no_ctx)  # type: ignore[arg-type, type-var]
    with pytest.raises(ConfigError, match="is not callable"):
        app.on_shutdown(None)  # type: ignore[type-var]


def test_async_hooks_of_every_shape_are_accepted() -> None:
    app = App()

    class Ledger:
        async def connect(self, ctx: Any) -> None: ...

        async def __call__(self, ctx: Any) -> None: ...

    ledger = Ledger()
    app.on_startup(ledger.connect)
    app.on_startup(ledger)
    assert app.startup == [ledger.connect, ledger]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x", "unsupported Redis URL scheme 'http'"),
        ("localhost:6379", "invalid Redis URL 'localhost:6379'"),
        ("redis://h:port/0", "invalid Redis URL"),
    ],
)
def test_a_bad_url_is_refused_by_the_app_not_by_the_worker(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        App(url)


async def test_a_bad_url_given_to_serve_is_refused_before_connecting() -> None:
    app = App()
    app.handler("orders", group="g")(handle)
    with pytest.raises(ConfigError, match="unsupported Redis URL scheme 'http'"):
        await app.serve(redis_url="http://x")
    with pytest.raises(ConfigError, match="unsupported Redis URL scheme 'http'"):
        app.run(redis_url="http://x")


def test_the_url_password_never_reaches_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        App("http://user:s3cret@x")
    assert "s3cret" not in str(caught.value)


def test_handler_options_are_exactly_the_spec_fields_with_defaults() -> None:
    # One place for the defaults: HandlerSpec. HandlerOptions only names and types them.
    with_defaults = {
        f.name
        for f in dataclasses.fields(HandlerSpec)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert set(HandlerOptions.__optional_keys__) == with_defaults
    assert set(HandlerOptions.__annotations__) == with_defaults


def test_unset_options_take_the_spec_defaults() -> None:
    app = App()
    app.handler("orders", group="g")(handle)
    [spec] = app.specs
    assert spec == HandlerSpec(stream="orders", group="g", fn=handle, is_async=True)
    assert (spec.retry, spec.breaker, spec.rules) == (RetryPolicy(), BreakerPolicy(), Rules())


def test_retry_by_class_is_copied_at_registration() -> None:
    by_class = {ErrorClass.TRANSIENT: RetryPolicy(max_retries=9)}
    app = App()
    app.handler("orders", group="g", retry_by_class=by_class)(handle)
    by_class[ErrorClass.PROCESSING] = RetryPolicy(max_retries=0)  # the caller changes it later
    assert app.specs[0].retry_by_class == {ErrorClass.TRANSIENT: RetryPolicy(max_retries=9)}


def test_context_outside_a_worker_says_where_it_works() -> None:
    with pytest.raises(ConfigError, match=r"only set inside a running worker"):
        redrive.context()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "app = App()\n@app.handler('orders', group='g', retry=3)\nasync def h(msg): ...\n",
            "retry=3: use retry=RetryPolicy(max_retries=3)",
        ),
        ("app = App('http://x')\n", "unsupported Redis URL scheme 'http'"),
        (
            "app = App()\n@app.on_startup\ndef warm(ctx): ...\n",
            "startup hook warm must be a coroutine function",
        ),
    ],
)
def test_the_worker_command_reports_a_misuse_in_one_line_without_connecting(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "shop.py").write_text("from redrive import App\n" + source)
    done = subprocess.run(
        # Nothing listens at that URL: a misuse must be reported as itself, never as Redis.
        [sys.executable, "-m", "redrive.cli", "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
         "worker", "shop:app"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1
    assert "connect" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shutdown_timeout": "30"}, "shutdown_timeout='30': use a number > 0"),
        ({"ack_linger": float("nan")}, "ack_linger=nan"),
        ({"reclaim_interval": 0}, "reclaim_interval=0: use a number of seconds > 0, or None"),
        ({"consumer": 7}, "consumer name 7"),
    ],
)
def test_worker_options_of_the_wrong_type_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        redrive.WorkerOptions(**options)
