"""One test per behaviour of a job: the recorded status, and no process of its group left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler.model import Run, RunStatus
from scheduler.store import Store
from tests.helpers import alive, final, process_group, trigger, wait_for

RunJob = Callable[..., Run]


def assert_no_group(run: Run) -> None:
    assert run.pid is not None
    assert process_group(run.pid) == [], f"processes left in group {run.pid}"


def test_returns_completed_with_output_and_result(run_job: RunJob) -> None:
    run = run_job("returns")
    assert run.status is RunStatus.COMPLETED
    assert run.exit_code == 0
    assert run.result == {"answer": 42}
    assert "hello from the horse" in (run.output or "")
    assert run.started_at and run.finished_at and run.duration_s is not None
    assert run.max_rss_kb and run.max_rss_kb > 1000
    assert run.cpu_s is not None
    assert_no_group(run)


def test_the_largest_error_report_gets_through(run_job: RunJob) -> None:
    run = run_job("raises-huge", timeout=30)
    assert run.status is RunStatus.FAILED, run.reason
    assert run.error is not None and run.error["type"] == "ValueError"
    smile = "\U0001f600"
    assert run.error["message"] == smile * 32 * 1024  # bounded, whole
    assert run.reason == f"raised ValueError: {smile * 200}... (32768 characters)"
    assert_no_group(run)


def test_raises_failed_with_traceback(run_job: RunJob) -> None:
    run = run_job("raises")
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "boom"
    assert 'raise ValueError("boom")' in run.error["traceback"]
    assert run.reason == "raised ValueError: boom"
    assert_no_group(run)


def test_sys_exit_0_completed(run_job: RunJob) -> None:
    run = run_job("exit-0")
    assert run.status is RunStatus.COMPLETED
    assert run.exit_code == 0
    assert_no_group(run)


def test_sys_exit_3_failed(run_job: RunJob) -> None:
    run = run_job("exit-3")
    assert run.status is RunStatus.FAILED
    assert run.exit_code == 3
    assert run.reason == "sys.exit(3)"
    assert_no_group(run)


def test_os_exit_3_failed(run_job: RunJob) -> None:
    run = run_job("os-exit-3")
    assert run.status is RunStatus.FAILED
    assert run.exit_code == 3
    assert run.reason == "exited with code 3 before returning"
    assert_no_group(run)


def test_unusable_result_failed(run_job: RunJob) -> None:
    run = run_job("returns-object")
    assert run.status is RunStatus.FAILED
    assert run.reason is not None and run.reason.startswith("unusable result: returned object")


@pytest.mark.parametrize("job", ["sleeps", "swallows-timeout"])
def test_alarm_times_out(run_job: RunJob, job: str) -> None:
    run = run_job(job)
    assert run.status is RunStatus.TIMED_OUT
    assert run.reason is not None and "JobTimeout" in run.reason
    # The alarm ended it: well before deadline (0.5 s) + grace (0.5 s) + slack.
    assert run.duration_s is not None and run.duration_s < 5
    assert_no_group(run)


@pytest.mark.parametrize("job", ["holds-gil", "disarms-alarm", "ignores-alarm", "blocks-alarm"])
def test_backstop_times_out(run_job: RunJob, job: str) -> None:
    run = run_job(job)
    assert run.status is RunStatus.TIMED_OUT
    assert run.signal == "SIGKILL"
    assert run.reason is not None and "killed through its pidfd (SIGKILL)" in run.reason
    assert run.duration_s is not None and 0.9 <= run.duration_s < 5
    assert_no_group(run)


def test_grandchildren_are_gone_after_return(run_job: RunJob) -> None:
    run = run_job("leaves-grandchild")
    assert run.status is RunStatus.COMPLETED
    output = run.output or ""
    child = int(re.search(r"grandchild (\d+)", output).group(1))  # type: ignore[union-attr]
    escaped = int(re.search(r"escaped (\d+)", output).group(1))  # type: ignore[union-attr]
    wait_for(lambda: not alive(child) and not alive(escaped), 5, "grandchildren to die")
    assert_no_group(run)


@pytest.mark.parametrize(("job", "sig"), [("segfaults", "SIGSEGV"), ("aborts", "SIGABRT")])
def test_crash_killed_with_signal(run_job: RunJob, job: str, sig: str) -> None:
    run = run_job(job)
    assert run.status is RunStatus.KILLED
    assert run.signal == sig
    assert run.reason == f"killed by {sig}"
    assert_no_group(run)


def test_sigkill_from_outside(worker_env: tuple[Store, subprocess.Popen[bytes]]) -> None:
    store, _ = worker_env
    run_id = trigger(store, "waits")
    pid = wait_for(lambda: store.get_run(run_id).pid, 10, "the horse's pid")
    os.kill(pid, signal.SIGKILL)
    run = final(store, run_id)
    assert run.status is RunStatus.KILLED
    assert run.signal == "SIGKILL"
    assert run.pid == pid
    assert_no_group(run)


def test_100mb_of_output_is_bounded(
    run_job: RunJob, worker_env: tuple[Store, subprocess.Popen[bytes]]
) -> None:
    _, proc = worker_env
    run_job("returns")  # warm up: the worker's own peak before the flood
    before = _rss_kb(proc.pid)
    run = run_job("prints-100mb", timeout=60)
    assert run.status is RunStatus.COMPLETED
    output = run.output or ""
    assert output.rstrip().endswith("the end")
    assert len(output) <= 70 * 1024
    assert "earlier bytes not kept" in output
    assert _rss_kb(proc.pid) < before + 20 * 1024, "the worker's memory grew with the output"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_non_daemon_thread_does_not_hang(run_job: RunJob) -> None:
    run = run_job("leaves-thread")
    assert run.status is RunStatus.COMPLETED
    assert run.duration_s is not None and run.duration_s < 5
    assert_no_group(run)


def test_command_exit_code(run_job: RunJob) -> None:
    run = run_job("cmd-exit-7")
    assert run.status is RunStatus.FAILED
    assert run.exit_code == 7
    assert run.reason == "exited with code 7"
    assert "seven" in (run.output or "")
    assert_no_group(run)


def test_command_timeout_by_alarm_across_exec(run_job: RunJob) -> None:
    run = run_job("cmd-sleeps")
    assert run.status is RunStatus.TIMED_OUT
    assert run.signal == "SIGALRM"
    assert run.duration_s is not None and run.duration_s < 5
    assert_no_group(run)


def test_command_not_found(run_job: RunJob) -> None:
    run = run_job("cmd-missing")
    assert run.status is RunStatus.FAILED
    assert run.reason is not None and "cannot execute '/nonexistent/program'" in run.reason


def test_unknown_job_fails_without_running(
    worker_env: tuple[Store, subprocess.Popen[bytes]],
) -> None:
    store, _ = worker_env
    run = final(store, trigger(store, "not-in-this-folder"))
    assert run.status is RunStatus.FAILED
    assert run.reason is not None and "not defined in this worker's jobs folder" in run.reason
    assert run.pid is None


def test_a_program_gets_its_run_environment_whole_and_sigpipe_at_its_default(
    run_job: RunJob,
) -> None:
    """A ready horse sets its environment up before its order; what the order does not fill
    must not reach the program as an empty variable, and the SIGPIPE a Python job ignores
    must be back at its default across exec (an ignored signal survives exec)."""
    run = run_job("cmd-env")
    assert run.status is RunStatus.COMPLETED
    lines = (run.output or "").splitlines()
    ours = dict(line.split("=", 1) for line in lines if line.startswith("SCHED_"))
    assert ours.get("SCHED_RUN_ID") == run.id and ours.get("SCHED_JOB") == "cmd-env"
    assert "SCHED_REDIS_URL" not in ours
    assert not [name for name, value in ours.items() if value == ""], ours
    (ignored,) = [line.split()[1] for line in lines if line.startswith("SigIgn:")]
    assert not int(ignored, 16) & (1 << (signal.SIGPIPE - 1)), ignored


def test_horse_knows_its_run_but_not_the_redis_url(run_job: RunJob) -> None:
    run = run_job("prints-env")
    lines = set((run.output or "").splitlines())
    assert f"SCHED_RUN_ID={run.id}" in lines
    assert "SCHED_JOB=prints-env" in lines and "SCHED_ATTEMPT=1" in lines
    assert "SCHED_REDIS_URL=-" in lines
