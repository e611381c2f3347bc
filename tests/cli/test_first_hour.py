"""What a newcomer hits in their first hour: every mistake gets a message, never a dead end.

Parsing and messages go through click's CliRunner; whatever starts processes (`sched run`)
runs the real command in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.embedded import socket_url
from scheduler.model import run_id_for
from scheduler.store import Store, is_alive
from tests.helpers import wait_for

GOOD = Path(__file__).parent.parent / "unit" / "fixtures" / "good"

HEAVY_JOB = """\
from scheduler import job


@job(every="1s", timeout="10s", queue="heavy")
def crunch() -> int:
    return 42
"""


def sched(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}


def sched_process(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scheduler", *args],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_sched(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def heavy_jobs(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "heavy.py").write_text(HEAVY_JOB)
    return folder


# -- common options on either side of the subcommand ----------------------------------------


def test_common_options_work_after_the_subcommand() -> None:
    code, out = sched("check", "--jobs", str(GOOD))
    assert code == 0, out
    assert "jobs OK in" in out


def test_an_option_after_the_subcommand_wins_over_one_before() -> None:
    code, out = sched("--jobs", "/nonexistent", "check", "--jobs", str(GOOD))
    assert code == 0, out


def test_redis_url_after_the_subcommand(store: Store) -> None:
    code, out = sched("history", "--redis-url", store.url, "--json")
    assert code == 0, out
    assert json.loads(out) == []


def test_log_format_before_the_subcommand(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    log = tmp_path / "run.log"
    proc = sched_process(
        "--log-format",
        "json",
        "--jobs",
        str(empty),
        "run",
        "--no-web",
        "--workers",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
        log=log,
    )
    try:
        wait_for(lambda: "started scheduler" in log.read_text(), 30, "the scheduler's start")
    finally:
        stop(proc)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any("no jobs in" in m for m in messages), "an empty jobs folder is a warning"
    assert any("runs wait in their queues" in m for m in messages)


# -- no traceback for a user mistake ---------------------------------------------------------


@pytest.mark.parametrize("command", [["history"], ["run", "--no-web"], ["workers"]])
def test_http_redis_url_is_a_usage_error(command: list[str]) -> None:
    result = CliRunner().invoke(
        cli, ["--jobs", str(GOOD), *command, "--redis-url", "http://localhost:8080"]
    )
    assert result.exit_code == 2, result.output
    assert "http:// is not a Redis URL" in result.output
    assert isinstance(result.exception, SystemExit), "no traceback"


@pytest.mark.parametrize("command", [["history"], ["run", "--no-web"]])
def test_state_dir_that_is_a_file(tmp_path: Path, command: list[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    result = CliRunner().invoke(cli, ["--jobs", str(GOOD), *command, "--state-dir", str(afile)])
    assert result.exit_code == 2, result.output
    assert "is not a folder" in result.output
    assert isinstance(result.exception, SystemExit), "no traceback"


def test_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    result = run_sched(
        "--jobs", str(GOOD), "run", "--no-web", "--state-dir", "/proc/no/such/state", timeout=30
    )
    assert result.returncode == 2, result.stderr
    assert "--state-dir /proc/no/such/state: cannot create it" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_only_state_dir(tmp_path: Path) -> None:
    # Root can write anywhere a permission bit forbids, so make the folder read-only for real:
    # a read-only bind mount in a mount namespace of the command's own.
    state = tmp_path / "state"
    state.mkdir()
    script = (
        f"mount --bind {state} {state} && mount -o remount,bind,ro {state} && "
        f"exec {sys.executable} -m scheduler --jobs {GOOD} run --no-web --state-dir {state}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot write there: Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_metrics_port_stops_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_sched(
            "--jobs",
            str(GOOD),
            "run",
            "--no-web",
            "--state-dir",
            str(tmp_path / "state"),
            "--metrics-port",
            str(port),
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert f"--metrics-port {port}: cannot listen on 0.0.0.0:{port}: already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30, "it must not restart a scheduler that cannot start"


def test_second_sched_run_on_one_state_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = sched_process(
        "--jobs", str(GOOD), "run", "--no-web", "--state-dir", str(state), log=tmp_path / "1.log"
    )
    try:
        wait_for(lambda: is_alive(socket_url(state)), 30, "the first sched run's Redis")
        started = time.monotonic()
        second = run_sched("--jobs", str(GOOD), "run", "--no-web", "--state-dir", str(state))
        took = time.monotonic() - started
    finally:
        stop(first)
    assert second.returncode == 1, second.stderr
    assert "another sched process is using" in second.stderr
    assert took < 8, f"refused after {took:.1f}s; the lock wait was 10s before"


# -- finding runs and jobs by what people type ----------------------------------------------


@pytest.fixture()
def two_runs(store: Store) -> Store:
    for hour in (10, 11):
        at = datetime(2026, 11, 27, hour, 0, tzinfo=UTC)
        store.enqueue(
            run_id=run_id_for("nightly-backup", at),
            job="nightly-backup",
            scheduled_for=at,
            queue="default",
            outcome="missed",
            reason=f"down at {hour}",
        )
    return store


def test_show_job_opens_its_latest_run(two_runs: Store) -> None:
    code, out = sched("--jobs", str(GOOD), "--redis-url", two_runs.url, "show", "nightly-backup")
    assert code == 0, out
    assert "nightly-backup@20261127T110000Z" in out
    assert "down at 11" in out


def test_logs_job_opens_its_latest_run(two_runs: Store) -> None:
    code, out = sched("--jobs", str(GOOD), "--redis-url", two_runs.url, "logs", "nightly-backup")
    assert code == 0, out


def test_show_a_unique_run_id_prefix(two_runs: Store) -> None:
    code, out = sched("--redis-url", two_runs.url, "show", "nightly-backup@20261127T10", "--json")
    assert code == 0, out
    assert json.loads(out)["id"] == "nightly-backup@20261127T100000Z"


def test_show_an_ambiguous_prefix_lists_the_candidates(two_runs: Store) -> None:
    code, out = sched("--redis-url", two_runs.url, "show", "nightly-backup@2026")
    assert code == 1
    assert "is the start of 2 run ids" in out
    assert "nightly-backup@20261127T100000Z" in out


def test_unknown_job_gets_did_you_mean(two_runs: Store) -> None:
    code, out = sched("--jobs", str(GOOD), "--redis-url", two_runs.url, "show", "nightly-bakup")
    assert code == 1
    assert "did you mean 'nightly-backup'?" in out
    code, out = sched("--jobs", str(GOOD), "--redis-url", two_runs.url, "trigger", "nightly-bakup")
    assert code == 2
    assert "did you mean 'nightly-backup'?" in out


def test_history_of_no_such_job(two_runs: Store) -> None:
    code, out = sched("--jobs", str(GOOD), "--redis-url", two_runs.url, "history", "nosuchjob")
    assert code == 2
    assert "no job 'nosuchjob'" in out


def test_history_of_a_job_with_runs_but_no_definition_still_lists(two_runs: Store) -> None:
    code, out = sched(
        "--jobs", "/nonexistent", "--redis-url", two_runs.url, "history", "nightly-backup"
    )
    assert code == 0, out
    assert "2 runs" in out


def test_inverted_since_until_is_an_error(two_runs: Store) -> None:
    code, out = sched("--redis-url", two_runs.url, "history", "--since", "2h", "--until", "3h")
    assert code == 2
    assert "is before --since" in out


# -- queues ----------------------------------------------------------------------------------


def history_json(state: Path, jobs: Path) -> list[dict[str, object]]:
    result = run_sched("--jobs", str(jobs), "--state-dir", str(state), "history", "--json")
    return json.loads(result.stdout) if result.returncode == 0 else []


def test_sched_run_serves_every_queue_its_jobs_name(tmp_path: Path, heavy_jobs: Path) -> None:
    state = tmp_path / "state"
    log = tmp_path / "run.log"
    proc = sched_process(
        "--jobs", str(heavy_jobs), "run", "--no-web", "--state-dir", str(state), log=log
    )
    try:
        wait_for(
            lambda: any(r["status"] == "completed" for r in history_json(state, heavy_jobs)),
            40,
            "a completed run of the job on queue 'heavy'",
        )
    finally:
        stop(proc)
    assert "2 workers (queues default, heavy)" in log.read_text()


def test_a_queue_nobody_serves_is_warned_about(tmp_path: Path, heavy_jobs: Path) -> None:
    log = tmp_path / "run.log"
    proc = sched_process(
        "--jobs",
        str(heavy_jobs),
        "run",
        "--no-web",
        "--queue",
        "default",
        "--state-dir",
        str(tmp_path / "state"),
        log=log,
    )
    try:
        wait_for(lambda: "is served by no" in log.read_text(), 30, "the unserved-queue warning")
    finally:
        stop(proc)
    assert "queue 'heavy' of job 'heavy.crunch' is served by no" in log.read_text()


def test_json_logs_of_sched_run_carry_an_event(tmp_path: Path, heavy_jobs: Path) -> None:
    log = tmp_path / "run.log"
    proc = sched_process(
        "--jobs",
        str(heavy_jobs),
        "run",
        "--log-format",
        "json",
        "--no-web",
        "--queue",
        "default",
        "--state-dir",
        str(tmp_path / "state"),
        log=log,
    )
    try:
        wait_for(lambda: "started scheduler" in log.read_text(), 30, "the scheduler's start")
    finally:
        stop(proc)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert all("event" in line for line in lines)
    warning = next(line for line in lines if line["event"] == "queue_unserved")
    assert warning["job"] == "heavy.crunch" and warning["level"] == "warning"


def test_trigger_wait_says_when_no_worker_serves_the_queue(
    tmp_path: Path, heavy_jobs: Path
) -> None:
    state = tmp_path / "state"
    proc = sched_process(
        "--jobs",
        str(heavy_jobs),
        "run",
        "--no-web",
        "--workers",
        "0",
        "--state-dir",
        str(state),
        log=tmp_path / "run.log",
    )
    try:
        wait_for(lambda: is_alive(socket_url(state)), 30, "the sched run's Redis")
        result = run_sched(
            "--jobs",
            str(heavy_jobs),
            "--state-dir",
            str(state),
            "trigger",
            "heavy.crunch",
            "--wait",
        )
    finally:
        stop(proc)
    assert result.returncode == 125, result.stdout + result.stderr  # sched could not run it
    assert "no live worker serves queue 'heavy'" in result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SCHED_HEARTBEAT_URL": "ftp://monitor.example/ping"}, "SCHED_HEARTBEAT_URL"),
        (
            {"SCHED_HEARTBEAT_URL": "https://hc-ping.com/x", "SCHED_HEARTBEAT_EVERY": "often"},
            "SCHED_HEARTBEAT_EVERY",
        ),
        ({"SCHED_HEARTBEAT_EVERY": "1m"}, "SCHED_HEARTBEAT_URL"),
    ],
)
@pytest.mark.parametrize("command", ["run", "scheduler"])
def test_a_bad_heartbeat_setting_stops_the_start(
    tmp_path: Path, env: dict[str, str], named: str, command: str
) -> None:
    """A heartbeat that could never be sent is a usage error at start, not a log line later."""
    done = subprocess.run(
        [sys.executable, "-m", "scheduler", "--jobs", str(GOOD), command],
        env={**clean_env(), "SCHED_STATE_DIR": str(tmp_path / "state"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
