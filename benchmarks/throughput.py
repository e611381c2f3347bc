"""1. Throughput: no-op Python jobs through one fork-per-job worker process.

Three contestants per repetition, one after the other on the same redis-server:
- sched: `scheduler.worker.Worker(...).run(max_runs=N)` in a child process;
- RQ: its default fork-per-job `Worker(...).work(burst=True)` in a child process;
- bare: a child padded to the RSS of sched's worker parent that forks, `_exit(0)`s and waits.
Each child times its own loop (interpreter start-up and imports excluded), counts its Redis
round trips and commands (also those of forked horses) and reports CPU, RSS and the minor
page faults of its children (copy-on-write copies after fork, 4 KiB each).
"""

from __future__ import annotations

import io
import logging
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import procstat, scaling
from benchmarks.common import (
    CommandCounter,
    Config,
    Profiled,
    Result,
    child_main,
    median,
    progress,
    redis_server,
    rss_kb,
    run_child,
    workdir,
)

MODULE = "benchmarks.throughput"
JOB = "bench.noop"
JOB_FILE = f"""from benchmarks import tasks
from scheduler import job


@job("@yearly", name={JOB!r}, timeout="60s")
def noop() -> None:
    tasks.noop()
"""


def _log_like_the_cli() -> None:
    """INFO lines to stderr, as `sched worker` / `rq worker` log them in production."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


class _Meter:
    """Wall time, CPU and page faults of this process and of its reaped children."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.times0 = os.times()
        self.faults0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        self.own_faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def done(self, n: int) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        t = os.times()
        faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - self.faults0
        own_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.own_faults0
        parent_cpu = (t.user - self.times0.user) + (t.system - self.times0.system)
        child_cpu = (t.children_user - self.times0.children_user) + (
            t.children_system - self.times0.children_system
        )
        return {
            "n": n,
            "wall_s": wall,
            "per_s": n / wall,
            "parent_cpu_ms_per_run": parent_cpu * 1000 / n,
            "horse_cpu_ms_per_run": child_cpu * 1000 / n,
            "horse_minor_faults_per_run": faults / n,
            "parent_minor_faults_per_run": own_faults / n,
            "rss_kb": rss_kb(),
        }


# -- children ----------------------------------------------------------------------------------


class _Marks:
    """Round-trip counter read at the start of every run: per-run deltas, steady state."""

    def __init__(self, wire: Any, cls: type, method: str) -> None:
        self.wire = wire
        self.values: list[int] = []
        original = getattr(cls, method)

        def marked(worker: Any, *args: Any, **kwargs: Any) -> Any:
            self.values.append(wire.read()[0])
            return original(worker, *args, **kwargs)

        setattr(cls, method, marked)

    def per_run(self) -> list[int]:
        return [b - a for a, b in zip(self.values, self.values[1:], strict=False)]


