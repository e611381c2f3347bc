"""Issue 15, "sched tells you when sched is down": pings to a real local HTTP server.

A monitor (http.server in a thread of the test process) records every request; a real
`sched scheduler` (and `sched worker`) process sends them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.pings import run_uuid
from scheduler.store import Store
from tests.helpers import final, trigger, wait_for

TICK_JOB = (
    'from scheduler import job\n\n@job(every="1s", overlap="allow")\ndef tick() -> None: ...\n'
)


@dataclass
class Monitor:
    """An HTTP server that answers 200 to everything and remembers what it was sent."""

    server: ThreadingHTTPServer
    hits: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic, method, path)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def paths(self, prefix: str) -> list[str]:
        return [path for _, _, path in list(self.hits) if path.startswith(prefix)]

    def times(self, prefix: str) -> list[float]:
        return [at for at, _, path in list(self.hits) if path.startswith(prefix)]


@pytest.fixture()
def monitor() -> Iterator[Monitor]:
    hits: list[tuple[float, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append((time.monotonic(), "GET", self.path))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Monitor(server, hits)
    finally:
        server.shutdown()
        server.server_close()


def start(
    command: str, redis_url: str, jobs: Path, log: Path, **env_vars: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=redis_url, SCHED_JOBS=str(jobs), **env_vars)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler", command, "--lease", "2s", "--grace", "0.5s"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def jobs_folder(tmp_path: Path, body: str = TICK_JOB) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "pinged.py").write_text(body)
    return jobs


def quiet_for(monitor: Monitor, prefix: str, seconds: float) -> bool:
    """Whether no request for `prefix` arrives during the next `seconds` (a measurement)."""
    before = len(monitor.paths(prefix))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if len(monitor.paths(prefix)) != before:
            return False
        time.sleep(0.05)
    return True


def test_heartbeats_arrive_every_interval_and_stop_with_the_scheduler(
    redis_url: str, tmp_path: Path, monitor: Monitor
) -> None:
    proc = start(
        "scheduler",
        redis_url,
        jobs_folder(tmp_path),
        tmp_path / "scheduler.log",
        SCHED_HEARTBEAT_URL=f"{monitor.url}/hb",
        SCHED_HEARTBEAT_EVERY="0.5s",
    )
    try:
        wait_for(lambda: len(monitor.paths("/hb")) >= 6, 20, "6 heartbeats")
        times = monitor.times("/hb")
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(0.4 < gap < 1.5 for gap in gaps), gaps
        assert {method for _, method, _ in monitor.hits} == {"GET"}
        os.kill(proc.pid, signal.SIGSTOP)  # a hung scheduler
        time.sleep(0.3)  # a ping already on the wire may still land
        assert quiet_for(monitor, "/hb", 3.0), "heartbeats went on from a stopped scheduler"
        os.kill(proc.pid, signal.SIGCONT)
        n = len(monitor.paths("/hb"))
        wait_for(lambda: len(monitor.paths("/hb")) >= n + 2, 10, "heartbeats again")
    finally:
        assert stop(proc) == 0


def test_no_heartbeat_while_redis_does_not_answer(tmp_path: Path, monitor: Monitor) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    # A job that never fires during the test: the loop keeps turning while Redis is away (no
    # fire to retry), so only the heartbeat's own check can keep it quiet.
    yearly = 'from scheduler import job\n\n@job("0 0 1 1 *")\ndef yearly() -> None: ...\n'
    proc = start(
        "scheduler",
        redis.url,
        jobs_folder(tmp_path, yearly),
        tmp_path / "scheduler.log",
        SCHED_HEARTBEAT_URL=f"{monitor.url}/hb",
        SCHED_HEARTBEAT_EVERY="0.2s",
    )
    try:
        wait_for(lambda: len(monitor.paths("/hb")) >= 3, 20, "3 heartbeats")
        redis.stop()
        # Within a few reaps (0.4 s each with a 2 s lease) the heartbeat stops.
        wait_for(lambda: quiet_for(monitor, "/hb", 2.0), 10, "the heartbeat to stop")
        redis = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
        n = len(monitor.paths("/hb"))
        wait_for(lambda: len(monitor.paths("/hb")) >= n + 3, 30, "heartbeats again")
    finally:
        assert stop(proc) == 0
        redis.stop()


@pytest.fixture()
def dead_monitor() -> Iterator[str]:
    """A URL whose server takes connections into its backlog and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_monitor_that_never_answers_delays_no_fire(
    redis_url: str, tmp_path: Path, dead_monitor: str
) -> None:
    store = Store(redis_url)
    log = tmp_path / "scheduler.log"
    proc = start(
        "scheduler",
        redis_url,
        jobs_folder(tmp_path),
        log,
        SCHED_HEARTBEAT_URL=f"{dead_monitor}/hb",
        SCHED_HEARTBEAT_EVERY="0.1s",
    )
    try:
        wait_for(lambda: len(store.history(job="pinged.tick", limit=12)) >= 12, 30, "12 fires")
        # Its first ping timed out (10 s) meanwhile: one line, not one per heartbeat.
        wait_for(lambda: "no answer within 10s" in log.read_text(), 10, "the failure logged")
    finally:
        assert stop(proc) == 0
    runs = store.history(job="pinged.tick", limit=100)
    for run in runs:
        assert run.enqueued_at is not None
        delay = (run.enqueued_at - run.scheduled_for).total_seconds()
        assert 0 <= delay < 0.5, f"{run.id} enqueued {delay:.3f} s after its instant"
    assert log.read_text().count("pings: heartbeat to") == 1
    store.close()


def test_a_jobs_start_success_and_fail_pings_carry_the_run_id(
    redis_url: str, tmp_path: Path, monitor: Monitor
) -> None:
    jobs = jobs_folder(
        tmp_path,
        "import time\n\nfrom scheduler import job\n\n"
        f'@job("0 0 1 1 *", ping="{monitor.url}/ok", timeout="30s")\n'
        "def ok() -> None:\n    time.sleep(1.5)\n\n\n"
        f'@job("0 0 1 1 *", ping="{monitor.url}/bad/", timeout="30s")\n'
        "def bad() -> None:\n    time.sleep(1.5)\n    raise RuntimeError('no')\n\n\n"
        "@job('0 0 1 1 *', timeout='30s')\n"
        "def unpinged() -> None:\n    time.sleep(1.5)\n",
    )
    store = Store(redis_url)
    log = tmp_path / "procs.log"
    worker = start("worker", redis_url, jobs, log)
    scheduler = start("scheduler", redis_url, jobs, log)
    try:
        ok, bad, unpinged = (trigger(store, f"pinged.{name}") for name in ("ok", "bad", "unpinged"))
        assert final(store, ok).status is RunStatus.COMPLETED
        assert final(store, bad).status is RunStatus.FAILED
        assert final(store, unpinged).status is RunStatus.COMPLETED
        wait_for(lambda: len(monitor.paths("/ok")) >= 2 and len(monitor.paths("/bad")) >= 2, 20)
    finally:
        assert stop(scheduler) == 0
        assert stop(worker) == 0
    assert monitor.paths("/ok") == [f"/ok/start?rid={run_uuid(ok)}", f"/ok?rid={run_uuid(ok)}"]
    assert monitor.paths("/bad") == [
        f"/bad/start?rid={run_uuid(bad)}",
        f"/bad/fail?rid={run_uuid(bad)}",
    ]
    assert len(monitor.hits) == 4  # nothing for the job without `ping`
    store.close()
