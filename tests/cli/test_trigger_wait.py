"""`sched trigger --wait` exits as the job would under timeout(1): one real worker process, the
real command in a subprocess, one case per way a run ends (docs/cli.md, "Exit codes").

0 completed; the job's exit code when it failed (1 for an exception); 124 timed-out; 128+N
killed by signal N; 125 when sched could not carry the run to an end (lost, skipped, no live
worker for its queue, Redis unreachable).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.model import RunStatus
from scheduler.store import Store
from tests.helpers import wait_for

JOBS = Path(__file__).parent / "wait_jobs"


def env_for(url: str, jobs: Path = JOBS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(SCHED_REDIS_URL=url, SCHED_JOBS=str(jobs), SCHED_LEASE="2s", SCHED_GRACE="0.5s")
    return env


def sched(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env_for(url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(url: str, log: Path, jobs: Path = JOBS) -> subprocess.Popen[bytes]:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler", "worker", "--no-watch"],
            env=env_for(url, jobs),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def worker(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(redis_url, tmp_path / "worker.log")
    yield proc
    stop(proc)


def waiting(url: str, job: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler", "trigger", job, "--wait"],
        env=env_for(url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def running_run(store: Store, job: str) -> str:
    def started() -> str | None:
        runs = [r for r in store.history(job=job, limit=5) if r.status is RunStatus.RUNNING]
        return runs[0].id if runs and runs[0].pid else None

    return wait_for(started, 30, f"a run of {job} to start")


def test_each_way_a_run_ends_has_its_exit_code(
    redis_url: str, worker: subprocess.Popen[bytes]
) -> None:
    expected = {
        "ok": (0, "completed"),
        "raises": (1, "failed (raised RuntimeError"),
        "exits-3": (3, "failed (sys.exit(3))"),
        "command-5": (5, "failed (exited with code 5)"),
        "slow": (124, "timed-out"),
    }
    seen = {}
    for job in expected:
        done = sched(redis_url, "trigger", job, "--wait")
        last = done.stdout.strip().splitlines()[-1]
        seen[job] = (done.returncode, last.split(": ", 1)[1][: len(expected[job][1])])
        assert "Traceback" not in done.stderr
    assert seen == expected


def test_killed_exits_128_plus_the_signal(
    redis_url: str, worker: subprocess.Popen[bytes], store: Store
) -> None:
    proc = waiting(redis_url, "forever")
    run_id = running_run(store, "forever")
    assert sched(redis_url, "kill", run_id).returncode == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert out.strip().splitlines()[-1] == f"{run_id}: killed (operator)"


def test_lost_exits_125(redis_url: str, tmp_path: Path, store: Store) -> None:
    first = start_worker(redis_url, tmp_path / "first.log")
    second = None
    proc = waiting(redis_url, "forever")
    try:
        run_id = running_run(store, "forever")
        # Only now a second worker, to notice the first is gone: it cannot take the run first.
        second = start_worker(redis_url, tmp_path / "second.log")
        run = store.get_run(run_id)
        assert run.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        with contextlib.suppress(ProcessLookupError):  # its horse, if it outlived the worker
            os.killpg(run.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(first)
        if second is not None:
            stop(second)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 125, (out, err)
    assert out.strip().splitlines()[-1].startswith(f"{run_id}: lost")


def test_redis_unreachable_exits_125_with_wait_and_1_without(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:9/0"  # the discard port: nothing answers there
    waited = sched(url, "trigger", "ok", "--wait")
    assert waited.returncode == 125, waited.stderr
    assert waited.stderr.startswith("sched: ") and "Traceback" not in waited.stderr
    queued = sched(url, "trigger", "ok")
    assert queued.returncode == 1, queued.stderr
    assert queued.stderr == waited.stderr


def test_help_states_the_rule() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler", "trigger", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    text = " ".join(done.stdout.split())
    assert "124 timed-out" in text and "128+N killed by signal N" in text
    assert "125 when sched could not carry it to an end" in text
