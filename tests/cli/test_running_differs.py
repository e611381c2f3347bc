"""`sched check` and `sched list` say when what runs differs from what is on disk.

The real commands in subprocesses against the session's redis-server. What each process runs is
published as the scheduler and workers publish it (Store.set_loaded with
Definitions.loaded_info()); tests/process/test_reload.py does the same with real `sched run`
processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler.loader import load_jobs
from scheduler.reload import Definitions, folder_digest
from scheduler.store import Store

GOOD = Path(__file__).parent.parent / "unit" / "fixtures" / "good"


@pytest.fixture()
def jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    shutil.copytree(GOOD, folder)
    return folder


def sched(*args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    if url:
        env["SCHED_REDIS_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def publish(store: Store, process: str, jobs: Path, **changes: str) -> dict[str, str]:
    info = Definitions(jobs, load_jobs(jobs), who=process).loaded_info() | changes
    store.set_loaded(process, info, 60)
    return info


def test_check_offline_says_it_could_not_compare(jobs: Path, tmp_path: Path) -> None:
    done = sched("--jobs", "jobs", "check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "jobs OK in" in done.stdout
    assert done.stderr.strip() == (
        "not compared with running processes: none runs in .sched/ and no --redis-url was given"
    )


def test_check_with_redis_unreachable_neither_hangs_nor_fails(jobs: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    done = sched("--jobs", "jobs", "check", cwd=tmp_path, url="redis://127.0.0.1:9/0")
    assert time.monotonic() - started < 20
    assert done.returncode == 0 and "jobs OK in" in done.stdout
    assert done.stderr.startswith("not compared with running processes: could not read")
    assert "Traceback" not in done.stderr


def test_in_sync_check_says_so_and_list_says_nothing(
    jobs: Path, tmp_path: Path, redis_url: str, store: Store
) -> None:
    publish(store, "scheduler:host-a:10", jobs)
    publish(store, "worker:host-a:11:ab12", jobs)
    done = sched("--jobs", "jobs", "check", cwd=tmp_path, url=redis_url)
    assert done.returncode == 0
    assert done.stderr.strip() == (
        "the 2 running processes (1 scheduler, 1 worker) run these definitions"
    )
    listed = sched("--jobs", "jobs", "list", cwd=tmp_path, url=redis_url)
    assert listed.returncode == 0 and listed.stderr == ""


def test_an_edit_not_yet_running_is_named_per_process(
    jobs: Path, tmp_path: Path, redis_url: str, store: Store
) -> None:
    publish(store, "scheduler:host-a:10", jobs)
    publish(store, "worker:host-a:11:ab12", jobs, watch="0")
    publish(store, "worker:host-b:12:cd34", jobs, problems="2")
    (jobs / "extra.py").write_text(
        "from scheduler import job\n\n@job(every='5s')\ndef x():\n    pass\n"
    )
    assert folder_digest(jobs) != store.loaded()["scheduler:host-a:10"]["digest"]
    for command in (["check"], ["list"], ["list", "--json"]):
        done = sched("--jobs", "jobs", *command, cwd=tmp_path, url=redis_url)
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert lines[0] == (
            "warning: what runs differs from what is on disk in jobs/: 3 of 3 running "
            "processes run other definitions"
        )
        assert lines[1].startswith("  scheduler host-a:10: runs the 5 jobs loaded ")
        assert lines[1].endswith("; it reloads a change within 2 s (if this stays, see its log)")
        assert lines[2].startswith("  worker host-a:11:ab12: runs the 5 jobs loaded ")
        assert lines[2].endswith("does not watch the folder (--no-watch): send it SIGHUP")
        assert lines[3].startswith(
            "  worker host-b:12:cd34: found 2 problems in its jobs folder and keeps running the "
            "5 jobs loaded "
        )
        assert len(lines) == 4
    listed = json.loads(done.stdout)  # the JSON on stdout is untouched
    assert "extra.x" in [row["job"] for row in listed]


def test_invalid_folder_lists_problems_and_what_keeps_running(
    jobs: Path, tmp_path: Path, redis_url: str, store: Store
) -> None:
    publish(store, "scheduler:host-a:10", jobs)
    publish(store, "worker:host-a:11:ab12", jobs)
    (jobs / "broken.py").write_text("def nope(:\n")
    for command in ("check", "list"):
        done = sched("--jobs", "jobs", command, cwd=tmp_path, url=redis_url)
        assert done.returncode == 2
        lines = done.stderr.splitlines()
        assert lines[0] == "1 problem in job definitions:"
        assert lines[1].startswith("jobs/broken.py:1: syntax error")
        assert lines[2] == (
            "the 2 running processes keep running the previous definitions until the folder "
            "is fixed:"
        )
        assert lines[3].startswith("  scheduler host-a:10: 5 jobs loaded ")
        assert lines[4].startswith("  worker host-a:11:ab12: 5 jobs loaded ")
        assert "Traceback" not in done.stderr


def test_invalid_folder_with_nothing_running_is_only_its_problems(
    jobs: Path, tmp_path: Path
) -> None:
    (jobs / "broken.py").write_text("def nope(:\n")
    done = sched("--jobs", "jobs", "check", cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 2


def test_one_process_in_sync(jobs: Path, tmp_path: Path, redis_url: str, store: Store) -> None:
    publish(store, "scheduler:host-a:10", jobs)
    done = sched("--jobs", "jobs", "check", cwd=tmp_path, url=redis_url)
    assert done.stderr.strip() == "the running scheduler runs these definitions"
