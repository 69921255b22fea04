"""Scale-out: throughput with 1, 2 and 4 worker processes, on one Redis and on a cluster.

Each run starts N worker processes (one group), waits until every one of them is
reading, publishes the messages, and stops the clock when the group has read them all
and nothing is pending. Two ways to start them (``--modes``): ``separate``, N
``redrive worker`` commands, and ``supervised``, one ``redrive worker --processes N``
(a supervisor and its N children). Three handler kinds: ``noop`` (the figures are
redrive's and Redis's own cost; the CPU split between workers and redis-server is read
from /proc/<pid>/stat), ``cpu`` (100 µs of CPU per message: one process is CPU-bound by
its handler) and ``io`` (``await asyncio.sleep(0.005)``, concurrency 50 per process).
``single``: one stream on one redis-server. ``cluster``: three streams, one per master
of a local 3-master cluster, each process serving all three (concurrency 17 per stream,
about 50 per process).

    .venv/bin/python bench/scale.py [--procs 1,2,4] [--kinds noop,cpu,io]
        [--setups single,cluster] [--modes separate,supervised] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from redrive.store.connection import sync_client
from redrive.testing import RedisProcess
from redrive.testing.cluster import RedisClusterProcess

BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of its live children (a supervisor's), in seconds."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = _stat(int(proc.name))
        except OSError:
            continue  # gone meanwhile
        if int(proc.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += sum(int(fields[i]) for i in (11, 12)) / TICKS
    return total


def start_workers(
    url: str, streams: list[str], kind: str, procs: int, mode: str
) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "SCALE_STREAMS": ",".join(streams), "SCALE_KIND": kind}
    concurrency = str(max(1, 50 // len(streams)) if kind == "io" else 16)

    def worker(consumer: str, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "redrive.cli", "--redis-url", url, "--log-level", "warning",
             "worker", "scale_app:app", "--consumer", consumer, "--concurrency", concurrency,
             "--block-ms", "200", *extra],
            cwd=BENCH, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    if mode == "supervised":
        return [worker("w", "--processes", str(procs))]
    return [worker(f"w{i}") for i in range(procs)]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def consumers_reading(r: redis.Redis, streams: list[str], procs: int) -> bool:
    try:
        return all(len(r.xinfo_consumers(s, "scale")) >= procs for s in streams)
    except redis.ResponseError:
        return False  # no group yet


def drained(r: redis.Redis, streams: list[str], per_stream: int) -> bool:
    for s in streams:
        [group] = [g for g in r.xinfo_groups(s) if g["name"] == b"scale"]
        if group["entries-read"] != per_stream or group["pending"]:
            return False
    return True


# Server-side publishing: a Python publisher would be the bottleneck of the noop runs
# (and steal a core from the workers); Redis writes 2,000 entries per call far faster.
_PUBLISH = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('XADD', KEYS[1], '*', 'data', '{"n": ' .. i .. '}')
end
"""


def publish(r: redis.Redis, streams: list[str], per_stream: int) -> None:
    for start in range(0, per_stream, 2000):
        for s in streams:
            r.eval(_PUBLISH, 1, s, start, min(start + 2000, per_stream) - 1)


def run_once(url: str, redis_pids: list[int], streams: list[str], kind: str, procs: int,
             messages: int, mode: str) -> tuple[float, float, float]:  # fmt: skip
    """msgs/s, worker CPU seconds, redis-server CPU seconds for one run."""
    r = sync_client(url)
    for s in streams:
        r.delete(s, f"retry:{{{s}}}:scale", f"retry:{{{s}}}:scale:due")
    workers = start_workers(url, streams, kind, procs, mode)
    try:
        wait_until(lambda: consumers_reading(r, streams, procs), 30, "the workers")
        per_stream = messages // len(streams)
        cpu0 = [cpu_seconds(w.pid) for w in workers], [cpu_seconds(p) for p in redis_pids]
        start = time.perf_counter()
        publish(r, streams, per_stream)
        wait_until(lambda: drained(r, streams, per_stream), 300, "the backlog")
        elapsed = time.perf_counter() - start
        cpu1 = [cpu_seconds(w.pid) for w in workers], [cpu_seconds(p) for p in redis_pids]
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
        r.close()
    worker_cpu = sum(cpu1[0]) - sum(cpu0[0])
    redis_cpu = sum(cpu1[1]) - sum(cpu0[1])
    return per_stream * len(streams) / elapsed, worker_cpu / elapsed, redis_cpu / elapsed


def spread_streams(cluster: RedisClusterProcess) -> list[str]:
    """Three stream names whose slots belong to three different masters."""
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < 3:
        name = f"bench:scale{i}"
        chosen.setdefault(cluster.master_of(name).port or 0, name)
        i += 1
    return list(chosen.values())


def report(
    setup: str, kind: str, mode: str, procs: int, figures: tuple[float, float, float],
    base: float,
) -> None:  # fmt: skip
    rate, worker_cpu, redis_cpu = figures
    per_core = rate / worker_cpu if worker_cpu else 0.0
    print(f"{setup:<8} {kind:<5} {mode:<10} {procs:>5} {rate:>10,.0f} {rate / base:>7.2f}x "
          f"{worker_cpu:>9.2f} {redis_cpu:>9.2f} {per_core:>11,.0f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Enough for about a second of work per run: /proc CPU counters tick every 10 ms.
    parser.add_argument("--noop-messages", type=int, default=100_000)
    parser.add_argument("--io-messages", type=int, default=20_000)
    parser.add_argument("--cpu-messages", type=int, default=20_000)
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--kinds", default="noop,cpu,io")
    parser.add_argument("--setups", default="single,cluster")
    parser.add_argument("--modes", default="separate,supervised")
    # Best of N runs per row: on a machine shared with other work, the run it disturbed least.
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    counts = [int(p) for p in args.procs.split(",")]
    sizes = {"noop": args.noop_messages, "io": args.io_messages, "cpu": args.cpu_messages}
    # Cores busy: CPU seconds per second of the run. On a machine shared with other work the
    # workers may get less than a core each; msgs per worker CPU second shows what they did
    # with what they got.
    print("setup    kind  mode       procs    msgs/s   vs 1   worker CPU  redis CPU  "
          "msgs/CPU s  (vs 1: against 1 separate process)")  # fmt: skip
    for setup in args.setups.split(","):
        if setup == "single":
            server: RedisProcess | RedisClusterProcess = RedisProcess().start()
            url, streams, pids = server.url, ["bench:scale"], [server.pid or 0]
        else:
            server = RedisClusterProcess(masters=3).start()
            url, streams = server.url, spread_streams(server)
            pids = [node.pid or 0 for node in server.nodes]
        try:
            for kind in args.kinds.split(","):
                base = 0.0
                for procs in counts:
                    # --processes 1 is the plain worker (no supervisor): one row, "separate".
                    for mode in ["separate"] if procs == 1 else args.modes.split(","):
                        figures = max(
                            (run_once(url, pids, streams, kind, procs, sizes[kind], mode)
                             for _ in range(args.repeat)),
                            key=lambda f: f[0],
                        )  # fmt: skip
                        base = base or figures[0]
                        report(setup, kind, mode, procs, figures, base)
        finally:
            server.close()


if __name__ == "__main__":
    main()
