"""Scenarios 1-4 and 8: exactly one run per fire time through scheduler faults; overlap."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta

import pytest

from scheduler.model import Run, RunStatus, Trigger
from scheduler.store import Store
from tests.faults.conftest import Cluster
from tests.helpers import wait_for

SECOND = timedelta(seconds=1)


def fires(store: Store, job: str) -> list[Run]:
    return sorted(store.history(job=job, limit=10_000), key=lambda r: r.scheduled_for)


def count_at_least(store: Store, job: str, n: int) -> bool:
    return len(store.history(job=job, limit=n)) >= n


def assert_one_per_second(runs: list[Run]) -> None:
    instants = [r.scheduled_for for r in runs]
    assert len(instants) == len(set(instants)), "a fire was enqueued twice"
    gaps = [b - a for a, b in zip(instants, instants[1:], strict=False)]
    assert set(gaps) == {SECOND}, f"gaps between fires: {sorted(set(gaps))}"


def test_1_two_schedulers_exactly_one_run_per_second(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("a", "jobs_ha", "scheduler")
    cluster.start("b", "jobs_ha", "scheduler")
    wait_for(lambda: count_at_least(store, "ha.tick", 8), 30, "8 fires")
    cluster.stop_all()
    runs = fires(store, "ha.tick")
    assert_one_per_second(runs)
    queued = store.redis.lrange(store.keys.queue("default"), 0, -1)
    assert len(queued) == len(set(queued)) == len(runs)
    assert "fire ha.tick" in cluster.log("a") and "fire ha.tick" in cluster.log("b")


def test_2_sigkill_one_of_two_schedulers(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("a", "jobs_ha", "scheduler")
    cluster.start("b", "jobs_ha", "scheduler")
    wait_for(lambda: count_at_least(store, "ha.tick", 3), 30, "3 fires")
    cluster.signal("a", signal.SIGKILL)
    killed_at = datetime.now().astimezone()
    wait_for(lambda: count_at_least(store, "ha.tick", 8), 30, "5 more fires")
    cluster.stop_all()
    runs = fires(store, "ha.tick")
    assert_one_per_second(runs)
    assert runs[-1].scheduled_for > killed_at


def test_3_stopped_scheduler_enqueues_nothing_stale(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("a", "jobs_ha", "scheduler")
    cluster.start("b", "jobs_ha", "scheduler")
    wait_for(lambda: count_at_least(store, "ha.tick", 2), 30, "2 fires")
    cluster.signal("a", signal.SIGSTOP)  # past the lease (2 s) and several fires
    n = len(fires(store, "ha.tick"))
    # Longer than the lease and than the scheduler's own lateness threshold (5 s), so the
    # resumed one takes its catch-up path as well as its ordinary one.
    wait_for(lambda: count_at_least(store, "ha.tick", n + 6), 30, "6 fires while stopped")
    cluster.signal("a", signal.SIGCONT)
    n = len(fires(store, "ha.tick"))
    wait_for(lambda: count_at_least(store, "ha.tick", n + 3), 30, "3 fires after")
    cluster.stop_all()
    runs = fires(store, "ha.tick")
    assert_one_per_second(runs)
    for run in runs:
        assert run.enqueued_at is not None
        assert run.enqueued_at - run.scheduled_for < SECOND, f"{run.id} was enqueued late"
    fired_by_a = cluster.log("a").count("fire ha.tick")
    assert fired_by_a < len(runs)


def test_4_catch_up_policies_after_downtime(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("a", "jobs_catchup", "scheduler")
    wait_for(lambda: count_at_least(store, "catchup.all", 2), 30, "2 fires")
    assert cluster.stop("a") == 0
    before = {
        job: fires(store, f"catchup.{job}")[-1].scheduled_for for job in ("none", "latest", "all")
    }
    down_until = max(before.values()) + 3.6 * SECOND  # at least 3 fires pass while down
    wait_for(lambda: datetime.now().astimezone() > down_until, 10, "downtime")
    cluster.start("a2", "jobs_catchup", "scheduler")
    wait_for(lambda: count_at_least(store, "catchup.all", 8), 30, "fires after restart")
    cluster.stop_all()
    for job, expect_run in (("none", 0), ("latest", 1), ("all", None)):
        runs = fires(store, f"catchup.{job}")
        assert_one_per_second(runs)  # every fire instant has exactly one record
        gap = [
            r
            for r in runs
            if r.scheduled_for > before[job]
            and r.trigger is not Trigger.SCHEDULE
            or r.status is RunStatus.MISSED
        ]
        missed = [r for r in runs if r.status is RunStatus.MISSED]
        caught = [r for r in runs if r.trigger is Trigger.CATCHUP]
        assert len(missed) + len(caught) >= 3, f"{job}: the downtime covered 3 fires"
        if expect_run is None:  # all
            assert missed == []
        else:
            assert len(caught) == expect_run
        if caught:
            assert all(c.scheduled_for > m.scheduled_for for c in caught for m in missed)
        assert gap


@pytest.mark.parametrize("workers", ["6"])
def test_8_overlap_policies(cluster: Cluster, workers: str) -> None:
    store = cluster.store()
    cluster.start("w", "jobs_overlap", "worker", "--workers", workers)
    cluster.start("s", "jobs_overlap", "scheduler")
    wait_for(lambda: count_at_least(store, "overlap-allow", 7), 30, "7 fires")
    cluster.stop_all()

    def by_status(job: str) -> dict[RunStatus, list[Run]]:
        out: dict[RunStatus, list[Run]] = {}
        for run in fires(store, job):
            out.setdefault(run.status, []).append(run)
        return out

    skip = by_status("overlap-skip")
    assert skip.get(RunStatus.SKIPPED), "fires during a run are skipped"
    assert all("overlap=skip" in (r.reason or "") for r in skip[RunStatus.SKIPPED])
    allow = fires(store, "overlap-allow")
    started = sorted((r.started_at, r.finished_at) for r in allow if r.started_at and r.finished_at)
    assert any(b[0] < a[1] for a, b in zip(started, started[1:], strict=False)), "runs overlap"
    queue = by_status("overlap-queue")
    assert queue.get(RunStatus.SKIPPED), "with one waiting, further fires are skipped"
    assert all("already waiting" in (r.reason or "") for r in queue[RunStatus.SKIPPED])
    replace = by_status("overlap-replace")
    killed = replace.get(RunStatus.KILLED, [])
    assert killed and all(r.reason == "replaced" for r in killed)
    assert all(r.signal == "SIGTERM" for r in killed)
