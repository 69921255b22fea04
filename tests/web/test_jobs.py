"""Actions through the routes: a stored job resumed by the dashboard, stale snapshots."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from starlette.testclient import TestClient

from redrive.dlq import connect, jobs, snapshot
from redrive.dlq.query import Filter
from redrive.store import keys
from tests.web import browser
from tests.web.conftest import SAME_ORIGIN, login, make_client, seed


async def _submit(url: str, stream: str) -> str:
    client = connect(url)
    try:
        preview = await snapshot.take(client, Filter(streams=(stream,)))
        job = await jobs.submit(client, jobs.JobSpec("delete", preview.id, by="test"))
        return job.id
    finally:
        await client.aclose()


def test_the_dashboard_runs_a_job_stored_before_it_started(
    web_url: str, r: redis.Redis, stream: str
) -> None:
    seed(r, stream, 4)
    job_id = asyncio.run(_submit(web_url, stream))  # queued, with no runner anywhere
    with make_client(web_url, run_jobs=True) as client:
        login(client)
        deadline = time.monotonic() + 10
        while r.xlen(keys.dlq(stream)) and time.monotonic() < deadline:
            time.sleep(0.05)
        page = client.get(f"/jobs/{job_id}").text
    assert r.xlen(keys.dlq(stream)) == 0
    assert job_id in page and "delete" in page


def test_a_confirm_of_an_unknown_snapshot_is_one_line(web: TestClient, csrf: str) -> None:
    form = {"csrf": csrf, "action": "replay", "snapshot": "no-such-snapshot"}
    reply = web.post("/actions/confirm", data=form, headers=SAME_ORIGIN)
    assert reply.status_code == 400
    assert 'id="error-message"' in reply.text and "Traceback" not in reply.text


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="browser tests must run in CI"):
        browser.chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no chromium on PATH"):
        browser.chromium()
