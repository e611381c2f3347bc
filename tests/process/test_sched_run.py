"""`sched run` as a user runs it: embedded Redis, scheduler and workers, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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


def test_a_worker_killed_under_sched_run_loses_its_run_at_once(tmp_path: Path) -> None:
    from tests.process.test_stop_signals import run_argv, started, status_of

    state = tmp_path / "state"
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*run_argv(state), "--lease", "10s"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "started worker-1" in log.read_text(), 30, "sched run to start")
        run_id = started(state, "stop.long")
        worker = int(re.findall(r"started worker-1 \(pid (\d+)\)", log.read_text())[-1])
        os.kill(worker, signal.SIGKILL)
        killed_at = time.monotonic()
        run = wait_for(
            lambda: (r := status_of(state, run_id))["status"] != "running" and r, 30, "the loss"
        )
        lost_after = time.monotonic() - killed_at
        print(f"run lost {lost_after:.3f}s after its worker was SIGKILLed (lease 10s)")
        assert run["status"] == "lost", run
        assert run["reason"] == "its worker died (killed by SIGKILL)", run
        assert lost_after < 5, "lost when its worker died, not a lease later"
        duration = run["duration_s"]
        assert isinstance(duration, float) and duration < 5, "the time it ran, not the lease"
        # The worker is replaced, and the replacement runs what comes next.
        wait_for(lambda: log.read_text().count("started worker-1") == 2, 30, "a new worker-1")
        again = started(state, "stop.naps")
        wait_for(lambda: status_of(state, again)["status"] == "completed", 30, "the next run")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"run {run_id}: lost (its worker died: killed by SIGKILL)" in log.read_text()


def test_a_worker_that_cannot_start_stops_sched_run(tmp_path: Path) -> None:
    # Every fork server fails to import the jobs folder: restarting the worker cannot help.
    state = tmp_path / "state"
    jobs = Path(__file__).parent / "forkserver_fails"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env["SCHED_TEST_TOKEN"] = "t0ken"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "--jobs", str(jobs), "--state-dir", str(state)]
        + ["run", "--workers", "1", "--no-web"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - began
    print(f"sched run gave up after {took:.1f}s")
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "KeyError: 'SCHED_TEST_TOKEN'" in err or "SCHED_TEST_TOKEN" in err, err
    assert "worker-1 failed 4 times in a row" in err, err
    assert "Traceback" not in err, err
    assert not (state / "redis.sock").exists(), "the embedded Redis should be stopped"
