"""Alert hooks against a real local HTTP server and real hook commands; and is_late."""

from __future__ import annotations

import base64
import json
import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scheduler.alerts import Alerter, from_env, hook_from_env, is_late, payload
from scheduler.errors import InvalidOption
from scheduler.model import JobSpec, Run, RunStatus
from tests.helpers import process_group, wait_for

FIRE = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
FAILURES = (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.KILLED, RunStatus.LOST)

# A hook command that saves what it was given (stdin, environment, pid) to the file argv[1],
# atomically, so the test never reads half a file.
RECORDER = """
import json, os, sys
data = {"stdin": sys.stdin.read(), "env": dict(os.environ), "pid": os.getpid()}
with open(sys.argv[1] + ".tmp", "w") as fh:
    json.dump(data, fh)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""


# ---------------------------------------------------------------------- a real HTTP server


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class HookServer(ThreadingHTTPServer):
    """Records every POST; answers per `mode`: ok (200), error (500), redirect, hang."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: queue.Queue[Received] = queue.Queue()
        self.mode = "ok"
        self.release = threading.Event()

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a hanging answer: expected, not worth a traceback

    def all_received(self) -> list[Received]:
        items = []
        while not self.received.empty():
            items.append(self.received.get_nowait())
        return items


class _Handler(BaseHTTPRequestHandler):
    server: HookServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.put(Received(self.path, dict(self.headers), body))
        mode = self.server.mode
        if mode == "hang":
            self.server.release.wait(10)
        self.send_response({"error": 500, "redirect": 302}.get(mode, 200))
        if mode == "redirect":
            self.send_header("Location", "http://example.invalid/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[HookServer]:
    srv = HookServer()
    # A short poll interval: shutdown() waits for the serving loop to notice it.
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture()
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="sched.alerts")
    return caplog


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_spec(name: str = "nightly", **fields: Any) -> JobSpec:
    return JobSpec(name=name, path="jobs/nightly.py", line=3, timeout_s=60.0, **fields)


def make_run(
    status: RunStatus = RunStatus.FAILED, job: str = "nightly", n: int = 0, **fields: Any
) -> Run:
    return Run(
        id=f"{job}@20250301T0{n}0000Z",
        job=job,
        status=status,
        scheduled_for=FIRE,
        reason=fields.pop("reason", "exit code 3" if status is RunStatus.FAILED else None),
        **fields,
    )


def alerts_thread_running() -> bool:
    return any(t.name == "sched-alerts" and t.is_alive() for t in threading.enumerate())


# -------------------------------------------------------------------------------- webhooks


def test_a_failed_run_posts_its_record(server: HookServer, logs: pytest.LogCaptureFixture) -> None:
    run = make_run(
        exit_code=3,
        started_at=FIRE + timedelta(seconds=1),
        finished_at=FIRE + timedelta(seconds=4),
        duration_s=3.0,
        output="copying...\nerror: disk full\n",
    )
    with Alerter({"nightly": make_spec(on_failure=server.url())}) as alerter:
        alerter.run_finished(run)
        got = server.received.get(timeout=5)
    assert got.path == "/hook"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == {"event": "failure", "job": "nightly", "run": run.to_json()}
    assert got.body["run"]["status"] == "failed"
    assert got.body["run"]["scheduled_for"] == "2025-03-01T03:00:00Z"
    assert f"failure alert for run {run.id} sent to {server.url()}" in logs.text


def test_only_failure_statuses_alert(server: HookServer) -> None:
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())})
    for n, status in enumerate(RunStatus):
        alerter.run_finished(make_run(status, n=n))
    assert alerter.close(5)  # delivers everything queued before it returns
    statuses = sorted(item.body["run"]["status"] for item in server.all_received())
    assert statuses == sorted(str(s) for s in FAILURES)


def test_a_completed_run_sends_nothing_and_starts_no_thread(server: HookServer) -> None:
    alerter = Alerter({"nightly": make_spec(on_failure=server.url(), on_late=server.url())})
    alerter.run_finished(make_run(RunStatus.COMPLETED))
    assert not alerts_thread_running()
    assert alerter.close(5)
    assert server.received.empty()


def test_a_job_without_hooks_sends_nothing() -> None:
    alerter = Alerter({"nightly": make_spec()})
    alerter.run_finished(make_run())
    alerter.run_late(make_run(RunStatus.RUNNING), "late: still running")
    assert alerter.close(1)
    assert not alerts_thread_running()