class _Window:
    """CPU between the end of the first run and the end of the last: n - 1 whole cycles.

    The worker's own CPU and faults (getrusage), its fork server's and the horses the fork
    server reaped (/proc: they are not this process's children), and redis-server's; the
    start-up (interpreter, fork server loading the jobs folder) stays outside.
    """

    def __init__(
        self, cls: type, method: str, n: int, redis_pid: int | None, server: Any = None
    ) -> None:
        self.server = server  # a function giving the fork server's pid (sched only)
        self.redis_pid, self.n = redis_pid, n
        self.done = 0
        self.marks: list[dict[str, Any]] = []
        original = getattr(cls, method)

        def windowed(worker: Any, *args: Any, **kwargs: Any) -> Any:
            status = original(worker, *args, **kwargs)
            self.done += 1
            if self.done in (1, self.n):
                self.marks.append(self._mark())
            return status

        setattr(cls, method, windowed)

    def _mark(self) -> dict[str, Any]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "t": time.perf_counter(),
            "worker_ms": 1000 * (own.ru_utime + own.ru_stime),
            "worker_faults": own.ru_minflt,
            "forkserver": procstat.times(self.server()) if self.server else None,
            "redis": procstat.times(self.redis_pid),
        }

    def summary(self) -> dict[str, Any]:
        if len(self.marks) < 2:
            return {}
        a, b = self.marks[0], self.marks[-1]
        runs = self.n - 1
        fs = b["forkserver"] - a["forkserver"] if a["forkserver"] and b["forkserver"] else None
        redis = b["redis"] - a["redis"] if a["redis"] and b["redis"] else None
        return {
            "window_runs": runs,
            "window_per_s": runs / (b["t"] - a["t"]),
            "window_worker_cpu_ms_per_run": (b["worker_ms"] - a["worker_ms"]) / runs,
            "window_worker_faults_per_run": (b["worker_faults"] - a["worker_faults"]) / runs,
            "window_forkserver_cpu_ms_per_run": fs.self_ms / runs if fs else None,
            "window_forkserver_faults_per_run": fs.minflt / runs if fs else None,
            "window_horse_cpu_ms_per_run": fs.children_ms / runs if fs else None,
            "window_horse_faults_per_run": fs.children_minflt / runs if fs else None,
            "window_redis_cpu_ms_per_run": redis.self_ms / runs if redis else None,
        }


def child_ours(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.wire import WireCounter

    wire = WireCounter()
    from benchmarks import tasks
    from scheduler.model import JobSpec
    from scheduler.store import Store
    from scheduler.worker import Worker, WorkerSettings

    _log_like_the_cli()
    marks = _Marks(wire, Worker, "execute")
    func = tasks.noop
    timeline = None
    if args.get("profile") == "timeline":
        from benchmarks.timeline import Timeline, stamped_noop

        timeline, func = Timeline(), stamped_noop
        timeline.install(Store, Worker)
    spec = JobSpec(name=JOB, path=tasks.__file__, line=1, timeout_s=60.0, func=func)
    store = Store(args["url"])
    # The worker's fork server loads the job from a folder, as `sched worker` does.
    jobs = Path(args["workdir"]) / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "bench.py").write_text(JOB_FILE)
    worker = Worker(store, {JOB: spec}, jobs=jobs, settings=WorkerSettings())
    window = _Window(Worker, "execute", args["n"], args.get("redis_pid"), lambda: worker.forks.pid)
    profiles: dict[str, Any] = {}
    horse_dir = _profile_horses(args)
    with Profiled(args, "worker", profiles):
        meter = _Meter()
        worker.run(max_runs=args["n"])
        out = meter.done(args["n"])
    trips, commands = wire.read()
    store.close()
    if horse_dir is not None:
        profiles["profile_horse"] = _horse_profile(horse_dir)
    if timeline is not None:
        from benchmarks.timeline import describe

        profiles["timeline"] = timeline.summary()
        profiles["profile_timeline"] = describe(profiles["timeline"])
    return {**out, **window.summary(), **profiles, **_wire_stats(trips, commands, marks)}


def _wire_stats(trips: int, commands: int, marks: _Marks) -> dict[str, Any]:
    per_run = marks.per_run()
    return {
        "round_trips": trips,
        "commands_sent": commands,
        "round_trips_per_run_median": median(per_run),
        "round_trips_per_run_max": max(per_run) if per_run else None,
    }


HORSE_PROFILER = Path(__file__).resolve().parent / "horse_profile"


def _profile_horses(args: dict[str, Any]) -> Path | None:
    """In profile mode, each horse profiles itself and dumps its stats before os._exit.

    The horses are forked by the worker's fork server, a fresh interpreter started with this
    process's environment (less SCHED_*): horse_profile/sitecustomize.py does it there.
    """
    if args.get("profile") != "horse":
        return None
    folder = Path(args["workdir"]) / "horse-profiles"
    folder.mkdir(exist_ok=True)
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HORSE_PROFILER), path]))
    os.environ["BENCH_HORSE_PROFILE"] = str(folder)
    return folder


