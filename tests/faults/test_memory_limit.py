"""`memory_limit`: a run that allocates past it fails and says so; the worker is untouched."""

from __future__ import annotations

from scheduler.model import RunStatus
from tests.faults.conftest import Cluster
from tests.helpers import final, trigger

JOBS = "jobs_memory"


def test_a_run_within_its_memory_limit_completes(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "within"), 60)
    assert run.status is RunStatus.COMPLETED, run.reason
    assert run.result == 16 << 20


def test_a_python_job_past_its_memory_limit_fails_naming_the_limit(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "greedy"), 60)
    assert run.status is RunStatus.FAILED
    assert run.reason is not None and run.reason.startswith("memory limit 128M reached"), run.reason
    assert run.error is not None and run.error["type"] == "MemoryError"
    # Only the run was limited: the worker goes on with the next one.
    after = final(store, trigger(store, "within"), 60)
    assert after.status is RunStatus.COMPLETED, after.reason


def test_a_program_past_its_memory_limit_fails(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("w", JOBS, "worker")
    run = final(store, trigger(store, "greedy-program"), 60)
    assert run.status is RunStatus.FAILED, run.reason
    assert run.exit_code == 1
    assert "MemoryError" in (run.output or "")
