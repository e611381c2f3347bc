"""Linux process primitives: prctl flags, pidfds, child walks and the sweep of a process tree.

Every process that runs jobs (worker, fork server, supervisor) is a child subreaper, so a
process a job starts cannot leave the tree: when its parent dies it is re-parented to the
nearest subreaper, where `sweep` finds it, however it changed its process group or session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
# Loaded once, before any fork: a horse must not pay for dlopen().
_LIBC = ctypes.CDLL(None, use_errno=True)
SWEEP_LIMIT_S = 5.0


def _prctl(option: int, value: int) -> None:
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}): {os.strerror(err)}")


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent (thread) dies."""
    _prctl(PR_SET_PDEATHSIG, sig)


def become_subreaper() -> None:
    """Have orphaned descendants re-parented to this process instead of to init."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def forbid_inspection() -> None:
    """Make this process non-dumpable: processes of the same (non-root) user can no longer
    read its memory, environment or descriptors through /proc or ptrace it."""
    _prctl(PR_SET_DUMPABLE, 0)


def lead_process_group() -> Callable[[], None]:
    """Make this process the leader of a process group of its own, as a shell makes each job.

    Tools that stop a command signal it and then their whole group (`timeout` does, unless
    --foreground): a process left in that group receives the one stop request twice. Its own
    group receives only what is meant for it, so each signal counts once. When the group it
    leaves held the terminal, the terminal is handed to the new group (as tini's
    isolate_child does), so each Ctrl-C still arrives, once. Returns what gives the terminal
    back at exit. A process that leads its group already (started by a shell with job
    control, a session leader, a supervisor's child) is left as it is.
    """
    me = os.getpid()
    old = os.getpgrp()
    if old == me:
        return lambda: None
    foreground = _foreground_group() == old
    try:
        os.setpgid(0, 0)
    except OSError:  # a session leader cannot move (and receives no group's signals)
        return lambda: None
    if not foreground:
        return lambda: None
    _hand_terminal(me)

    def give_back() -> None:
        if _foreground_group() == me:
            _hand_terminal(old)

    return give_back


def _foreground_group() -> int | None:
    """The foreground process group of the terminal on stdin, or None without one."""
    try:
        return os.tcgetpgrp(0)
    except OSError:
        return None


def _hand_terminal(pgid: int) -> None:
    # A process outside the foreground group that sets it is sent SIGTTOU (and stopped)
    # unless it blocks that signal.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        with contextlib.suppress(OSError):  # the group is gone, or the terminal
            os.tcsetpgrp(0, pgid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def children_of(pid: int) -> list[int]:
    """Direct children of `pid`, zombies included (Linux /proc)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(x) for x in fh.read().split()]
    except OSError:  # gone, or a thread ended between listdir and open
        return found
    return found


def descendants_of(pid: int, keep: Collection[int] = ()) -> list[int]:
    """Every descendant of `pid`, parents before children; `keep` and their trees left out."""
    found: list[int] = []
    todo = [p for p in children_of(pid) if p not in keep]
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children_of(child)
    return found


def send(pidfd: int, sig: int) -> bool:
    """Signal the process behind `pidfd` (never another one that reused its pid)."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    return True


def _reap_child(pid: int) -> bool:
    """Reap `pid` if it is a child of ours that has ended; True when it is gone for us."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not (or no longer) our child
    return done == pid


def sweep(keep: Collection[int] = (), limit_s: float = SWEEP_LIMIT_S) -> tuple[int, int]:
    """SIGKILL every descendant of this process except `keep` (and their trees); repeat until
    none is left, so that processes re-parented to this subreaper meanwhile are caught too.

    Direct children it kills are reaped here. Returns (processes killed, processes still
    alive when `limit_s` ran out, e.g. stuck in uninterruptible sleep: normally 0).
    """
    me = os.getpid()
    killed: set[int] = set()
    deadline = time.monotonic() + limit_s
    delay = 0.001
    while True:
        # A process already killed may be a zombie waiting for its parent: not a survivor.
        live = [pid for pid in descendants_of(me, keep) if not _is_zombie(pid)]
        mine = [pid for pid in children_of(me) if pid not in keep]
        for pid in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        pending = [pid for pid in mine if not _reap_child(pid)]
        if not live and not pending:
            return len(killed), 0
        if time.monotonic() >= deadline:
            return len(killed), len(live)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return True  # gone already
    return stat[stat.rindex(")") + 2] in "ZX"


def own_cgroup() -> Path | None:
    """The folder of this process's cgroup v2, or None without a cgroup v2 mount."""
    try:
        with open("/proc/self/cgroup") as fh:
            own = next((line[3:].strip() for line in fh if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None
    for fields in mounts:
        fstype = fields[fields.index("-") + 1]
        if fstype == "cgroup2" and own is not None:
            root, mountpoint = fields[3], fields[4]
            relative = os.path.relpath(own, root) if own.startswith(root) else None
            if relative is not None:
                return Path(mountpoint) / relative
    return None


def limit_memory(limit: int) -> bool:
    """Cap what this process (and what it execs or forks) may allocate at `limit` bytes.

    RLIMIT_DATA holds everywhere: past it an allocation fails (Python raises MemoryError).
    Where this process sits in a cgroup of its own with the memory controller enabled, its
    `memory.max` is set too, so the kernel's OOM killer ends the run (recorded `killed`,
    reason `oom`). True when the cgroup limit was set as well.
    """
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    own = own_cgroup()
    if own is None or not own.name.startswith("run-"):
        return False  # not in a run cgroup of our own: never limit a shared cgroup
    try:
        (own / "memory.max").write_text(str(limit))
    except OSError:
        return False
    return True


def unlimit_cgroup_memory(path: Path) -> None:
    """Lift a run's `memory.max` from a cgroup that another run will reuse."""
    with contextlib.suppress(OSError):
        if (path / "memory.max").exists():
            (path / "memory.max").write_text("max")


# CPython 3.11 and 3.12 before 3.12.5 put every freed 20-item tuple on a free list that no
# allocation takes from again (python/cpython#121439), until it holds 2,000 of them (406 KiB)
# or a full garbage collection empties it. Each Redis call with 20 arguments frees one: a
# worker's RSS crept up by ~25 KiB a minute until it had touched those 406 KiB. Filling the
# list at start pays them once; filled before the supervisor forks, its children share those
# pages, and the tuples a later collection frees are what the next ones reuse.
_TUPLE_FREE_LIST_BUG = sys.implementation.name == "cpython" and sys.version_info < (3, 12, 5)
_tuple_list_filled = False


def fill_tuple_free_list() -> None:
    """Pay now, once per process tree, what the 20-item tuple free list would take later."""
    global _tuple_list_filled
    if not _TUPLE_FREE_LIST_BUG or _tuple_list_filled:
        return
    _tuple_list_filled = True
    tuples = [tuple(range(20)) for _ in range(2000)]
    del tuples
