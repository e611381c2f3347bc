"""Hot reload in a real `sched worker`: new code from the next run on, never mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus, Trigger
from scheduler.reload import folder_digest
from scheduler.store import Store
from tests.helpers import final, trigger, wait_for

JOB = """
import time

from scheduler import job

VERSION = {version!r}


@job("@yearly", timeout="60s")
def greet() -> None:
    print(f"greet {{VERSION}}")


@job("@yearly", timeout="60s")
def slow() -> None:
    time.sleep({slow_s})
    print(f"slow {{VERSION}}")
"""

EXTRA = """
from scheduler import job


@job("@yearly", timeout="60s")
def extra() -> None:
    print("extra ran")
"""


def write(path: Path, text: str) -> None:
    # Written beside and renamed over, as editors and checkouts do: never seen half-written.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text))
    os.replace(tmp, path)


@pytest.fixture()
def store(redis_server: EmbeddedRedis) -> Iterator[Store]:
    s = Store(redis_server.url, f"reload-{uuid.uuid4().hex[:6]}")
    yield s
    s.close()


class Worker:
    """A `sched worker` on a jobs folder of the test's own, logging to a file."""

    def __init__(self, jobs: Path, log: Path, proc: subprocess.Popen[str]) -> None:
        self.jobs, self.log, self.proc = jobs, log, proc

    def text(self) -> str:
        return self.log.read_text()

    def reloads(self) -> int:
        return self.text().count("reloaded jobs")


@pytest.fixture()
def start(
    store: Store, redis_server: EmbeddedRedis, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def go(*extra: str, slow_s: float = 2.0, before: tuple[str, ...] = ()) -> Worker:
        jobs = tmp_path / "jobs"
        jobs.mkdir(exist_ok=True)
        write(jobs / "app.py", JOB.format(version="v1", slow_s=slow_s))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
        env.update(SCHED_REDIS_URL=redis_server.url, SCHED_NAMESPACE=store.namespace)
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler", *before, "--jobs", str(jobs), "worker"]
                + ["--lease", "2s", "--grace", "0.3s", *extra],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        worker = Worker(jobs, log, proc)
        started.append(worker)
        wait_for(lambda: "serving queues" in worker.text(), 30, "the worker to start")
        return worker

    yield go
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.terminate()
            try:
                worker.proc.wait(20)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        print(worker.text())


def output_of(store: Store, job: str) -> str:
    run = final(store, trigger(store, job))
    assert run.status is RunStatus.COMPLETED, run
    return (run.output or "").strip()


def test_an_edit_runs_from_the_next_run_on(store: Store, start: Callable[..., Worker]) -> None:
    worker = start()
    assert output_of(store, "app.greet") == "greet v1"
    write(worker.jobs / "app.py", JOB.format(version="v2", slow_s=2.0))
    wait_for(lambda: worker.reloads() == 1, 20, "the worker to reload")
    # The horse that was ready (forked with v1) was replaced by one forked with v2.
    assert output_of(store, "app.greet") == "greet v2"
    loaded = wait_for(
        lambda: next((v for k, v in store.loaded().items() if k.startswith("worker:")), None),
        10,
        "the worker's loaded definitions",
    )
    assert loaded["digest"] == folder_digest(worker.jobs), loaded
    assert "reloaded jobs: 2 changed (app.greet, app.slow)" in worker.text()


def test_a_run_in_progress_finishes_on_its_old_code(
    store: Store, start: Callable[..., Worker]
) -> None:
    worker = start()
    run_id = trigger(store, "app.slow")
    wait_for(lambda: store.get_run(run_id).status is RunStatus.RUNNING, 20, "slow to run")
    write(worker.jobs / "app.py", JOB.format(version="v2", slow_s=2.0))
    worker.proc.send_signal(signal.SIGHUP)  # asked now: still not in the middle of the run
    run = final(store, run_id)
    assert run.status is RunStatus.COMPLETED, run
    assert (run.output or "").strip() == "slow v1"
    assert output_of(store, "app.slow") == "slow v2"


def test_queued_runs_of_a_removed_job_end_skipped(
    store: Store, start: Callable[..., Worker]
) -> None:
    worker = start(slow_s=3.0)
    busy = trigger(store, "app.slow")
    wait_for(lambda: store.get_run(busy).status is RunStatus.RUNNING, 20, "slow to run")
    waiting = trigger(store, "app.greet")  # queued behind it (one worker)
    write(worker.jobs / "app.py", "from scheduler import job\n")  # every job removed
    run = final(store, waiting)
    assert (run.status, run.reason) == (RunStatus.SKIPPED, "job removed"), run
    assert final(store, busy).status is RunStatus.COMPLETED
    assert f"run {waiting}: skipped - job removed" in worker.text()


def test_a_job_added_is_run_even_before_the_next_poll(
    store: Store, start: Callable[..., Worker]
) -> None:
    # The run arrives before the worker looked at the folder: it looks then.
    worker = start("--no-watch")
    write(worker.jobs / "extra.py", EXTRA)
    assert output_of(store, "extra.extra") == "extra ran"


def test_without_watch_only_sighup_reloads(store: Store, start: Callable[..., Worker]) -> None:
    worker = start("--no-watch")
    write(worker.jobs / "app.py", JOB.format(version="v2", slow_s=2.0))
    assert output_of(store, "app.greet") == "greet v1"
    assert worker.reloads() == 0
    worker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: worker.reloads() == 1, 20, "the reload SIGHUP asked for")
    assert output_of(store, "app.greet") == "greet v2"


