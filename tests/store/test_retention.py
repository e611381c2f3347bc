"""Retention per job against a real Redis: skipped and missed fires never evict real runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.model import RunStatus, run_id_for
from scheduler.store import Fire, Retention, Store, fire_settings

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def test_skipped_fires_do_not_push_completed_runs_out_of_retention(store: Store) -> None:
    ran = fire_settings("default", overlap="allow", timeout_s=30.0)
    for i in range(50):  # the oldest: the first an index-wide cap would forget
        at = T0 + timedelta(seconds=i)
        run_id = run_id_for("j", at)
        store.enqueue_many([Fire(run_id, "j", at, ran)])
        assert store.wait_for_run("w", ["default"], 0.1) == run_id
        assert store.claim("w", run_id, 10) is not None
        store.finish("w", run_id, "j", RunStatus.COMPLETED, 0.01, {"exit_code": 0})
    skip = fire_settings("default", outcome=RunStatus.SKIPPED, reason="overlap=skip: busy")
    miss = fire_settings("default", outcome=RunStatus.MISSED, reason="no scheduler")
    fires = [
        Fire(run_id_for("j", at), "j", at, skip if i % 5 else miss)
        for i in range(5000)
        for at in [T0 + timedelta(minutes=1, seconds=i)]
    ]
    store.enqueue_many(fires)
    forgotten = store.trim(["j"], Retention(keep_runs=1000))
    assert forgotten == 4000  # fires not run beyond their own cap (1,000), oldest first
    completed = store.history(job="j", statuses=[RunStatus.COMPLETED], limit=100)
    assert len(completed) == 50
    kept = store.history(job="j", limit=2000)
    assert len(kept) == 1050
    assert {r.status for r in kept[:1000]} == {RunStatus.SKIPPED, RunStatus.MISSED}
    assert kept[0].scheduled_for == fires[-1].scheduled_for  # the newest fires are the kept
    assert store.history(statuses=[RunStatus.SKIPPED], limit=5000)[-1].scheduled_for > (
        fires[3999].scheduled_for
    )
    # Real runs get their own cap: beyond keep_runs the oldest real runs go, not the fires.
    assert store.trim(["j"], Retention(keep_runs=20)) == 30
    assert len(store.history(job="j", statuses=[RunStatus.COMPLETED], limit=100)) == 20
    assert len(store.history(job="j", limit=2000)) == 1020
    assert store.get_run(run_id_for("j", T0 + timedelta(seconds=49))).status is RunStatus.COMPLETED


def test_a_deployment_wide_cap_forgets_the_oldest_finished_runs_of_every_job(
    store: Store,
) -> None:
    skip = fire_settings("default", outcome=RunStatus.SKIPPED, reason="busy")
    manual = fire_settings("default", overlap="allow", timeout_s=30.0, scheduled=False)
    fires = [
        Fire(run_id_for(f"job{i % 30}", at), f"job{i % 30}", at, skip)
        for i in range(300)
        for at in [T0 + timedelta(seconds=i)]
    ]
    store.enqueue_many(fires)
    oldest = T0 - timedelta(hours=1)  # queued: pending runs are never forgotten
    store.enqueue_many([Fire(run_id_for("job0", oldest), "job0", oldest, manual)])
    cap = Retention(keep_total=100, trim_batch=150)
    assert store.trim([], cap) == 149  # one pass looks at most at trim_batch, oldest first
    assert store.trim([], cap) == 51
    assert store.trim([], cap) == 0
    kept = store.history(limit=500)
    assert len(kept) == 101
    assert {r.scheduled_for for r in kept if r.status is RunStatus.SKIPPED} == {
        f.scheduled_for for f in fires[200:]
    }
    assert store.get_run(run_id_for("job0", oldest)).status is RunStatus.QUEUED
    assert len(store.history(job="job7", limit=50)) == len(
        [f for f in fires[200:] if f.job == "job7"]
    )
    assert not [k for k in store.redis.keys("*") if ":run:" in k and k.endswith(fires[0].run_id)]
