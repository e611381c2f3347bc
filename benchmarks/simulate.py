"""`sched simulate` over a year of a per-minute job, and `sched next` / `sched check` start-up.

    .venv/bin/python -m benchmarks.simulate [--reps 3]

Prints the median of each figure: the simulation in-process (`simulate_fast`, which the
command uses; no --duration, and with --duration 30s), the whole `sched simulate` command as a
process with its folded text and with --json (each without and with --duration), the wall time
of `sched next` and `sched check` processes beside `python -c pass`. Targets (issue 12): a
year of a per-minute job in under 2 s; `sched next` and `sched check` under 80 ms.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from scheduler import simulate as engine
from scheduler.model import JobSpec
from scheduler.simulate import Simulation

# what `sched simulate` runs; before it had a fast path (for an A/B against an older commit
# with PYTHONPATH set to its checkout), `simulate` itself
simulate_fast = getattr(engine, "simulate_fast", engine.simulate)

JOB = """
from scheduler import job

@job("* * * * *", tz="Europe/Berlin", name="minutely")
def minutely() -> None: ...
"""
YEAR = ("2027-01-01T00:00Z", "2028-01-01T00:00Z")


def _cpu_s() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def median_s(reps: int, work: Callable[[], object]) -> tuple[float, float]:
    """The median wall time and the median CPU time (this process and its children): on a
    shared machine the second says more."""
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), _cpu_s()
        work()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_s() - c0)
    return statistics.median(walls), statistics.median(cpus)


def sched(jobs: Path, *args: str) -> Callable[[], object]:
    argv = [str(Path(sys.executable).with_name("sched")), "--jobs", str(jobs), *args]
    return lambda: subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    spec = JobSpec(name="minutely", path="-", line=0, cron="* * * * *", tz="Europe/Berlin")
    start, end = (datetime.fromisoformat(t).astimezone(UTC) for t in YEAR)
    rows = [
        (
            "simulate, in process, runs take no time",
            median_s(reps, lambda: simulate_fast(Simulation([spec], start, end))),
        ),
        (
            "simulate, in process, --duration 30s",
            median_s(
                reps,
                lambda: simulate_fast(Simulation([spec], start, end, duration_s={"minutely": 30})),
            ),
        ),
    ]
    with tempfile.TemporaryDirectory() as folder:
        jobs = Path(folder)
        (jobs / "minutely.py").write_text(JOB)
        span = ["--from", YEAR[0], "--to", YEAR[1]]
        rows += [
            ("`sched simulate` (text)", median_s(reps, sched(jobs, "simulate", *span))),
            ("`sched simulate --json`", median_s(reps, sched(jobs, "simulate", *span, "--json"))),
            (
                "`sched simulate --duration minutely=30s`",
                median_s(reps, sched(jobs, "simulate", *span, "--duration", "minutely=30s")),
            ),
            (
                "`sched simulate --duration minutely=30s --json`",
                median_s(
                    reps,
                    sched(jobs, "simulate", *span, "--duration", "minutely=30s", "--json"),
                ),
            ),
            ("`sched next minutely`", median_s(reps * 3, sched(jobs, "next", "minutely"))),
            ("`sched check`", median_s(reps * 3, sched(jobs, "check"))),
            (
                "`python -c pass`",
                median_s(
                    reps * 3, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)
                ),
            ),
        ]
    print(f"a year of a per-minute job in Europe/Berlin ({YEAR[0]} .. {YEAR[1]}: 525,600 fires)")
    print(f"  {'median of ' + str(reps):50s} {'wall':>8s}    {'CPU':>8s}")
    for name, (wall, cpu) in rows:
        print(f"  {name:50s} {wall * 1000:8.0f} ms {cpu * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
