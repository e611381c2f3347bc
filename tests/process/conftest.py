"""A real worker process (`python -m scheduler worker`) over the adversarial jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import Run
from scheduler.store import Store
from tests.helpers import wait_for

JOBS = Path(__file__).parent / "jobs"
GRACE = "0.5s"
LEASE = "2s"


def start_worker(url: str, namespace: str, *extra: str) -> subprocess.Popen[bytes]:
    """Start `sched worker` as its own process with short grace and lease."""
    env = {**os.environ, "SCHED_REDIS_URL": url, "SCHED_NAMESPACE": namespace}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduler",
            "--jobs",
            str(JOBS),
            "worker",
            "--grace",
            GRACE,
            "--lease",
            LEASE,
            *extra,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    with proc.stdout:
        return proc.stdout.read().decode(errors="replace")


def trigger(store: Store, job: str, timeout_s: float | None = None) -> str:
    """Queue a manual run of `job` and return its id."""
    run_id = f"{job}@test-{uuid.uuid4().hex[:8]}"
    store.enqueue(
        run_id=run_id,
        job=job,
        scheduled_for=datetime.now(UTC),
        queue="default",
        overlap="allow",
        trigger="manual",
        timeout_s=timeout_s,
        advance_last_fire=False,
    )
    return run_id


def final(store: Store, run_id: str, timeout: float = 20.0) -> Run:
    """Wait for the run's final status."""

    def done() -> Run | None:
        run = store.get_run(run_id)
        return run if run.status.final else None

    return wait_for(done, timeout, f"run {run_id} to finish")


@pytest.fixture(scope="module")
def worker_env(redis_server: EmbeddedRedis) -> Iterator[tuple[Store, subprocess.Popen[bytes]]]:
    """One worker for the whole module, in a namespace of its own."""
    namespace = f"proc-{uuid.uuid4().hex[:6]}"
    store = Store(redis_server.url, namespace)
    proc = start_worker(redis_server.url, namespace)
    yield store, proc
    output = stop_worker(proc)
    store.close()
    print(output)


@pytest.fixture()
def run_job(worker_env: tuple[Store, subprocess.Popen[bytes]]) -> Callable[..., Run]:
    store, proc = worker_env

    def run(job: str, timeout: float = 20.0) -> Run:
        assert proc.poll() is None, "the shared worker died"
        return final(store, trigger(store, job), timeout)

    return run
