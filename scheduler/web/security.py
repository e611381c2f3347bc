"""Who may look and act: the access token, the Host check, CSRF, and the security headers.

- Bound to loopback without a token, the dashboard trusts the machine's users (as the CLI
  does) but answers only requests whose Host is a loopback name, so a web page elsewhere
  cannot reach it through DNS rebinding.
- With a token (required on any other address), every request needs it: an
  `Authorization: Bearer` header, or the session cookie set by `/login` (or by opening a URL
  with `?token=...` once, which then redirects to the URL without it).
- Every POST carries a CSRF token that must equal the one in its SameSite=Strict cookie, and
  an Origin, when the browser sends one, that is this server.
- Every response forbids inline script and style, framing and MIME sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "sched_csrf"
SESSION_COOKIE = "sched_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """What the session cookie holds: derived from the token, so the cookie is not the token."""
    return hmac.new(token.encode(), b"sched-web-session", hashlib.sha256).hexdigest()


def tokens_equal(given: str, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return hmac.compare_digest(given.encode(), token.encode())


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies."""
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
                return {}
    return {key: morsel.value for key, morsel in jar.items()}


def header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def csrf_ok(scope: Scope, form_value: str | None) -> bool:
    """The form's CSRF token matches its cookie, and the Origin (if any) is this server."""
    cookie = cookies(scope).get(CSRF_COOKIE)
    if not cookie or not form_value or not hmac.compare_digest(cookie, form_value):
        return False
    origin = header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    host = header(scope, b"host") or ""
    return origin in (f"http://{host}", f"https://{host}")


class Guard:
    """ASGI middleware: Host check, token, CSRF cookie, security headers."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: set[str]) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = (header(scope, b"host") or "").lower()
        if self.token is None and host not in self.allowed_hosts:
            await _plain(send, 421, "this dashboard answers only on its loopback address\n")
            return
        jar = cookies(scope)
        if self.token is not None and not self._authorized(scope, jar):
            if await self._token_in_query(scope, send):
                return
            if not (
                scope["path"] in ("/login", "/favicon.svg") or scope["path"].startswith("/static/")
            ):
                await self._refuse(scope, send)
                return
        csrf = jar.get(CSRF_COOKIE)
        new_cookie = None
        if not csrf or len(csrf) < 20:
            csrf = new_cookie = secrets.token_urlsafe(24)
        state = scope.setdefault("state", {})
        state["csrf"] = csrf
        state["token"] = self.token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += HEADERS
                if new_cookie is not None:
                    headers.append((b"set-cookie", _cookie(CSRF_COOKIE, new_cookie)))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _authorized(self, scope: Scope, jar: dict[str, str]) -> bool:
        assert self.token is not None
        auth = header(scope, b"authorization") or ""
        if auth.startswith("Bearer ") and hmac.compare_digest(
            auth[7:].strip().encode(), self.token.encode()
        ):
            return True
        session = jar.get(SESSION_COOKIE, "")
        return hmac.compare_digest(session.encode(), session_value(self.token).encode())

    async def _token_in_query(self, scope: Scope, send: Send) -> bool:
        """`?token=...`: set the session cookie and redirect to the URL without the token."""
        assert self.token is not None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        given = [v for k, v in query if k == "token"]
        if not given or not hmac.compare_digest(given[0].encode(), self.token.encode()):
            return False
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        # The path as sent (still percent-encoded): nothing decoded goes into a header.
        path = scope.get("raw_path") or quote(scope["path"]).encode()
        location = path.decode("latin-1") + (f"?{rest}" if rest else "")
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1", "replace")),
                    (b"set-cookie", _cookie(SESSION_COOKIE, session_value(self.token))),
                    *HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["path"].startswith("/api/"):
            await _plain(
                send,
                401,
                '{"error": "an access token is required: Authorization: Bearer <token>"}',
                b"application/json",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", b"/login"), *HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _cookie(name: str, value: str) -> bytes:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict".encode()


async def _plain(
    send: Send,
    status: int,
    text: str,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), *HEADERS, *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
