"""Serving the dashboard: where it listens, who may use it, and the uvicorn server itself."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.model import JobSpec
from scheduler.web.security import is_loopback

log = logging.getLogger("sched.web")
DEFAULT_BIND = "127.0.0.1:8765"
MIN_TOKEN = 16
TOKEN_HINT = "e.g. SCHED_WEB_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe())')"


class WebConfigError(ValueError):
    """A bind address or access setting the dashboard cannot start with."""


@dataclass(frozen=True)
class WebSettings:
    """Where the dashboard listens and what it allows."""

    host: str
    port: int
    read_only: bool = False
    token: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def allowed_hosts(self) -> set[str]:
        """Host headers answered without a token: this server's loopback names."""
        names = {self.host, "127.0.0.1", "localhost", "[::1]"}
        return {f"{n}:{self.port}".lower() for n in names} | {n.lower() for n in names}


def settings(bind: str, *, read_only: bool = False, token: str | None = None) -> WebSettings:
    """Check a `--bind` value and the access rules: anything but loopback needs a token."""
    host, sep, port_text = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise WebConfigError(
            f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765"
        )
    token = token or None
    if token is not None and len(token) < MIN_TOKEN:
        raise WebConfigError(
            f"the access token is {len(token)} characters long; use at least {MIN_TOKEN} "
            f"random ones, {TOKEN_HINT}"
        )
    if not is_loopback(host) and token is None:
        raise WebConfigError(
            f"--bind {bind!r} accepts connections from other machines, and anyone who can "
            "reach it could read every run's output and trigger or kill runs: give an access "
            f"token (--token or SCHED_WEB_TOKEN, {TOKEN_HINT}), or bind 127.0.0.1"
        )
    return WebSettings(host, int(port_text), read_only, token)


def claim_port(web: WebSettings, *, fall_back: bool) -> WebSettings:
    """Check that the address is free now (a busy default moves to a free port when
    `fall_back`), and return the settings with the port that will be used."""
    try:
        sock = listen(web)
    except WebConfigError:
        if not fall_back:
            raise
        moved = WebSettings(web.host, 0, web.read_only, web.token)
        sock = listen(moved)
        log.warning("port %d is in use; the dashboard takes a free port instead", web.port)
    port = sock.getsockname()[1]
    sock.close()
    return WebSettings(web.host, port, web.read_only, web.token)


def listen(web: WebSettings) -> socket.socket:
    """A listening socket on the settings' address (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in web.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((web.host, web.port))
    except OSError as exc:
        sock.close()
        raise WebConfigError(
            f"cannot listen on {web.host}:{web.port}: {exc.strerror}; choose another address "
            "(sched web --bind, sched run --web-bind) or turn the dashboard off (--no-web)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(
    web: WebSettings,
    specs: Mapping[str, JobSpec],
    redis_url: str,
    namespace: str,
    sock: socket.socket | None = None,
) -> int:
    """Serve the dashboard until SIGINT/SIGTERM; the exit code."""
    import uvicorn

    from scheduler.store import Store
    from scheduler.web.app import create_app
    from scheduler.web.cache import Summaries

    sock = sock or listen(web)
    web = WebSettings(web.host, sock.getsockname()[1], web.read_only, web.token)  # port 0
    store = Store(redis_url, namespace)
    summaries = Summaries(store)
    app = create_app(
        store,
        specs,
        read_only=web.read_only,
        token=web.token,
        allowed_hosts=web.allowed_hosts(),
        summaries=summaries,
    )
    # Read the overview's runs once now, so the first person to open it does not wait for
    # the summaries of every job's last 50 runs (seconds with a thousand jobs).
    threading.Thread(
        target=_warm, args=(summaries, list(specs)), name="sched-web-warm", daemon=True
    ).start()
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
        server_header=False,
        lifespan="off",
    )
    # uvicorn's start-up lines repeat ours; its warnings and errors still show.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    log.info("dashboard on %s%s", web.url, " (read-only)" if web.read_only else "")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
        sock.close()
    return 0


def _warm(summaries: Any, jobs: list[str]) -> None:
    from scheduler.errors import StoreError
    from scheduler.web.svg import STRIP_RUNS

    try:
        summaries.recent(jobs, STRIP_RUNS)
    except StoreError as exc:
        log.warning("dashboard: could not read the runs ahead (%s); pages will", exc)


def serve_plan(plan: Any) -> int:
    """The `web` child of `sched run`: serve the plan's dashboard in this process.

    The supervisor forks it like the scheduler and the workers, and never imports the web
    stack itself, so the server's threads exist only here and no worker inherits them.
    """
    import setproctitle

    web: WebSettings = plan.web
    setproctitle.setproctitle(f"sched web ({web.url})")
    try:
        return serve(web, plan.specs, plan.redis_url, plan.namespace)
    except WebConfigError as exc:
        log.error("dashboard not started: %s", exc)
        return 0  # not a crash to restart: the address is taken
