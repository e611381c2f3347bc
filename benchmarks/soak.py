"""Soak: `sched run` for N minutes on a job mix; is memory flat, are fires whole?

`python -m benchmarks.soak --minutes 30` starts a private redis-server (unix socket, no
persistence) and `sched run --workers 2` on benchmarks/soak_jobs (quick, command, failing,
slow, timing-out and big-output jobs, two of them every second). Every `--interval` seconds it
samples, from /proc, the RSS (and its anonymous part), open descriptors and CPU time of every
long-lived sched process (supervisor, scheduler, workers, their fork servers), Redis's
`used_memory`, and reads the new run records. At the end it fits a least-squares line to each
series after the warm-up (KiB/min, fds/min), counts each job's fire gaps and duplicates (one
record per fire instant), prints a table and writes everything to a JSON file.

`--trace DIR` runs the sched processes with tracemalloc on (benchmarks/soak_trace): each one
dumps its heap at the end of the warm-up, every `--trace-every` minutes and at the end, and
the report lists the allocation sites whose traced bytes grew most between the first and last
dump. Tracing slows every allocation and adds its own memory: measure slopes without it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO,
    child_env,
    progress,
    redis_server,
    stop_process,
    workdir,
)
from benchmarks.procstat import children, read, role

JOBS = Path(__file__).resolve().parent / "soak_jobs"
TRACER = Path(__file__).resolve().parent / "soak_trace"
# A slope within this (and within twice its standard error of zero, whichever is larger)
# counts as flat: 2 KiB/min is 120 KiB an hour, far below the 1 MiB/h the soak hunts.
FLAT_KIB_MIN = 2.0
FLAT_FDS_MIN = 0.05


def descendants(root: int) -> list[int]:
    tree = children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def sample_process(pid: int) -> dict[str, float] | None:
    """RSS and its anonymous part (KiB), open descriptors, CPU seconds; None once gone."""
    status = read(f"/proc/{pid}/status")
    stat = read(f"/proc/{pid}/stat")
    if status is None or stat is None:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            fields[key] = int(value.split()[0])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    regions = smaps_rss(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    rest = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(rest[11]) + int(rest[12])) / ticks
    return {
        "rss_kb": fields.get("VmRSS", 0),
        "anon_kb": fields.get("RssAnon", 0),
        "fds": fds,
        "cpu_s": cpu,
        **regions,
    }


def smaps_rss(pid: int) -> dict[str, int]:
    """Where the resident memory is (KiB): `[heap]` (glibc's main arena, grown by brk: every
    malloc below the mmap threshold, Python's objects over 512 bytes among them), the other
    anonymous maps (CPython's 1 MiB object arenas, which the kernel merges into larger
    regions, and glibc's large chunks and thread arenas), the stack."""
    text = read(f"/proc/{pid}/smaps")
    out = {"heap_kb": 0, "maps_kb": 0, "stack_kb": 0}
    if text is None:
        return out
    kind = None
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and ":" not in head[0] and len(head) >= 5:
            path = head[5] if len(head) > 5 else ""
            kind = {"[heap]": "heap_kb", "[stack]": "stack_kb", "": "maps_kb"}.get(path)
        elif kind is not None and line.startswith("Rss:"):
            out[kind] += int(line.split()[1])
    return out


# -- statistics --------------------------------------------------------------------------------


def fit(points: list[tuple[float, float]]) -> dict[str, float | None]:
    """Least-squares slope per minute of (seconds, value) points, its standard error, r."""
    n = len(points)
    if n < 3:
        return {"slope_per_min": None, "stderr": None, "n": n}
    ts = [t / 60 for t, _ in points]
    ys = [y for _, y in points]
    mt, my = sum(ts) / n, sum(ys) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    sxy = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True))
    if sxx == 0:
        return {"slope_per_min": None, "stderr": None, "n": n}
    slope = sxy / sxx
    resid = [y - (my + slope * (t - mt)) for t, y in zip(ts, ys, strict=True)]
    se = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)
    return {"slope_per_min": slope, "stderr": se, "n": n}


def flat(f: dict[str, float | None], limit: float) -> bool | None:
    slope, se = f["slope_per_min"], f["stderr"]
    if slope is None or se is None:
        return None
    return abs(slope) <= max(limit, 2 * se)