def _horse_profile(folder: Path) -> str:
    import pstats

    files = sorted(str(p) for p in folder.glob("*.prof"))[:500]
    if not files:
        return "(no horse profile was written)"
    buf = io.StringIO()
    stats = pstats.Stats(*files, stream=buf)
    stats.sort_stats("cumulative").print_stats(25)
    text = buf.getvalue()
    return f"{len(files)} horses aggregated\n" + text[text.find("   ncalls") :].rstrip()


def child_rq(args: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.wire import WireCounter

    wire = WireCounter()
    import redis
    from rq import Queue, Worker

    marks = _Marks(wire, Worker, "execute_job")
    window = _Window(Worker, "execute_job", args["n"], args.get("redis_pid"))
    conn = redis.Redis.from_url(args["url"])
    worker = Worker([Queue("default", connection=conn)], connection=conn)
    meter = _Meter()
    worker.work(burst=True, logging_level="INFO")
    out = meter.done(args["n"])
    trips, commands = wire.read()
    return {**out, **window.summary(), **_wire_stats(trips, commands, marks)}


def child_bare(args: dict[str, Any]) -> dict[str, Any]:
    """fork -> child os._exit(0) -> waitpid, N times, in a parent padded to `rss_kb`."""
    pad = max(0, args["rss_kb"] - rss_kb()) * 1024
    ballast = b"\x01" * pad  # bytes are written, so the pages are resident
    meter = _Meter()
    for _ in range(args["n"]):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    out = meter.done(args["n"])
    out["ballast_bytes"] = len(ballast)
    return out


# -- parent ------------------------------------------------------------------------------------


def _enqueue_ours(url: str, n: int) -> None:
    from scheduler.store import Store

    store = Store(url)
    now = datetime.now(UTC)
    for i in range(n):
        store.enqueue(
            run_id=f"{JOB}@bench-{i}",
            job=JOB,
            scheduled_for=now,
            queue="default",
            overlap="allow",
            trigger="manual",
            timeout_s=60.0,
            advance_last_fire=False,
        )
    store.close()


def _enqueue_rq(url: str, n: int) -> None:
    import redis
    from rq import Queue

    conn = redis.Redis.from_url(url)
    queue = Queue("default", connection=conn)
    for start in range(0, n, 1000):
        batch = [
            Queue.prepare_data("benchmarks.tasks.noop") for _ in range(start, min(n, start + 1000))
        ]
        queue.enqueue_many(batch)
    conn.close()


def _measure(
    kind: str, server: Any, n: int, folder: Path, profile: str | None = None
) -> dict[str, Any]:
    import redis

    url, redis_pid = server.url, _pid(server)
    client = redis.Redis.from_url(url)
    client.flushall()
    if kind == "ours":
        _enqueue_ours(url, n)
    elif kind == "rq":
        _enqueue_rq(url, n)
    counter = CommandCounter(client)
    args = {"mode": kind, "url": url, "n": n, "profile": profile, "workdir": str(folder)}
    args["redis_pid"] = redis_pid
    redis_before = procstat.times(redis_pid)
    out: dict[str, Any] = run_child(MODULE, args, folder)
    redis_after = procstat.times(redis_pid)
    if redis_before and redis_after:  # the child's start-up included (a few commands)
        out["redis_cpu_ms_per_run"] = (redis_after - redis_before).self_ms / n
    out["server_commands"] = counter.delta()
    out["server_commands_per_run"] = sum(out["server_commands"].values()) / n
    out["completed"] = _completed(kind, client)
    client.close()
    return out


def _pid(server: Any) -> int | None:
    """The pid of the redis-server the benchmark started."""
    process = getattr(server, "process", None)
    return process.pid if process is not None else None


def _completed(kind: str, client: Any) -> int:
    if kind == "ours":
        return int(client.zcard("{sched}:idx:status:completed"))
    return int(client.zcard("rq:finished:default"))


def run(cfg: Config) -> Result:
    n = cfg.pick(2000, 200, 20)
    reps = cfg.pick(3, 1, 1)
    result = Result("throughput")
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "rq": [], "bare": []}
    with workdir("tp") as folder, redis_server(folder) as server:
        for rep in range(reps):
            progress(f"throughput {rep + 1}/{reps}: sched worker, {n} no-op jobs")
            ours = _measure("ours", server, n, folder)
            samples["ours"].append(ours)
            progress(f"throughput {rep + 1}/{reps}: bare fork loop at {ours['rss_kb']} KiB RSS")
            bare = run_child(MODULE, {"mode": "bare", "n": n, "rss_kb": ours["rss_kb"]}, folder)
            samples["bare"].append(bare)
            progress(f"throughput {rep + 1}/{reps}: RQ fork worker, {n} no-op jobs")
            samples["rq"].append(_measure("rq", server, n, folder))
            rq_rate = samples["rq"][-1]["per_s"]
            progress(
                f"throughput: sched {ours['per_s']:.0f}/s, RQ {rq_rate:.0f}/s, "
                f"bare {bare['per_s']:.0f}/s"
            )
        counts = cfg.pick((1, 2, 4), (1, 2, 4), (1, 2))
        scaling_samples = scaling.run_all(server, folder, n, counts, reps, JOB, JOB_FILE)
        result.raw = {"n": n, "repetitions": reps, "samples": samples}
        result.raw["scaling"] = scaling_samples
        _rows(result, samples)
        scaling.rows(result, scaling_samples)
        if not cfg.quick and any(row.met is False for row in result.rows):
            progress("throughput: a target is missed; profiling the worker parent and its horses")
            # The worker parent, and its horses (profiled in its fork server, see
            # horse_profile/); the timeline's hooks in this process would not see the horses.
            for section in ("worker", "horse"):
                prof = _measure("ours", server, min(n, 500), folder, profile=section)
                result.raw[f"profile_{section}"] = prof[f"profile_{section}"]
                result.raw.setdefault("timeline", prof.get("timeline"))
    return result


