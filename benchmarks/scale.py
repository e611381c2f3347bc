"""3. Scale: 100,000 schedules in one scheduler; 10,000 runs due in the same second.

- load: a child process loads a generated jobs folder of 100,000 definitions with
  `load_jobs` (what `sched scheduler` does), then `Beat.start()` reads the last fires and
  computes every first fire. Then the real `Beat.run()` loop (maintenance included) idles for
  a window with nothing due, and its CPU time (os.times) and RSS (VmRSS) are taken.
- burst: a child builds 10,000 specs in memory that are all due at one instant a few seconds
  ahead, runs `Beat.run()`, and reads back every run's `enqueued_at` (Redis time).
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from benchmarks.common import (
    Config,
    Profiled,
    Result,
    child_main,
    median,
    progress,
    redis_server,
    rss_kb,
    run_child,
    summary,
    workdir,
)

MODULE = "benchmarks.scale"


def _cpu() -> float:
    """CPU seconds of this process (all threads), microsecond resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _log_like_the_cli() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


# -- children ----------------------------------------------------------------------------------


def child_load(args: dict[str, Any]) -> dict[str, Any]:
    from scheduler.beat import Beat
    from scheduler.loader import load_jobs
    from scheduler.store import Store

    _log_like_the_cli()
    out: dict[str, Any] = {"rss_before_load_kb": rss_kb()}
    with Profiled(args, "load", out):
        t0 = time.perf_counter()
        specs = load_jobs(args["folder"])
        t1 = time.perf_counter()
        store = Store(args["url"])
        beat = Beat(store, specs)
        beat.start()
        t2 = time.perf_counter()
    out.update(
        schedules=len(beat.heap), load_s=t1 - t0, start_s=t2 - t1, rss_after_start_kb=rss_kb()
    )
    if args["window_s"] > 0:
        with Profiled(args, "idle", out):
            out.update(_idle(beat, args["window_s"]))
        out["fired_while_idle"] = beat.fired
    if args.get("profile_maintenance"):
        with Profiled({"profile": "maintenance"}, "maintenance", out):
            beat._maintain()
    store.close()
    return out


def _idle(beat: Any, window_s: float) -> dict[str, Any]:
    """Run the real loop (its start() is done); after its first maintenance pass, measure
    CPU time and wall time over window_s with nothing due: the steady idle cost."""
    beat.start = lambda: None
    beat.maintenance_ms = []
    maintain = beat._maintain

    def timed_maintain() -> None:  # instrumentation: how long one maintenance pass takes
        t0 = time.perf_counter()
        maintain()
        beat.maintenance_ms.append(1000 * (time.perf_counter() - t0))

    beat._maintain = timed_maintain
    window: dict[str, float] = {}

    def measure() -> None:
        give_up = time.monotonic() + 300
        while not beat.maintenance_ms and time.monotonic() < give_up:
            time.sleep(0.01)
        window["wall0"], window["cpu0"] = time.monotonic(), _cpu()
        time.sleep(window_s)
        window["wall1"], window["cpu1"] = time.monotonic(), _cpu()
        beat.stop()

    thread = threading.Thread(target=measure, daemon=True)
    thread.start()
    beat.run()
    thread.join()
    wall, cpu = window["wall1"] - window["wall0"], window["cpu1"] - window["cpu0"]
    return {
        "maintenance_ms": beat.maintenance_ms,
        "maintenance_first_ms": beat.maintenance_ms[0] if beat.maintenance_ms else 0.0,
        "idle_window_s": wall,
        "idle_cpu_s": cpu,
        "idle_cpu_pct": 100 * cpu / wall,
        "rss_after_idle_kb": rss_kb(),
    }


def child_burst(args: dict[str, Any]) -> dict[str, Any]:
    from scheduler.beat import Beat
    from scheduler.model import JobSpec, Overlap, to_ms
    from scheduler.store import Store

    _log_like_the_cli()
    at = datetime.fromtimestamp(args["at"], UTC)
    expr = f"{at.second} {at.minute} {at.hour} * * *"
    specs = {
        f"burst{i}": JobSpec(
            name=f"burst{i}", path="bench", line=1, timeout_s=60.0, cron=expr, overlap=Overlap.ALLOW
        )
        for i in range(args["n"])
    }
    store = Store(args["url"])
    beat = Beat(store, specs)
    beat.start()
    if time.time() >= args["at"]:
        raise RuntimeError("the burst instant passed before the scheduler had started")
    beat.start = lambda: None  # type: ignore[method-assign]
    threading.Thread(target=_stop_when_done, args=(beat, args), daemon=True).start()
    out: dict[str, Any] = {}
    with Profiled(args, "burst", out):
        beat.run()
    ids = cast(list[str], store.redis.zrange(store.keys.all_runs, 0, -1))
    pipe = store.redis.pipeline(transaction=False)
    for run_id in ids:
        pipe.hmget(store.keys.run(run_id), "scheduled_for", "enqueued_at", "status")
    rows = pipe.execute()
    fire_ms = to_ms(at)
    delays = [(int(r[1]) - fire_ms) / 1000 for r in rows if r[0] and int(r[0]) == fire_ms]
    store.close()
    return {
        **out,
        "n": args["n"],
        "enqueued": len(delays),
        "statuses": sorted({r[2] for r in rows}),
        "delays_s": summary(delays),
        "within_1s": sum(1 for d in delays if d <= 1.0),
    }


def _stop_when_done(beat: Any, args: dict[str, Any]) -> None:
    deadline = args["at"] + args["budget_s"]
    while beat.fired < args["n"] and time.time() < deadline:
        time.sleep(0.02)
    beat.stop()


