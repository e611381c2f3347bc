"""The truth at read time, and after Redis lost its data (issue 11, item 3; store side).

Real sched processes against a redis-server of each test's own, real SIGKILL and FLUSHALL,
and the real CLI reading the result:
- a run whose only worker was SIGKILLed, with no scheduler alive, reads `lost` in
  `sched history` and `sched show` (judged when read, and labelled so);
- a report for a record Redis lost (RESTORE) reaches the ended feed once and earns its
  retry, like a finished run;
- after FLUSHALL while a run of an overlap="skip" job runs, the next fires start no second
  run, and the first run's report lands once; also a fire made a few milliseconds after the
  FLUSHALL, before the worker's next heartbeat wrote the run back (the scheduler holds it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import redis

from scheduler.errors import UnknownRun
from scheduler.model import Run, RunStatus, run_id_for
from scheduler.store import RedisStore, Store
from tests.faults.conftest import Cluster
from tests.helpers import alive, final, trigger, wait_for


def sched(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI against the cluster's Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env["SCHED_REDIS_URL"] = cluster.url
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def history(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    done = sched(cluster, "history", "--json", *args)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def running_pid(store: Store, run_id: str) -> int:
    def pid() -> int | None:
        run = store.get_run(run_id)
        return run.pid if run.status is RunStatus.RUNNING else None

    return wait_for(pid, 20, f"{run_id} to be running")


def restored(store: Store, run_id: str) -> Run | None:
    """The run once its record is back and final (None while Redis has no record of it)."""
    try:
        run = store.get_run(run_id)
    except UnknownRun:
        return None
    return run if run.status.final else None


def raw(store: Store) -> RedisStore:
    assert isinstance(store, RedisStore)
    return store


def test_a_sigkilled_workers_run_reads_lost_with_nothing_alive(cluster: Cluster) -> None:
    store = cluster.store()
    worker = cluster.start("w", "jobs_truth", "worker")  # one worker: no supervisor
    run_id = trigger(store, "sleeper")
    horse = running_pid(store, run_id)
    assert [r["status"] for r in history(cluster)] == ["running"]
    worker.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert worker.wait(10) == -signal.SIGKILL
    wait_for(lambda: not alive(horse), 10, "the horse to die with its worker")

    def read_lost() -> dict[str, Any] | None:
        (row,) = history(cluster)
        return row if row["status"] == "lost" else None

    row = wait_for(read_lost, 30, "sched history to show the run lost")
    lost_after = time.monotonic() - killed
    # Lease 2 s; a read after Redis heard from nobody for over half a lease gives the worker
    # one more lease to renew (the reaper's rule), so at most about two leases.
    assert lost_after < 2 * 2.0 + 2, f"read lost {lost_after:.1f}s after the kill"
    assert row["id"] == run_id
    assert row["reason"].startswith("judged lost when read: its lease expired at")
    assert row["finished_at"] and row["duration_s"] is not None
    shown = sched(cluster, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "lost" in shown.stdout and "judged lost when read" in shown.stdout
    assert [r["id"] for r in history(cluster, "--status", "lost")] == [run_id]
    assert history(cluster, "--status", "running") == []
    # Nothing alive wrote anything: the reading alone showed the loss.
    assert raw(store).raw_run(run_id)["status"] == "running"
    print(f"FIGURE read-lost-after-sigkill: {lost_after:.2f}s (lease 2s)")


def test_a_report_restored_after_redis_lost_the_record_is_fed_and_retried(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    server = redis.Redis.from_url(cluster.url, decode_responses=True)
    try:
        cluster.start("w", "jobs_truth", "worker")
        run_id = trigger(store, "fails-once", retries=1)
        horse = running_pid(store, run_id)
        server.config_set("maxmemory", 1)  # the report cannot be written: it waits
        wait_for(lambda: not alive(horse), 20, "the horse to end its run")
        server.flushall()  # Redis loses everything, the run's record with it
        server.config_set("maxmemory", 0)
        back = time.monotonic()
        run = wait_for(lambda: restored(store, run_id), 30, "the report to be restored")
        delivered_after = time.monotonic() - back
        assert run.status is RunStatus.FAILED and run.exit_code == 3, run
        assert run.retry == f"{run_id}#2"
        wait_for(lambda: "restored it" in cluster.log("w"), 10, "the worker to restore it")
        retry = final(store, f"{run_id}#2", 30)
        assert retry.status is RunStatus.COMPLETED and retry.attempt == 2
        assert retry.output and "second attempt done" in retry.output
        # The ended feed (what metrics and alerts read) has each run once.
        ended = [r.id for r in store.take_ended()]
        assert sorted(ended) == sorted([run_id, f"{run_id}#2"]), ended
        assert "late_report" not in raw(store).raw_run(run_id)
        assert cluster.procs["w"].poll() is None
        assert "Traceback" not in cluster.log("w"), cluster.log("w")
        assert cluster.stop("w") == 0, cluster.log("w")
        print(f"FIGURE restore-delivered-after-redis-back: {delivered_after:.2f}s")
    finally:
        server.close()


def held_running(store: Store) -> str | None:
    """The id of the `held` job's run once its horse runs, else None."""
    runs = store.history(job="held", statuses=[RunStatus.RUNNING], limit=5)
    return runs[0].id if runs and runs[0].pid else None