def test_a_late_run_posts_the_reason_once(server: HookServer) -> None:
    run = make_run(RunStatus.RUNNING, started_at=FIRE)
    why = "late: still running after 20m, past its expected duration of 10m"
    alerter = Alerter({"nightly": make_spec(on_late=server.url())})
    alerter.run_late(run, why)
    alerter.run_late(run, why)  # the scheduler checks again on its next pass
    assert alerter.close(5)
    [got] = server.all_received()
    assert got.body == {"event": "late", "job": "nightly", "run": run.to_json(), "reason": why}


def test_a_refused_connection_is_logged_and_does_not_raise(
    logs: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    alerter = Alerter({"nightly": make_spec(on_failure=url)}, timeout_s=2)
    started = time.monotonic()
    alerter.run_finished(make_run())
    assert time.monotonic() - started < 1.0
    assert alerter.close(5)
    [record] = [r for r in logs.records if r.levelno == logging.WARNING]
    assert record.name == "sched.alerts"
    assert record.getMessage().startswith(
        f"failure alert for run nightly@20250301T000000Z to {url}"
    )
    assert "Connection refused" in record.getMessage()


def test_an_http_error_is_logged(server: HookServer, logs: pytest.LogCaptureFixture) -> None:
    server.mode = "error"
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())})
    alerter.run_finished(make_run())
    assert alerter.close(5)
    assert f"to {server.url()} failed: answered HTTP 500" in logs.text


def test_a_redirect_is_not_followed(server: HookServer, logs: pytest.LogCaptureFixture) -> None:
    server.mode = "redirect"
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())})
    alerter.run_finished(make_run())
    assert alerter.close(5)
    assert len(server.all_received()) == 1
    assert "failed: answered HTTP 302 (redirects are not followed)" in logs.text


def test_a_hanging_endpoint_does_not_block_the_caller(
    server: HookServer, logs: pytest.LogCaptureFixture
) -> None:
    server.mode = "hang"
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())}, timeout_s=0.3)
    started = time.monotonic()
    alerter.run_finished(make_run())
    assert time.monotonic() - started < 1.0
    server.received.get(timeout=5)  # the endpoint has it and is not answering
    assert alerter.close(5)  # the delivery gave up at its timeout, with the server still hung
    assert server.mode == "hang" and not server.release.is_set()
    assert "failed: no answer within 0.3s" in logs.text


def test_a_full_queue_drops_with_a_warning(
    server: HookServer, logs: pytest.LogCaptureFixture
) -> None:
    server.mode = "hang"
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())}, queue_size=1)
    alerter.run_finished(make_run(n=1))
    server.received.get(timeout=5)  # the thread is now stuck on the first delivery
    started = time.monotonic()
    alerter.run_finished(make_run(n=2))  # waits in the queue
    alerter.run_finished(make_run(n=3))  # no room: dropped
    assert time.monotonic() - started < 1.0
    assert (
        "failure alert for run nightly@20250301T030000Z to "
        f"{server.url()} dropped: 1 alerts already waiting" in logs.text
    )
    server.release.set()
    assert alerter.close(5)
    assert [r.body["run"]["id"] for r in server.all_received()] == ["nightly@20250301T020000Z"]


@pytest.mark.parametrize("mode", ["error", "refused"])
def test_the_password_of_a_webhook_is_sent_but_never_logged(
    server: HookServer, logs: pytest.LogCaptureFixture, mode: str
) -> None:
    server.mode = mode
    url = server.url(userinfo="ops:s3cr%40t@")
    if mode == "refused":
        url = f"http://ops:s3cr%40t@127.0.0.1:{closed_port()}/hook"
    alerter = Alerter({"nightly": make_spec(on_failure=url)})
    alerter.run_finished(make_run())
    assert alerter.close(5)
    if mode == "error":
        [got] = server.all_received()
        assert got.path == "/hook"
        assert got.headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cr@t").decode()
    assert "failed:" in logs.text
    assert "ops:***@127.0.0.1:" in logs.text
    assert "s3cr" not in logs.text


def test_closed_alerts_drop_new_ones_without_raising(
    server: HookServer, logs: pytest.LogCaptureFixture
) -> None:
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())})
    assert alerter.close(1)
    alerter.run_finished(make_run())
    assert "dropped: alerts are closed" in logs.text
    assert not alerts_thread_running()


