"""Security by default, through the framework's test client on a real redis-server."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from redrive.web.app import ACTION_PATHS
from redrive.web.security import COOKIE, CSP, Access, allowed_hosts
from tests.web.conftest import BASE, SAME_ORIGIN, TOKEN, login, make_client

PAGES = ("/", "/dlq", "/groups", "/jobs", "/audit", "/events", "/dlq/entry?ref=s@1-0")


@pytest.mark.parametrize("path", PAGES)
def test_no_token_is_401(anon: TestClient, path: str) -> None:
    assert anon.get(path).status_code == 401


def test_post_without_session_is_401(anon: TestClient, csrf: str) -> None:
    reply = anon.post("/actions/preview", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert reply.status_code == 401


def test_wrong_token_is_401_and_sets_no_cookie(anon: TestClient) -> None:
    reply = anon.get("/login?token=not-the-token")
    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers
    assert anon.get("/").status_code == 401


def test_token_becomes_a_strict_httponly_cookie(anon: TestClient) -> None:
    reply = anon.get(f"/login?token={TOKEN}")
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie  # the cookie is derived from the token, never the token
    page = anon.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP and "script-src 'self'" in CSP


def test_wrong_host_is_400_even_with_a_session(web: TestClient) -> None:
    assert web.get("/").status_code == 200
    assert web.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert web.get("/", headers={"host": "127.0.0.1:9999"}).status_code == 400


def test_allowed_hosts() -> None:
    hosts = allowed_hosts("0.0.0.0", 8765, ("dash.internal",))
    access = Access(TOKEN, hosts)
    assert access.host_allowed("localhost:8765") and access.host_allowed("DASH.internal:8765")
    assert not access.host_allowed("0.0.0.0:8765") and not access.host_allowed("evil:8765")


@pytest.mark.parametrize("path", ACTION_PATHS)
def test_post_without_csrf_is_403(web: TestClient, path: str) -> None:
    reply = web.post(path, data={"action": "replay"}, headers=SAME_ORIGIN)
    assert reply.status_code == 403
    assert "CSRF" in reply.text


@pytest.mark.parametrize("path", ACTION_PATHS)
def test_post_from_another_origin_is_403(web: TestClient, csrf: str, path: str) -> None:
    for headers in ({"origin": "http://evil.example"}, {"referer": "http://evil.example/x"},
                    {"origin": "null"}, {}):  # fmt: skip
        reply = web.post(path, data={"csrf": csrf, "action": "replay"}, headers=headers)
        assert reply.status_code == 403, (headers, reply.text)
        assert "cross-origin" in reply.text


def test_post_with_csrf_from_this_origin_passes(web: TestClient, csrf: str) -> None:
    # Past the guard, the route itself answers (a bad action is a 400 with one line).
    reply = web.post("/actions/preview", data={"csrf": csrf, "action": "nuke"},
                     headers={"referer": BASE + "/dlq"})  # fmt: skip
    assert reply.status_code == 400
    assert "use replay or delete" in reply.text


def test_read_only_refuses_every_action(web_url: str, csrf: str) -> None:
    with make_client(web_url, read_only=True) as client:
        login(client)
        for path in ACTION_PATHS:
            reply = client.post(path, data={"csrf": csrf, "action": "replay"}, headers=SAME_ORIGIN)
            assert reply.status_code == 403, path
            assert "read-only" in reply.text
        page = client.get("/dlq")
        assert page.status_code == 200
        assert "/actions/preview" not in page.text  # and the buttons are gone too


def test_static_files_need_no_session_and_carry_the_csp(anon: TestClient) -> None:
    reply = anon.get("/static/live.js")
    assert reply.status_code == 200
    assert reply.headers["content-security-policy"] == CSP
    assert reply.headers["x-frame-options"] == "DENY"


def test_the_redis_password_is_never_shown(web_redis, r) -> None:  # type: ignore[no-untyped-def]
    r.execute_command("ACL", "SETUSER", "webpw", "on", ">s3cret-pw-42", "~*", "&*", "+@all")
    url = f"redis://webpw:s3cret-pw-42@127.0.0.1:{web_redis.port}/0"
    with make_client(url) as client:
        login(client)
        for path in ("/", "/dlq", "/groups", "/audit", "/jobs", "/dlq/entry?ref=x@1-0"):
            page = client.get(path)
            assert "s3cret-pw-42" not in page.text, path
        assert "webpw:***@" in client.get("/").text


def test_no_inline_script_style_or_handler_anywhere() -> None:
    """The CSP forbids inline code; the templates and charts contain none to forbid."""
    import re

    from redrive.web import charts
    from redrive.web.context import HERE

    inline = re.compile(r"<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=|javascript:", re.I)
    for template in (HERE / "templates").glob("*.html"):
        assert not inline.search(template.read_text()), template.name
    drawn = charts.throughput([1, 2, 3], 60) + charts.bars([(0, 1), (1, 0)], label="<x>")
    assert not inline.search(drawn) and "&lt;x&gt;" in drawn


def test_no_poll_while_no_page_is_open(web: TestClient) -> None:
    for path in ("/", "/dlq", "/groups", "/jobs", "/audit"):
        assert web.get(path).status_code == 200
    poller = web.app.app.state.dashboard.poller  # type: ignore[attr-defined]
    assert poller.polls == 0 and not poller.running  # pages rendered, nobody subscribed
