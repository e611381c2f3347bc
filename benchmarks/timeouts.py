"""4. Timeout precision: from a run's deadline to its recorded `timed-out`.

`sched worker --workers K --grace G` (the real CLI) runs jobs with a 0.5 s timeout that
- sleep forever: the horse's alarm raises JobTimeout at the deadline;
- block SIGALRM and sleep forever: only the parent's backstop at deadline + grace ends them.
The deadline is the run's `started_at` (Redis time at claim, just before the fork) plus its
timeout. The moment of the record is when a keyspace notification for the `timed-out` status
index reaches this process, so it is the moment anyone could read the final status.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Config,
    Result,
    child_env,
    progress,
    redis_server,
    stop_process,
    summary,
    workdir,
)

TIMEOUT_S = 0.5
JOBS = """from benchmarks import tasks
from scheduler import job

job("0 0 1 1 *", name="timeout.sleep", timeout="{timeout}s")(tasks.sleep_forever)
job("0 0 1 1 *", name="timeout.block_alarm", timeout="{timeout}s")(tasks.block_alarm_forever)
"""


class RecordWatcher:
    """Notes when each run id enters a status index (keyspace notifications, local clock)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self.seen: dict[str, float] = {}
        client.config_set("notify-keyspace-events", "Kz")
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(f"__keyspace@0__:{self.key}")
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping:
            message = self.pubsub.get_message(timeout=0.1)
            if message is None:
                continue
            now = time.time()
            for run_id in self.client.zrange(self.key, 0, -1):
                self.seen.setdefault(run_id, now)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.pubsub.close()


def _measure(store: Any, job: str, n: int, grace_s: float) -> list[float]:
    """Enqueue n runs of `job`; latency (s) of each record after deadline (+ grace)."""
    watcher = RecordWatcher(store.redis, store.keys.by_status("timed-out"))
    ids = [f"{job}@bench-{i}" for i in range(n)]
    try:
        for run_id in ids:
            store.enqueue(
                run_id=run_id,
                job=job,
                scheduled_for=datetime.now(UTC),
                queue="default",
                overlap="allow",
                trigger="manual",
                timeout_s=TIMEOUT_S,
                advance_last_fire=False,
            )
        budget = time.monotonic() + 60 + n * (TIMEOUT_S + grace_s)
        while any(r not in watcher.seen for r in ids) and time.monotonic() < budget:
            time.sleep(0.2)
    finally:
        watcher.close()
    latencies = []
    for run_id in ids:
        run = store.get_run(run_id)
        if run_id not in watcher.seen or run.started_at is None:
            raise RuntimeError(f"run {run_id} ended {run.status} ({run.reason}), not timed-out")
        deadline = run.started_at.timestamp() + TIMEOUT_S + grace_s
        latencies.append(watcher.seen[run_id] - deadline)
    return latencies


def _measure_rq(url: str, n: int, workers: int, folder: Path) -> list[float]:
    """RQ's fork workers, job_timeout=1 (whole seconds only): deadline -> in failed registry."""
    import redis
    from rq import Queue
    from rq.job import Job

    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    watcher = RecordWatcher(client, "rq:failed:default")
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", url, "default"]
    procs = [_spawn(argv, folder / f"rq-worker-{i}.log") for i in range(workers)]
    try:
        queue = Queue("default", connection=redis.Redis.from_url(url))
        ids = [queue.enqueue("benchmarks.tasks.sleep_forever", job_timeout=1).id for _ in range(n)]
        budget = time.monotonic() + 60 + n * 1.0
        while any(i not in watcher.seen for i in ids) and time.monotonic() < budget:
            time.sleep(0.2)
    finally:
        watcher.close()
        for proc in procs:
            stop_process(proc)
    latencies = []
    for job_id in ids:
        job = Job.fetch(job_id, connection=redis.Redis.from_url(url))
        if job_id not in watcher.seen or job.started_at is None:
            raise RuntimeError(f"RQ job {job_id} was not failed by its timeout")
        started = job.started_at.replace(tzinfo=UTC).timestamp()
        latencies.append(watcher.seen[job_id] - (started + 1.0))
    client.close()
    return latencies


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, env=child_env(), stdout=fh, stderr=subprocess.STDOUT)


def run(cfg: Config) -> Result:
    from scheduler.store import Store

    n = cfg.pick(200, 10, 1)
    workers = cfg.pick(2, 2, 2)
    grace = cfg.pick(0.1, 0.1, 0.1)
    rq_n = cfg.pick(40, 8, 1)
    result = Result("timeouts")
    with workdir("to") as folder, redis_server(folder) as server:
        jobs = folder / "jobs"
        jobs.mkdir()
        (jobs / "timeouts.py").write_text(JOBS.format(timeout=TIMEOUT_S))
        argv = [sys.executable, "-m", "scheduler", "--jobs", str(jobs), "--redis-url", server.url]
        argv += ["worker", "--workers", str(workers), "--grace", f"{grace}s"]
        proc = _spawn(argv, folder / "worker.log")
        store = Store(server.url)
        try:
            progress(f"timeouts: {n} runs that sleep forever, {workers} workers")
            alarm = _measure(store, "timeout.sleep", n, 0.0)
            progress(f"timeouts: {n} runs that block SIGALRM (grace {grace:g} s)")
            backstop = _measure(store, "timeout.block_alarm", n, grace)
        finally:
            stop_process(proc)
            store.close()
        progress(f"timeouts: RQ, {rq_n} jobs with job_timeout=1 that sleep forever")
        rq = _measure_rq(server.url, rq_n, workers, folder)
    result.raw = {
        "runs": n,
        "workers": workers,
        "grace_s": grace,
        "alarm_ms": summary([1000 * x for x in alarm]),
        "backstop_ms": summary([1000 * x for x in backstop]),
        "rq_alarm_ms": summary([1000 * x for x in rq]),
        "alarm_s": alarm,
        "backstop_s": backstop,
    }
    _rows(result, n)
    return result


def _rows(result: Result, n: int) -> None:
    rq = result.raw["rq_alarm_ms"]
    cases = (
        (
            "alarm_ms",
            f"{n} runs, 0.5 s timeout, sleep: deadline -> recorded, p99",
            f"RQ, job_timeout=1 s (its minimum): p99 {rq['p99']:.0f}, median {rq['median']:.0f}",
        ),
        (
            "backstop_ms",
            f"{n} runs blocking SIGALRM: deadline + grace -> recorded, p99",
            "RQ kills such a horse only at job_timeout + 60 s (not measured)",
        ),
    )
    for key, metric, peer in cases:
        s = result.raw[key]
        result.add(
            metric,
            s["p99"],
            "ms",
            comparison=f"median {s['median']:.0f}, max {s['max']:.0f}; {peer}",
            target="p99 <= 50 ms",
            met=s["p99"] is not None and s["p99"] <= 50,
        )
