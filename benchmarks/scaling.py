"""Throughput with 1, 2 and 4 worker processes: `sched worker --workers N`, the real command.

For each N, on the throughput benchmark's redis-server: start `sched worker --workers N` on a
jobs folder holding the no-op job, wait until every worker blocks on the queue (CLIENT LIST)
and every fork server has its ready horse, then enqueue the same 2,000 no-op runs the way
the scheduler does (ENQUEUE, 1,000 fires per call) and wait until all are completed.
runs/s = runs / (last `finished_at` - the instant before the enqueue), so start-up and
shutdown are outside. CPU over the same window, from /proc/PID/stat: each worker, each fork
server (own time) and its reaped horses (its children's time), the supervisor, redis-server,
and the whole machine's busy cores (which include other work on a shared machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import procstat
from benchmarks.common import REPO, Result, child_env, median, progress, stop_process

ROLES = ("worker", "forkserver", "horse", "supervisor", "redis")


def measure(
    url: str, redis_pid: int | None, folder: Path, n: int, workers: int, job: str, job_file: str
) -> dict[str, Any]:
    """One `sched worker --workers N` run of n no-op jobs: rate, CPU split, busy cores.

    `url` is what the workers (and the enqueue) use, sched's own query parameters included;
    `redis_pid` the server whose CPU is counted.
    """
    import redis

    from scheduler.model import Overlap, Trigger
    from scheduler.store import Store
    from scheduler.store.records import Fire, fire_settings
    from scheduler.urls import split_url

    client = redis.Redis.from_url(split_url(url)[0])
    client.flushall()
    waits0 = _calls(client, "wait")
    jobs = folder / "scaling-jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "bench.py").write_text(job_file)
    log = folder / f"scaling-{workers}.log"
    argv = [sys.executable, "-m", "scheduler", "--jobs", str(jobs), "--redis-url", url]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [*argv, "worker", "--workers", str(workers)],
            env=child_env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    store = Store(url)
    try:
        roles = _wait_ready(proc, client, workers, log)
        settings = fire_settings(
            "default",
            overlap=Overlap.ALLOW,
            trigger=Trigger.MANUAL,
            timeout_s=60.0,
            scheduled=False,
        )
        now = datetime.now(UTC)
        fires = [Fire(f"{job}@scale-{workers}-{i}", job, now, settings) for i in range(n)]
        before, redis0 = procstat.snapshot(roles), procstat.times(redis_pid)
        machine0 = procstat.machine_ticks()
        t0 = time.time()
        store.enqueue_many(fires)
        _wait_completed(proc, client, store.keys.by_status("completed"), n, log)
        after, redis1 = procstat.snapshot(roles), procstat.times(redis_pid)
        machine1 = procstat.machine_ticks()
        finished = [r.finished_at for r in store.history(job=job, limit=n) if r.finished_at]
        waits = _calls(client, "wait") - waits0
    finally:
        store.close()
        client.close()
        stop_process(proc)
    wall = max(f.timestamp() for f in finished) - t0
    cpu = procstat.split_ms(roles, before, after)
    if redis0 and redis1:
        cpu["redis"] = (redis1 - redis0).self_ms
    busy = (machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1)
    return {
        "workers": workers,
        "n": n,
        "wall_s": wall,
        "per_s": n / wall,
        "cpu_ms_per_run": {role: cpu.get(role, 0.0) / n for role in ROLES},
        "cores_busy": busy * (os.cpu_count() or 1),
        "wait_commands_per_run": waits / n,
        "processes": {str(pid): role for pid, role in roles.items()},
    }


def _calls(client: Any, command: str) -> int:
    """How many times the server ran `command` (INFO commandstats)."""
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def _wait_ready(
    proc: subprocess.Popen[bytes], client: Any, workers: int, log: Path
) -> dict[int, str]:
    """Every worker blocked on the queue and every fork server with its ready horse."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"sched worker exited {proc.returncode}:\n{tail}")
        roles = procstat.sched_tree(proc.pid)
        servers = [pid for pid, role in roles.items() if role == "forkserver"]
        tree = procstat.children()
        blocked = sum(1 for c in client.client_list() if "b" in c.get("flags", ""))
        if (
            blocked >= workers
            and len(servers) == workers
            and all(tree.get(pid) for pid in servers)
            and sum(1 for role in roles.values() if role == "worker") == workers
        ):
            return roles
        time.sleep(0.05)
    raise RuntimeError(f"sched worker --workers {workers} was not ready after 120 s")


def _wait_completed(
    proc: subprocess.Popen[bytes], client: Any, key: str, n: int, log: Path
) -> None:
    deadline = time.monotonic() + 60 + n / 20
    while int(client.zcard(key)) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{client.zcard(key)} of {n} runs completed:\n{tail}")
        time.sleep(0.02)


def run_all(
    server: Any, folder: Path, n: int, counts: tuple[int, ...], reps: int, job: str, job_file: str
) -> list[dict[str, Any]]:
    samples = []
    for rep in range(reps):
        for workers in counts:
            progress(f"throughput {rep + 1}/{reps}: sched worker --workers {workers}, {n} jobs")
            pid = server.process.pid if getattr(server, "process", None) else None
            sample = measure(server.url, pid, folder, n, workers, job, job_file)
            progress(
                f"throughput: --workers {workers}: {sample['per_s']:.0f}/s, "
                f"{sample['cores_busy']:.1f} cores busy"
            )
            samples.append(sample)
    return samples


def rows(result: Result, samples: list[dict[str, Any]]) -> None:
    counts = sorted({s["workers"] for s in samples})
    rates = {k: median([s["per_s"] for s in samples if s["workers"] == k]) for k in counts}
    one = rates.get(1)
    for k in counts:
        mine = [s for s in samples if s["workers"] == k]
        split = {r: median([s["cpu_ms_per_run"][r] for s in mine]) or 0.0 for r in ROLES}
        busy = median([s["cores_busy"] for s in mine]) or 0.0
        sched_cpu = split["worker"] + split["forkserver"] + split["horse"] + split["supervisor"]
        # Each repetition's N-worker rate over the 1-worker rate measured just before it.
        paired = [
            s["per_s"] / base["per_s"]
            for s, base in zip(mine, [s for s in samples if s["workers"] == 1], strict=False)
        ]
        each = "/".join(f"{r:.2f}" for r in paired)
        ratio = f"{rates[k] / one:.2f}x one (each repetition {each}); " if one and k != 1 else ""
        result.add(
            f"{samples[0]['n']:,} no-op jobs, `sched worker --workers {k}`",
            rates[k],
            "runs/s",
            fmt="{:.0f}",
            comparison=(
                f"{ratio}CPU/run {sched_cpu:.2f} ms = worker {split['worker']:.2f} + fork "
                f"server {split['forkserver']:.2f} + horse {split['horse']:.2f}"
                + (f" + supervisor {split['supervisor']:.2f}" if split["supervisor"] else "")
                + f"; redis-server {split['redis']:.2f}; cores busy: sched + redis "
                f"{rates[k] * (sched_cpu + split['redis']) / 1000:.1f}, machine {busy:.1f}"
            ),
            target=">= 1.6x one" if k == 2 else "report",
            met=(rates[k] >= 1.6 * one) if k == 2 and one else None,
        )