# -- parent ------------------------------------------------------------------------------------


def run(cfg: Config) -> Result:
    from benchmarks.schedules import generate, write_jobs_folder

    n = cfg.pick(100_000, 10_000, 1_000)
    window = cfg.pick(30.0, 3.0, 0.5)
    burst_n = cfg.pick(10_000, 2_000, 100)
    reps = cfg.pick(2, 1, 1)
    result = Result("scale")
    loads: list[dict[str, Any]] = []
    bursts: list[dict[str, Any]] = []
    with workdir("scale") as folder, redis_server(folder) as server:
        progress(f"scale: generating {n:,} schedules of varied kinds")
        jobs = write_jobs_folder(folder / "jobs", generate(n, quiet_s=window * reps + 900))
        load_args = {"mode": "load", "folder": str(jobs), "url": server.url, "window_s": window}
        burst_args = {"mode": "burst", "url": server.url, "n": burst_n, "budget_s": 10}
        # The child must import and start a scheduler before the burst instant: on a busy
        # machine (the smoke test runs beside the whole suite) that can take seconds.
        burst_args["lead_s"] = cfg.pick(3, 3, 5)
        for rep in range(reps):
            progress(f"scale {rep + 1}/{reps}: load {n:,} schedules, then idle {window:g} s")
            last = rep == reps - 1 and not cfg.quick
            # After the measured window, the last repetition profiles one maintenance pass.
            loads.append(_child(server.url, {**load_args, "profile_maintenance": last}, folder))
            progress(f"scale {rep + 1}/{reps}: {burst_n:,} runs due in the same second")
            bursts.append(_child(server.url, burst_args, folder))
        result.raw.update({"schedules": n, "window_s": window, "loads": loads, "bursts": bursts})
        if "profile_maintenance" in loads[-1]:
            result.raw["profile_maintenance"] = loads[-1].pop("profile_maintenance")
        _rows(result, n, loads, bursts)
        if not cfg.quick:
            _profile_misses(result, server.url, folder, burst_args)
    return result


def _profile_misses(result: Result, url: str, folder: Path, burst_args: dict[str, Any]) -> None:
    """Profile the load (on 20,000 schedules: same shape, quicker) and the burst if missed."""
    from benchmarks.schedules import generate, write_jobs_folder

    if result.rows[0].met is False:
        progress("scale: load target missed; profiling load_jobs + Beat.start (20,000 schedules)")
        small = write_jobs_folder(folder / "jobs-20k", generate(20_000, quiet_s=900))
        args = {"mode": "load", "folder": str(small), "url": url, "window_s": 0.0}
        result.raw["profile_load"] = _child(url, {**args, "profile": "load"}, folder)[
            "profile_load"
        ]
    if result.rows[3].met is False:
        progress("scale: burst target missed; profiling it")
        prof = _child(url, {**burst_args, "profile": "burst"}, folder)
        result.raw["profile_burst"] = prof["profile_burst"]


def _child(url: str, args: dict[str, Any], folder: Path) -> dict[str, Any]:
    _flush(url)
    if args["mode"] == "burst":
        args = {**args, "at": int(time.time()) + args["lead_s"]}
    out: dict[str, Any] = run_child(MODULE, args, folder)
    return out


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def _m(rows: list[dict[str, Any]], key: str) -> float:
    value = median([r[key] for r in rows])
    assert value is not None
    return value


def _rows(
    result: Result, n: int, loads: list[dict[str, Any]], bursts: list[dict[str, Any]]
) -> None:
    load, start = _m(loads, "load_s"), _m(loads, "start_s")
    result.add(
        f"{n:,} schedules: load + first fires",
        load + start,
        "s",
        fmt="{:.2f}",
        comparison=f"load_jobs {load:.2f} s + Beat.start {start:.2f} s",
        target="< 5 s",
        met=load + start < 5.0,
    )
    rss = max(_m(loads, "rss_after_start_kb"), _m(loads, "rss_after_idle_kb")) / 1024
    result.add(
        "scheduler RSS with them loaded",
        rss,
        "MiB",
        fmt="{:.0f}",
        comparison=f"empty interpreter + sched: {_m(loads, 'rss_before_load_kb') / 1024:.0f} MiB",
        target="< 300 MiB",
        met=rss < 300,
    )
    window = _m(loads, "idle_window_s")
    idle = _m(loads, "idle_cpu_pct")
    result.add(
        f"idle CPU over {window:.0f} s, nothing due",
        idle,
        "% of a core",
        fmt="{:.2f}",
        comparison=(
            f"{_m(loads, 'idle_cpu_s') * 1000:.0f} ms CPU in the window, after the first "
            f"maintenance pass (which took {_m(loads, 'maintenance_first_ms'):.0f} ms)"
        ),
        target="< 2%",
        met=idle < 2.0,
    )
    b = bursts[len(bursts) // 2] if len(bursts) != 2 else bursts[0]
    last = median([x["delays_s"]["max"] for x in bursts])
    first = median([x["delays_s"]["min"] for x in bursts])
    result.add(
        f"{b['n']:,} runs due in one second: last enqueued after",
        last,
        "s",
        fmt="{:.3f}",
        comparison=f"first after {first:.3f} s; {b['within_1s']:,}/{b['n']:,} within 1 s",
        target="all within 1 s",
        met=bool(last is not None and last <= 1.0 and all(x["enqueued"] == x["n"] for x in bursts)),
    )


if __name__ == "__main__":
    child_main({"load": child_load, "burst": child_burst})
