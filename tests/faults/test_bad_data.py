"""Bad data in Redis never crashes a loop: a record that cannot be used is set aside, once.

The issue's record (a run hash with `scheduled_for abc` pushed on a queue) and a running run
with unreadable fields and an expired lease are written beside a live scheduler and worker.
"""

from __future__ import annotations

from datetime import datetime

from scheduler.store import RedisStore
from tests.faults.conftest import Cluster
from tests.faults.test_redis_errors import raw, ticks_after
from tests.helpers import wait_for


def _plant(store: RedisStore, run_id: str, status: str, **fields: str) -> None:
    k = store.keys
    record = {"id": run_id, "job": "steady", "status": status, "queue": "default", **fields}
    store.redis.hset(k.run(run_id), mapping=record)
    for index in (k.all_runs, k.by_job("steady"), k.by_status(status)):
        store.redis.zadd(index, {run_id: 0})
    store.redis.sadd(k.active("steady"), run_id)


def test_unreadable_records_are_set_aside_and_both_loops_go_on(cluster: Cluster) -> None:
    store = raw(cluster.store())
    cluster.start("s", "jobs_outage", "scheduler")
    cluster.start("w", "jobs_outage", "worker")
    started = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, started, 1), 30, "a first tick")

    queued = "steady@bad-queued"
    _plant(store, queued, "queued", scheduled_for="abc", trigger="manual", attempt="1")
    store.redis.rpush(store.keys.queue("default"), queued)
    running = "steady@bad-running"
    _plant(store, running, "running", scheduled_for="abc", attempt="x", retries="2", worker="gone")
    store.redis.zadd(store.keys.running, {running: 0})  # its lease expired long ago

    wait_for(lambda: store.raw_run(queued).get("status") == "failed", 20, "the set-aside run")
    reason = store.raw_run(queued)["reason"]
    assert reason == "unusable record: field scheduled_for is 'abc', which cannot be read"
    assert "started_at" not in store.raw_run(queued)  # set aside before anything was written
    wait_for(lambda: store.raw_run(running).get("status") == "lost", 20, "the reaped run")

    later = datetime.now().astimezone()
    wait_for(lambda: ticks_after(store, later, 3), 30, "ticks after the bad records")
    for name in ("s", "w"):
        text = cluster.log(name)
        assert cluster.procs[name].poll() is None, f"{name} exited:\n{text}"
        assert "Traceback" not in text, text
    assert cluster.log("w").count(queued) == 1, cluster.log("w")  # logged once