def test_an_invalid_folder_keeps_the_old_code_running(
    store: Store, start: Callable[..., Worker]
) -> None:
    worker = start()
    write(worker.jobs / "app.py", JOB.format(version="v2", slow_s=2.0) + "\ndef broken(:\n")
    wait_for(lambda: "app.py:" in worker.text(), 20, "the problem to be logged")
    assert output_of(store, "app.greet") == "greet v1"
    assert worker.proc.poll() is None


def test_sighup_to_a_supervisor_reloads_each_of_its_workers(
    store: Store, start: Callable[..., Worker]
) -> None:
    worker = start("--workers", "2", "--no-watch")
    wait_for(lambda: worker.text().count("serving queues") == 2, 30, "both workers")
    write(worker.jobs / "app.py", JOB.format(version="v2", slow_s=2.0))
    worker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: worker.reloads() == 2, 20, "both workers to reload")
    assert output_of(store, "app.greet") == "greet v2"
    assert worker.proc.poll() is None


def test_run_lines_carry_structured_fields(store: Store, start: Callable[..., Worker]) -> None:
    worker = start(before=("--log-format", "json"))
    run_id = trigger(store, "app.greet")
    final(store, run_id)

    def ended() -> dict[str, object] | None:
        for line in worker.text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "run_ended" and entry.get("run_id") == run_id:
                return dict(entry)
        return None

    entry = wait_for(ended, 10, "the run's end line")
    assert entry["job"] == "app.greet" and entry["status"] == "completed", entry
    assert isinstance(entry["duration_s"], float) and entry["duration_s"] >= 0, entry
    assert isinstance(entry["worker"], str) and entry["worker"].count(":") == 2, entry
    assert re.fullmatch(rf"run {re.escape(run_id)}: completed in \d+ms", str(entry["message"]))


FOLLOWER = """
import logging, sys
from datetime import UTC, datetime
from pathlib import Path
from scheduler.loader import load_jobs
from scheduler.runner import Plan, Timings, run_worker

logging.basicConfig(level=logging.INFO, format="%(message)s")
url, namespace, jobs = sys.argv[1:]
specs = load_jobs(jobs)
plan = Plan(
    specs, url, namespace, jobs=Path(jobs), queues=("default",), queues_from_jobs=True,
    timings=Timings(lease_s=2.0, grace_s=0.3),
)
sys.exit(run_worker(plan))
"""

HEAVY = """
from scheduler import job


@job("@yearly", queue="heavy", timeout="60s")
def crunch() -> None:
    print("crunched")
"""


def test_a_worker_serving_its_jobs_queues_serves_a_queue_a_reload_adds(
    store: Store, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # What `sched run` without --queue does: a plan whose queues came from its jobs.
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write(jobs / "app.py", JOB.format(version="v1", slow_s=1.0))
    log = tmp_path / "follower.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", FOLLOWER, redis_server.url, store.namespace, str(jobs)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "serving queues default" in log.read_text(), 30, "the worker")
        write(jobs / "heavy.py", HEAVY)
        wait_for(lambda: "now also serving queue heavy" in log.read_text(), 20, "the new queue")
        run_id = f"heavy.crunch@test-{uuid.uuid4().hex[:8]}"
        store.enqueue(
            run_id=run_id,
            job="heavy.crunch",
            scheduled_for=datetime.now(UTC),
            queue="heavy",
            trigger=Trigger.MANUAL,
            advance_last_fire=False,
        )
        run = final(store, run_id)
        assert run.status is RunStatus.COMPLETED and (run.output or "").strip() == "crunched"
        wait_for(
            lambda: any(w.get("queues") == "default,heavy" for w in store.workers()),
            10,
            "the worker's record to list the new queue",
        )
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_worker_restarted_while_the_folder_is_broken_waits_for_the_fix(
    store: Store, start: Callable[..., Worker]
) -> None:
    worker = start("--workers", "2")
    wait_for(lambda: worker.text().count("serving queues") == 2, 30, "both workers")
    good = JOB.format(version="v2", slow_s=1.0)
    write(worker.jobs / "app.py", good + "\ndef broken(:\n")
    wait_for(lambda: worker.text().count("app.py:") >= 2, 20, "both workers to see the problem")
    first = int(re.findall(r"started worker-1 \(pid (\d+)\)", worker.text())[-1])
    os.kill(first, signal.SIGKILL)  # its restart meets the broken folder
    wait_for(lambda: "waiting for the jobs folder to be fixed" in worker.text(), 30, "the wait")
    write(worker.jobs / "app.py", good)
    wait_for(lambda: worker.text().count("serving queues") == 3, 30, "the new worker to serve")
    assert worker.proc.poll() is None, "the supervisor did not give up"
    assert "failed 4 times" not in worker.text()
    # The other worker reloads the fixed folder within a poll; a run it took just before
    # that may still say v1, so the check is on the runs that follow.
    wait_for(lambda: output_of(store, "app.greet") == "greet v2", 30, "a run of the fixed code")
