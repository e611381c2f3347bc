"""Scenario 7: Redis stopped for a while, then killed and restarted, during a burst of runs."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.store import Store
from tests.faults.conftest import Cluster
from tests.helpers import wait_for

PAUSE_S = 30  # many leases (2 s) and many fires (every 0.5 s)


def completed_after(store: Store, moment: datetime, n: int) -> bool:
    runs = store.history(job="burst.burst", statuses=[RunStatus.COMPLETED], limit=200)
    return len([r for r in runs if r.scheduled_for > moment]) >= n


def test_7_redis_paused_then_killed_and_restarted(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("s", "jobs_burst", "scheduler")
    cluster.start("w", "jobs_burst", "worker", "--workers", "2")
    start = datetime.now().astimezone()
    wait_for(lambda: completed_after(store, start, 6), 30, "a first burst of runs")

    redis_pid = cluster.redis.process.pid  # type: ignore[union-attr]
    os.kill(redis_pid, signal.SIGSTOP)
    time.sleep(PAUSE_S)  # the fault itself: Redis answers nobody for this long
    os.kill(redis_pid, signal.SIGCONT)
    resumed = datetime.now().astimezone()
    wait_for(lambda: completed_after(store, resumed, 6), 60, "runs after the pause")

    os.kill(redis_pid, signal.SIGKILL)
    cluster.redis.stop()  # it is dead already: this releases the state folder
    store.close()
    cluster.redis = EmbeddedRedis(cluster.state, appendonly=True).start()  # same AOF
    restarted = datetime.now().astimezone()
    store = Store(cluster.url)
    wait_for(lambda: completed_after(store, restarted, 6), 60, "runs after the restart")

    for name, proc in cluster.procs.items():
        assert proc.poll() is None, f"{name} exited during the outage:\n{cluster.log(name)}"
    cluster.stop_all()

    runs = store.history(job="burst.burst", limit=10_000)
    statuses = {r.status for r in runs}
    assert RunStatus.LOST not in statuses, "a live run was judged lost after the outage"
    assert RunStatus.RUNNING not in statuses
    assert all("late_report" not in store.raw_run(r.id) for r in runs), "a report came twice"
    instants = sorted(r.scheduled_for for r in runs)
    assert len(instants) == len(set(instants))
    # The schedule went on through both faults: at most the last second before the kill
    # (appendfsync everysec) may be missing.
    expected = int((instants[-1] - instants[0]) / timedelta(seconds=0.5)) + 1
    assert expected - len(instants) <= 3, f"{expected - len(instants)} fires missing"
    for name in ("s", "w"):
        assert "Traceback" not in cluster.log(name), cluster.log(name)


def test_redis_restarted_empty_is_noticed_and_schedules_go_on(cluster: Cluster) -> None:
    store = cluster.store()
    cluster.start("s", "jobs_burst", "scheduler")
    cluster.start("w", "jobs_burst", "worker")
    wait_for(
        lambda: completed_after(store, datetime.now().astimezone() - timedelta(hours=1), 3),
        30,
        "a few runs",
    )
    store.redis.flushall()  # as if Redis had restarted without its data
    flushed = datetime.now().astimezone()
    wait_for(lambda: completed_after(store, flushed, 3), 30, "runs after the data loss")
    wait_for(lambda: "Redis lost its data" in cluster.log("s"), 10, "the scheduler to notice")
    cluster.stop_all()
    runs = store.history(job="burst.burst", limit=1000)
    assert {r.status for r in runs} <= {RunStatus.COMPLETED, RunStatus.QUEUED}
