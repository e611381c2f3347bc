"""Start-up options of the long-running commands: --wait-for-redis and --max-stored-runs.

Real `sched` processes against a real redis-server that the test starts (late, for the wait).
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis, socket_url
from scheduler.model import RunStatus, run_id_for
from scheduler.store import Fire, Store, fire_settings
from tests.cli.test_first_hour import run_sched, sched_process
from tests.helpers import final, stop_process, trigger, wait_for

JOBS = Path(__file__).parent / "wait_jobs"


def test_a_worker_waits_for_a_redis_that_starts_after_it(tmp_path: Path) -> None:
    url = socket_url(tmp_path / "redis")
    log = tmp_path / "worker.log"
    worker = sched_process(
        "worker", "--jobs", str(JOBS), "--redis-url", url, "--wait-for-redis", "2m", log=log
    )
    server = None
    try:
        wait_for(
            lambda: "waiting up to 2m for it (--wait-for-redis)" in log.read_text(), 20, "wait"
        )
        assert worker.poll() is None
        server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
        wait_for(lambda: "answered after" in log.read_text(), 20, "the worker to connect")
        store = Store(url)
        try:
            run_id = trigger(store, "ok")
            run = final(store, run_id)
            assert run.status is RunStatus.COMPLETED
            assert run.result == "fine"
        finally:
            store.close()
        assert stop_process(worker, 30) == 0
    finally:
        stop_process(worker, 30)
        if server is not None:
            server.stop()
    text = log.read_text()
    assert text.count("waiting up to 2m") == 1 and "Traceback" not in text


def test_waiting_gives_up_after_the_duration_with_the_reason(tmp_path: Path) -> None:
    url = socket_url(tmp_path / "nothing")
    began = time.monotonic()
    done = run_sched(
        "scheduler", "--jobs", str(JOBS), "--redis-url", url, "--wait-for-redis", "1.5s"
    )
    took = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    assert f"cannot reach Redis at {url}" in done.stderr
    assert "gave up after waiting 1.5s (--wait-for-redis)" in done.stderr
    assert "Traceback" not in done.stderr
    assert took >= 1.5


def test_refused_credentials_are_not_waited_for(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        admin = Store(server.url)
        admin.redis.config_set("requirepass", "right")
        admin.close()
        url = server.url.replace("unix://", "unix://:wrong@")
        began = time.monotonic()
        done = run_sched(
            "worker", "--jobs", str(JOBS), "--redis-url", url, "--wait-for-redis", "5m"
        )
        assert done.returncode == 1
        assert "refused the credentials" in done.stderr and "wrong" not in done.stderr
        assert "waiting" not in done.stderr and "Traceback" not in done.stderr
        assert time.monotonic() - began < 30  # not the five minutes
    finally:
        server.stop()


def test_ctrl_c_while_waiting_exits_at_once_without_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "sched.log"
    url = socket_url(tmp_path / "nothing")
    proc = sched_process(
        "run", "--jobs", str(JOBS), "--redis-url", url, "--wait-for-redis", "1h", log=log
    )
    try:
        wait_for(lambda: "waiting up to 1h" in log.read_text(), 20, "the wait")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    finally:
        stop_process(proc, 30)
    text = log.read_text()
    assert "stopped while waiting for Redis" in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "invalid --wait-for-redis 'soon'"),
        ("-5s", "invalid --wait-for-redis '-5s'"),
    ],
)
def test_a_bad_wait_is_refused_with_its_option(tmp_path: Path, value: str, message: str) -> None:
    done = run_sched(
        "worker",
        "--jobs",
        str(JOBS),
        "--redis-url",
        socket_url(tmp_path),
        "--wait-for-redis",
        value,
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_the_scheduler_keeps_at_most_max_stored_runs(tmp_path: Path, redis_url: str) -> None:
    store = Store(redis_url)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    skip = fire_settings("default", outcome=RunStatus.SKIPPED, reason="busy")
    store.enqueue_many(
        [
            Fire(run_id_for(f"old{i % 40}", at), f"old{i % 40}", at, skip)
            for i in range(1600)
            for at in [t0 + timedelta(seconds=i)]
        ]
    )
    log = tmp_path / "scheduler.log"
    proc = sched_process(
        "scheduler",
        "--jobs",
        str(JOBS),
        "--redis-url",
        redis_url,
        "--max-stored-runs",
        "1000",
        log=log,
    )
    try:
        wait_for(lambda: len(store.history(limit=5000)) <= 1000, 90, "retention to the cap")
        kept = store.history(limit=5000)
        assert min(r.scheduled_for for r in kept) == t0 + timedelta(seconds=600)
        assert stop_process(proc, 30) == 0
    finally:
        stop_process(proc, 30)
        store.close()


def test_max_stored_runs_below_a_thousand_is_refused(tmp_path: Path) -> None:
    done = run_sched(
        "scheduler",
        "--jobs",
        str(JOBS),
        "--redis-url",
        socket_url(tmp_path),
        "--max-stored-runs",
        "10",
    )
    assert done.returncode == 2 and "--max-stored-runs" in done.stderr
    assert "Traceback" not in done.stderr
