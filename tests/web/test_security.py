"""Hostile content is inert, inline script is forbidden, and every action needs its guards."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from scheduler.model import JobSpec
from scheduler.store import Store
from scheduler.web.server import WebConfigError, settings
from tests.helpers import trigger
from tests.web.conftest import csrf_of, make_client, record

SCRIPT = "<script>alert('pwned')</script>"
ATTR = '"><img src=x onerror="alert(1)">'
ESCAPES = "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x9b2J"
PAGES = ["/", "/jobs/demo.tick", "/runs", "/workers"]


def _hostile(store: Store) -> str:
    return record(
        store,
        "demo.tick@20261127T101500Z",
        "demo.tick",
        datetime.now(UTC) - timedelta(minutes=3),
        "failed",
        output=f"line one\n{SCRIPT}\n{ATTR}\n{ESCAPES}\n",
        error={"type": "RuntimeError", "message": f"boom {SCRIPT} {ATTR}", "traceback": ATTR},
        result={"html": SCRIPT, "attr": ATTR, "esc": ESCAPES},
        reason=f"raised RuntimeError: {ATTR}",
        exit_code=1,
    )


def _no_live_markup(html: str) -> None:
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert 'onerror="alert' not in html
    assert "\x1b" not in html and "\x07" not in html and "\x9b" not in html


def test_hostile_output_error_and_result_are_shown_as_text(
    client: TestClient, store: Store
) -> None:
    run_id = _hostile(store)
    page = client.get("/runs/" + run_id.replace("#", "%23"))
    assert page.status_code == 200
    html = page.text
    _no_live_markup(html)
    # Shown, escaped: the text is there for a person to read.
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    # Terminal escapes become visible symbols (U+241B for ESC, U+2407 for BEL).
    assert "\u241b[31mred\u241b[0m" in html and "\u2407" in html and "\\x9b" in html


@pytest.mark.parametrize("path", PAGES)
def test_hostile_content_is_inert_on_every_page(
    client: TestClient, store: Store, path: str
) -> None:
    _hostile(store)
    page = client.get(path)
    assert page.status_code == 200
    _no_live_markup(page.text)


def test_hostile_content_is_inert_in_the_live_stream(client: TestClient, store: Store) -> None:
    run_id = _hostile(store)
    with client.stream("GET", f"/runs/{run_id}/events") as stream:
        body = "".join(stream.iter_text())
    assert "event: final" in body
    # JSON-encoded; the page's script puts it in with textContent, never as HTML.
    assert "\\u001b[31m" in body and "<script>alert" in body


@pytest.mark.parametrize("path", [*PAGES, "/api/v1/jobs", "/static/style.css", "/nowhere"])
def test_every_response_forbids_inline_script(client: TestClient, path: str) -> None:
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_no_inline_script_or_style(client: TestClient, store: Store, path: str) -> None:
    _hostile(store)
    tags = _Tags()
    tags.feed(client.get(path).text)
    assert tags.scripts and all(tags.scripts), "a <script> without src"
    assert not tags.handlers, f"inline event handlers: {tags.handlers}"
    assert not tags.styles, "inline style"
    assert not tags.images, "an <img> element from content"


class _Tags(HTMLParser):
    """What the browser would parse as elements and attributes (not text)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[bool] = []
        self.handlers: list[str] = []
        self.styles = 0
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        if tag == "script":
            self.scripts.append("src" in names)
        self.handlers += [f"<{tag} {n}>" for n in names if n.startswith("on")]
        self.styles += tag == "style" or "style" in names
        self.images += tag == "img"


def test_actions_need_the_csrf_token(client: TestClient, store: Store) -> None:
    csrf_of(client)
    missing = client.post("/jobs/demo.tick/pause", data={})
    wrong = client.post("/jobs/demo.tick/pause", data={"csrf": "x" * 32})
    assert missing.status_code == 403 and wrong.status_code == 403
    assert store.paused_jobs() == set()


