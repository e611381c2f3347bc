"""Checks the command line makes before it starts anything, so a user's mistake gets a clear
message and a non-zero exit instead of a traceback or a process that restarts forever.

Pure functions that return a message (or None); `cli.py` prints it and exits.
"""

from __future__ import annotations

import difflib
import errno
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from scheduler.model import DEFAULT_QUEUE, JobSpec
from scheduler.urls import CLUSTER_SCHEMES, cluster_address, cluster_client_problem, split_url

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", *CLUSTER_SCHEMES)


def redis_url_problem(url: str) -> str | None:
    """Why `url` cannot be a Redis URL, or None."""
    scheme = urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        try:
            rest, _ = split_url(url)
            if scheme in CLUSTER_SCHEMES:
                cluster_address(rest)
                problem = cluster_client_problem()
                if problem:
                    return f"--redis-url: {problem}"
        except ValueError as exc:
            return f"--redis-url: {exc}"
        return None
    shown = f"{scheme}://" if scheme else "no scheme"
    return (
        f"--redis-url: {shown} is not a Redis URL; expected redis://host:6379/0, rediss://..., "
        "unix:///path/redis.sock, redis+sentinel://host:26379/master or "
        "redis+cluster://host:6379,host:6379"
    )


def state_dir_problem(state_dir: Path) -> str | None:
    """Why the embedded Redis cannot keep its data in `state_dir`, or None.

    Creates the folder (and its parents) when it is missing, as the server would.
    """
    if state_dir.exists() and not state_dir.is_dir():
        return f"--state-dir {state_dir}: is not a folder; pass a folder (it is created if missing)"
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        return f"--state-dir {state_dir}: cannot create it: {exc.strerror or exc}"
    probe = state_dir / f".write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return f"--state-dir {state_dir}: cannot write there: {exc.strerror or exc}"
    return None


def port_problem(port: int, addr: str = "0.0.0.0") -> str | None:
    """Why nothing can listen on `addr:port` (taken, not allowed), or None. Port 0 is any."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addr, port))
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            return f"--metrics-port {port}: cannot listen on {addr}:{port}: {why}"
    return None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'examples.tick'?` when a known name is close, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def queues_of(specs: Mapping[str, JobSpec]) -> tuple[str, ...]:
    """Every queue the jobs name, the default queue first (what `sched run` serves)."""
    named = {spec.queue for spec in specs.values()} - {DEFAULT_QUEUE}
    return (DEFAULT_QUEUE, *sorted(named))


def unserved(specs: Mapping[str, JobSpec], served: Iterable[str]) -> dict[str, list[str]]:
    """Queue -> the jobs on it, for each queue none of `served` is."""
    taken = set(served)
    out: dict[str, list[str]] = {}
    for spec in specs.values():
        if spec.queue not in taken:
            out.setdefault(spec.queue, []).append(spec.name)
    return out


def unserved_warnings(
    specs: Mapping[str, JobSpec], served: Iterable[str], by: str
) -> list[tuple[str, str]]:
    """(queue, `queue 'heavy' of job 'x' is served by no worker ...`), one per queue."""
    lines = []
    for queue, jobs in sorted(unserved(specs, served).items()):
        names = ", ".join(repr(j) for j in jobs)
        text = (
            f"queue {queue!r} of job{'s' if len(jobs) > 1 else ''} {names} is served by no "
            f"{by}: its runs will wait; start `sched worker --queue {queue}`"
        )
        lines.append((queue, text))
    return lines


def _process_name(process: str) -> str:
    """`scheduler:host:123` -> `scheduler host:123`; `worker:host:456:ab12` -> `worker ...`."""
    kind, _, rest = process.partition(":")
    return f"{kind} {rest}" if rest else process


def _loaded_text(info: Mapping[str, str], now_ms: int) -> str:
    """`4 jobs loaded 3m ago`."""
    from datetime import UTC, datetime

    from scheduler.display import ago

    jobs = info.get("jobs", "?")
    loaded_at = info.get("loaded_at", "")
    when = ""
    if loaded_at.isdigit():
        moment = datetime.fromtimestamp(int(loaded_at) / 1000, UTC)
        when = " loaded " + ago(moment, datetime.fromtimestamp(now_ms / 1000, UTC))
    return f"{jobs} job{'' if jobs == '1' else 's'}{when}"


def running_differs(
    disk_digest: str,
    folder: Path,
    loaded: Mapping[str, Mapping[str, str]],
    now_ms: int,
) -> list[str]:
    """What `sched list`/`check` say when live processes run other definitions than the
    folder on disk holds: a warning, then one line per such process with what to do. Empty
    when every live process runs exactly what is on disk."""
    differ = {p: info for p, info in sorted(loaded.items()) if info.get("digest") != disk_digest}
    if not differ:
        return []
    shown = f"{folder}".rstrip("/") + "/"
    lines = [
        f"warning: what runs differs from what is on disk in {shown}: {len(differ)} of "
        f"{len(loaded)} running process{'es' if len(loaded) != 1 else ''} run other definitions"
    ]
    for process, info in differ.items():
        what = _loaded_text(info, now_ms)
        problems = info.get("problems", "0")
        if problems not in ("", "0"):
            advice = (
                f"found {problems} problem{'s' if problems != '1' else ''} in its jobs folder and "
                f"keeps running the {what} until they are fixed (its log lists them)"
            )
        elif info.get("watch") == "0":
            advice = f"runs the {what} and does not watch the folder (--no-watch): send it SIGHUP"
        else:
            advice = f"runs the {what}; it reloads a change within 2 s (if this stays, see its log)"
        elsewhere = info.get("folder", "")
        if elsewhere and os.path.abspath(folder) != elsewhere:
            advice += f"; it runs the folder {elsewhere}"
        lines.append(f"  {_process_name(process)}: {advice}")
    return lines


def still_running(loaded: Mapping[str, Mapping[str, str]], now_ms: int) -> list[str]:
    """After the problems of an invalid folder: what the live processes keep running."""
    if not loaded:
        return []
    count = len(loaded)
    lines = [
        f"the {count} running process{'es' if count != 1 else ''} keep{'s' if count == 1 else ''} "
        "running the previous definitions until the folder is fixed:"
    ]
    for process, info in sorted(loaded.items()):
        lines.append(f"  {_process_name(process)}: {_loaded_text(info, now_ms)}")
    return lines


def running_same(loaded: Mapping[str, Mapping[str, str]]) -> str:
    """`the 3 running processes (1 scheduler, 2 workers) run these definitions`."""
    kinds: dict[str, int] = {}
    for process in loaded:
        kind = process.partition(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    parts = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items()))
    count = len(loaded)
    if count == 1:
        return f"the running {next(iter(kinds))} runs these definitions"
    return f"the {count} running processes ({parts}) run these definitions"
