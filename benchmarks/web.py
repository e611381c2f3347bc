"""7. Dashboard: server-side time of the overview and of a job page over 1,000,000 runs.

The history benchmark's Lua bulk loader writes 1,000 jobs with 1,000 runs each (the default
retention) as the store's scripts would; then the per-minute job `bench.job0` gets 10,000 runs,
so its page over the last 10,000 minutes has 10,000 expected fires, each with its run. The
dashboard is built over that store with matching job definitions (`every` 1m, 5m, 15m, 1h,
1d, as the loader's fire times), and each page is requested in-process through Starlette's
test client: the time is the server's (store reads, fire computation, SVG, template), without
a network or a browser.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import Config, Result, median, progress, redis_server, workdir
from benchmarks.history import N_JOBS, bulk_load

INTERVALS = (60, 300, 900, 3600, 86400)
BIG_JOB = "bench.job0"
OVERVIEW_TARGET_MS = 300
JOB_TARGET_MS = 500


def _specs(n_jobs: int) -> dict[str, Any]:
    from scheduler.model import JobSpec

    return {
        f"bench.job{j}": JobSpec(
            name=f"bench.job{j}",
            path="jobs/bench.py",
            line=j + 1,
            timeout_s=60,
            every_s=float(INTERVALS[j % len(INTERVALS)]),
        )
        for j in range(n_jobs)
    }


def _redis_cpu_s(store: Any) -> float:
    info = store.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _time(client: Any, store: Any, path: str, reps: int) -> dict[str, Any]:
    """Wall time per request, and the CPU it took (this process, and the Redis server):
    on a busy machine the wall time includes waiting for a core, the CPU time does not."""
    cold_t0 = time.perf_counter()
    response = client.get(path)  # the first request fills the dashboard's cache
    cold_ms = 1000 * (time.perf_counter() - cold_t0)
    assert response.status_code == 200, response.text[:500]
    times, cpu, redis_cpu = [], [], []
    for _ in range(reps):
        c0, r0, t0 = time.process_time(), _redis_cpu_s(store), time.perf_counter()
        response = client.get(path)
        times.append(1000 * (time.perf_counter() - t0))
        cpu.append(1000 * (time.process_time() - c0))
        redis_cpu.append(1000 * (_redis_cpu_s(store) - r0))
        assert response.status_code == 200
    return {
        "ms": times,
        "cold_ms": cold_ms,
        "cpu_ms": cpu,
        "redis_cpu_ms": redis_cpu,
        "bytes": len(response.content),
    }


def run(cfg: Config) -> Result:
    from starlette.testclient import TestClient

    from scheduler.store import Store
    from scheduler.web.app import create_app

    n = cfg.pick(1_000_000, 50_000, 5_000)
    fires = cfg.pick(10_000, 2_000, 500)
    reps = cfg.pick(9, 3, 1)
    result = Result("web")
    with workdir("web") as folder, redis_server(folder) as server:
        store = Store(server.url)
        progress(f"web: loading {n:,} run records")
        t0 = time.perf_counter()
        bulk_load(store, n)
        # The per-minute job's own history: `fires` runs back from now (ids overwrite its
        # first thousand, which the load above already wrote).
        _load_one_job(store, fires)
        load_s = time.perf_counter() - t0
        stored = int(store.redis.zcard(store.keys.all_runs))
        progress(f"web: {stored:,} runs in {load_s:.1f} s; timing pages")
        app = create_app(store, _specs(N_JOBS), allowed_hosts={"testserver"})
        now = datetime.now(UTC)
        window = {
            "from": (now - timedelta(minutes=fires) + timedelta(seconds=1)).isoformat(),
            "to": now.isoformat(),
        }
        with TestClient(app) as client:
            overview = _time(client, store, "/", reps)
            query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in window.items())
            job = _time(client, store, f"/jobs/{BIG_JOB}?{query}", reps)
            check = client.get(f"/jobs/{BIG_JOB}?{query}").text
        store.close()
    expected = f"{fires} fires expected"
    result.raw = {
        "runs": stored,
        "load_s": load_s,
        "load_average": os.getloadavg(),
        "overview": overview,
        "job": job,
        "job_fires": fires,
        "job_page_says": expected if expected in check else "fire count not found",
    }
    _rows(result, stored, fires, overview, job)
    return result


def _load_one_job(store: Any, count: int) -> None:
    from benchmarks.history import LOADER, OUTPUT, TRACEBACK, side_key_args

    k = store.keys
    error = '{"type": "RuntimeError", "message": "upstream answered 503", "traceback": %s}'
    import json

    error = error % json.dumps(TRACEBACK)
    script = store.redis.register_script(LOADER)
    now_ms = int(time.time() * 1000)
    prefixes = [k.run(""), k.all_runs, k.by_job(""), k.by_status("")]
    for start in range(0, count, 20_000):
        # njobs=1: every run is bench.job0's (every 60 s), one fire further back each.
        args = [*prefixes, start, min(20_000, count - start), now_ms, 1, OUTPUT, error]
        script(keys=[], args=[*args, *side_key_args(k)])


def _rows(
    result: Result, n: int, fires: int, overview: dict[str, Any], job: dict[str, Any]
) -> None:
    for label, data, target in (
        (f"{n:,} runs, {N_JOBS:,} jobs: overview page, server-side", overview, OVERVIEW_TARGET_MS),
        (f"job page, {fires:,} fires in its window, server-side", job, JOB_TARGET_MS),
    ):
        wall = median(data["ms"])
        cpu = median([a + b for a, b in zip(data["cpu_ms"], data["redis_cpu_ms"], strict=True)])
        result.add(
            label,
            wall,
            "ms",
            fmt="{:.0f}",
            comparison=(
                f"CPU {cpu:.0f} ms (Python {median(data['cpu_ms']):.0f} + Redis "
                f"{median(data['redis_cpu_ms']):.0f}); first request {data['cold_ms']:.0f} ms; "
                f"{data['bytes'] / 1024:.0f} KiB"
            ),
            target=f"< {target} ms",
            met=wall is not None and wall < target,
        )
        result.notes.append(
            f"{label}: wall ms {', '.join(f'{t:.0f}' for t in data['ms'])} "
            f"(stdev {statistics.pstdev(data['ms']):.0f})"
        )
