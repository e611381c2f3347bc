"""Hot reload through the real `sched run`: a newcomer edits the jobs folder while it runs.

Each test starts `sched run` (embedded Redis, scheduler, one worker) in a temporary project
folder, changes `jobs/` as a person would, and watches the run history, the log and the read
commands (`sched list`, `sched check`, `sched trigger`) in their own subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.embedded import socket_url
from scheduler.model import Run, RunStatus
from scheduler.reload import folder_digest
from scheduler.store import Store, is_alive
from tests.helpers import final, wait_for

TICK = """\
from scheduler import job


@job(every="1s", name="tick", timeout="10s")
def tick():
    return "{value}"
"""

EXTRA = """\
from scheduler import job


@job(every="1s", name="extra", timeout="10s")
def extra():
    return "extra ran"
"""

# A manual job that runs until the test creates `release` beside the jobs folder: it keeps the
# only worker busy while a run of another job waits in the queue.
BLOCKER = """\
import time
from pathlib import Path

from scheduler import job

RELEASE = Path(__file__).parent.parent / "release"


@job("@yearly", name="blocker", timeout="60s")
def blocker():
    while not RELEASE.exists():
        time.sleep(0.05)
"""

VICTIM = """\
from scheduler import job


@job("@yearly", name="victim", timeout="10s")
def victim():
    return "should not run"
"""

# `scheduler: reloaded jobs: ...` or `worker HOST:PID:TOKEN: reloaded jobs: ...`.
RELOADED = re.compile(r"\b(scheduler|worker) ?\S*: reloaded jobs: (.*)$")


class Project:
    """A folder with jobs/ and a `sched run` over it, as a newcomer has after the Quick start."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs = root / "jobs"
        self.jobs.mkdir()
        self.state = root / ".sched"
        self.log_path = root / "run.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._store: Store | None = None

    def write(self, name: str, text: str) -> None:
        path = self.jobs / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(textwrap.dedent(text))
        os.replace(tmp, path)  # as an editor saves: the file is whole when it appears

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}

    def start(self, *args: str) -> None:
        with self.log_path.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler", "run", "--no-web", "--workers", "1"]
                + ["--lease", "2s", "--grace", "0.5s", *args],
                cwd=self.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(lambda: is_alive(socket_url(self.state)), 30, "the embedded Redis")
        # Both processes say what they run once their loops are up.
        wait_for(lambda: len(self.store.loaded()) >= 2, 30, "scheduler and worker to publish")

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(socket_url(self.state))
        return self._store

    def sched(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler", *args],
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reloads(self) -> list[tuple[str, str]]:
        """(scheduler or worker, what changed) for each reload line of the log."""
        return [m.groups() for m in map(RELOADED.search, self.log().splitlines()) if m]

    def completed(self, job: str) -> list[Run]:
        runs = self.store.history(job=job, limit=200)
        return [r for r in runs if r.status is RunStatus.COMPLETED]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._store is not None:
            self._store.close()


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path)
    yield p
    p.stop()
    print(p.log())  # shown when the test failed


def test_a_job_added_while_sched_run_runs_fires_and_can_be_triggered(project: Project) -> None:
    project.write("base.py", TICK.format(value="v1"))
    project.start()
    project.write("extra.py", EXTRA)
    runs = wait_for(lambda: project.completed("extra"), 20, "a scheduled run of the new job")
    assert runs[0].result == "extra ran"
    triggered = project.sched("trigger", "extra", "--wait")
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert triggered.stdout.strip().splitlines()[-1].endswith(": completed")
    listed = project.sched("list")
    assert listed.returncode == 0 and "extra" in listed.stdout
    assert listed.stderr == "", "once reloaded, what runs is what is on disk"
    # One line per process for the one change.
    assert sorted(project.reloads()) == [
        ("scheduler", "1 added (extra); 2 jobs"),
        ("worker", "1 added (extra); 2 jobs"),
    ]


def test_an_edited_function_runs_its_new_code_from_the_next_run(project: Project) -> None:
    project.write("base.py", TICK.format(value="v1"))
    project.start()
    wait_for(lambda: project.completed("tick"), 20, "a run of the first version")
    project.write("base.py", TICK.format(value="v2"))

    def new_code() -> list[Run] | None:
        runs = project.completed("tick")
        return runs if runs[0].result == "v2" else None

    seen = wait_for(new_code, 20, "a run of the edited function")
    first_new = seen[0]
    wait_for(lambda: len(project.completed("tick")) >= len(seen) + 2, 20, "two more runs")
    later = [r for r in project.completed("tick") if r.scheduled_for >= first_new.scheduled_for]
    assert {r.result for r in later} == {"v2"}, "no run after the reload runs the old code"
    assert sorted(project.reloads()) == [
        ("scheduler", "1 changed (tick); 1 job"),
        ("worker", "1 changed (tick); 1 job"),
    ]


USES_HELPER = """\
from scheduler import job
from _words import WORD


@job(every="1s", name="speaks", timeout="10s")
def speaks():
    return WORD
"""


def test_an_edited_helper_module_is_imported_afresh(project: Project) -> None:
    project.write("_words.py", "WORD = 'first'\n")
    project.write("speaks.py", USES_HELPER)
    project.start()
    wait_for(lambda: project.completed("speaks"), 20, "a run with the first helper")
    project.write("_words.py", "WORD = 'second'\n")
    wait_for(
        lambda: project.completed("speaks")[0].result == "second", 20, "a run with the new helper"
    )
    assert sorted(project.reloads()) == [
        ("scheduler", "1 changed (speaks); 1 job"),
        ("worker", "1 changed (speaks); 1 job"),
    ]


