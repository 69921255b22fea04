"""``redrive worker MODULE:APP`` — run the handlers of an app."""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import click

from redrive.cli.logs import setup_logging
from redrive.cli.main import CliContext
from redrive.errors import ConfigError
from redrive.runtime.app import App
from redrive.runtime.settings import (
    EVENT_LOOPS,
    HandlerSpec,
    WorkerOptions,
    default_consumer_name,
)


def load_app(target: str) -> App:
    """Import ``module:attribute`` and check it is an :class:`App`."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r}: write MODULE:APP, e.g. redrive.examples.ecommerce:app")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise ConfigError(f"cannot import {module_name!r}: {exc.msg} at {where}") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ConfigError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc} (raised while "
            "importing it; run `python -c 'import " + module_name + "'` for the traceback)"
        ) from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else type(app).__name__
        raise ConfigError(f"{target!r} is {found}, not a redrive App")
    return app


def parse_processes(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``--processes``: a count of at least 1, or ``auto`` (the CPUs this process may use)."""
    if value.strip().lower() == "auto":
        return cpu_count()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise click.BadParameter(f"{value!r}: write a number of processes (1 or more) or auto")
    return count


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@click.command()
@click.argument("target", metavar="MODULE:APP")
@click.option("--concurrency", type=click.IntRange(min=1), help="Override each handler's.")
@click.option("--consumer", metavar="NAME", help="Consumer name (default: <host>-<pid>).")
@click.option("--block-ms", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to finish in-flight messages after SIGTERM/SIGINT.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's own Prometheus /metrics on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address of --metrics-port (0.0.0.0: every interface, e.g. in a container).",
)
@click.option(
    "--read-ahead-bytes",
    "read_ahead",
    metavar="SIZE",
    default="64MiB",
    show_default=True,
    help="Bytes of messages read and not yet finished, over all handlers (e.g. 256MiB, "
    "1GiB; 0: no byte bound). A message larger than this still runs.",
)
@click.option(
    "--loop",
    "event_loop",
    type=click.Choice(EVENT_LOOPS),
    default="asyncio",
    show_default=True,
    help="Event loop; uvloop needs pip install 'redrive[uvloop]'.",
)
@click.option(
    "--processes",
    callback=parse_processes,
    metavar="N|auto",
    default="1",
    show_default=True,
    help="Worker processes under one supervisor (auto: one per CPU), named CONSUMER-1 … "
    "CONSUMER-N; a child that exits is restarted under its name; 3 exits in a row within "
    "5 s of a start stop them all (exit 2). Child i serves --metrics-port + i - 1.",
)
@click.option("--supervised", is_flag=True, hidden=True, help="A child of --processes.")
@click.pass_obj
def worker(
    obj: CliContext,
    target: str,
    concurrency: int | None,
    consumer: str | None,
    block_ms: int,
    shutdown_timeout: float,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    read_ahead: str = "64MiB",
    event_loop: str = "asyncio",
    processes: int = 1,
    supervised: bool = False,
) -> None:
    """Run the handlers of MODULE:APP until SIGTERM/SIGINT (then drain and exit 0).

    With --processes N > 1, a supervisor runs N such workers and exits 0 once every one
    has drained, 1 if one did not stop cleanly (it is named on stderr).
    """
    setup_logging(obj.log_format, obj.log_level)
    if supervised:  # only then: a plain worker does not import the supervisor's modules
        from redrive.process.supervised import follow_supervisor, read_assignment

        follow_supervisor()
    if processes > 1:
        child_options = {
            "--concurrency": concurrency, "--block-ms": block_ms,
            "--shutdown-timeout": shutdown_timeout, "--metrics-host": metrics_host,
            "--read-ahead-bytes": read_ahead, "--loop": event_loop,
        }  # fmt: skip
        parse_size(read_ahead)  # a bad size is one line here, not a crash loop of children
        name = consumer or default_consumer_name()
        names = [f"{name}-{i}" for i in range(1, processes + 1)]
        supervise(obj, target, names, child_options, metrics_port, shutdown_timeout)
        return
    app = load_app(target)
    if supervised:  # the app is imported: a warm standby until the supervisor names it
        assigned = read_assignment()
        consumer, metrics_port = assigned.consumer, assigned.metrics_port
    if concurrency is not None:
        app.specs = [_with_concurrency(s, concurrency) for s in app.specs]
    options = WorkerOptions(
        consumer=consumer or default_consumer_name(),
        block_ms=block_ms,
        shutdown_timeout=shutdown_timeout,
        read_ahead_bytes=parse_size(read_ahead) or None,
        event_loop=event_loop,
    )
    if app.data_dir is None:
        app.data_dir = obj.data_dir
    if metrics_port is not None:
        from redrive.monitoring.prometheus import serve_worker_metrics

        serve_worker_metrics(metrics_port, metrics_host)
    app.run(options=options, redis_url=obj.redis_url or app.redis_url)
    if supervised:  # drained: a late second signal must not turn exit 0 into a kill
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1000**3, "gib": 1024**3}  # fmt: skip


def parse_size(text: str) -> int:
    """``64MiB``, ``512k``, ``1GB``, ``1048576`` → bytes (``k``/``M``/``G`` alone: binary)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"--read-ahead-bytes {text!r}: write a size such as 64MiB, 512k or 1GB")
    return int(float(match.group(1)) * _UNITS[unit])


def supervise(
    obj: CliContext,
    target: str,
    names: list[str],
    options: Mapping[str, object],
    metrics_port: int | None,
    shutdown_timeout: float,
) -> None:
    """``--processes N``: run N children ``NAME-1`` … ``NAME-N`` until SIGTERM/SIGINT."""
    from redrive.process.supervisor import Supervisor

    if target.count(":") != 1 or target.startswith(":") or target.endswith(":"):
        raise ConfigError(f"{target!r}: write MODULE:APP, e.g. redrive.examples.ecommerce:app")
    if metrics_port is not None and metrics_port + len(names) - 1 > 65535:
        raise ConfigError(
            f"--metrics-port {metrics_port} with --processes {len(names)}: the last child "
            f"would serve port {metrics_port + len(names) - 1}; pick a lower port"
        )
    argv = [
        sys.executable, "-m", "redrive.cli", "--log-format", obj.log_format,
        "--log-level", obj.log_level, "worker", target, "--supervised",
        *(str(a) for k, v in options.items() if v is not None for a in (k, v)),
    ]  # fmt: skip

    def assignment(child: str) -> dict[str, object]:
        port = None if metrics_port is None else metrics_port + names.index(child)
        return {"metrics_port": port}

    # The URL goes by environment, not argv: `ps` shows argv, and a URL may hold a password.
    env = {"REDRIVE_DATA_DIR": str(obj.data_dir)}
    if obj.redis_url:
        env["REDRIVE_REDIS_URL"] = obj.redis_url
    # A child gets its own shutdown timeout, then time to flush and close, before SIGKILL.
    supervisor = Supervisor(
        names, argv, stop_timeout=shutdown_timeout + 10, env=env, assignment=assignment
    )
    unclean = supervisor.run()
    if unclean:
        click.echo(f"Error: not every child stopped cleanly: {'; '.join(unclean)}", err=True)
        raise click.exceptions.Exit(1)


def _with_concurrency(spec: HandlerSpec, n: int) -> HandlerSpec:
    return replace(spec, concurrency=n)
