"""What the browser tests share: Debian's chromium through Playwright, a dashboard process.

``playwright install`` downloads a browser build, which cannot work here: the tests
drive the system's ``chromium`` (apt-get install chromium). With ``CI`` set a missing
browser (or Playwright) fails the tests; elsewhere they skip and say why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser")


def chromium() -> str:
    """The system chromium's path; fails (CI) or skips (elsewhere) without one."""
    found = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed (pip install '.[dev]')")
    if found is None:
        _missing("no chromium on PATH (apt-get install chromium)")
    assert found is not None
    return found


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {why}")
    pytest.skip(f"browser tests skipped: {why}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    """A running ``redrive dashboard``: its base URL and login URL."""

    base: str
    token: str
    process: subprocess.Popen[bytes]

    @property
    def login(self) -> str:
        return f"{self.base}/login?token={self.token}"


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"redrive dashboard exited {process.returncode}: {err}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"redrive dashboard did not listen on {port} within {timeout} s")


def serve(redis_url: str, token_file: Path, *extra: str) -> Iterator[Served]:
    """Run ``redrive dashboard`` as its own process until the generator is closed."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", redis_url, "dashboard",
            "--port", str(port), "--token-file", str(token_file), *extra]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_listening(port, process)
        token = token_file.read_text().strip()
        yield Served(f"http://127.0.0.1:{port}", token, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
