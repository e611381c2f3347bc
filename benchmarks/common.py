"""What every benchmark shares: a private redis-server, result rows, statistics, child processes.

Each benchmark starts its own redis-server (persistence off) in a temporary folder, on a unix
socket, and removes it afterwards; nothing here ever connects to a Redis it did not start.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scheduler.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """How big a run is: `quick` shrinks every benchmark to a smoke-sized version."""

    quick: bool = False
    smoke: bool = False  # the smallest sizes, for tests/bench (implies quick)

    def pick(self, full: Any, quick: Any, smoke: Any = None) -> Any:
        if self.smoke:
            return quick if smoke is None else smoke
        return quick if self.quick else full


@dataclass
class Row:
    """One line of the table: a figure of ours beside its comparison from the same run."""

    bench: str
    metric: str
    value: float | None
    unit: str
    comparison: str = ""
    target: str = ""
    met: bool | None = None
    fmt: str = "{:.1f}"

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.fmt.format(self.value)} {self.unit}".strip()


@dataclass
class Result:
    """What one benchmark produced: table rows, raw numbers and notes (limits, profiles)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, metric: str, value: float | None, unit: str, **kw: Any) -> Row:
        row = Row(self.name, metric, value, unit, **kw)
        self.rows.append(row)
        return row

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        result = cls(data["name"], raw=data["raw"], notes=data["notes"], seconds=data["seconds"])
        result.rows = [Row(**row) for row in data["rows"]]
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "rows": [asdict(r) for r in self.rows],
            "raw": self.raw,
            "notes": self.notes,
        }


def progress(message: str) -> None:
    """One progress line on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of 60 samples is the largest but none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, median, p90, p99, max of a sample."""
    return {
        "n": len(values),
        "min": min(values) if values else None,
        "median": median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


# -- processes ---------------------------------------------------------------------------------


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child_env() -> dict[str, str]:
    """The environment for benchmark child processes: the repo importable, no stray Redis URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if "SCHED_REDIS_SERVER" in os.environ:
        env["SCHED_REDIS_SERVER"] = os.environ["SCHED_REDIS_SERVER"]
    return env


def run_child(module: str, args: dict[str, Any], workdir: Path, timeout: float = 900) -> Any:
    """Run `python -m module` with a JSON argument file; return the JSON it wrote back."""
    stamp = f"{time.monotonic_ns()}"
    arg_file = workdir / f"args-{stamp}.json"
    out_file = workdir / f"out-{stamp}.json"
    log_file = workdir / f"log-{stamp}.txt"
    arg_file.write_text(json.dumps(args))
    with open(log_file, "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", module, str(arg_file), str(out_file)],
            env=child_env(),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0 or not out_file.exists():
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{module} {args.get('mode')} exited {proc.returncode}:\n{tail}")
    return json.loads(out_file.read_text())


def child_main(handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    """Entry point of a benchmark child: `python -m MODULE ARGS.json OUT.json`."""
    args = json.loads(Path(sys.argv[1]).read_text())
    result = handlers[args["mode"]](args)
    Path(sys.argv[2]).write_text(json.dumps(result))


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """SIGTERM a child we started, then SIGKILL it if it does not stop; always reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Profiled:
    """cProfile around a measured section when args["profile"] names it; text in `out`."""

    def __init__(self, args: dict[str, Any], section: str, out: dict[str, Any]) -> None:
        self.on = args.get("profile") == section
        self.section = section
        self.out = out
        self.profiler = cProfile.Profile()

    def __enter__(self) -> None:
        if self.on:
            self.profiler.enable()

    def __exit__(self, *exc: object) -> None:
        if self.on:
            self.profiler.disable()
            self.out[f"profile_{self.section}"] = profile_text(self.profiler)


def profile_text(profiler: cProfile.Profile, lines: int = 25) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("cumulative").print_stats(lines)
    text = buf.getvalue()
    return text[text.find("   ncalls") :].rstrip()


# -- redis -------------------------------------------------------------------------------------


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder that is removed afterwards (short path: it holds a unix socket)."""
    path = Path(tempfile.mkdtemp(prefix=f"sb-{prefix}-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def redis_server(folder: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a unix socket in `folder`, no persistence; stopped after."""
    server = EmbeddedRedis(folder / "redis", appendonly=False).start()
    try:
        yield server
    finally:
        server.stop()


def server_version() -> str:
    from scheduler.embedded import find_server_binary

    binary = find_server_binary()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return f"{part[2:]} ({binary})"
    return out.stdout.strip()


class CommandCounter:
    """Redis commands the server executed between two snapshots (INFO commandstats).

    Every command counts, including the ones a Lua script runs (as in "58 commands per job");
    the INFO calls of the snapshots are excluded.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.before = self._snapshot()

    def _snapshot(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def delta(self) -> dict[str, int]:
        """Calls per command name since the first snapshot (INFO left out)."""
        after = self._snapshot()
        diff = {n: after.get(n, 0) - self.before.get(n, 0) for n in set(after) | set(self.before)}
        return {n: d for n, d in sorted(diff.items()) if d and n != "info"}
