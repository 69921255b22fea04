"""The read-only pages: what they show, newest first, as text, through the library."""

from __future__ import annotations

import json
import time

import redis
from starlette.testclient import TestClient

from redrive.web.security import Access
from tests.web.conftest import SAME_ORIGIN, TOKEN, seed

SCRIPT = "<script>window.pwned=1</script>"
IMG = '"><img src=x onerror="window.pwned=2">'


def test_payload_and_error_render_as_text(web: TestClient, r: redis.Redis, stream: str) -> None:
    body = json.dumps({"note": SCRIPT, "more": IMG}).encode()
    (entry_id,) = seed(r, stream, 1, fields={b"data": body}, message=f"{SCRIPT} {IMG}")
    for path in (f"/dlq?stream={stream}", f"/dlq/entry?ref={stream}@{entry_id}"):
        page = web.get(path)
        assert page.status_code == 200
        assert "<script>window" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page.text
        assert "&lt;img src=x onerror=" in page.text


def test_list_is_newest_first_with_a_cursor(web: TestClient, r: redis.Redis, stream: str) -> None:
    ids = seed(r, stream, 120)
    first = web.get(f"/dlq?stream={stream}")
    refs = _refs(first.text)
    assert refs == [f"{stream}@{i}" for i in reversed(ids[-50:])]
    second = web.get(_older(first.text))
    assert _refs(second.text) == [f"{stream}@{i}" for i in reversed(ids[20:70])]
    third = web.get(_older(second.text))
    assert _refs(third.text) == [f"{stream}@{i}" for i in reversed(ids[:20])]
    assert 'id="older"' not in third.text


def test_filters_narrow_the_list(web: TestClient, r: redis.Redis, stream: str) -> None:
    seed(r, stream, 3, reason="poison", error_type="DecodeError", message="bad json at 7")
    seed(r, stream, 2, start=3, message="timeout after 99 ms")
    assert len(_refs(web.get(f"/dlq?stream={stream}&reason=poison").text)) == 3
    assert len(_refs(web.get(f"/dlq?stream={stream}&error_type=DecodeError").text)) == 3
    assert len(_refs(web.get(f"/dlq?stream={stream}&q=timeout+after").text)) == 2
    assert len(_refs(web.get(f"/dlq?stream={stream}&q=.*").text)) == 0  # text, not a pattern
    now = int(time.time() * 1000)
    assert len(_refs(web.get(f"/dlq?stream={stream}&since={now + 60_000}").text)) == 0


def test_a_bad_filter_is_one_line(web: TestClient, stream: str) -> None:
    page = web.get(f"/dlq?stream={stream}&since=yesterday")
    assert page.status_code == 400
    assert "since &#39;yesterday&#39;: use" in page.text
    missing = web.get(f"/dlq/entry?ref={stream}@1-0")
    assert missing.status_code in (400, 404)


def test_entry_page_shows_everything(web: TestClient, r: redis.Redis, stream: str) -> None:
    (entry_id,) = seed(r, stream, 1, fields={b"data": b'{"order_id": 7, "sku": "A-1"}'})
    page = web.get(f"/dlq/entry?ref={stream}@{entry_id}").text
    assert "&#34;order_id&#34;: 7" in page  # pretty-printed JSON, escaped
    assert "redrive-origin-id" in page and "gateway.py" in page  # fields and traceback
    assert "timeout after 3012 ms" in page and "max_retries_exceeded" in page


def test_groups_and_an_audited_export(
    web: TestClient, csrf: str, r: redis.Redis, stream: str
) -> None:
    seed(r, stream, 4, message="timeout after 3012 ms")
    seed(r, stream, 2, start=4, error_type="KeyError", message="'sku'")
    page = web.get(f"/groups?stream={stream}").text
    assert page.count("data-fingerprint=") == 2
    form = {"csrf": csrf, "stream": stream, "error_type": "KeyError"}
    export = web.post("/export", data=form, headers=SAME_ORIGIN)
    assert export.status_code == 200
    assert export.headers["content-disposition"].startswith("attachment")
    lines = export.text.splitlines()
    assert len(lines) == 2 and all(json.loads(x)["stream"] == stream for x in lines)
    (_, audited), *_ = r.xrevrange("redrive:audit", count=1)
    assert audited[b"action"] == b"export" and audited[b"count"] == b"2"
    assert audited[b"by"].decode() == Access(TOKEN, frozenset()).by
    assert b"error_type=KeyError" in audited[b"filter"]


def test_overview_lists_the_stream(web: TestClient, r: redis.Redis, stream: str) -> None:
    seed(r, stream, 3)
    page = web.get("/").text
    assert f'data-stream="{stream}"' in page
    assert "Health:" in page


def _refs(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr data-ref="')[1:]]


def _older(html: str) -> str:
    """The URL of the "Older" link."""
    head = html.split('" id="older"', 1)[0]
    return head.rsplit('<a href="', 1)[1].replace("&amp;", "&")


def test_redis_down_is_one_line_on_every_page() -> None:
    from redrive.testing import RedisProcess
    from tests.web.conftest import login, make_client

    with RedisProcess() as server, make_client(server.url) as client:
        login(client)
        server.stop()
        for path in ("/", "/dlq", "/groups", "/jobs", "/audit", "/dlq/entry?ref=s@1-0"):
            page = client.get(path)
            assert page.status_code in (200, 503), path
            assert "Traceback" not in page.text
            assert 'class="error"' in page.text, path  # one line saying what failed