# -------------------------------------------------------------------------------- commands


def test_a_command_gets_the_json_on_stdin_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHED_REDIS_URL", "redis://:hunter2@redis.internal:6379")
    out = tmp_path / "alert.json"
    run = make_run(RunStatus.TIMED_OUT, reason="deadline 1m passed")
    alerter = Alerter({"nightly": make_spec(on_failure=[sys.executable, "-c", RECORDER, str(out)])})
    alerter.run_finished(run)
    wait_for(out.exists, timeout=10, what="the hook command's output file")
    seen = json.loads(out.read_text())
    assert json.loads(seen["stdin"]) == payload("failure", run)
    env = seen["env"]
    sched_env = {
        "SCHED_EVENT": "failure",
        "SCHED_RUN_ID": run.id,
        "SCHED_JOB": "nightly",
        "SCHED_STATUS": "timed-out",
        "SCHED_REASON": "deadline 1m passed",
    }
    assert {k: v for k, v in env.items() if k.startswith("SCHED_")} == sched_env
    passed = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME"}
    assert set(env) - passed == set(sched_env)  # nothing else, SCHED_REDIS_URL least of all
    assert alerter.close(5)


def test_a_late_command_gets_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "late.json"
    why = "late: not started 5m after its fire time (misfire_grace 1m)"
    alerter = Alerter({"nightly": make_spec(on_late=(sys.executable, "-c", RECORDER, str(out)))})
    alerter.run_late(make_run(RunStatus.QUEUED), why)
    wait_for(out.exists, timeout=10, what="the hook command's output file")
    seen = json.loads(out.read_text())
    assert json.loads(seen["stdin"])["reason"] == why
    assert (seen["env"]["SCHED_EVENT"], seen["env"]["SCHED_REASON"]) == ("late", why)
    assert alerter.close(5)


def test_a_command_that_hangs_is_killed_with_its_children_at_the_timeout(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "started.json"
    # Records its pid, starts a grandchild, then both sleep far past the timeout.
    script = (
        RECORDER + "import subprocess, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    alerter = Alerter(
        {"nightly": make_spec(on_failure=[sys.executable, "-c", script, str(out)])},
        timeout_s=1.0,
    )
    started = time.monotonic()
    alerter.run_finished(make_run())
    assert time.monotonic() - started < 1.0
    wait_for(out.exists, timeout=10, what="the hook command to start")
    pid = json.loads(out.read_text())["pid"]
    assert process_group(pid)
    assert alerter.close(10)
    assert "failed: timed out after 1s; killed" in logs.text
    wait_for(lambda: not process_group(pid), timeout=5, what="the hook's group to be gone")


def test_a_failing_command_logs_its_exit_code_and_stderr(logs: pytest.LogCaptureFixture) -> None:
    hook = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('no route\\n' * 200 + 'bad token'); sys.exit(3)",
    ]
    alerter = Alerter({"nightly": make_spec(on_failure=hook)})
    alerter.run_finished(make_run())
    assert alerter.close(10)
    [record] = [r for r in logs.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "failed: exited with 3: " in message
    assert message.endswith("no route bad token")
    assert len(message) < 1000  # only the tail of stderr


def test_a_command_that_does_not_exist_is_logged(logs: pytest.LogCaptureFixture) -> None:
    alerter = Alerter({"nightly": make_spec(on_failure=["/nonexistent/sched-notify", "x"])})
    alerter.run_finished(make_run())
    assert alerter.close(5)
    assert "to ['/nonexistent/sched-notify', 'x'] failed: could not start: " in logs.text
    assert "No such file or directory" in logs.text


# ------------------------------------------------------------------------- global hooks


def test_global_hooks_from_the_environment_apply_to_jobs_that_set_none(
    server: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHED_ON_FAILURE", f"  {server.url('/global')}  ")
    monkeypatch.setenv("SCHED_ON_LATE", "notify-send 'sched: late'")
    specs = {
        "own": make_spec("own", on_failure=server.url("/own")),
        "plain": make_spec("plain"),
    }
    alerter = from_env(specs)
    assert alerter.hook_for("own", "failure") == server.url("/own")
    assert alerter.hook_for("own", "late") == ("notify-send", "sched: late")
    assert alerter.hook_for("plain", "failure") == server.url("/global")
    assert alerter.hook_for("not-loaded", "failure") == server.url("/global")
    alerter.run_finished(make_run(job="plain"))
    alerter.run_finished(make_run(job="own"))
    assert alerter.close(5)
    assert sorted(r.path for r in server.all_received()) == ["/global", "/own"]


def test_no_global_hooks_when_the_variables_are_empty() -> None:
    alerter = from_env({}, environ={"SCHED_ON_FAILURE": " ", "SCHED_ON_LATE": ""})
    assert alerter.global_hooks == {"failure": None, "late": None}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "ftp://alerts.example.com/x",
            "invalid SCHED_ON_FAILURE 'ftp://alerts.example.com/x': scheme 'ftp' is not http "
            "or https",
        ),
        (
            "notify-send 'sched",
            'invalid SCHED_ON_FAILURE "notify-send \'sched": not a command line: '
            "No closing quotation",
        ),
        (
            "https://ops:s3cret@/x",
            "invalid SCHED_ON_FAILURE 'https://ops:***@/x': the URL has no host",
        ),
    ],
)
def test_a_bad_global_hook_is_an_error_at_startup(value: str, message: str) -> None:
    with pytest.raises(InvalidOption) as info:
        hook_from_env("SCHED_ON_FAILURE", {"SCHED_ON_FAILURE": value})
    assert str(info.value) == message
    assert info.value.expected == (
        "expected an http(s) URL or a command line, e.g. "
        "SCHED_ON_FAILURE=https://alerts.example.com/sched or "
        "SCHED_ON_FAILURE='notify-send sched'"
    )