def _med(samples: list[dict[str, Any]], key: str) -> float:
    value = median([s[key] for s in samples])
    assert value is not None
    return value


def _rows(result: Result, samples: dict[str, list[dict[str, Any]]]) -> None:
    ours, rq, bare = samples["ours"], samples["rq"], samples["bare"]
    # Steady state (end of the first run to end of the last): the fork server's start-up
    # (an interpreter importing the jobs folder) is start-up, like the worker's own.
    rate, rq_rate = _med(ours, "window_per_s"), _med(rq, "window_per_s")
    whole, rq_whole = _med(ours, "per_s"), _med(rq, "per_s")
    bare_rate = _med(bare, "per_s")
    n = ours[0]["n"]
    result.add(
        f"{n:,} no-op jobs, 1 worker process",
        rate,
        "jobs/s",
        fmt="{:.0f}",
        comparison=(
            f"RQ fork worker {rq_rate:.0f}/s; sched = {rate / rq_rate:.1f}x RQ "
            f"(start-up included: {whole:.0f} vs {rq_whole:.0f}/s)"
        ),
        target=">= 4x RQ",
        met=rate >= 4 * rq_rate,
    )
    result.add(
        "% of a bare fork-exit-wait loop",
        100 * rate / bare_rate,
        "%",
        fmt="{:.0f}",
        comparison=f"bare loop {bare_rate:.0f}/s, parent at sched's RSS",
        target=">= 60% of bare loop",
        met=rate >= 0.6 * bare_rate,
    )
    trips, rq_trips = (
        _med(ours, "round_trips_per_run_median"),
        _med(rq, "round_trips_per_run_median"),
    )
    amortized, rq_amortized = _per_run(ours, "round_trips"), _per_run(rq, "round_trips")
    result.add(
        "Redis round trips per run",
        trips,
        "",
        fmt="{:.0f}",
        comparison=(
            f"RQ {rq_trips:.0f}; with start-up and heartbeats: "
            f"{amortized:.2f} vs {rq_amortized:.2f}"
        ),
        target="<= 4",
        met=trips <= 4.0,
    )
    cmds, rq_cmds = _med(ours, "server_commands_per_run"), _med(rq, "server_commands_per_run")
    sent, rq_sent = _per_run(ours, "commands_sent"), _per_run(rq, "commands_sent")
    result.add(
        "Redis commands per run (incl. in Lua)",
        cmds,
        "",
        fmt="{:.1f}",
        comparison=f"RQ {rq_cmds:.1f}; sent by the client {sent:.1f} vs {rq_sent:.1f}",
        target="report",
    )
    _resource_rows(result, ours, rq, bare)


