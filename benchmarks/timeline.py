"""Where one run's time goes in sched's worker: a per-run timeline of the parent and its horse.

Used only by the diagnostic run of the throughput benchmark (never by a measured one). The
store calls, `os.fork` and `os.wait4` are wrapped in the worker process, and the job writes
`time.monotonic()` at its first line into a shared mapping the parent reads after the run.
CLOCK_MONOTONIC is one clock for every process on the machine.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import median

# MAP_SHARED, written by the horse, read by the parent: [child running after fork, first line]
_SHARED = mmap.mmap(-1, 16)

SEGMENTS = (
    ("blmove", "wait_for_run (BLMOVE round trip; only when the last report took no run)"),
    ("claim", "claim (CLAIM script round trip)"),
    ("prepare", "claim -> order written to the ready horse"),
    ("order", "order sent -> horse has read it"),
    ("setup", "order read -> job's first line (horse.run set-up)"),
    ("spawn", "fork of the next run's horse, in the parent (while the job runs)"),
    ("horse_end", "first line -> horse reaped (report, exit, pidfd wake, drain; pid heartbeat)"),
    ("after", "reaped -> finish (classify, stray scan, log)"),
    ("finish", "finish (FINISH script, and LMOVE of the next run: one round trip)"),
    ("loop", "finish -> next claim (loop, maintenance, BLMOVE if it ran)"),
)


def stamped_noop() -> None:
    """A no-op job that notes when its first line ran."""
    struct.pack_into("d", _SHARED, 8, time.monotonic())


class Timeline:
    """Monotonic timestamps of each run's steps in the worker parent."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.events.append((name, time.monotonic()))

    def wrap(self, owner: Any, attr: str, before: str, after: str) -> None:
        original: Callable[..., Any] = getattr(owner, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.mark(before)
            try:
                return original(*args, **kwargs)
            finally:
                if os.getpid() == self.pid:
                    self.mark(after)

        setattr(owner, attr, wrapped)

    def install(self, store_cls: Any, worker_cls: Any) -> None:
        from scheduler import horse

        self.pid = os.getpid()
        self.wrap(store_cls, "wait_for_run", "wait0", "wait1")
        self.wrap(store_cls, "claim", "claim0", "claim1")
        self.wrap(store_cls, "finish", "finish0", "finish1")
        self.wrap(store_cls, "finish_and_take", "finish0", "finish1")
        self.wrap(worker_cls, "_start", "order0", "order1")
        self.wrap(worker_cls, "_spawn", "spawn0", "spawn1")
        original_run = horse.run

        def run(*args: Any, **kwargs: Any) -> Any:
            struct.pack_into("d", _SHARED, 0, time.monotonic())  # in the horse: order read
            return original_run(*args, **kwargs)

        horse.run = run  # type: ignore[assignment]
        original_wait4 = os.wait4

        def wait4(pid: int, options: int) -> Any:
            result = original_wait4(pid, options)
            self.mark("reaped")
            child, first = struct.unpack_from("dd", _SHARED)
            self.events += [("child", child), ("first_line", first)]
            return result

        os.wait4 = wait4

    def runs(self) -> list[dict[str, float]]:
        """One dict of timestamps per complete run (claim0 ... finish1), by its claim."""
        runs: list[dict[str, float]] = []
        current: dict[str, float] = {}
        waited: dict[str, float] = {}
        for name, t in self.events:
            if name in ("wait0", "wait1"):
                waited[name] = t
                continue
            if name == "claim0":
                if "finish1" in current:
                    current["next_claim0"] = t
                    runs.append(current)
                current, waited = dict(waited), {}
            current.setdefault(name, t)
        return runs

    def summary(self) -> dict[str, Any]:
        """Median milliseconds of each segment, in order, and their sum."""
        spans = {
            "blmove": ("wait0", "wait1"),
            "claim": ("claim0", "claim1"),
            "prepare": ("claim1", "order0"),
            "order": ("order0", "child"),
            "setup": ("child", "first_line"),
            "spawn": ("spawn0", "spawn1"),
            "horse_end": ("first_line", "reaped"),
            "after": ("reaped", "finish0"),
            "finish": ("finish0", "finish1"),
            "loop": ("finish1", "next_claim0"),
        }
        needed = [k for key, pair in spans.items() if key != "blmove" for k in pair]
        runs = [r for r in self.runs() if all(k in r for k in needed)]
        out: dict[str, Any] = {"runs": len(runs)}
        for key, (a, b) in spans.items():
            values = [1000 * (r[b] - r[a]) for r in runs if a in r and b in r]
            out[key] = median(values) if values else None
        out["waited"] = sum(1 for r in runs if "wait0" in r)
        out["total"] = median([1000 * (r["next_claim0"] - r["claim0"]) for r in runs])
        return out


def describe(summary: dict[str, Any]) -> str:
    lines = [
        f"median per run over {summary['runs']} runs (ms); "
        f"{summary.get('waited', 0)} of them waited on the queue (BLMOVE):"
    ]
    for key, label in SEGMENTS:
        value = summary.get(key)
        lines.append(f"  {value:7.3f}  {label}" if value is not None else f"      n/a  {label}")
    lines.append(f"  {summary['total']:7.3f}  whole cycle (one run)")
    return "\n".join(lines)