# -- fires -------------------------------------------------------------------------------------


def periods(jobs: Path) -> dict[str, float]:
    """Each job's period in seconds (every-N jobs and the per-second cron ones)."""
    from scheduler.loader import load_jobs

    out = {}
    for name, spec in load_jobs(jobs).items():
        if spec.every_s is not None:
            out[name] = spec.every_s
        elif spec.cron is not None and spec.cron.split()[0] == "*" and len(spec.cron.split()) == 6:
            out[name] = 1.0
    return out


@dataclass
class Records:
    """Every scheduled run record seen, by job: id -> (fire instant, status)."""

    runs: dict[str, dict[str, tuple[float, str]]] = field(default_factory=lambda: defaultdict(dict))

    def poll(self, store: Any, jobs: list[str], since: float) -> None:
        start = datetime.fromtimestamp(since, UTC)
        for job in jobs:
            for run in store.history(job=job, since=start, limit=100_000):
                if str(run.trigger) != "schedule":
                    continue
                self.runs[job][run.id] = (run.scheduled_for.timestamp(), str(run.status))

    def fires(self, job: str, period: float, start: float, end: float) -> dict[str, Any]:
        """Gaps (instants with no record) and duplicates (two records) in [start, end]."""
        instants = Counter(at for at, _ in self.runs[job].values() if start <= at <= end)
        statuses = Counter(st for at, st in self.runs[job].values() if start <= at <= end)
        ordered = sorted(instants)
        gaps, worst = 0, 0.0
        for a, b in zip(ordered, ordered[1:], strict=False):
            if b - a > 1.5 * period:
                gaps += round((b - a) / period) - 1
                worst = max(worst, b - a)
        return {
            "period_s": period,
            "fires": len(ordered),
            "expected": round((end - start) / period),
            "gaps": gaps,
            "longest_gap_s": worst,
            "duplicates": sum(c - 1 for c in instants.values() if c > 1),
            "statuses": dict(statuses),
        }


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Series:
    role: str
    pid: int
    parent: int
    samples: list[dict[str, float]] = field(default_factory=list)


def _label(series: dict[int, Series]) -> dict[int, str]:
    """supervisor, scheduler, worker-1.., forkserver-1 (of worker-1): by role and start order."""
    labels: dict[int, str] = {}
    workers = sorted(p for p, s in series.items() if s.role == "worker")
    for pid, s in series.items():
        if s.role == "worker":
            labels[pid] = f"worker-{workers.index(pid) + 1}"
        elif s.role == "forkserver":
            owner = f"worker-{workers.index(s.parent) + 1}" if s.parent in workers else "?"
            labels[pid] = f"forkserver ({owner})"
        else:
            labels[pid] = s.role
    seen: Counter[str] = Counter()
    for pid in sorted(labels):  # a restarted process gets a suffix: "scheduler#2"
        seen[labels[pid]] += 1
        if seen[labels[pid]] > 1:
            labels[pid] += f"#{seen[labels[pid]]}"
    return labels