def _per_run(samples: list[dict[str, Any]], key: str) -> float:
    value = median([s[key] / s["n"] for s in samples])
    assert value is not None
    return value


def _resource_rows(
    result: Result,
    ours: list[dict[str, Any]],
    rq: list[dict[str, Any]],
    bare: list[dict[str, Any]],
) -> None:
    result.add(
        "worker parent RSS",
        _med(ours, "rss_kb") / 1024,
        "MiB",
        comparison=f"RQ {_med(rq, 'rss_kb') / 1024:.1f} MiB",
        target="report",
    )
    rq_cpu = _med(rq, "parent_cpu_ms_per_run") + _med(rq, "horse_cpu_ms_per_run")
    bare_cpu = _med(bare, "parent_cpu_ms_per_run") + _med(bare, "horse_cpu_ms_per_run")
    worker = _med_opt(ours, "window_worker_cpu_ms_per_run")
    server = _med_opt(ours, "window_forkserver_cpu_ms_per_run")
    horse = _med_opt(ours, "window_horse_cpu_ms_per_run")
    cpu = None if worker is None or server is None or horse is None else worker + server + horse
    result.add(
        "CPU per run: worker + fork server + horse",
        cpu,
        "ms",
        fmt="{:.2f}",
        comparison=(
            f"= {_ms(worker)} + {_ms(server)} + {_ms(horse)} (steady state); "
            f"RQ {rq_cpu:.2f} (parent + horse); bare loop {bare_cpu:.2f}"
        ),
        target="<= 2 ms",
        met=cpu is not None and cpu <= 2.0,
    )
    redis = _med_opt(ours, "window_redis_cpu_ms_per_run")
    rq_redis = _med_opt(rq, "redis_cpu_ms_per_run")
    share = "" if redis is None or cpu is None else f"{100 * redis / (redis + cpu):.0f} % of all; "
    result.add(
        "redis-server CPU per run",
        redis,
        "ms",
        fmt="{:.2f}",
        comparison=f"{share}RQ {_ms(rq_redis)} ms (whole child); /proc/PID/stat of our server",
        target="report",
    )
    result.add(
        "horse page faults per run (copy-on-write)",
        _med_opt(ours, "window_horse_faults_per_run"),
        "",
        fmt="{:.0f}",
        comparison=(
            f"RQ {_med(rq, 'horse_minor_faults_per_run'):.0f}; "
            f"bare loop {_med(bare, 'horse_minor_faults_per_run'):.0f}; "
            f"fork server {_num(_med_opt(ours, 'window_forkserver_faults_per_run'))}"
        ),
        target="report",
    )
    result.add(
        "worker parent page faults per run",
        _med_opt(ours, "window_worker_faults_per_run"),
        "",
        fmt="{:.0f}",
        comparison=(
            f"RQ {_med(rq, 'parent_minor_faults_per_run'):.0f}; "
            f"bare loop {_med(bare, 'parent_minor_faults_per_run'):.0f}"
        ),
        target="report",
    )


def _med_opt(samples: list[dict[str, Any]], key: str) -> float | None:
    """Median of a figure some samples may lack (None when none has it)."""
    return median([s[key] for s in samples if s.get(key) is not None])


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    child_main({"ours": child_ours, "rq": child_rq, "bare": child_bare})
