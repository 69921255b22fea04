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


def test_preview_confirm_pause_resume_through_the_routes(
    web_url: str, csrf: str, r: redis.Redis, stream: str
) -> None:
    seed(r, stream, 12)
    target = stream + ":back"
    with make_client(web_url, run_jobs=True) as client:
        login(client)
        form = {"csrf": csrf, "action": "replay", "stream": stream}
        preview = client.post("/actions/preview", data=form, headers=SAME_ORIGIN)
        assert 'id="preview-count">12<' in preview.text
        snap = preview.text.split('name="snapshot" value="', 1)[1].split('"', 1)[0]
        confirm = {"csrf": csrf, "action": "replay", "snapshot": snap, "target": "stream",
                   "to": target, "rate": "8", "note": "routes"}  # fmt: skip
        reply = client.post("/actions/confirm", data=confirm, headers=SAME_ORIGIN)
        assert reply.status_code == 303
        job_url = reply.headers["location"]
        paused = client.post(job_url + "/pause", data={"csrf": csrf}, headers=SAME_ORIGIN)
        assert paused.status_code == 303 and _status(client, job_url) == "paused"
        _until(lambda: _page_moved(client, job_url) == r.xlen(target), 3)  # settled
        held = r.xlen(target)
        time.sleep(0.5)  # at 8/s, four more would have moved by now were it not paused
        assert r.xlen(target) == held < 12
        resumed = client.post(job_url + "/resume", data={"csrf": csrf}, headers=SAME_ORIGIN)
        assert resumed.status_code == 303
        _until(lambda: _status(client, job_url) == "done", 10)
    assert (r.xlen(target), r.xlen(keys.dlq(stream))) == (12, 0)


def _until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)


def _page_moved(client: TestClient, job_url: str) -> int:
    page = client.get(job_url).text
    return int(page.split('id="job-moved">', 1)[1].split("<", 1)[0])


def _status(client: TestClient, job_url: str) -> str:
    page = client.get(job_url).text
    return page.split('id="job-status">', 1)[1].split("<", 1)[0]


def test_an_empty_selection_is_refused_not_everything(web: TestClient, csrf: str) -> None:
    form = {"csrf": csrf, "action": "delete", "selection": "1"}
    reply = web.post("/actions/preview", data=form, headers=SAME_ORIGIN)
    assert reply.status_code == 400 and "nothing selected" in reply.text


def test_confirming_one_preview_twice_is_one_job(
    web: TestClient, csrf: str, r: redis.Redis, stream: str
) -> None:
    seed(r, stream, 3)
    form = {"csrf": csrf, "action": "delete", "stream": stream}
    preview = web.post("/actions/preview", data=form, headers=SAME_ORIGIN)
    snap = preview.text.split('name="snapshot" value="', 1)[1].split('"', 1)[0]
    confirm = {"csrf": csrf, "action": "delete", "snapshot": snap}
    first = web.post("/actions/confirm", data=confirm, headers=SAME_ORIGIN)
    again = web.post("/actions/confirm", data=confirm, headers=SAME_ORIGIN)  # a double click
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
