"""`sched next` and `sched check` start fast: a real process, and the modules it imported.

They are run on every edit and in CI; loading redis, the scheduler loop, alerting or
prometheus would cost them most of their time for nothing they use. `sched check` is the one
exception for redis: it asks the store which definitions the live processes run, to say when
they differ from the folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

JOB = """
from scheduler import job

@job("0 2 * * *", tz="Europe/Berlin", name="nightly")
def nightly() -> None: ...
"""
FORBIDDEN = ("redis", "scheduler.beat", "scheduler.alerts", "prometheus_client", "scheduler.store")


def imported(*args: str, jobs: Path) -> set[str]:
    """The modules a `sched ...` process imported, from Python's own -X importtime report."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "scheduler", "--jobs", str(jobs), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "scheduler.cli" in names, "the report lists what was imported"
    return names


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("next", "nightly", "-n", "3"), ()),
        (("next", "*/5 * * * *", "--tz", "Europe/Berlin"), ()),
        (("check",), ("redis", "scheduler.store")),
    ],
)
def test_loads_no_redis_beat_alerts_or_prometheus(
    tmp_path: Path, args: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    (tmp_path / "nightly.py").write_text(JOB)
    names = imported(*args, jobs=tmp_path)
    forbidden = tuple(f for f in FORBIDDEN if f not in allowed)
    loaded = sorted(n for n in names if n.split(".")[0] in forbidden or n in forbidden)
    loaded += sorted(n for n in names if any(n.startswith(f + ".") for f in forbidden))
    assert not loaded, f"`sched {' '.join(args)}` imported {loaded}"