def soak(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from scheduler.store import Store

    jobs = Path(args.jobs).resolve()
    job_periods = periods(jobs)
    warmup_s, total_s = args.warmup * 60, args.minutes * 60
    trace_dir = Path(args.trace).resolve() if args.trace else None
    with workdir("soak") as folder, redis_server(folder) as server:
        env = child_env()
        if trace_dir is not None:
            trace_dir.mkdir(parents=True, exist_ok=True)
            env["PYTHONPATH"] = os.pathsep.join([str(TRACER), env["PYTHONPATH"]])
            env["SOAK_TRACE_DIR"] = str(trace_dir)
        log_path = folder / "sched.log"
        argv = [sys.executable, "-m", "scheduler", "--jobs", str(jobs)]
        argv += ["--redis-url", server.url, "run", "--workers", str(args.workers), "--no-web"]
        with open(log_path, "ab") as log:
            sup = subprocess.Popen(
                argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        store = Store(server.url)
        client = redis.Redis.from_url(server.url)
        series: dict[int, Series] = {}
        redis_mem: list[tuple[float, dict[str, int]]] = []
        records = Records()
        try:
            t0 = _wait_ready(sup, args.workers, log_path)
            progress(f"soak: sched run is up (supervisor pid {sup.pid}); {args.minutes:g} min")
            next_trace = t0 + warmup_s if trace_dir is not None else math.inf
            polled_to = time.time() - 5
            last_progress = t0
            while True:
                now = time.monotonic()
                t = now - t0
                if sup.poll() is not None:
                    raise RuntimeError(f"sched run exited {sup.returncode}:\n{_tail(log_path)}")
                _sample_tree(sup.pid, t, series)
                info = client.info("memory") | client.info("clients")
                redis_mem.append((t, {k: int(info[k]) for k in _REDIS_KEYS if k in info}))
                records.poll(store, list(job_periods), polled_to - 30)
                polled_to = time.time()
                if now >= next_trace:
                    _trace_dump(series, trace_dir)
                    next_trace = now + args.trace_every * 60
                if now - last_progress >= 60 or t >= total_s:
                    last_progress = now
                    progress(_progress_line(t, series, redis_mem, records))
                if t >= total_s:
                    break
                time.sleep(max(0.0, t0 + (int(t / args.interval) + 1) * args.interval - now))
            if trace_dir is not None:
                _trace_dump(series, trace_dir)
            end_wall = time.time() - 5  # runs of the last seconds may not be recorded yet
            time.sleep(1)
            records.poll(store, list(job_periods), polled_to - 30)
        finally:
            stop_process(sup, timeout=60)
            store.close()
            client.close()
        log_text = log_path.read_text(errors="replace")
    start_wall = end_wall - (time.monotonic() - t0) + warmup_s + 5
    return _report(args, series, redis_mem, records, job_periods, start_wall, end_wall, log_text)


_REDIS_KEYS = ("used_memory", "used_memory_rss", "connected_clients", "mem_clients_normal")


def _wait_ready(sup: subprocess.Popen[bytes], workers: int, log_path: Path) -> float:
    """Wait until the scheduler, the workers and their fork servers all run; the start time."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sup.poll() is not None:
            raise RuntimeError(f"sched run exited {sup.returncode}:\n{_tail(log_path)}")
        roles = Counter(role(pid) for pid in descendants(sup.pid))
        if roles["scheduler"] == 1 and roles["worker"] == workers == roles["forkserver"]:
            return time.monotonic()
        time.sleep(0.2)
    raise RuntimeError(f"sched run did not start its processes in 120 s:\n{_tail(log_path)}")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


_NONE = Series("", 0, 0)


def _sample_tree(root: int, t: float, series: dict[int, Series]) -> None:
    tree = children()
    todo = [(root, 0)]
    while todo:
        pid, parent = todo.pop()
        todo.extend((c, pid) for c in tree.get(pid, ()))
        name = role(pid)
        if name is None or (name == "forkserver" and series.get(parent, _NONE).role != "worker"):
            continue  # horses (a new one has its fork server's title a moment): not measured
        sample = sample_process(pid)
        if sample is None:
            continue
        if pid not in series:
            series[pid] = Series(name, pid, parent)
        series[pid].samples.append({"t": round(t, 2), **sample})


def _trace_dump(series: dict[int, Series], trace_dir: Path | None) -> None:
    """Ask each live sched process for a heap dump (SIGUSR2; benchmarks/soak_trace)."""
    if trace_dir is None:
        return
    before = set(trace_dir.glob("*.json"))
    asked = 0
    for pid, s in series.items():
        if s.role in ("scheduler", "worker", "supervisor", "forkserver"):
            try:
                os.kill(pid, signal.SIGUSR2)
                asked += 1
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + 60
    while len(set(trace_dir.glob("*.json")) - before) < asked and time.monotonic() < deadline:
        time.sleep(0.2)
    progress(f"soak: heap dumps: {len(set(trace_dir.glob('*.json')) - before)} of {asked}")


def _progress_line(
    t: float,
    series: dict[int, Series],
    redis_mem: list[tuple[float, dict[str, int]]],
    records: Records,
) -> str:
    labels = _label(series)
    parts = []
    for pid in sorted(series, key=lambda p: labels[p]):
        s = series[pid]
        if s.samples and s.samples[-1]["t"] >= t - 1:
            first, last = s.samples[0], s.samples[-1]
            delta = last["rss_kb"] - first["rss_kb"]
            parts.append(f"{labels[pid]} {last['rss_kb'] / 1024:.1f}M({delta:+.0f}K)")
    runs = sum(len(r) for r in records.runs.values())
    mem = redis_mem[-1][1].get("used_memory", 0) / 2**20 if redis_mem else 0
    return f"soak: {t / 60:5.1f} min: {', '.join(parts)}; redis {mem:.1f}M; {runs} runs seen"


# -- the report --------------------------------------------------------------------------------


def _report(
    args: argparse.Namespace,
    series: dict[int, Series],
    redis_mem: list[tuple[float, dict[str, int]]],
    records: Records,
    job_periods: dict[str, float],
    start_wall: float,
    end_wall: float,
    log_text: str,
) -> dict[str, Any]:
    warmup_s = args.warmup * 60
    labels = _label(series)
    procs = {}
    for pid in sorted(series, key=lambda p: labels[p]):
        s = series[pid]
        after = [x for x in s.samples if x["t"] >= warmup_s]
        rss = fit([(x["t"], x["rss_kb"]) for x in after])
        anon = fit([(x["t"], x["anon_kb"]) for x in after])
        regions = {
            key: fit([(x["t"], x[key]) for x in after])
            for key in ("heap_kb", "maps_kb", "stack_kb")
        }
        fds = fit([(x["t"], x["fds"]) for x in after])
        half = [x for x in after if x["t"] >= (after[0]["t"] + after[-1]["t"]) / 2] if after else []
        late = fit([(x["t"], x["rss_kb"]) for x in half])
        span = (after[-1]["t"] - after[0]["t"]) / 60 if len(after) > 1 else 0.0
        cpu = (after[-1]["cpu_s"] - after[0]["cpu_s"]) if len(after) > 1 else 0.0
        procs[labels[pid]] = {
            "role": s.role,
            "pid": pid,
            "samples": s.samples,
            "minutes_after_warmup": round(span, 2),
            "rss_kb_first": after[0]["rss_kb"] if after else None,
            "rss_kb_last": after[-1]["rss_kb"] if after else None,
            "rss_slope_kib_min": rss,
            "rss_slope_kib_min_second_half": late,
            "anon_slope_kib_min": anon,
            "region_slopes_kib_min": regions,
            "fds_first": after[0]["fds"] if after else None,
            "fds_last": after[-1]["fds"] if after else None,
            "fd_slope_per_min": fds,
            "cpu_pct": round(100 * cpu / (span * 60), 2) if span else None,
            "rss_flat": flat(rss, FLAT_KIB_MIN),
            "fds_flat": flat(fds, FLAT_FDS_MIN),
        }
    after_mem = [(t, m) for t, m in redis_mem if t >= warmup_s]
    redis_fit = fit([(t, m["used_memory"] / 1024) for t, m in after_mem])
    fires = {
        job: records.fires(job, period, start_wall, end_wall)
        for job, period in sorted(job_periods.items())
    }
    return {
        "benchmark": "soak",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "config": {
            "minutes": args.minutes,
            "warmup_minutes": args.warmup,
            "interval_s": args.interval,
            "workers": args.workers,
            "jobs": str(args.jobs),
            "traced": bool(args.trace),
        },
        "machine": _machine(),
        "processes": procs,
        "redis": {
            "used_memory_first": after_mem[0][1]["used_memory"] if after_mem else None,
            "used_memory_last": after_mem[-1][1]["used_memory"] if after_mem else None,
            "used_memory_slope_kib_min": redis_fit,
            "samples": [{"t": round(t, 2), **m} for t, m in redis_mem],
        },
        "fires": fires,
        "fire_window": [start_wall, end_wall],
        "log": {
            "lines": log_text.count("\n"),
            "errors": [ln for ln in log_text.splitlines() if " ERROR " in ln][:20],
            "tracebacks": log_text.count("Traceback (most recent call last)"),
        },
        "trace": trace_diff(Path(args.trace)) if args.trace else None,
    }


def _machine() -> dict[str, Any]:
    from benchmarks.report import machine

    return {**machine(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def trace_diff(trace_dir: Path, top: int = 25) -> dict[str, Any]:
    """Per process: what grew between its first and last heap dump (benchmarks/soak_trace)."""
    dumps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(trace_dir.glob("*.json")):
        data = json.loads(path.read_text())
        dumps[data["pid"]].append(data)
    out = {}
    for pid, items in dumps.items():
        items.sort(key=lambda d: d["time"])
        if len(items) < 2:
            continue
        first, last = items[0], items[-1]
        minutes = (last["time"] - first["time"]) / 60
        a = {(f, ln): (size, count) for f, ln, size, count in first["lines"]}
        b = {(f, ln): (size, count) for f, ln, size, count in last["lines"]}
        grown = sorted(
            (
                (
                    b.get(k, (0, 0))[0] - a.get(k, (0, 0))[0],
                    b.get(k, (0, 0))[1] - a.get(k, (0, 0))[1],
                    k,
                )
                for k in set(a) | set(b)
            ),
            reverse=True,
        )
        types_a, types_b = first["types"], last["types"]
        type_growth = sorted(
            ((types_b.get(k, 0) - types_a.get(k, 0), k) for k in set(types_a) | set(types_b)),
            reverse=True,
        )
        mall_a, mall_b = first.get("mallinfo", {}), last.get("mallinfo", {})
        out[f"{last['title']} (pid {pid})"] = {
            "minutes": round(minutes, 2),
            "dumps": len(items),
            "traced_kib_per_min": _per_min(last["traced_bytes"] - first["traced_bytes"], minutes),
            "allocated_blocks_per_min": _per_min(
                last["allocated_blocks"] - first["allocated_blocks"], minutes, 1
            ),
            "gc_objects_per_min": _per_min(last["gc_objects"] - first["gc_objects"], minutes, 1),
            "malloc_in_use_kib_per_min": _per_min(
                mall_b.get("uordblks", 0) - mall_a.get("uordblks", 0), minutes
            ),
            "malloc_free_in_heap_kib_per_min": _per_min(
                mall_b.get("fordblks", 0) - mall_a.get("fordblks", 0), minutes
            ),
            "traced_series_kib": [
                [round((d["time"] - first["time"]) / 60, 2), round(d["traced_bytes"] / 1024, 1)]
                for d in items
            ],
            "top_sites": [
                {"site": f"{_short(k[0])}:{k[1]}", "kib": round(size / 1024, 1), "blocks": count}
                for size, count, k in grown[:top]
                if size > 0
            ],
            "top_types": [{"type": k, "objects": n} for n, k in type_growth[:10] if n > 0],
            "pymalloc_first": first.get("pymalloc", {}),
            "pymalloc_last": last.get("pymalloc", {}),
        }
    return out


def _per_min(delta: float, minutes: float, scale: float = 1024) -> float | None:
    return round(delta / scale / minutes, 2) if minutes > 0 else None


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) + len(marker) :]
    if filename.startswith(str(REPO)):
        return filename[len(str(REPO)) + 1 :]
    for root in ("/scheduler/", "/benchmarks/"):
        if root in filename:
            return filename[filename.index(root) + 1 :]
    return filename


def _fmt_fit(f: dict[str, float | None], digits: int = 1) -> str:
    slope, se = f["slope_per_min"], f["stderr"]
    if slope is None or se is None:
        return "n/a"
    return f"{slope:+.{digits}f} ± {2 * se:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The report as Markdown: slopes per process, Redis, fires."""
    lines = [
        "| process | pid | RSS after warm-up | RSS slope KiB/min (±2 SE) | 2nd half | anon slope | "
        "fds | fd slope /min | CPU | flat |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["processes"].items():
        if p["rss_kb_first"] is None:
            continue
        verdict = "yes" if p["rss_flat"] and p["fds_flat"] else "NO"
        lines.append(
            f"| {name} | {p['pid']} | {p['rss_kb_first'] / 1024:.1f} -> "
            f"{p['rss_kb_last'] / 1024:.1f} MiB | {_fmt_fit(p['rss_slope_kib_min'])} | "
            f"{_fmt_fit(p['rss_slope_kib_min_second_half'])} | "
            f"{_fmt_fit(p['anon_slope_kib_min'])} | {p['fds_first']} -> {p['fds_last']} | "
            f"{_fmt_fit(p['fd_slope_per_min'], 3)} | {p['cpu_pct']} % | {verdict} |"
        )
    lines += [
        "",
        "| process | where the RSS grows (KiB/min): [heap] | other anonymous maps | stack |",
        "|---|---|---|---|",
    ]
    for name, p in report["processes"].items():
        g = p["region_slopes_kib_min"]
        if p["rss_kb_first"] is None:
            continue
        lines.append(
            f"| {name} | {_fmt_fit(g['heap_kb'])} | {_fmt_fit(g['maps_kb'])} | "
            f"{_fmt_fit(g['stack_kb'])} |"
        )
    r = report["redis"]
    if r["used_memory_first"] is not None:
        lines.append("")
        lines.append("| Redis | | used_memory after warm-up | slope KiB/min (±2 SE) |")
        lines.append("|---|---|---|---|")
        lines.append(
            f"| redis-server | used_memory | {r['used_memory_first'] / 2**20:.1f} -> "
            f"{r['used_memory_last'] / 2**20:.1f} MiB | "
            f"{_fmt_fit(r['used_memory_slope_kib_min'])} |"
        )
    lines += [
        "",
        "| job | period | fires | expected | gaps | longest gap | duplicates | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job, f in report["fires"].items():
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(f["statuses"].items()))
        lines.append(
            f"| {job} | {f['period_s']:g} s | {f['fires']} | {f['expected']} | {f['gaps']} | "
            f"{f['longest_gap_s']:.0f} s | {f['duplicates']} | {statuses} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown section: when, where, what ran, then the tables."""
    m, c = report["machine"], report["config"]
    load = " ".join(f"{x:.2f}" for x in m.get("load_average", []))
    head = [
        f"Soak of {c['minutes']:g} min ({c['warmup_minutes']:g} min warm-up left out of the "
        f"slopes, a sample every {c['interval_s']:g} s), `sched run --workers {c['workers']}` "
        f"on benchmarks/soak_jobs{' with tracemalloc on' if c['traced'] else ''}, "
        f"{report['date']}.",
        "",
        f"- Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']}, {m['kernel']}; load "
        f"average at the end {load} (shared with other work: figures are noisy)",
        f"- Python {m['python']}; redis-server {m['redis_server']}; redis-py {m['redis_py']}; "
        f"sched {m['sched']} (commit {m['git_commit']})",
        f"- Flat: |slope| <= {FLAT_KIB_MIN:g} KiB/min (or within 2 standard errors of 0) and "
        f"|fd slope| <= {FLAT_FDS_MIN:g}/min",
        "",
    ]
    return "\n".join(head) + "\n" + table(report)


def trace_table(trace: dict[str, Any]) -> str:
    lines = []
    for name, t in trace.items():
        lines.append(
            f"\n{name}: over {t['minutes']} min, traced {t['traced_kib_per_min']} KiB/min, "
            f"blocks {t['allocated_blocks_per_min']}/min, "
            f"gc objects {t['gc_objects_per_min']}/min, "
            f"malloc in use {t['malloc_in_use_kib_per_min']} KiB/min, "
            f"malloc free in heap {t['malloc_free_in_heap_kib_per_min']} KiB/min"
        )
        for site in t["top_sites"][:12]:
            lines.append(f"  +{site['kib']:8.1f} KiB {site['blocks']:+6d} blocks  {site['site']}")
        if t["top_types"]:
            lines.append(
                "  types: " + ", ".join(f"{x['type']} +{x['objects']}" for x in t["top_types"])
            )
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument(
        "--warmup", type=float, help="minutes left out of the slopes (default: min(5, a third))"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", default=str(JOBS), help="the jobs folder (default: the mix)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "soak.json"))
    parser.add_argument("--trace", metavar="DIR", help="tracemalloc on; heap dumps in DIR")
    parser.add_argument("--trace-every", type=float, default=5.0, help="minutes between dumps")
    args = parser.parse_args(argv)
    # A soak started in the background (nohup, `&`) ignores SIGINT: a SIGTERM stops it too,
    # through the same clean-up (sched run stopped, redis-server stopped, folder removed).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    if args.warmup is None:
        args.warmup = min(5.0, args.minutes / 3)
    report = soak(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    if report["trace"]:
        print(trace_table(report["trace"]))
    progress(f"soak: report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
