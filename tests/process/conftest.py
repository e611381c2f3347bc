"""A real worker process (`python -m scheduler worker`) over the adversarial jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import Run
from scheduler.store import Store
from tests.helpers import final, trigger

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
    if proc.stdout.closed:  # stopped (and read) before
        return ""
    with proc.stdout:
        return proc.stdout.read().decode(errors="replace")


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