def test_bad_constructor_hooks_raise() -> None:
    with pytest.raises(InvalidOption, match="invalid global on_late 'notify me'"):
        Alerter({}, global_on_late="notify me")


# ---------------------------------------------------------------------------------- is_late

NOW = FIRE + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("spec", "run", "expected"),
    [
        (
            make_spec(misfire_grace_s=600.0),
            make_run(RunStatus.QUEUED),
            "late: not started 30m after its fire time (misfire_grace 10m)",
        ),
        (make_spec(misfire_grace_s=3600.0), make_run(RunStatus.QUEUED), None),
        (make_spec(), make_run(RunStatus.QUEUED), None),  # no grace: waiting is fine
        (
            make_spec(misfire_grace_s=60.0),  # claimed but not yet started counts as waiting
            make_run(RunStatus.RUNNING),
            "late: not started 30m after its fire time (misfire_grace 1m)",
        ),
        (
            make_spec(expected_duration_s=600.0, misfire_grace_s=60.0),
            make_run(RunStatus.RUNNING, started_at=FIRE + timedelta(seconds=4.5)),
            "late: still running after 29m56s, past its expected duration of 10m",
        ),
        (
            make_spec(expected_duration_s=1800.0),
            make_run(RunStatus.RUNNING, started_at=FIRE),
            None,  # exactly at its expected duration is not late yet
        ),
        (make_spec(), make_run(RunStatus.RUNNING, started_at=FIRE), None),
        (
            make_spec(misfire_grace_s=1.0, expected_duration_s=1.0),
            make_run(RunStatus.FAILED, started_at=FIRE),
            None,  # finished runs are never late
        ),
        (
            make_spec(misfire_grace_s=1.0),  # a retry scheduled for later is not late
            Run(id="r", job="nightly", status=RunStatus.QUEUED, scheduled_for=NOW + timedelta(1)),
            None,
        ),
    ],
)
def test_is_late(spec: JobSpec, run: Run, expected: str | None) -> None:
    assert is_late(spec, run, NOW) == expected


def test_close_gives_up_after_its_timeout(
    server: HookServer, logs: pytest.LogCaptureFixture
) -> None:
    server.mode = "hang"
    alerter = Alerter({"nightly": make_spec(on_failure=server.url())}, timeout_s=5)
    alerter.run_finished(make_run(n=1))
    alerter.run_finished(make_run(n=2))
    server.received.get(timeout=5)  # the first is in flight, the second waits behind it
    started = time.monotonic()
    assert not alerter.close(0.2)
    assert time.monotonic() - started < 1.0
    assert "alerts: 2 undelivered after 0.2s; giving up on them" in logs.text
    server.release.set()  # let the thread finish, so no later test sees it
    wait_for(lambda: not alerts_thread_running(), timeout=10, what="the alerts thread to end")
