"""Soak: a long run with 10% of the messages failing once; memory, keys and throughput.

A private ``redis-server`` and one ``redrive worker`` process (``bench/soak_app.py``:
10% of the messages fail their first run with a transient error, retried after
``--retry-delay``). This process is the producer: it keeps at most ``--backlog`` unread
entries (server-side XADD in a Lua loop, ``MAXLEN ~`` two backlogs so the acked
stream does not grow without end) until ``--messages`` are published, and samples as it
goes: the worker's RSS (``/proc/PID/status``), Redis ``used_memory`` and ``DBSIZE``, the
retry schedule. Progress is the source group's entries read minus pending; the run ends
when everything is settled (nothing unread or pending on the source and retry streams,
no retry scheduled).

Reported: RSS after warm-up (the first tenth) and at the end, the peak (VmHWM), Redis
memory and key count (max and end, and the keys left), msgs/s of each tenth and the last
tenth against the first.

``--body-kb 900``: the same with 900 KB bodies (``--messages`` a few thousand, the backlog
300): the worker's peak RSS against the read-ahead byte budget, passed as
``--read-ahead-bytes`` (default: the runtime's own default) when the installed ``redrive
worker`` has that option; without it, the RSS alone.

Targets (issue 12): RSS growth <= 10% after warm-up, key count bounded, last tenth >= 90%
of the first; with 900 KB bodies, worker RSS <= budget + 50 MB.

    .venv/bin/python bench/soak.py [--messages 1000000] [--retry-delay 0.05]
    .venv/bin/python bench/soak.py --body-kb 900 --messages 3000 [--read-ahead-bytes 67108864]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from redrive.runtime.settings import WorkerOptions
from redrive.store.connection import sync_client
from redrive.store.keys import retry_due, retry_stream
from redrive.testing import RedisProcess

BENCH = Path(__file__).resolve().parent
STREAM = "bench:soak"
GROUP = "soak"
MB = 1024 * 1024

# Server-side publishing: the producer must not be the bottleneck (nor steal a core).
_PUBLISH = """
local pad = ARGV[4]
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local body
  if pad == '' then
    body = '{"n": ' .. i .. ', "amount": 12.5, "sku": "ABC-123", "qty": 2}'
  else
    body = '{"n": ' .. i .. ', "pad": "' .. pad .. '"}'
  end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'data', body)
