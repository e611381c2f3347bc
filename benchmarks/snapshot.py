"""Run the benchmarks on a frozen copy of the code, so one run measures one version.

Other work may edit `scheduler/` while a ten-minute run goes on. `python -m benchmarks.run`
therefore copies `scheduler/` and `benchmarks/` to a temporary folder and re-executes itself
there (the copy comes first on PYTHONPATH for every child process and CLI call); the digest of
the copied sources is recorded with the results, and the copy is removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "BENCH_SNAPSHOT"
ORIGIN_ENV = "BENCH_ORIGIN"
COMMAND_ENV = "BENCH_COMMAND"


def digest(package: Path) -> str:
    """A short hash of every Python source of a package folder (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def origin(default: Path) -> Path:
    """The repository the run was started from (also when running in a snapshot)."""
    return Path(os.environ.get(ORIGIN_ENV) or default)


def exec_in_snapshot(repo: Path, argv: list[str], command: str) -> None:
    """Copy the code to a temporary folder and re-execute `python -m benchmarks.run` there."""
    snap = Path(tempfile.mkdtemp(prefix="sb-snap-", dir="/tmp"))
    ignore = shutil.ignore_patterns("__pycache__", "results", "*.md")
    shutil.copytree(repo / "scheduler", snap / "scheduler", ignore=ignore)
    shutil.copytree(repo / "benchmarks", snap / "benchmarks", ignore=ignore)
    env = {
        **os.environ,
        ENV: str(snap),
        ORIGIN_ENV: str(repo),
        COMMAND_ENV: command,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(snap), os.environ.get("PYTHONPATH")])),
    }
    os.chdir(snap)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *argv], env)


def cleanup() -> None:
    """Remove the snapshot this process runs in, if any."""
    snap = os.environ.get(ENV)
    if snap and Path(snap).name.startswith("sb-snap-"):
        shutil.rmtree(snap, ignore_errors=True)