def test_actions_from_another_origin_are_refused(client: TestClient, store: Store) -> None:
    token = csrf_of(client)
    response = client.post(
        "/jobs/demo.tick/pause",
        data={"csrf": token},
        headers={"origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert store.paused_jobs() == set()
    same = client.post(
        "/jobs/demo.tick/pause", data={"csrf": token}, headers={"origin": "http://testserver"}
    )
    assert same.status_code == 303
    assert store.paused_jobs() == {"demo.tick"}


def test_csrf_cookie_is_strict_and_http_only(client: TestClient) -> None:
    cookie = client.get("/").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_read_only_has_no_actions(store: Store, specs: dict[str, JobSpec]) -> None:
    run_id = trigger(store, "demo.tick")
    with make_client(store, specs, read_only=True) as client:
        for path in ["/", "/jobs/demo.tick", f"/runs/{run_id}"]:
            html = client.get(path).text
            assert 'method="post"' not in html, path
            assert "read-only" in html
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        for path in ["/jobs/demo.tick/trigger", "/jobs/demo.tick/pause", f"/runs/{run_id}/kill"]:
            assert client.post(path, data={"csrf": token.group(1)}).status_code in (404, 405)
    assert store.paused_jobs() == set()
    assert store.get_run(run_id).status == "queued"


def test_other_hosts_are_not_answered_without_a_token(client: TestClient) -> None:
    # DNS rebinding: a page elsewhere that resolves its own name to 127.0.0.1.
    response = client.get("/api/v1/jobs", headers={"host": "attacker.example:8765"})
    assert response.status_code == 421


def test_a_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(WebConfigError, match="give an access token"):
        settings("0.0.0.0:8765")
    with pytest.raises(WebConfigError, match="at least 16"):
        settings("0.0.0.0:8765", token="short")
    assert settings("0.0.0.0:8765", token="t" * 20).token == "t" * 20
    assert settings("[::1]:8765").host == "::1"
    with pytest.raises(WebConfigError, match="HOST:PORT"):
        settings("8765")


def test_sched_web_refuses_to_start_on_a_public_address_without_a_token(
    redis_url: str, tmp_path: object
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler", "--redis-url", redis_url, "web", "--bind", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "give an access token" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_with_a_token_every_request_needs_it(store: Store, specs: dict[str, JobSpec]) -> None:
    token = "s3cret-token-0123456789"
    with make_client(store, specs, token=token) as client:
        assert client.get("/api/v1/jobs").status_code == 401
        assert client.get("/").headers["location"] == "/login"
        assert client.get("/jobs/demo.tick").status_code == 303
        bearer = client.get("/api/v1/jobs", headers={"authorization": f"Bearer {token}"})
        assert bearer.status_code == 200
        wrong = client.get("/api/v1/jobs", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        # Opening a URL with ?token= once sets a session cookie and drops the token from it.
        opened = client.get(f"/jobs/demo.tick?window=1h&token={token}")
        assert opened.status_code == 303
        assert opened.headers["location"] == "/jobs/demo.tick?window=1h"
        assert token not in opened.headers["set-cookie"]
        assert client.get("/jobs/demo.tick").status_code == 200
    with make_client(store, specs, token=token) as fresh:
        # Nothing decoded from the URL reaches a header.
        odd = fresh.get(f"/jobs/x%0d%0aSet-Cookie:%20a=b?token={token}")
        assert odd.headers["location"] == "/jobs/x%0d%0aSet-Cookie:%20a=b"


def test_login_form_checks_the_token(store: Store, specs: dict[str, JobSpec]) -> None:
    token = "s3cret-token-0123456789"
    with make_client(store, specs, token=token) as client:
        csrf = csrf_of(client, "/login")
        bad = client.post("/login", data={"csrf": csrf, "token": "guess"})
        assert bad.status_code == 401
        assert client.get("/").status_code == 303
        good = client.post("/login", data={"csrf": csrf, "token": token})
        assert good.status_code == 303
        assert client.get("/").status_code == 200


def test_the_page_address_is_escaped_in_the_forms_that_return_to_it(client: TestClient) -> None:
    html = client.get("/", params={"name": '"><script>alert(1)</script>'}).text
    assert "<script>alert(1)" not in html
    tags = _Tags()
    tags.feed(html)
    assert tags.scripts == [True]