def test_a_removed_jobs_queued_run_ends_skipped(project: Project) -> None:
    project.write("block.py", BLOCKER)
    project.write("victim.py", VICTIM)
    project.start()
    blocker = project.sched("trigger", "blocker").stdout.split()[-1]
    wait_for(lambda: project.store.get_run(blocker).status is RunStatus.RUNNING, 20, "blocker")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "scheduler", "trigger", "victim", "--wait"],
        cwd=project.root,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = wait_for(lambda: project.store.history(job="victim", limit=1), 20)[0]
        assert victim.status is RunStatus.QUEUED
        (project.jobs / "victim.py").unlink()
        wait_for(lambda: ("scheduler", "1 removed (victim); 1 job") in project.reloads(), 20)
        (project.root / "release").touch()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert final(project.store, blocker).status is RunStatus.COMPLETED
    run = final(project.store, victim.id)
    assert (run.status, run.reason) == (RunStatus.SKIPPED, "job removed")
    assert run.started_at is None and run.pid is None, "nothing of it ran"
    # The `trigger --wait` that queued it says so, and exits 125: sched did not run it.
    assert waiting.returncode == 125, out + err
    assert out.strip().splitlines()[-1] == f"{victim.id}: skipped (job removed)"
    gone = project.sched("trigger", "victim")
    assert gone.returncode == 2 and "no job 'victim'" in gone.stderr


def test_a_broken_file_keeps_the_old_definitions_and_the_commands_say_so(
    project: Project,
) -> None:
    project.write("base.py", TICK.format(value="v1"))
    project.start()
    project.write(
        "broken.py", "from scheduler import job\n\n@job('61 * * * *')\ndef nope():\n    pass\n"
    )
    problem = "jobs/broken.py:3: job 'broken.nope': invalid cron '61 * * * *'"
    keeps = "jobs/ has 1 problem; still running the previous definitions (1 job) until it is fixed"
    wait_for(lambda: project.log().count(keeps) == 2, 20, "both processes to say they keep")
    listed = project.log().count(problem)
    assert listed >= 1, "the problem itself is in the log, as `path:line: ...`"
    before = len(project.completed("tick"))
    wait_for(lambda: len(project.completed("tick")) >= before + 3, 20, "ticks to go on")
    # Once per process for this state of the folder, however many polls since.
    assert project.log().count(keeps) == 2 and project.log().count(problem) == listed
    assert project.reloads() == []
    for command in ("check", "list"):
        done = project.sched(command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert problem in done.stderr
        assert (
            "the 2 running processes keep running the previous definitions until the folder "
            "is fixed:" in done.stderr
        )
        assert "Traceback" not in done.stderr
    # Fixed: back to what runs, said once per process; the commands agree again.
    (project.jobs / "broken.py").unlink()
    again = "jobs/ matches the running definitions again (1 job)"
    wait_for(lambda: project.log().count(again) >= 2, 20, "both processes to see the fix")
    checked = project.sched("check")
    assert checked.returncode == 0
    assert "the 2 running processes (1 scheduler, 1 worker) run these definitions" in (
        checked.stderr
    )


def test_no_watch_reloads_on_sighup_only(project: Project) -> None:
    project.write("base.py", TICK.format(value="v1"))
    project.start("--no-watch")
    project.write("extra.py", EXTRA)
    checked = project.sched("check")
    assert checked.returncode == 0
    assert (
        "warning: what runs differs from what is on disk in jobs/: 2 of 2 running processes "
        "run other definitions" in checked.stderr
    )
    assert checked.stderr.count("(--no-watch): send it SIGHUP") == 2
    # Unwatched, nothing reloads however long it runs: three more ticks and still no reload.
    before = len(project.completed("tick"))
    wait_for(lambda: len(project.completed("tick")) >= before + 3, 20, "three more ticks")
    assert project.reloads() == [] and not project.completed("extra")
    assert project.proc is not None
    project.proc.send_signal(signal.SIGHUP)  # to the supervisor, which passes it on
    wait_for(lambda: project.completed("extra"), 20, "a run of the job SIGHUP loaded")
    assert sorted(project.reloads()) == [
        ("scheduler", "1 added (extra); 2 jobs"),
        ("worker", "1 added (extra); 2 jobs"),
    ]
    listed = project.sched("list", "--json")
    assert listed.returncode == 0 and listed.stderr == ""
    assert {row["job"] for row in json.loads(listed.stdout)} == {"tick", "extra"}


def test_scheduler_and_worker_alone_reload_on_sighup(tmp_path: Path, redis_url: str) -> None:
    """The production layout: `sched scheduler` and `sched worker` as separate processes."""
    project = Project(tmp_path)
    project.write("base.py", TICK.format(value="v1"))
    env = {**project.env(), "SCHED_REDIS_URL": redis_url, "SCHED_LEASE": "2s"}
    store = Store(redis_url)
    procs = []
    with project.log_path.open("w") as out:
        for command in ("scheduler", "worker"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "scheduler", command, "--no-watch"],
                    cwd=project.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        wait_for(lambda: len(store.loaded()) >= 2, 30, "scheduler and worker to publish")
        project.write("extra.py", EXTRA)
        for proc in procs:
            proc.send_signal(signal.SIGHUP)
        runs = wait_for(
            lambda: [r for r in store.history(job="extra", limit=5) if r.status.final], 20
        )
        assert runs[0].status is RunStatus.COMPLETED
        assert sorted(project.reloads()) == [
            ("scheduler", "1 added (extra); 2 jobs"),
            ("worker", "1 added (extra); 2 jobs"),
        ]
        digests = {info["digest"] for info in store.loaded().values()}
        assert digests == {folder_digest(project.jobs)}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        store.close()
        print(project.log())
