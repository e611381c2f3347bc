#!/usr/bin/env python3
"""Health check of a sched container, built on `sched workers --json`.

Installed in the image as `sched-healthcheck`; used by the image's HEALTHCHECK and by the
Kubernetes probes. Usage:

    sched-healthcheck [auto|worker|scheduler] [--live]

Readiness (the default): exit 0 when this container is doing its job, as far as Redis shows.
  worker     Redis lists a live worker on this host (one whose heartbeat lease is current:
             workers renew it every few seconds, also while a job runs).
  scheduler  Redis answers with the configured URL, credentials and namespace. sched keeps no
             scheduler heartbeat, so this is all that can be seen from outside the process.
  auto       the role of this container's main process, read from /proc/1/cmdline
             (`sched run` counts as a worker: its workers register like any other).

Liveness (--live): exit 1 only when restarting this container could help.
  worker     Redis answers but lists no live worker on this host: the worker is stuck.
             When Redis cannot be reached the check passes: sched keeps running through a
             Redis outage and reconnects, and a restart would only stop the running jobs.
  scheduler  always passes: there is nothing beyond the process itself to check (and the
             container already ends when the process does).

Exit 0 healthy, 1 unhealthy, 2 bad usage. One line on stdout says why. Needs only the
standard library and the `sched` command (on PATH, or $SCHED_BIN); its environment
(SCHED_REDIS_URL, SCHED_NAMESPACE) is passed on, and sched never prints the password.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROLES = ("worker", "scheduler")
# Main-process subcommands and the role whose check fits them.
COMMAND_ROLES = {"worker": "worker", "run": "worker", "scheduler": "scheduler"}
HEALTHY, UNHEALTHY, USAGE = 0, 1, 2


class Unanswered(Exception):
    """`sched workers` gave no answer: Redis unreachable, refused, or too slow."""


def role_of_main_process(cmdline_path: Path = Path("/proc/1/cmdline")) -> str | None:
    """The role of the container's main process (`tini -- sched worker ...` included)."""
    try:
        args = cmdline_path.read_bytes().split(b"\0")
    except OSError:
        return None
    for arg in args:
        role = COMMAND_ROLES.get(arg.decode(errors="replace"))
        if role:
            return role
    return None


def live_workers(
    sched: str, timeout_s: float, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The live workers that Redis lists; Unanswered when sched cannot tell."""
    try:
        proc = subprocess.run(
            [sched, "workers", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unanswered(f"`sched workers` did not answer within {timeout_s:g}s") from exc
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
        raise Unanswered(lines[-1])
    try:
        rows = json.loads(proc.stdout)
    except ValueError as exc:
        raise Unanswered(f"`sched workers --json` printed no JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise Unanswered("`sched workers --json` printed no JSON array")
    return [row for row in rows if isinstance(row, dict)]


def on_this_host(rows: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """The rows of workers running on `host` (worker ids are `host:pid`)."""
    return [
        row
        for row in rows
        if row.get("host") == host or str(row.get("id", "")).rpartition(":")[0] == host
    ]


def check(
    role: str, live: bool, sched: str, timeout_s: float, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """(exit code, one-line reason) of one check; sched runs with `env` (default: ours)."""
    if role == "scheduler" and live:
        return HEALTHY, "scheduler: no liveness signal beyond the process itself; not checked"
    host = socket.gethostname()
    try:
        rows = live_workers(sched, timeout_s, env)
    except Unanswered as exc:
        if live:
            return HEALTHY, f"{role}: Redis did not answer ({exc}); not this process's fault"
        return UNHEALTHY, f"{role}: Redis did not answer: {exc}"
    if role == "scheduler":
        return HEALTHY, f"scheduler: Redis answers ({len(rows)} live workers)"
    mine = on_this_host(rows, host)
    if not mine:
        return UNHEALTHY, f"worker: Redis lists no live worker on host {host!r}"
    ids = ", ".join(str(row.get("id")) for row in mine)
    return HEALTHY, f"worker: live on {host!r}: {ids}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sched-healthcheck", description="Health check of a sched container."
    )
    parser.add_argument("role", nargs="?", default="auto", choices=("auto", *ROLES))
    parser.add_argument(
        "--live", action="store_true", help="liveness: fail only if a restart could help"
    )
    parser.add_argument(
        "--timeout", type=float, default=8.0, help="seconds to wait for sched (default 8)"
    )
    args = parser.parse_args(argv)
    sched = os.environ.get("SCHED_BIN") or shutil.which("sched")
    if not sched:
        print("sched-healthcheck: no `sched` on PATH and no SCHED_BIN")
        return UNHEALTHY
    role = args.role
    if role == "auto":
        role = role_of_main_process()
        if role is None:
            print("sched-healthcheck: cannot tell the role of PID 1; pass worker or scheduler")
            return USAGE
    try:
        code, reason = check(role, args.live, sched, args.timeout)
    except OSError as exc:
        code, reason = UNHEALTHY, f"{role}: cannot run {sched}: {exc}"
    print(reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
