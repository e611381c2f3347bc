"""`sched run` as a user runs it: embedded Redis, scheduler and workers, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from scheduler.proc import children_of
from tests.helpers import alive, wait_for

JOBS = Path(__file__).parent / "e2e_jobs"


def sched(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    return subprocess.run(
        [sys.executable, "-m", "scheduler", "--jobs", str(JOBS), "--state-dir", str(state), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def statuses(state: Path) -> set[str]:
    result = sched(state, "history", "--json", "--limit", "200")
    if result.returncode != 0:
        return set()
    return {run["status"] for run in json.loads(result.stdout)}


def test_sched_run_end_to_end(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    log_path = tmp_path / "run.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "--jobs", str(JOBS), "--state-dir", str(state)]
            + ["run", "--workers", "2", "--grace", "0.3s"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wanted = {"completed", "failed", "timed-out"}
        wait_for(lambda: wanted <= statuses(state), 30, f"runs ending {wanted}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    log = log_path.read_text()
    assert "embedded Redis on unix://" in log
    assert "fire quick.ok for" in log
    assert ": completed in" in log and ": timed-out in" in log
    assert "warm shutdown" in log
    assert not (state / "redis.sock").exists(), "the embedded Redis should be stopped"
    # With `sched run` stopped, history is still readable from the state folder.
    after = sched(state, "history", "quick.fails", "--json")
    assert after.returncode == 0, after.stderr
    runs = json.loads(after.stdout)
    assert runs and {r["status"] for r in runs} <= {"failed", "skipped", "queued"}
    failed = next(r for r in runs if r["status"] == "failed")
    assert failed["error"]["type"] == "RuntimeError"
    shown = sched(state, "show", failed["id"])
    assert "expected failure" in shown.stdout


def test_one_signal_delivered_twice_is_one_warm_shutdown(tmp_path: Path) -> None:
    # `timeout -s INT` and some supervisors signal a process and then its whole group.
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler", "--jobs", str(JOBS), "--state-dir", str(state)]
            + ["run", "--workers", "2"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def running_slowish() -> str | None:
            result = sched(state, "history", "quick.slowish", "--status", "running", "--json")
            runs = json.loads(result.stdout) if result.returncode == 0 else []
            return runs[0]["id"] if runs else None

        run_id = wait_for(running_slowish, 30, "a slowish run in flight")
        os.kill(proc.pid, signal.SIGINT)
        # The echo comes once the first has been handled and forwarded, as with `timeout`.
        wait_for(lambda: "warm shutdown" in log.read_text(), 5, "the first SIGINT to land")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shown = json.loads(sched(state, "show", run_id, "--json").stdout)
    assert shown["status"] == "completed", "a warm shutdown lets the run finish"


def _descendants_alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if alive(pid)]


def test_nothing_outlives_a_killed_supervisor(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "--jobs", str(JOBS), "--state-dir", str(state)]
        + ["run", "--workers", "2", "--lease", "3s"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(children_of(proc.pid)) >= 4, 30, "redis, scheduler and 2 workers")
        family = children_of(proc.pid)
        wait_for(lambda: statuses(state), 30, "the first runs")
        proc.kill()  # SIGKILL: no chance to stop anything itself
        proc.wait()
        wait_for(lambda: not _descendants_alive(family), 30, "its children to stop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
