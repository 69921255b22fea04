"""The dashboard in a real browser (Playwright driving Debian's chromium).

One ``redrive dashboard`` process serves the module, on the web session's redis-server;
every test uses streams of its own. The screenshots of docs/dashboard.md come from
``tests/web/screenshots.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redrive.store import keys
from redrive.web.security import Access
from tests.web.browser import Served, chromium, serve
from tests.web.conftest import seed

XSS_BODY = "<script>alert('body')</script>"
XSS_ERROR = "\"><img src=x onerror=alert('error')>"
TOKEN = "browser-token-0123456789abcdef"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dashboard(web_redis: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    token_file = tmp_path_factory.mktemp("dash") / "token"
    token_file.write_text(TOKEN + "\n")
    yield from serve(web_redis.url, token_file)


@pytest.fixture
def page(browser: Any, dashboard: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.dialogs = []  # every alert() that fires, were the page to run injected code
    opened.on("dialog", lambda d: (opened.dialogs.append(d.message), d.dismiss()))
    yield opened
    context.close()


def logged_in(page: Any, dashboard: Served) -> Any:
    page.goto(dashboard.login)
    return page


def test_token_login(page: Any, dashboard: Served) -> None:
    reply = page.goto(dashboard.base + "/")
    assert reply.status == 401
    assert "token" in page.text_content("body")
    page.goto(dashboard.login)
    assert page.url == dashboard.base + "/"
    assert page.text_content("h1") == "Overview"
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != TOKEN


def test_hostile_payload_renders_as_text(page: Any, dashboard: Served, r: redis.Redis,
                                         stream: str) -> None:  # fmt: skip
    body = json.dumps({"note": XSS_BODY}).encode()
    (entry_id,) = seed(r, stream, 1, fields={b"data": body}, message=XSS_ERROR)
    logged_in(page, dashboard)
    page.goto(f"{dashboard.base}/dlq?stream={stream}")
    row = page.locator(f'tr[data-ref="{stream}@{entry_id}"]')
    assert XSS_ERROR in row.locator("td.err").inner_text()
    assert XSS_BODY in row.locator("td.payload").inner_text()
    page.goto(f"{dashboard.base}/dlq/entry?ref={stream}@{entry_id}")
    assert XSS_BODY in page.locator("#payload").inner_text()
    assert XSS_ERROR in page.locator("#error").inner_text()
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main script").count() == 0
    page.wait_for_timeout(200)  # an <img onerror> would have fired by now
    assert page.dialogs == []


def test_group_replay_moves_exactly_the_previewed(page: Any, dashboard: Served,
                                                  r: redis.Redis, stream: str) -> None:  # fmt: skip
    previewed = seed(r, stream, 5, message="timeout after 3012 ms")
    logged_in(page, dashboard)
    page.goto(f"{dashboard.base}/groups?stream={stream}")
    page.locator("tr[data-fingerprint] button[value=replay]").click()
    assert page.text_content("#preview-count") == "5"
    (late,) = seed(r, stream, 1, start=5, message="timeout after 2991 ms")  # same group
    page.click("#confirm-button")
    wait_text(page, "#job-status", "done", 10)
    assert page.text_content("#job-moved") == "5"
    left = [i.decode() for i, _ in r.xrange(keys.dlq(stream))]
    assert left == [late]  # the one that died after the preview stays
    replayed = r.xrange(keys.retry_stream(stream, "orders"))
    origins = sorted(f[b"redrive-replayed-from"].decode() for _, f in replayed)
    assert origins == sorted(previewed)  # exactly the previewed entries, each once
    page.goto(f"{dashboard.base}/audit")
    by = Access(TOKEN, frozenset()).by
    rows = page.locator("#audit-table tbody tr", has_text=by)
    assert rows.count() >= 1
    assert "5" in [rows.nth(i).locator("td.count").inner_text() for i in range(rows.count())]


def test_cancel_stops_a_rate_limited_replay(page: Any, dashboard: Served, r: redis.Redis,
                                            stream: str) -> None:  # fmt: skip
    seed(r, stream, 30)
    target = stream + ":again"
    logged_in(page, dashboard)
    page.goto(f"{dashboard.base}/dlq?stream={stream}")
    page.locator("#bulk-filter button[value=replay]").click()
    assert page.text_content("#preview-count") == "30"
    page.check("input[name=target][value=stream]")
    page.fill("input[name=to]", target)
    page.fill("input[name=rate]", "10")
    page.click("#confirm-button")
    wait_until(lambda: int(page.text_content("#job-done") or 0) >= 3, 10)
    page.click("#cancel")
    wait_text(page, "#job-status", "cancelled", 5)

    def settled() -> bool:  # the page catches up with an entry moved as cancel landed
        moved, left = int(page.text_content("#job-moved")), int(page.text_content("#job-left"))
        return (moved, left) == (r.xlen(target), r.xlen(keys.dlq(stream)))

    wait_until(settled, 3)
    moved, left = int(page.text_content("#job-moved")), int(page.text_content("#job-left"))
    assert 3 <= moved < 30 and moved + left == 30  # stopped midway, nothing lost or doubled
    time.sleep(0.5)  # the rate would have moved 5 more by now
    assert (r.xlen(target), r.xlen(keys.dlq(stream))) == (moved, left)


def test_overview_updates_within_two_seconds(page: Any, dashboard: Served, r: redis.Redis,
                                             stream: str) -> None:  # fmt: skip
    seed(r, stream, 2)
    logged_in(page, dashboard)
    size = page.locator(f'section[data-stream="{stream}"] .dlq-size')
    assert size.inner_text() == "2"
    # Polled from here: the page's CSP (no eval) refuses Playwright's wait_for_function.
    wait_until(lambda: (page.text_content("#live-state") or "").startswith("on"), 5)
    started = time.monotonic()
    seed(r, stream, 1, start=2)
    wait_until(lambda: size.inner_text() == "3", 2.0)
    assert time.monotonic() - started <= 2.0


def wait_until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.05)


def wait_text(page: Any, selector: str, text: str, timeout: float) -> None:
    wait_until(lambda: (page.text_content(selector) or "").strip() == text, timeout)
