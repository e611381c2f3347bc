"""Signals delivered to a worker parent while its horse runs: the run is still reported right."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.proc import descendants_of
from scheduler.store import Store
from tests.helpers import alive, final, process_group, trigger, wait_for
from tests.process.conftest import start_worker, stop_worker


@pytest.fixture()
def fresh(redis_server: EmbeddedRedis) -> Iterator[tuple[Store, str]]:
    namespace = f"sig-{uuid.uuid4().hex[:6]}"
    store = Store(redis_server.url, namespace)
    yield store, namespace
    store.close()


@pytest.fixture()
def spawn(
    fresh: tuple[Store, str], redis_server: EmbeddedRedis
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a worker (extra CLI arguments allowed); every one is stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        started.append(start_worker(redis_server.url, fresh[1], *extra))
        return started[-1]

    yield start
    for proc in started:
        stop_worker(proc)


def _running(store: Store, run_id: str) -> bool:
    run = store.get_run(run_id)
    return run.status is RunStatus.RUNNING and run.pid is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_warm_shutdown_signal_while_waiting(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]], sig: signal.Signals
) -> None:
    store, _ = fresh
    proc = spawn()
    run_id = trigger(store, "sleeps-a-second")
    wait_for(lambda: _running(store, run_id), 10, "the run to start")
    os.kill(proc.pid, sig)
    run = final(store, run_id)
    assert run.status is RunStatus.COMPLETED
    assert (run.output or "").strip() == "slept"
    assert proc.wait(10) == 0, "the worker should exit after a warm shutdown"
    assert "warm shutdown" in stop_worker(proc)


def test_job_that_terminates_its_own_worker(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    store, _ = fresh
    proc = spawn()
    run = final(store, trigger(store, "terminates-worker"))
    assert run.status is RunStatus.COMPLETED
    assert proc.wait(10) == 0


def test_handler_that_raises_during_wait(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # The jobs module installs a SIGUSR1 handler in the worker that raises RuntimeError.
    store, _ = fresh
    proc = spawn()
    run_id = trigger(store, "sleeps-a-second")
    wait_for(lambda: _running(store, run_id), 10, "the run to start")
    for _ in range(3):
        os.kill(proc.pid, signal.SIGUSR1)
    run = final(store, run_id)
    assert run.status is RunStatus.COMPLETED
    assert proc.poll() is None, "the worker should still be serving"


def test_cold_shutdown_kills_and_records(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    store, _ = fresh
    proc = spawn()
    run_id = trigger(store, "waits")
    wait_for(lambda: _running(store, run_id), 10, "the run to start")
    # Two different signals: two of the same kind sent at once may merge into one.
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGINT)
    run = final(store, run_id)
    assert run.status is RunStatus.KILLED
    assert run.reason == "shutdown"
    assert proc.wait(10) == 0


def test_warm_timeout_turns_a_single_sigterm_cold(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    store, _ = fresh
    proc = spawn("--warm-timeout", "0.5s")
    run_id = trigger(store, "waits")
    wait_for(lambda: _running(store, run_id), 10, "the run to start")
    os.kill(proc.pid, signal.SIGTERM)
    run = final(store, run_id)
    assert run.status is RunStatus.KILLED and run.reason == "shutdown"
    assert run.duration_s is not None and run.duration_s < 10
    assert proc.wait(10) == 0


def _ready_horse(worker: int) -> int | None:
    """The worker's horse that waits for the next run, if it has one (its fork server's child)."""
    for pid in descendants_of(worker):
        if _cmdline(pid) == "sched horse (ready)":
            return pid
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_ready_horse_killed_from_outside_costs_no_run(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # The worker forks each run's horse ahead of time; if that horse is gone when the run is
    # claimed, the worker forks another and the run is done as usual.
    store, _ = fresh
    proc = spawn()
    ready = wait_for(lambda: _ready_horse(proc.pid), 10, "the worker's ready horse")
    assert process_group(ready) == [ready], "the ready horse is in a process group of its own"
    os.kill(ready, signal.SIGKILL)
    wait_for(lambda: not alive(ready), 5, "the ready horse to die")
    run = final(store, trigger(store, "returns"))
    assert run.status is RunStatus.COMPLETED, run.reason
    assert run.pid != ready
    next_ready = wait_for(lambda: _ready_horse(proc.pid), 10, "the next ready horse")
    proc.terminate()
    assert proc.wait(10) == 0
    wait_for(lambda: not alive(next_ready), 5, "the ready horse to go with its worker")


def test_ready_horse_dies_with_a_killed_worker(
    fresh: tuple[Store, str], spawn: Callable[..., subprocess.Popen[bytes]]
) -> None:
    _, _ = fresh
    proc = spawn()
    ready = wait_for(lambda: _ready_horse(proc.pid), 10, "the worker's ready horse")
    proc.kill()
    proc.wait(10)
    wait_for(lambda: not alive(ready), 5, "the ready horse to die with its worker")