end
"""


def status_kb(pid: int, name: str) -> int:
    """A ``kB`` line of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def worker_has_option(option: str) -> bool:
    """Whether the installed ``redrive worker`` accepts ``option``."""
    out = subprocess.run(
        [sys.executable, "-m", "redrive.cli", "worker", "--help"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return option in out


def runtime_budget() -> int | None:
    """The installed runtime's default read-ahead byte budget (``None``: it has none)."""
    option = WorkerOptions.__dataclass_fields__.get("read_ahead_bytes")
    default = getattr(option, "default", None)
    return default if isinstance(default, int) else None


def start_worker(url: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SOAK_STREAM": STREAM, "SOAK_FAIL_EVERY": "10",
           "SOAK_RETRY_DELAY": str(args.retry_delay)}  # fmt: skip
    command = [sys.executable, "-m", "redrive.cli", "--redis-url", url, "--log-level",
               "warning", "worker", "soak_app:app", "--consumer", "soak",
               "--block-ms", "200"]  # fmt: skip
    if args.read_ahead_bytes is not None:
        command += ["--read-ahead-bytes", str(args.read_ahead_bytes)]
    return subprocess.Popen(
        command, cwd=BENCH, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )


def group_of(r: redis.Redis, stream: str) -> dict[str, int]:
    """``entries-read``, ``lag`` and ``pending`` of our group on ``stream`` (zeros if none)."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return {"entries-read": 0, "lag": 0, "pending": 0}
    for g in groups:
        if g["name"] == GROUP.encode():
            return {k: int(g[k] or 0) for k in ("entries-read", "lag", "pending")}
    return {"entries-read": 0, "lag": 0, "pending": 0}


@dataclass
class Samples:
    """What the run saw, sampled every ``--sample`` seconds."""

    progress: list[tuple[float, int]] = field(default_factory=list)  # (t, done)
    used_memory: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)
    rss_warm: int = 0
    rss_tenths: list[int] = field(default_factory=list)  # kB as each tenth was done
    rss_end: int = 0
    hwm: int = 0

    def crossing(self, done: float) -> float:
        """When progress reached ``done`` (linear between samples)."""
        prev_t, prev_d = self.progress[0]
        for t, d in self.progress:
            if d >= done:
                if d == prev_d:
                    return t
                return prev_t + (t - prev_t) * (done - prev_d) / (d - prev_d)
            prev_t, prev_d = t, d
        return self.progress[-1][0]


def reading(r: redis.Redis) -> bool:
    """Whether the worker's consumer has read (XREADGROUP) once."""
    try:
        return bool(r.xinfo_consumers(STREAM, GROUP))
    except redis.ResponseError:
        return False  # no group yet


def settled(r: redis.Redis, n: int) -> bool:
    source, retries = group_of(r, STREAM), group_of(r, retry_stream(STREAM, GROUP))
    return (
        source["entries-read"] >= n
        and not source["lag"]
        and not source["pending"]
        and not retries["lag"]
        and not retries["pending"]
        and not r.zcard(retry_due(STREAM, GROUP))
    )


def run(url: str, args: argparse.Namespace) -> tuple[Samples, float, list[bytes]]:
    r = sync_client(url)
    worker = start_worker(url, args)
    samples = Samples()
    pad = "x" * (args.body_kb * 1024) if args.body_kb else ""
    # Large bodies go 10 at a time: one EVAL of 150 x 900 KB would block Redis for long.
    chunk = max(1, min(10 if args.body_kb else 2000, args.backlog // 2))
    try:
        deadline = time.monotonic() + 30
        while not reading(r):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("the worker never started reading")
            time.sleep(0.01)
        published, start, next_sample = 0, time.perf_counter(), 0.0
        while True:
            now = time.perf_counter() - start
            source = group_of(r, STREAM)
            done = source["entries-read"] - source["pending"]
            samples.progress.append((now, done))
            if done >= args.messages * (len(samples.rss_tenths) + 1) / 10:
                samples.rss_tenths.append(status_kb(worker.pid, "VmRSS"))
                samples.rss_warm = samples.rss_warm or samples.rss_tenths[0]
            if now >= next_sample:
                next_sample = now + args.sample
                samples.used_memory.append(int(r.info("memory")["used_memory"]))
                samples.keys.append(int(r.dbsize()))
                samples.scheduled.append(int(r.zcard(retry_due(STREAM, GROUP))))
            if published < args.messages and source["lag"] < args.backlog - chunk:
                last = min(published + chunk, args.messages)
                r.eval(_PUBLISH, 1, STREAM, published, last - 1, 2 * args.backlog, pad)
                published = last
                continue
            if published >= args.messages and done >= args.messages and settled(r, args.messages):
                break
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}")
            if now > args.timeout:
                raise SystemExit(f"not settled after {args.timeout:.0f} s: {source}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        samples.progress.append((elapsed, args.messages))
        samples.rss_end = status_kb(worker.pid, "VmRSS")
        samples.hwm = status_kb(worker.pid, "VmHWM")
        samples.used_memory.append(int(r.info("memory")["used_memory"]))
        samples.keys.append(int(r.dbsize()))
        keys = sorted(r.keys("*"))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        r.close()
    return samples, elapsed, keys


def report(samples: Samples, elapsed: float, keys: list[bytes], args: argparse.Namespace) -> None:
    n = args.messages
    size = f"{args.body_kb} KB" if args.body_kb else "~60-byte"
    print(f"{n:,} messages ({size} bodies), 10% failing once, "
          f"settled in {elapsed:.1f} s ({n / elapsed:,.0f} msg/s)")  # fmt: skip
    edges = [samples.crossing(n * k / 10) for k in range(11)]
    rates = [n / 10 / max(b - a, 1e-9) for a, b in itertools.pairwise(edges)]
    print("msgs/s by tenth: " + " ".join(f"{x:,.0f}" for x in rates))
    print(f"last tenth / first: {rates[-1] / rates[0]:.2f} (target >= 0.90)")
    growth = samples.rss_end / samples.rss_warm - 1 if samples.rss_warm else float("nan")
    print(f"worker RSS: after warm-up {samples.rss_warm / 1024:.1f} MB, end "
          f"{samples.rss_end / 1024:.1f} MB ({growth:+.1%}, target <= +10%), "
          f"peak {samples.hwm / 1024:.1f} MB")  # fmt: skip
    print("worker RSS by tenth (MB): " + " ".join(f"{kb / 1024:.1f}" for kb in samples.rss_tenths))
    mem = samples.used_memory
    print(f"redis used_memory: max {max(mem) / MB:.1f} MB, end {mem[-1] / MB:.1f} MB; keys: "
          f"max {max(samples.keys)}, end {samples.keys[-1]}; retries scheduled max "
          f"{max(samples.scheduled, default=0):,}")  # fmt: skip
    print("keys at the end: " + ", ".join(k.decode() for k in keys))
    if args.body_kb:
        budget = args.read_ahead_bytes
        if budget is None:
            print(f"read-ahead budget: none in this redrive; peak RSS {samples.hwm / 1024:.0f} MB")
        else:
            limit = (budget + 50 * MB) / 1024
            ok = "met" if samples.hwm <= limit else "missed"
            print(f"read-ahead budget {budget / MB:.0f} MB: peak RSS {samples.hwm / 1024:.0f} MB, "
                  f"target <= {limit / 1024:.0f} MB: {ok}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--body-kb", type=int, default=0, help="body size (0: ~60 bytes)")
    parser.add_argument("--backlog", type=int, help="unread entries kept (20000; 300 large)")
    parser.add_argument("--retry-delay", type=float, default=0.05)
    parser.add_argument("--read-ahead-bytes", type=int, help="the worker's byte budget")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    if args.backlog is None:
        args.backlog = 300 if args.body_kb else 20_000
    if args.read_ahead_bytes is not None and not worker_has_option("--read-ahead-bytes"):
        print("this redrive worker has no --read-ahead-bytes: measuring without a budget")
        args.read_ahead_bytes = None
    elif args.read_ahead_bytes is None and args.body_kb and worker_has_option("--read-ahead-bytes"):
        args.read_ahead_bytes = runtime_budget()
    with RedisProcess() as server:
        samples, elapsed, keys = run(server.url, args)
    report(samples, elapsed, keys, args)


if __name__ == "__main__":
    main()
