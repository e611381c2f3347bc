"""The store calls the reload, beat and worker work codes against (lose_runs_of, refuse with a
status, set_loaded / loaded), against a real redis-server."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from scheduler.model import RunStatus, run_id_for
from scheduler.policy import RunPolicy
from scheduler.store import Store
from tests.helpers import wait_for

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _running(store: Store, job: str, worker: str, *, retries: int = 0) -> str:
    run_id = run_id_for(job, T0)
    policy = RunPolicy(retries=retries, retry_on=("lost",)) if retries else None
    store.enqueue(run_id=run_id, job=job, scheduled_for=T0, queue=job, policy=policy)
    assert store.wait_for_run(worker, [job], 0.1) == run_id
    assert store.claim(worker, run_id, 600) is not None
    return run_id


def test_lose_runs_of_marks_only_that_workers_runs_lost_now(store: Store) -> None:
    mine = _running(store, "a", "w1")
    other = _running(store, "b", "w2")
    store.take_ended()
    time.sleep(0.05)  # a measurable duration: the run started before it was lost
    assert store.lose_runs_of("w1", "its worker died (supervisor saw it exit)") == [mine]
    run = store.get_run(mine)
    assert run.status is RunStatus.LOST
    assert run.reason == "its worker died (supervisor saw it exit)"
    assert run.started_at is not None and run.finished_at is not None
    # Its duration is start to now, not the 600 s lease.
    assert run.duration_s is not None and 0.04 <= run.duration_s < 5
    assert abs((run.finished_at - run.started_at).total_seconds() - run.duration_s) < 0.01
    assert store.get_run(other).status is RunStatus.RUNNING
    assert [r.id for r in store.take_ended()] == [mine]
    assert store.running_count() == 1
    assert "current" not in {k for w in store.workers() if w["id"] == "w1" for k in w}
    # The job is free again: overlap=skip lets the next fire run.
    nxt = store.enqueue(
        run_id=run_id_for("a", T0.replace(minute=1)),
        job="a",
        scheduled_for=T0.replace(minute=1),
        queue="a",
    )
    assert nxt.status is RunStatus.QUEUED
    assert store.lose_runs_of("w1", "again") == []  # once only


def test_lose_runs_of_applies_the_retry_rules(store: Store) -> None:
    run_id = _running(store, "a", "w1", retries=1)
    assert store.lose_runs_of("w1", "its worker died") == [run_id]
    run = store.get_run(run_id)
    assert run.retry == f"{run_id}#2"
    retry = store.get_run(run.retry)
    assert (retry.status, retry.attempt, retry.retry_of) == (RunStatus.QUEUED, 2, run_id)


def test_lose_runs_of_a_worker_holding_nothing_is_empty(store: Store) -> None:
    assert store.lose_runs_of("nobody", "x") == []


def test_refuse_records_skipped_for_a_removed_job(store: Store) -> None:
    run_id = run_id_for("gone", T0)
    store.enqueue(run_id=run_id, job="gone", scheduled_for=T0, queue="default")
    assert store.wait_for_run("w1", ["default"], 0.1) == run_id
    assert store.refuse("w1", run_id, "gone", "job removed", status=RunStatus.SKIPPED)
    run = store.get_run(run_id)
    assert (run.status, run.reason, run.worker) == (RunStatus.SKIPPED, "job removed", "w1")
    assert [r.id for r in store.history(statuses=[RunStatus.SKIPPED])] == [run_id]
    assert store.history(statuses=[RunStatus.QUEUED]) == []
    assert store.inbox_head("w1") is None
    assert [r.id for r in store.take_ended()] == [run_id]
    # Refused once: a second refusal changes nothing.
    assert not store.refuse("w1", run_id, "gone", "job removed", status=RunStatus.SKIPPED)


def test_refuse_defaults_to_failed_and_rejects_other_statuses(store: Store) -> None:
    run_id = run_id_for("j", T0)
    store.enqueue(run_id=run_id, job="j", scheduled_for=T0, queue="default")
    with pytest.raises(ValueError, match="expected failed or skipped"):
        store.refuse("w1", run_id, "j", "x", status=RunStatus.COMPLETED)
    assert store.get_run(run_id).status is RunStatus.QUEUED
    assert store.refuse("w1", run_id, "j", "not in this worker's jobs folder")
    assert store.get_run(run_id).status is RunStatus.FAILED


def test_loaded_shows_each_live_process_until_its_ttl_runs_out(store: Store) -> None:
    info = {"digest": "abc", "loaded_at": "1764000000000", "jobs": "3", "problems": "0"}
    store.set_loaded("scheduler:h:1", info, ttl_s=30)
    store.set_loaded("worker:w1", {**info, "digest": "def"}, ttl_s=0.3)
    assert store.loaded() == {"scheduler:h:1": info, "worker:w1": {**info, "digest": "def"}}
    # Said again: replaced, not merged.
    store.set_loaded("scheduler:h:1", {"digest": "new", "jobs": "1"}, ttl_s=30)
    wait_for(lambda: "worker:w1" not in store.loaded(), timeout=5, what="w1's entry to expire")
    assert store.loaded() == {"scheduler:h:1": {"digest": "new", "jobs": "1"}}


def _report_copy(store: Store, run_id: str, status: str, **extra: object) -> dict[str, object]:
    """What a worker writes back for a run Redis lost: its record as claimed, plus the end."""
    claimed = store.claim("w1", run_id, 600)
    assert claimed is not None
    return {**claimed.fields(), "status": status, "finished_at": 1764000000000, **extra}


def test_restore_feeds_the_ended_feed_and_earns_the_retry_finish_would(store: Store) -> None:
    run_id = run_id_for("a", T0)
    policy = RunPolicy(retries=2, retry_on=("failed",))
    store.enqueue(run_id=run_id, job="a", scheduled_for=T0, queue="a", policy=policy)
    assert store.wait_for_run("w1", ["a"], 0.1) == run_id
    copy = _report_copy(store, run_id, "failed", exit_code=3, duration_s="0.500")
    store.redis.flushall()  # Redis lost everything while the run ran
    assert store.restore(copy)
    run = store.get_run(run_id)
    assert (run.status, run.exit_code, run.retry) == (RunStatus.FAILED, 3, f"{run_id}#2")
    assert [r.id for r in store.take_ended()] == [run_id]
    retry = store.get_run(f"{run_id}#2")
    assert (retry.status, retry.attempt, retry.trigger) == (RunStatus.QUEUED, 2, "retry")
    assert {r.id for r in store.history(job="a")} == {run_id, f"{run_id}#2"}
    # Delivered once: a second restore of the same copy changes nothing.
    assert not store.restore(copy)
    assert store.take_ended() == []


def test_restore_of_an_unusable_copy_writes_nothing(store: Store) -> None:
    run_id = run_id_for("a", T0)
    store.enqueue(run_id=run_id, job="a", scheduled_for=T0, queue="a")
    assert store.wait_for_run("w1", ["a"], 0.1) == run_id
    copy = _report_copy(store, run_id, "completed", exit_code="zero")
    store.redis.flushall()
    assert not store.restore(copy)
    assert store.redis.keys("*") == []
    assert not store.restore({**copy, "exit_code": 0, "status": "running"})
    assert store.redis.keys("*") == []
