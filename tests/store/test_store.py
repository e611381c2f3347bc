"""The Lua transitions against a real redis-server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.model import RunStatus, run_id_for
from scheduler.policy import RunPolicy
from scheduler.store import Claimed, Retention, Store
from scheduler.urls import mask_url
from tests.helpers import wait_for

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def enqueue(store: Store, job: str = "j", at: datetime = T0, **kw: object):  # type: ignore[no-untyped-def]
    return store.enqueue(
        run_id=run_id_for(job, at), job=job, scheduled_for=at, queue="default", **kw
    )  # type: ignore[arg-type]


def claim(store: Store, worker: str = "w1", lease_s: float = 10) -> Claimed | None:
    run_id = store.wait_for_run(worker, ["default"], 0.1)
    assert run_id is not None
    return store.claim(worker, run_id, lease_s)


def test_enqueue_is_once_per_job_and_instant(store: Store) -> None:
    first = enqueue(store)
    second = enqueue(store)
    assert (first.created, first.status) == (True, "queued")
    assert (second.created, second.status) == (False, "queued")
    assert store.queue_depth("default") == 1
    assert store.last_fires() == {"j": T0}


def test_enqueue_refuses_a_fire_not_after_the_last_one(store: Store) -> None:
    enqueue(store, at=T0)
    stale = enqueue(store, at=T0 - timedelta(minutes=1))
    assert (stale.created, stale.status) == (False, None)
    assert store.queue_depth("default") == 1


def test_overlap_skip_records_skipped(store: Store) -> None:
    enqueue(store, at=T0)
    later = enqueue(store, at=T0 + timedelta(minutes=1), overlap="skip")
    assert later.status == "skipped"
    run = store.get_run(later.run_id)
    assert run.status is RunStatus.SKIPPED
    assert run.reason is not None and run_id_for("j", T0) in run.reason
    assert store.queue_depth("default") == 1


def test_overlap_allow_queues_both(store: Store) -> None:
    enqueue(store, at=T0, overlap="allow")
    later = enqueue(store, at=T0 + timedelta(minutes=1), overlap="allow")
    assert later.status == "queued"
    assert store.queue_depth("default") == 2


def test_claim_heartbeat_finish(store: Store) -> None:
    enqueue(store, timeout_s=30.0)
    fields = claim(store)
    assert fields is not None
    assert fields.run.status is RunStatus.RUNNING and fields.run.worker == "w1"
    assert store.heartbeat("w1", 10, fields.run.id, horse_pid=1234).held
    assert store.get_run(fields.run.id).pid == 1234
    ok, status = store.finish(
        "w1",
        fields.run.id,
        "j",
        RunStatus.COMPLETED,
        1.5,
        {"exit_code": 0, "output": "hi", "error": None},
    )
    assert (ok, status) == (True, "completed")
    run = store.get_run(fields.run.id)
    assert run.status is RunStatus.COMPLETED
    assert run.duration_s == 1.5
    assert run.started_at is not None and run.finished_at is not None
    assert run.finished_at - run.started_at == timedelta(seconds=1.5)
    assert run.timeout_s == 30.0
    # The overlap guard is released: the next fire is queued, not skipped.
    assert enqueue(store, at=T0 + timedelta(minutes=1)).status == "queued"


def test_only_the_holder_finishes_and_a_late_report_is_kept(store: Store) -> None:
    enqueue(store)
    fields = claim(store, lease_s=0.05)
    assert fields is not None
    wait_for(lambda: store.reap(0.05), 5, "the lease to expire")
    assert store.get_run(fields.run.id).status is RunStatus.LOST
    ok, status = store.finish("w1", fields.run.id, "j", RunStatus.COMPLETED, 0.2, {})
    assert (ok, status) == (False, "lost")
    late = json.loads(store.raw_run(fields.run.id)["late_report"])
    assert late["status"] == "completed" and late["worker"] == "w1"
    assert store.get_run(fields.run.id).status is RunStatus.LOST


def test_heartbeat_keeps_the_lease(store: Store) -> None:
    enqueue(store)
    fields = claim(store, lease_s=0.3)
    assert fields is not None
    for _ in range(3):
        assert store.heartbeat("w1", 5, fields.run.id).held
    assert store.reap(0.05) == []
    assert not store.heartbeat("w2", 5, fields.run.id).held


def test_dead_workers_inbox_is_requeued(store: Store) -> None:
    enqueue(store)
    store.heartbeat("dead", 0.01)
    run_id = store.wait_for_run("dead", ["default"], 0.1)
    assert run_id is not None and store.queue_depth("default") == 0
    wait_for(lambda: store.recover_inboxes(), 5, "the inbox to be recovered")
    assert store.queue_depth("default") == 1
    assert store.claim("w2", store.wait_for_run("w2", ["default"], 0.1) or "", 5) is not None


def test_finish_and_take_records_the_run_and_takes_the_next_in_one_step(store: Store) -> None:
    for minute in range(2):
        enqueue(store, at=T0 + timedelta(minutes=minute), overlap="allow")
    first = claim(store)
    assert first is not None
    ok, status, taken = store.finish_and_take(
        "w1", first.run.id, "j", RunStatus.COMPLETED, 0.1, {"exit_code": 0}, None, "default"
    )
    assert (ok, status) == (True, "completed")
    assert store.get_run(first.run.id).status is RunStatus.COMPLETED
    assert taken == run_id_for("j", T0 + timedelta(minutes=1))
    assert store.queue_depth("default") == 0
    assert store.inbox_head("w1") == taken
    second = store.claim("w1", taken, 10)
    assert store.inbox_head("w1") is None
    assert second is not None and second.run.status is RunStatus.RUNNING
    # An empty queue: the report is recorded and nothing is taken. Redis lost its scripts
    # (restarted, SCRIPT FLUSH) in between: the report still goes through.
    store.redis.script_flush()
    ok, status, taken = store.finish_and_take(
        "w1", second.run.id, "j", RunStatus.FAILED, 0.1, {"exit_code": 1}, None, "default"
    )
    assert (ok, status, taken) == (True, "failed", None)


def test_a_taken_run_given_back_goes_to_the_head_of_its_queue(store: Store) -> None:
    for minute in range(3):
        enqueue(store, at=T0 + timedelta(minutes=minute), overlap="allow")
    first = claim(store)
    assert first is not None
    _, _, taken = store.finish_and_take(
        "w1", first.run.id, "j", RunStatus.COMPLETED, 0.1, {}, None, "default"
    )
    assert taken == run_id_for("j", T0 + timedelta(minutes=1))
    assert store.queue_depth("default") == 1
    assert store.give_back("w1", taken, "default")
    assert store.queue_depth("default") == 2
    # First out again, ahead of the fire queued after it; never twice.
    assert store.wait_for_run("w2", ["default"], 0.1) == taken
    assert not store.give_back("w1", taken, "default")


def test_refuse_fails_a_queued_run(store: Store) -> None:
    enqueue(store)
    run_id = store.wait_for_run("w1", ["default"], 0.1)
    assert run_id is not None
    assert store.refuse("w1", run_id, "j", "not defined here")
    run = store.get_run(run_id)
    assert run.status is RunStatus.FAILED and run.reason == "not defined here"


def test_missed_outcome_is_recorded_and_not_queued(store: Store) -> None:
    result = enqueue(store, outcome=RunStatus.MISSED, reason="no scheduler was running")
    assert result.status == "missed"
    assert store.queue_depth("default") == 0
    run = store.get_run(result.run_id)
    assert run.status is RunStatus.MISSED and run.finished_at is not None


def test_history_filters_and_order(store: Store) -> None:
    for i in range(5):
        enqueue(store, job="a", at=T0 + timedelta(minutes=i), overlap="allow")
    enqueue(store, job="b", at=T0 + timedelta(minutes=10), outcome=RunStatus.MISSED)
    runs = store.history(limit=10)
    assert [r.scheduled_for for r in runs] == sorted((r.scheduled_for for r in runs), reverse=True)
    assert len(runs) == 6
    assert [r.job for r in store.history(statuses=[RunStatus.MISSED])] == ["b"]
    assert len(store.history(job="a", limit=3)) == 3
    assert store.history(job="a", statuses=[RunStatus.MISSED]) == []
    since = store.history(since=T0 + timedelta(minutes=3))
    assert {r.scheduled_for for r in since} == {T0 + timedelta(minutes=m) for m in (3, 4, 10)}
    assert store.last_runs(["a", "b", "c"])["a"].scheduled_for == T0 + timedelta(minutes=4)


def test_retention_keeps_the_newest_finished_runs(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(5):
        enqueue(store, job="a", at=now - timedelta(minutes=10 - i), outcome=RunStatus.MISSED)
    enqueue(
        store,
        job="a",
        at=now - timedelta(days=40),
        outcome=RunStatus.MISSED,
        advance_last_fire=False,
    )
    dropped = store.trim(["a"], Retention(keep_runs=3, max_age_s=30 * 86400, keep_not_run=3))
    assert dropped == 3
    left = store.history(job="a", limit=10)
    assert [r.scheduled_for for r in left] == [now - timedelta(minutes=m) for m in (6, 7, 8)]
    keys = store.redis.keys("*")
    assert len([k for k in keys if ":run:" in k]) == 3


def test_every_key_has_the_namespace_hash_tag(redis_url: str) -> None:
    store = Store(redis_url, namespace="team-a")
    enqueue(store)
    fields = claim(store)
    assert fields is not None
    store.finish("w1", fields.run.id, "j", RunStatus.COMPLETED, 0.1, {"error": {"type": "X"}})
    keys = store.redis.keys("*")
    assert keys and all(k.startswith("{team-a}:") for k in keys)
    # Everything stored is plain text or JSON.
    for key in keys:
        if store.redis.type(key) == "hash":
            for value in store.redis.hvals(key):
                assert isinstance(value, str)
    store.close()


def test_mask_url_hides_the_password() -> None:
    assert mask_url("redis://user:s3cret@host:6380/0") == "redis://user:***@host:6380/0"
    assert mask_url("rediss://:s3cret@host/1") == "rediss://:***@host/1"
    assert mask_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"


def test_wait_for_run_prefers_the_first_queue(store: Store) -> None:
    store.enqueue(run_id="low@1", job="low", scheduled_for=T0, queue="low")
    store.enqueue(run_id="high@1", job="high", scheduled_for=T0, queue="high")
    assert store.wait_for_run("w", ["high", "low"], 0.1) == "high@1"
    assert store.wait_for_run("w", ["high", "low"], 0.1) == "low@1"
    assert store.wait_for_run("w", ["high", "low"], 0.05) is None


def test_an_evicting_redis_is_refused(store: Store) -> None:
    from scheduler.errors import StoreError

    store.redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(StoreError, match="maxmemory-policy 'allkeys-lru'.*'noeviction'"):
            store.ping()
    finally:
        store.redis.config_set("maxmemory-policy", "noeviction")
    store.ping()


def test_misfire_grace_records_a_late_start_missed(store: Store) -> None:
    late = datetime.now(UTC) - timedelta(seconds=5)
    store.enqueue(
        run_id=run_id_for("j", late),
        job="j",
        scheduled_for=late,
        queue="default",
        policy=RunPolicy(misfire_grace_s=1.0),
    )
    run_id = store.wait_for_run("w", ["default"], 0.1)
    assert run_id is not None
    assert store.claim("w", run_id, 10) is None
    run = store.get_run(run_id)
    assert run.status is RunStatus.MISSED
    assert run.reason is not None and run.reason.startswith("not started within misfire_grace 1.0s")
    # A manual run has no fire time to be late for.
    manual = datetime.now(UTC) - timedelta(seconds=5)
    store.enqueue(
        run_id="j@manual-1",
        job="j",
        scheduled_for=manual,
        queue="default",
        trigger="manual",
        advance_last_fire=False,
        policy=RunPolicy(misfire_grace_s=1.0),
    )
    assert store.claim("w", store.wait_for_run("w", ["default"], 0.1) or "", 10) is not None


def test_retry_plan_follows_the_policy_with_backoff_and_jitter() -> None:
    from scheduler.policy import retry_plan

    policy = RunPolicy.from_fields(
        {"retries": "2", "retry_backoff_s": "10", "retry_on": "failed,lost"}
    )
    root = "j@20261127T100000Z"
    first = retry_plan(root, 1, policy, RunStatus.FAILED)
    assert first is not None and first.run_id == "j@20261127T100000Z#2" and first.attempt == 2
    assert 5_000 <= first.delay_ms <= 10_000
    second = retry_plan(f"{root}#2", 2, policy, RunStatus.LOST)
    assert second is not None and second.run_id == "j@20261127T100000Z#3"
    assert 10_000 <= second.delay_ms <= 20_000  # doubled
    assert retry_plan(root, 3, policy, RunStatus.FAILED) is None  # retries used up
    assert retry_plan(root, 1, policy, RunStatus.TIMED_OUT) is None  # not in retry_on
    assert retry_plan("j@1", 1, RunPolicy(), RunStatus.FAILED) is None  # no retries


def test_a_failed_run_schedules_its_retry_in_the_same_step(store: Store) -> None:
    from scheduler.policy import Retry

    enqueue(store, policy=RunPolicy(retries=1, retry_backoff_s=0.05))
    fields = claim(store)
    assert fields is not None
    store.finish(
        "w1", fields.run.id, "j", RunStatus.FAILED, 0.1, {}, Retry(f"{fields.run.id}#2", 50, 2)
    )
    retry = store.get_run(f"{fields.run.id}#2")
    assert (
        retry.status is RunStatus.QUEUED and retry.attempt == 2 and retry.retry_of == fields.run.id
    )
    assert store.get_run(fields.run.id).retry == retry.id
    assert store.queue_depth("default") == 0  # waits out its backoff in the delayed set
    wait_for(lambda: store.promote_due(), 5, "the backoff to pass")
    assert store.wait_for_run("w1", ["default"], 0.1) == retry.id
