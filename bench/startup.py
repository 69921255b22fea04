"""Start-up: process start to first message handled, redrive worker against a plain loop.

Each run empties a private ``redis-server``, adds one message to the stream and starts a
process; the clock runs from just before the process is spawned until its handler has
written ``time.time()`` to a mark file (bench/startup_app.py for the worker,
bench/startup_raw.py for the plain redis.asyncio loop: group create, XREADGROUP, mark,
XACK), with bytecode cached as in an installed package. The handler also writes the CPU
time its process has used, a steadier figure when other work shares the cores. The two
kinds alternate, so a noisy moment hurts both. Then one more worker run under
``python -X importtime``: where its import time goes.

    .venv/bin/python bench/startup.py [--runs 15] [--top 15]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from redrive.store.connection import sync_client
from redrive.testing import RedisProcess

BENCH = Path(__file__).resolve().parent
STREAM = "bench:startup"
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def worker_argv(url: str, *, importtime: bool = False) -> list[str]:
    flags = ["-X", "importtime"] if importtime else []
    return [sys.executable, *flags, "-m", "redrive.cli", "--redis-url", url,
            "worker", "startup_app:app", "--consumer", "c"]  # fmt: skip


def raw_argv(url: str, mark: Path) -> list[str]:
    return [sys.executable, str(BENCH / "startup_raw.py"), url, STREAM, str(mark)]


@dataclass(frozen=True, slots=True)
class Run:
    """One start: wall seconds from spawn to the first message handled, the CPU seconds
    the process had used by then (steadier on a busy machine), and its stderr."""

    wall: float
    cpu: float
    stderr: str


def run_once(url: str, argv: list[str], mark: Path, *, timeout: float = 30.0) -> Run:
    r = sync_client(url)
    r.flushdb()  # a private server: a fresh group, no leases or ledgers of the last run
    r.xadd(STREAM, {"data": '{"n": 1}'})
    r.close()
    mark.unlink(missing_ok=True)
    # Bytecode is cached, as in an installed package: the warm-up run writes what is missing.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env |= {"STARTUP_MARK": str(mark), "STARTUP_STREAM": STREAM}
    with tempfile.TemporaryFile() as err:
        start = time.time()
        proc = subprocess.Popen(argv, cwd=BENCH, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        try:
            handled = _wait_for_mark(proc, mark, timeout)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        err.seek(0)
        output = err.read().decode(errors="replace")
    if handled is None:
        raise SystemExit(f"{' '.join(argv)} handled nothing (exit {proc.returncode}):\n{output}")
    wall, cpu = handled
    return Run(wall - start, cpu, output)


def _wait_for_mark(
    proc: subprocess.Popen[bytes], mark: Path, timeout: float
) -> tuple[float, float] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mark.exists():
            wall, cpu = mark.read_text().split()
            return float(wall), float(cpu)
        if proc.poll() is not None and not mark.exists():
            return None
        time.sleep(0.001)
    return None


@dataclass(frozen=True, slots=True)
class Import:
    """One line of ``-X importtime``: microseconds of its own and with what it imported."""

    name: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[Import]:
    found = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            own, cumulative, indent, name = match.groups()
            found.append(Import(name, int(own), int(cumulative), (len(indent) - 1) // 2))
    return found


def package_of(name: str) -> str:
    """Group redrive by its second level (``redrive.cli``), the others by their first."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "redrive" else parts[0]


def report_imports(imports: list[Import], top: int) -> None:
    total = sum(i.self_us for i in imports)
    print(f"\nimport time of the worker path (-X importtime, one run): {total / 1000:.1f} ms, "
          f"{len(imports)} modules")  # fmt: skip
    by_package: dict[str, int] = defaultdict(int)
    for i in imports:
        by_package[package_of(i.name)] += i.self_us
    print(f"\n  by package (own time, top {top}):")
    for name, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {us / 1000:7.1f} ms  {name}")
    print(f"\n  modules by cumulative time (top {top}; nested ones are counted in their parents):")
    for i in sorted(imports, key=lambda i: -i.cumulative_us)[:top]:
        print(f"    {i.cumulative_us / 1000:7.1f} ms  {'  ' * i.depth}{i.name}")


def summary(label: str, seconds: list[float]) -> tuple[float, float]:
    median = statistics.median(seconds)
    print(f"  {label:<20} median {median * 1000:6.1f} ms   min {min(seconds) * 1000:6.1f} ms   "
          f"max {max(seconds) * 1000:6.1f} ms")  # fmt: skip
    return median, min(seconds)


def compare(what: str, worker: list[float], raw: list[float]) -> None:
    print(what)
    worker_median, worker_min = summary("redrive worker", worker)
    raw_median, raw_min = summary("plain redis.asyncio", raw)
    print(f"  ratio                median {worker_median / raw_median:.2f}x   "
          f"min {worker_min / raw_min:.2f}x the plain loop")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    worker: list[Run] = []
    raw: list[Run] = []
    with RedisProcess() as server, tempfile.TemporaryDirectory() as tmp:
        mark = Path(tmp) / "first.mark"
        run_once(server.url, worker_argv(server.url), mark)  # warm the page cache and .pyc
        run_once(server.url, raw_argv(server.url, mark), mark)
        for _ in range(args.runs):
            worker.append(run_once(server.url, worker_argv(server.url), mark))
            raw.append(run_once(server.url, raw_argv(server.url, mark), mark))
        profiled = run_once(server.url, worker_argv(server.url, importtime=True), mark)
    print(f"{args.runs} runs each, alternating")
    compare("process start -> first message handled (wall clock)",
            [r.wall for r in worker], [r.wall for r in raw])  # fmt: skip
    compare("CPU time the process used until then",
            [r.cpu for r in worker], [r.cpu for r in raw])  # fmt: skip
    report_imports(parse_importtime(profiled.stderr), args.top)


if __name__ == "__main__":
    main()