def test_an_overlap_skip_job_starts_no_second_run_after_redis_lost_its_data(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    cluster.start("s", "jobs_truth", "scheduler")
    cluster.start("w", "jobs_truth", "worker", "--workers", "2")  # a second worker is free

    first = wait_for(lambda: held_running(store), 30, "a held run to be running")
    raw(store).redis.flushall()  # Redis restarted empty, the run still running on its worker
    flushed = time.monotonic()
    back_after = None
    while (run := restored(store, first)) is None and time.monotonic() - flushed < 30:
        if back_after is None and raw(store).raw_run(first).get("status") == "running":
            back_after = time.monotonic() - flushed
        time.sleep(0.02)
    assert run is not None, f"{first} did not end"
    assert run.status is RunStatus.COMPLETED and run.output and "held done" in run.output
    assert "late_report" not in raw(store).raw_run(first)
    assert run.finished_at is not None
    during = [
        r
        for r in store.history(job="held", limit=200)
        if r.id != first and r.scheduled_for < run.finished_at
    ]
    started = [r.id for r in during if r.status is not RunStatus.SKIPPED]
    assert not started, f"second runs started while {first} ran: {started}"
    assert len(during) >= 3, "the job kept firing (and skipping) meanwhile"
    for name in ("s", "w"):
        assert cluster.procs[name].poll() is None, cluster.log(name)
        assert "Traceback" not in cluster.log(name), cluster.log(name)
    assert "written back from this worker's copy" in cluster.log("w")
    for name in ("s", "w"):
        assert cluster.stop(name) == 0, cluster.log(name)
    assert back_after is not None, "the record never read running again"
    print(f"FIGURE overlap-skip-after-flushall: record back after {back_after:.2f}s, 0 second runs")


def _just_before_a_whole_second(margin_s: float = 0.03) -> float:
    """Wait until `margin_s` before the next whole second (when the `held` job fires); return
    that second. A wait for a point on the clock, not for something to happen."""
    now = time.time()
    target = math.ceil(now)
    if target - now < margin_s + 0.01:
        target += 1
    time.sleep(max(target - margin_s - time.time(), 0.0))
    return float(target)


def test_a_fire_right_after_redis_lost_its_data_starts_no_second_run(cluster: Cluster) -> None:
    """The `held` job fires every whole second; Redis is flushed 30 ms before one, twice, so
    the fire comes before the worker's next heartbeat (every 0.4 s here) writes back the run
    it holds. The scheduler holds such fires until the write-back, then they are skipped."""
    store = cluster.store()
    cluster.start("s", "jobs_truth", "scheduler")
    cluster.start("w", "jobs_truth", "worker", "--workers", "2")  # a second worker is free

    first = wait_for(lambda: held_running(store), 30, "a held run to be running")
    fires: list[str] = []
    back_after: list[float] = []
    for _ in range(2):
        fire_s = _just_before_a_whole_second()
        raw(store).redis.flushall()  # Redis restarted empty 30 ms before a fire
        flushed = time.monotonic()
        fires.append(run_id_for("held", datetime.fromtimestamp(fire_s, UTC)))
        wait_for(
            lambda: raw(store).raw_run(first).get("status") == "running",
            10,
            "the worker to write the running record back",
        )
        back_after.append(time.monotonic() - flushed)
    run = wait_for(lambda: restored(store, first), 30, f"{first} to end")
    assert run.status is RunStatus.COMPLETED and run.output and "held done" in run.output
    assert run.finished_at is not None
    for fire in fires:  # made (after the hold), and skipped for the run still running
        made = wait_for(lambda f=fire: restored(store, f), 10, f"the fire {fire} to be made")
        assert made.status is RunStatus.SKIPPED, made
        assert made.reason and first in made.reason, made.reason
    during = [
        r
        for r in store.history(job="held", limit=200)
        if r.id != first and r.scheduled_for < run.finished_at
    ]
    started = [r.id for r in during if r.status is not RunStatus.SKIPPED]
    assert not started, f"second runs started while {first} ran: {started}"
    assert "fires of jobs whose overlap policy looks at running runs wait" in cluster.log("s")
    for name in ("s", "w"):
        assert cluster.procs[name].poll() is None, cluster.log(name)
        assert "Traceback" not in cluster.log(name), cluster.log(name)
    for name in ("s", "w"):
        assert cluster.stop(name) == 0, cluster.log(name)
    backs = ", ".join(f"{b:.2f}s" for b in back_after)
    print(f"FIGURE fire-30ms-after-flushall: record back after {backs}, 0 second runs")
