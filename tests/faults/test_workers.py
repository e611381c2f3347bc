"""Scenarios 5, 6, 9, 10 and 11: workers and horses killed, poison jobs, cold shutdown, a mix."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from pathlib import Path

from scheduler.model import RunStatus
from scheduler.store import Store
from tests.faults.conftest import Cluster
from tests.helpers import alive, final, process_group, trigger, wait_for

LEASE_S = 2.0


def horse_pid(store: Store, run_id: str) -> int:
    def running_pid() -> int | None:
        run = store.get_run(run_id)
        return run.pid if run.status is RunStatus.RUNNING else None

    return wait_for(running_pid, 20, f"{run_id} to be running")


def worker_pid_of(store: Store, run_id: str) -> int:
    worker = store.get_run(run_id).worker
    return int(next(w["pid"] for w in store.workers() if w["id"] == worker))


def test_5_sigkill_worker_during_a_long_job(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_manual", "worker", "--workers", "2")
    run_id = trigger(store, "long", retries=1)
    horse = horse_pid(store, run_id)
    os.kill(worker_pid_of(store, run_id), signal.SIGKILL)
    killed_at = time.monotonic()
    run = final(store, run_id)
    lost_after = time.monotonic() - killed_at
    assert run.status is RunStatus.LOST
    # Its supervisor saw it die: lost at once, not a lease later.
    print(f"SIGKILLed worker's run lost after {lost_after:.3f}s (lease {LEASE_S}s)")
    assert lost_after < LEASE_S / 2, f"lost after {lost_after:.2f}s"
    assert run.reason == "its worker died (killed by SIGKILL)", run.reason
    assert run.started_at is not None and run.finished_at is not None
    ran_s = (run.finished_at - run.started_at).total_seconds()
    assert run.duration_s is not None and abs(run.duration_s - ran_s) < 0.5, run
    assert run.duration_s < LEASE_S, "the time it ran, not a lease"
    wait_for(lambda: not alive(horse), 5, "the horse to die with its worker")
    assert process_group(horse) == []
    # Retried exactly once: the second attempt completes on a surviving worker.
    retry = final(store, f"{run_id}#2")
    assert retry.status is RunStatus.COMPLETED
    assert retry.attempt == 2 and retry.output and "second attempt done" in retry.output
    assert store.raw_run(run_id)["retry"] == f"{run_id}#2"
    assert [r.id for r in store.history(job="long", limit=10)].count(f"{run_id}#3") == 0


def test_busy_workers_reap_a_dead_workers_run(cluster: Cluster) -> None:
    # Workers only, each on its own (no supervisor to see a death), every one busy: the
    # survivor reaps the dead one's run while its own run goes on.
    store = cluster.store()
    cluster.start("a", "jobs_manual", "worker")
    cluster.start("b", "jobs_manual", "worker")
    first, second = trigger(store, "sleeper"), trigger(store, "sleeper")
    horse_pid(store, first)
    horse_pid(store, second)
    assert store.get_run(first).worker != store.get_run(second).worker
    os.kill(worker_pid_of(store, first), signal.SIGKILL)
    killed_at = time.monotonic()
    run = final(store, first)
    lost_after = time.monotonic() - killed_at
    print(f"reaped by a busy worker after {lost_after:.3f}s (lease {LEASE_S}s)")
    assert run.status is RunStatus.LOST and run.reason and "lease expired" in run.reason, run
    assert lost_after < 3 * LEASE_S, f"lost after {lost_after:.2f}s"
    assert store.get_run(second).status is RunStatus.RUNNING, "the reaper was busy all along"


def test_6_sigkill_the_horse(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_manual", "worker")
    run_id = trigger(store, "sleeper")
    pid = horse_pid(store, run_id)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    run = final(store, run_id)
    assert time.monotonic() - killed_at < 1.0
    assert run.status is RunStatus.KILLED and run.signal == "SIGKILL"


def test_9_poison_job_stops_after_its_retries(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_manual", "worker", "--workers", "2")
    first = trigger(store, "poison", retries=2)
    attempts = [first, f"{first}#2", f"{first}#3"]
    for run_id in attempts:
        assert final(store, run_id, 60).status is RunStatus.LOST
    # No fourth attempt is ever created.
    assert store.raw_run(attempts[-1]).get("retry") is None
    assert len(store.history(job="poison", limit=10)) == 3
    assert cluster.procs["w"].poll() is None, "the supervisor keeps restarting its workers"


def test_10_cold_shutdown_with_two_runs_in_flight(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_manual", "worker", "--workers", "2")
    runs = [trigger(store, "sleeper"), trigger(store, "sleeper")]
    horses = [horse_pid(store, run_id) for run_id in runs]
    cluster.signal("w", signal.SIGTERM)
    cluster.signal("w", signal.SIGINT)
    assert cluster.procs["w"].wait(20) == 0
    for run_id, horse in zip(runs, horses, strict=True):
        run = store.get_run(run_id)
        assert run.status is RunStatus.KILLED and run.reason == "shutdown"
        assert not alive(horse) and process_group(horse) == []


ADVERSARIAL = [
    ("returns", 30),
    ("raises", 15),
    ("exit-0", 5),
    ("exit-3", 5),
    ("os-exit-3", 5),
    ("returns-object", 5),
    ("segfaults", 5),
    ("aborts", 5),
    ("leaves-grandchild", 5),
    ("leaves-thread", 5),
    ("cmd-exit-7", 5),
    ("cmd-missing", 3),
    ("sleeps", 1),
    ("swallows-timeout", 1),
    ("ignores-alarm", 1),
]


def test_11_a_thousand_adversarial_runs_across_two_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    store = cluster.store()
    cluster.procs.clear()
    jobs = Path(__file__).parent.parent / "process" / "jobs"
    env_jobs = os.path.relpath(jobs, Path(__file__).parent)
    cluster.start("w", env_jobs, "worker", "--workers", "2")
    rng = random.Random(11)
    names = [name for name, _ in ADVERSARIAL]
    weights = [w for _, w in ADVERSARIAL]
    run_ids = [trigger(store, rng.choices(names, weights)[0]) for _ in range(1000)]

    def all_final() -> bool:
        return store.queue_depth("default") == 0 and not store.history(
            statuses=[RunStatus.QUEUED, RunStatus.RUNNING], limit=1
        )

    wait_for(all_final, 240, "every run to end")
    runs = [store.get_run(run_id) for run_id in run_ids]
    assert all(run.status.final for run in runs)
    assert not [r for r in runs if r.status is RunStatus.LOST]
    for run in runs:
        if run.pid is not None:
            assert process_group(run.pid) == [], f"{run.id} left processes behind"
        for match in re.finditer(r"(?:grandchild|escaped) (\d+)", run.output or ""):
            assert not alive(int(match.group(1))), f"{run.id} left {match.group(0)} alive"
