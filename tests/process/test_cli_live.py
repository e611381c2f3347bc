"""The operator commands against a real worker: logs -f, trigger --wait, kill, pause, workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.model import RunStatus
from scheduler.store import Store
from tests.helpers import final, wait_for

JOBS = Path(__file__).parent / "live_jobs"


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=url, SCHED_JOBS=str(JOBS), SCHED_LEASE="2s", SCHED_GRACE="0.5s")
    return env


def sched(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def worker(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (tmp_path / "worker.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "worker"],
            env=env_for(redis_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield proc
    proc.terminate()
    proc.wait(20)


def queued_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.split("queued ", 1)[1].split()[0]


def test_trigger_wait_exits_with_the_jobs_code(
    redis_url: str, worker: subprocess.Popen[bytes]
) -> None:
    done = sched(redis_url, "trigger", "live.exits_4", "--wait")
    assert done.returncode == 4
    assert "failed (sys.exit(4))" in done.stdout
    ok = sched(redis_url, "trigger", "live.talks", "--wait")
    assert ok.returncode == 0 and ": completed" in ok.stdout


def test_logs_follow_prints_output_as_it_comes(
    redis_url: str, worker: subprocess.Popen[bytes], store: Store
) -> None:
    run_id = queued_id(sched(redis_url, "trigger", "live.talks"))
    wait_for(lambda: store.get_run(run_id).status is RunStatus.RUNNING, 10, "the run to start")
    followed = sched(redis_url, "logs", "-f", run_id)
    assert followed.returncode == 0
    assert followed.stdout.splitlines() == [f"line {i}" for i in range(8)]
    assert f"[{run_id}: completed]" in followed.stderr


def test_kill_stops_a_running_run(
    redis_url: str, worker: subprocess.Popen[bytes], store: Store
) -> None:
    run_id = queued_id(sched(redis_url, "trigger", "live.forever"))
    wait_for(lambda: store.get_run(run_id).pid, 10, "the horse's pid")
    killed = sched(redis_url, "kill", run_id)
    assert killed.returncode == 0 and "asked the worker" in killed.stdout
    run = final(store, run_id)
    assert run.status is RunStatus.KILLED and run.reason == "operator"
    assert run.signal == "SIGTERM"
    again = sched(redis_url, "kill", run_id)
    assert again.returncode == 1 and "already ended: killed" in again.stderr
    unknown = sched(redis_url, "kill", "nope@1")
    assert unknown.returncode == 1 and "sched history" in unknown.stderr


def test_workers_lists_the_live_worker(redis_url: str, worker: subprocess.Popen[bytes]) -> None:
    def listed() -> list[dict[str, Any]] | None:
        rows = json.loads(sched(redis_url, "workers", "--json").stdout or "[]")
        return rows or None

    rows = wait_for(listed, 10, "the worker to register")
    assert rows[0]["pid"] == worker.pid and rows[0]["queues"] == ["default"]
    table = sched(redis_url, "workers").stdout
    assert "HEARTBEAT" in table and "ago" in table


def test_pause_records_fires_skipped(redis_url: str, store: Store, tmp_path: Path) -> None:
    assert sched(redis_url, "pause", "live.ticker").stdout.strip() == "paused live.ticker"
    with (tmp_path / "scheduler.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "scheduler"],
            env=env_for(redis_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        runs = wait_for(lambda: store.history(job="live.ticker", limit=2)[1:], 15, "2 fires")
        assert all(r.status is RunStatus.SKIPPED and r.reason == "paused" for r in runs)
        assert sched(redis_url, "resume", "live.ticker").stdout.strip() == "resumed live.ticker"
        wait_for(
            lambda: store.history(job="live.ticker", statuses=[RunStatus.QUEUED], limit=1),
            15,
            "a queued fire after resume",
        )
    finally:
        proc.terminate()
        proc.wait(20)


def test_process_titles_say_what_runs(
    redis_url: str, worker: subprocess.Popen[bytes], store: Store
) -> None:
    run_id = queued_id(sched(redis_url, "trigger", "live.forever"))
    horse = wait_for(lambda: store.get_run(run_id).pid, 10, "the horse's pid")

    def title(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()

    assert title(horse) == f"sched horse {run_id}"
    wait_for(lambda: f": running {run_id}" in title(worker.pid), 5, "the worker's title")
    assert title(worker.pid).startswith("sched worker ")
    sched(redis_url, "kill", run_id)
    final(store, run_id)


def test_json_log_lines(redis_url: str, store: Store) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "scheduler", "--log-format", "json"],
        env=env_for(redis_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: store.history(job="live.ticker", limit=1), 15, "a fire")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    entries = [json.loads(line) for line in out.splitlines()]
    assert any(e["message"].startswith("fire live.ticker") for e in entries)
    assert {"time", "level", "logger", "pid", "message"} <= set(entries[0])
