"""The dashboard's security by default: token login, Host check, CSRF, read-only, CSP.

One pure-ASGI middleware runs before every route, in this order:

1. **Host** (DNS rebinding): a ``Host`` header outside the allowed names → 400. A page
   of ``evil.example`` whose name was rebound to 127.0.0.1 sends ``Host: evil.example``.
2. **Token**: ``GET /login?token=T`` with the token printed at start sets an HttpOnly,
   SameSite=Strict session cookie (derived from the token, never the token itself) and
   redirects to the overview. Any other request without that cookie → 401.
3. **POST**: an ``Origin`` (else ``Referer``) of this very host and the CSRF token of
   the session in the form → else 403; under ``--read-only`` every POST → 403, whatever
   the page shows (the server enforces it, not the buttons).

Every response carries a strict Content-Security-Policy (scripts, styles, images and
event streams from this origin only; no inline script or style), ``nosniff``, no
framing and ``no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redrive.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "redrive_session"
CSRF_FIELD = "csrf"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def read_token_file(path: str) -> str:
    """The token in ``path`` (its first line, stripped); at least 16 characters."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.readline().strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc.strerror or exc})") from None
    if len(token) < 16:
        raise ConfigError(f"--token-file {path}: the token must be at least 16 characters")
    return token


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the dashboard: the token, the host names it answers to, read-only.

    ``token_id`` names the token in the audit log (``by=dashboard:<id>``) without
    revealing it; the session cookie and the CSRF token are derived from the token, so
    a restart with the same ``--token-file`` keeps browsers logged in.
    """

    token: str = field(repr=False)
    hosts: frozenset[str]
    read_only: bool = False

    @property
    def token_id(self) -> str:
        """A short, stable id of the token (not reversible)."""
        return hashlib.sha256(self.token.encode()).hexdigest()[:8]

    @property
    def by(self) -> str:
        """What actions record as their author."""
        return f"dashboard:{self.token_id}"

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session(self) -> str:
        """The session cookie's value."""
        return self._derive("session")

    @property
    def csrf(self) -> str:
        """The CSRF token every form carries."""
        return self._derive("csrf")

    def host_allowed(self, host: str) -> bool:
        """Whether a ``Host`` header (``name:port``) names this dashboard."""
        return host.lower() in self.hosts


def allowed_hosts(bind: str, port: int, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The ``Host`` values to accept: loopback names, the bound host, and ``extra``."""
    names = {*LOOPBACK, *extra}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(f"[{bind}]" if ":" in bind else bind)
    return frozenset(f"{n.lower()}:{port}" for n in names)


def same_origin(headers: dict[bytes, bytes], host: str) -> bool:
    """``Origin`` (else ``Referer``) names ``host`` over http(s); neither → refused."""
    origin = headers.get(b"origin") or headers.get(b"referer")
    if not origin or origin == b"null":
        return False
    parts = urlsplit(origin.decode("latin-1"))
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class SecurityMiddleware:
    """The checks of the module docstring around ``app``; POST bodies are read once and
    replayed to the route."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.access.host_allowed(host):
            await _plain(send, 400, "Bad Request: unknown Host header (DNS rebinding guard)")
            return
        if scope["path"] == "/login":
            await self._login(scope, send)
            return
        if scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        session = _cookie(headers, COOKIE) or ""
        if not hmac.compare_digest(session.encode(), self.access.session.encode()):
            await _plain(send, 401, "Unauthorized: open the URL with ?token= printed at start")
            return
        if scope["method"] == "POST":
            refusal, receive = await self._check_post(headers, host, receive)
            if refusal:
                await _plain(send, 403, f"Forbidden: {refusal}")
                return
        await self.app(scope, receive, send)

    async def _login(self, scope: Scope, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.access.token.encode()):
            await _plain(send, 401, "Unauthorized: wrong or missing token")
            return
        cookie = f"{COOKIE}={self.access.session}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", b"/"), (b"set-cookie", cookie.encode())]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _check_post(
        self, headers: dict[bytes, bytes], host: str, receive: Receive
    ) -> tuple[str, Receive]:
        if self.access.read_only:
            return "the dashboard runs with --read-only", receive
        if not same_origin(headers, host):
            return "cross-origin request (Origin/Referer is not this dashboard)", receive
        body = await _read_body(receive)
        form = parse_qs(body.decode("latin-1")) if _is_urlencoded(headers) else {}
        given = (form.get(CSRF_FIELD) or [""])[0]
        if not hmac.compare_digest(given.encode(), self.access.csrf.encode()):
            return "missing or wrong CSRF token (reload the page)", receive
        return "", _replay(body, receive)


def _is_urlencoded(headers: dict[bytes, bytes]) -> bool:
    kind = headers.get(b"content-type", b"").split(b";")[0].strip()
    return kind == b"application/x-www-form-urlencoded"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, then: Receive) -> Receive:
    """The body already read, then the connection's own messages (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in HEADERS if k not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
