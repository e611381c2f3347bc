"""6. CLI start-up: wall time of whole `sched` invocations, as a user types them.

`sched --help` and `sched history --limit 1` (against a small private Redis), beside the
interpreter's own start-up (`python -c pass`) and RQ's CLI (`rq --help`, `rq info`). When a
target is missed, `python -X importtime` says which imports the time goes to.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Config, Result, child_env, median, progress, redis_server, workdir


def sched_argv() -> list[str]:
    """The installed `sched` console script, or `python -m scheduler` without one."""
    script = Path(sys.executable).with_name("sched")
    return [str(script)] if script.exists() else [sys.executable, "-m", "scheduler"]


def wall_ms(argv: list[str], reps: int) -> dict[str, Any]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(
            argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(1000 * (time.perf_counter() - t0))
    return {"ms": median(times), "all_ms": times}


def import_profile(argv: list[str], top: int = 12) -> str:
    """The slowest imports (cumulative) of one invocation, from `python -X importtime`."""
    if argv[0] != sys.executable:
        argv = [sys.executable, *argv]  # a console script is a Python file
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    rows.sort(reverse=True)
    lines = [f"{us / 1000:7.1f} ms  {'  ' * depth}{name}" for us, depth, name in rows[:top]]
    return "cumulative import time (python -X importtime):\n" + "\n".join(lines)


def _seed(url: str) -> None:
    from scheduler.store import Store

    store = Store(url)
    for i in range(20):
        store.enqueue(
            run_id=f"bench.cli@seed-{i}",
            job="bench.cli",
            scheduled_for=datetime.now(UTC),
            queue="default",
            overlap="allow",
            trigger="manual",
            advance_last_fire=False,
        )
    store.close()


def run(cfg: Config) -> Result:
    reps = cfg.pick(7, 3, 1)
    result = Result("cli")
    sched = sched_argv()
    rq = [sys.executable, "-m", "rq.cli"]
    with workdir("cli") as folder, redis_server(folder) as server:
        _seed(server.url)
        progress(f"cli: timing sched, python and rq invocations ({reps} each)")
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "sched --help": [*sched, "--help"],
            "sched history --limit 1": [
                *sched,
                "--redis-url",
                server.url,
                "history",
                "--limit",
                "1",
            ],
            "rq --help": [*rq, "--help"],
            "rq info": [*rq, "info", "--url", server.url],
        }
        raw = {name: wall_ms(argv, reps) for name, argv in cases.items()}
        missed = [n for n in ("sched --help", "sched history --limit 1") if raw[n]["ms"] >= 250]
        if missed and not cfg.quick:
            progress("cli: start-up target missed; profiling imports")
            for name in missed:
                raw[name]["import_profile"] = import_profile(cases[name])
    result.raw = raw
    py = raw["python -c pass"]["ms"]
    for name, peer in (("sched --help", "rq --help"), ("sched history --limit 1", "rq info")):
        ms = raw[name]["ms"]
        result.add(
            f"`{name}` wall time",
            ms,
            "ms",
            fmt="{:.0f}",
            comparison=f"`{peer}` {raw[peer]['ms']:.0f} ms; `python -c pass` {py:.0f} ms",
            target="< 250 ms",
            met=ms < 250,
        )
    return result
