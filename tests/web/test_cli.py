"""``redrive dashboard`` itself: the printed login URL, the 0.0.0.0 warning, no extra."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx2

from tests.web.browser import ROOT, free_port, wait_listening

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_without_the_web_extra_one_line_says_how_to_install(web_url: str) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None; from redrive.cli.main import main; "
        f"main(['--redis-url', {web_url!r}, 'dashboard'])"
    )
    argv = [sys.executable, "-c", code]
    done = subprocess.run(argv, check=False, env=ENV, capture_output=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "pip install 'redrive[web]'" in lines[0], lines


def test_prints_a_token_url_that_logs_in_and_warns_on_every_interface(web_url: str) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "redrive.cli", "--redis-url", web_url, "dashboard",
            "--host", "0.0.0.0", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None and process.stdout is not None
        warning = process.stderr.readline().decode()
        assert warning.startswith("warning: --host 0.0.0.0 serves the dashboard on every")
        process.stdout.readline()
        url = process.stdout.readline().decode().strip()
        assert url.startswith(f"http://127.0.0.1:{port}/login?token=")
        wait_listening(port, process)
        with httpx2.Client() as client:
            assert client.get(url.replace("token=", "token=x")).status_code == 401
            reply = client.get(url)
            assert reply.status_code == 303 and "redrive_session=" in reply.headers["set-cookie"]
            assert client.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        process.terminate()
        process.wait(10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_a_busy_port_is_one_line(web_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "redrive.cli", "--redis-url", web_url, "dashboard",
                "--port", str(port)]  # fmt: skip
        done = subprocess.run(argv, check=False, env=ENV, capture_output=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (is another "
        "process using it? choose another --port)"
    ]
    assert b"token=" not in done.stdout  # no URL printed for a server that never ran
