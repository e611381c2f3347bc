"""The truth at read time: a running run whose lease ran out reads as lost, with nothing alive
to reap it, and the reason says it was judged when read (real redis-server)."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.model import RunStatus, run_id_for
from scheduler.store import Store
from tests.helpers import wait_for

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _claimed(store: Store, lease_s: float) -> str:
    run_id = run_id_for("j", T0)
    store.enqueue(run_id=run_id, job="j", scheduled_for=T0, queue="default")
    assert store.wait_for_run("w1", ["default"], 0.1) == run_id
    assert store.claim("w1", run_id, lease_s) is not None
    return run_id


def _lease_ran_out(store: Store, run_id: str) -> None:
    wait_for(
        lambda: store.get_run(run_id).status is RunStatus.LOST, timeout=10, what="lease to expire"
    )


def test_a_run_whose_lease_ran_out_reads_lost_everywhere(store: Store) -> None:
    run_id = _claimed(store, lease_s=0.3)
    assert store.get_run(run_id).status is RunStatus.RUNNING  # its lease still holds
    _lease_ran_out(store, run_id)
    run = store.get_run(run_id)
    assert run.reason is not None and run.reason.startswith("judged lost when read")
    assert "lease expired at" in run.reason and "recorded" in run.reason
    assert run.finished_at is not None and run.started_at is not None
    assert run.duration_s is not None and 0.2 < run.duration_s < 5  # start to lease expiry
    assert [r.status for r in store.history()] == [RunStatus.LOST]
    assert [r.id for r in store.history(statuses=[RunStatus.LOST])] == [run_id]
    assert store.history(statuses=[RunStatus.RUNNING]) == []
    assert store.last_runs(["j"])["j"].status is RunStatus.LOST
    counts = store.status_counts(None, None)
    assert (counts["running"], counts["lost"]) == (0, 1)
    (row,) = store.summaries([run_id])
    assert row is not None and row.status is RunStatus.LOST
    assert row.reason is not None and row.reason.startswith("judged lost when read")
    assert store.live_output(run_id)[0] == "lost"  # `sched logs -f` stops following
    assert store.running_count() == 0
    # Nothing was written: the record still says running until a reaper records the loss.
    assert store.raw_run(run_id)["status"] == "running"


def test_a_renewed_lease_reads_running_again_and_the_reaper_records_the_loss(
    store: Store,
) -> None:
    run_id = _claimed(store, lease_s=0.3)
    _lease_ran_out(store, run_id)
    # Its worker was only cut off: it renews, and the run reads running again.
    assert store.heartbeat("w1", 30, run_id).held
    assert store.get_run(run_id).status is RunStatus.RUNNING
    assert store.status_counts(None, None)["running"] == 1
    assert store.heartbeat("w1", 1.0, run_id).held
    _lease_ran_out(store, run_id)
    # A reaper that finds Redis silent since (nobody renewed) gives workers one lease first.
    wait_for(lambda: store.reap(1.0) == [run_id], timeout=10, what="the reaper")
    run = store.get_run(run_id)
    assert run.status is RunStatus.LOST
    assert run.reason == "lease expired: its worker stopped renewing it"


def test_after_an_outage_a_worker_gets_its_lease_to_renew_before_its_run_reads_lost(
    store: Store,
) -> None:
    run_id = _claimed(store, lease_s=1.0)
    assert store.heartbeat("w1", 1.0, run_id).held
    wait_for(lambda: store.running_count() == 0, timeout=10, what="the lease to run out")
    # Redis answers again after an outage (as the scripts' clock records it): the worker
    # gets one lease from now before anyone judges its run, as the reaper waits.
    store.redis.hset(store.keys.clock, "resumed", store.server_time_ms())
    assert store.get_run(run_id).status is RunStatus.RUNNING
    assert store.status_counts(None, None)["running"] == 1
    _lease_ran_out(store, run_id)


def test_a_heartbeat_writes_back_a_running_record_redis_lost(store: Store) -> None:
    run_id = _claimed(store, lease_s=30)
    store.redis.flushall()  # Redis restarted empty while the run runs on its worker
    assert store.heartbeat("w1", 30, run_id, horse_pid=4321).held
    run = store.get_run(run_id)
    assert (run.status, run.worker, run.pid) == (RunStatus.RUNNING, "w1", 4321)
    # The job's next fire sees it: overlap=skip starts no second run.
    later = T0.replace(minute=1)
    nxt = store.enqueue(run_id=run_id_for("j", later), job="j", scheduled_for=later, queue="q")
    assert nxt.status is RunStatus.SKIPPED
    # Its report lands on the record as any other.
    assert store.finish("w1", run_id, "j", RunStatus.COMPLETED, 1.0, {"exit_code": 0}) == (
        True,
        "completed",
    )
    assert [r.id for r in store.take_ended()] == [nxt.run_id, run_id]
    assert store.history(statuses=[RunStatus.RUNNING]) == []


def test_a_heartbeat_writes_back_only_a_run_this_store_claimed(
    store: Store, redis_url: str
) -> None:
    run_id = _claimed(store, lease_s=30)
    other = Store(redis_url)
    try:
        store.redis.flushall()
        assert not other.heartbeat("w1", 30, run_id).held  # it never claimed the run
        assert store.redis.exists(store.keys.run(run_id)) == 0
    finally:
        other.close()
