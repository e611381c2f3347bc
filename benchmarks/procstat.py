"""CPU time and page faults of processes we started, from /proc, split by role.

A fork server reaps its horses, so the horses' CPU is in the fork server's `cutime +
cstime` (fields 16-17 of /proc/PID/stat) as soon as each one is reaped: a worker's whole
cost is its own time, its fork server's own time and its fork server's children's time.
Times are in clock ticks (10 ms); the benchmarks read them over seconds of work.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
# Process titles (setproctitle) of sched's long-lived processes, and their role.
ROLES = (
    ("sched supervisor", "supervisor"),
    ("sched scheduler", "scheduler"),
    ("sched worker", "worker"),
    ("sched fork server", "forkserver"),
)


@dataclass(frozen=True)
class Times:
    """One process's CPU (ms) and minor page faults, its own and its reaped children's."""

    self_ms: float
    children_ms: float
    minflt: int
    children_minflt: int

    def __sub__(self, other: Times) -> Times:
        return Times(
            self.self_ms - other.self_ms,
            self.children_ms - other.children_ms,
            self.minflt - other.minflt,
            self.children_minflt - other.children_minflt,
        )


ZERO = Times(0.0, 0.0, 0, 0)


def read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def _fields(pid: int) -> list[str] | None:
    stat = read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def times(pid: int | None) -> Times | None:
    """CPU and faults of a live process; None when it is gone (or pid is None)."""
    rest = None if pid is None else _fields(pid)
    if rest is None:
        return None
    return Times(
        self_ms=(int(rest[11]) + int(rest[12])) * TICK_MS,
        children_ms=(int(rest[13]) + int(rest[14])) * TICK_MS,
        minflt=int(rest[7]),
        children_minflt=int(rest[8]),
    )


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat."""
    tree: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit() and (rest := _fields(int(name))) is not None:
            tree[int(rest[1])].append(int(name))
    return tree


def role(pid: int) -> str | None:
    cmdline = read(f"/proc/{pid}/cmdline")
    if cmdline is None:
        return None
    title = cmdline.replace("\0", " ")
    for prefix, name in ROLES:
        if title.startswith(prefix):
            return name
    return None


def sched_tree(root: int) -> dict[int, str]:
    """The long-lived sched processes under (and including) `root`, by pid: their role.

    Horses are left out (their CPU is their fork server's children's time); a horse that
    still has its fork server's title is told apart by its parent, a fork server.
    """
    tree = children()
    out: dict[int, str] = {}
    todo = [(root, "")]
    while todo:
        pid, parent_role = todo.pop()
        name = role(pid) or ("root" if pid == root else None)
        if name is None or (name == "forkserver" and parent_role != "worker"):
            continue
        out[pid] = name
        todo.extend((child, name) for child in tree.get(pid, ()))
    return out


def snapshot(pids: dict[int, str]) -> dict[int, Times]:
    return {pid: t for pid in pids if (t := times(pid)) is not None}


def split_ms(
    roles: dict[int, str], before: dict[int, Times], after: dict[int, Times]
) -> dict[str, float]:
    """CPU ms spent between two snapshots, by role; a fork server's reaped horses as `horse`."""
    out: dict[str, float] = defaultdict(float)
    for pid, name in roles.items():
        delta = after.get(pid, ZERO) - before.get(pid, ZERO)
        out[name] += delta.self_ms
        if name == "forkserver":
            out["horse"] += delta.children_ms
    return dict(out)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot (/proc/stat)."""
    text = read("/proc/stat") or "cpu 0 0 0 0"
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)
