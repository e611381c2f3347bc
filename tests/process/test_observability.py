"""Metrics scraped over HTTP and a failure webhook received by a real local HTTP server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for

JOBS = Path(__file__).parent / "obs_jobs"


class Receiver(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        Receiver.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def webhook() -> Iterator[str]:
    Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()
    thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_metrics_and_failure_webhook(redis_url: str, webhook: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(
        SCHED_REDIS_URL=redis_url, SCHED_ON_FAILURE=webhook, SCHED_ON_LATE=webhook, SCHED_LEASE="2s"
    )
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler",
            "--jobs",
            str(JOBS),
            "run",
            "--workers",
            "1",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def first(event: str) -> dict[str, Any] | None:
            return next((b for b in Receiver.bodies if b["event"] == event), None)

        body = wait_for(lambda: first("failure"), 30, "the failure webhook")
        assert body["run"]["job"] == "obs.fails" and body["run"]["status"] == "failed"
        assert body["run"]["error"]["message"] == "for the webhook"

        def counted() -> str | None:
            text = scrape(port)
            ok = 'sched_runs_total{job="obs.works",status="completed"}' in text
            return text if ok and 'status="failed"' in text else None

        text = wait_for(counted, 30, "runs counted in the metrics")
        assert "sched_fire_delay_seconds_count" in text
        assert re.search(r"^sched_workers_alive [12]\.0$", text, re.M)
        failures = [b for b in Receiver.bodies if b["event"] == "failure"]
        assert all(b["run"]["job"] == "obs.fails" for b in failures)
        late = wait_for(lambda: first("late"), 30, "the late webhook")
        assert late["run"]["job"] == "obs.lingers" and late["run"]["status"] == "running"
        assert "past its expected duration" in late["reason"]
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    assert proc.returncode == 0
