"""Stop signals as operators and tools send them: each counts, and counts once.

A Ctrl-C on a terminal goes to the terminal's foreground process group, so those cases run
`sched` on a real pseudo-terminal (`setsid -c` makes it the controlling terminal) and type
^C into it. `timeout` signals its command and then its own process group: the command must
see that as one request, not as two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.embedded import EmbeddedRedis
from scheduler.model import RunStatus
from scheduler.proc import children_of
from scheduler.store import Store
from tests.helpers import final, trigger, wait_for

JOBS = Path(__file__).parent / "stop_jobs"
SCHED = [sys.executable, "-m", "scheduler", "--jobs", str(JOBS)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(extra)
    return env


class Terminal:
    """A command on a pseudo-terminal of its own, in the terminal's foreground group."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            ["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.buffer = bytearray()

    def text(self) -> str:
        """Everything the command wrote so far (read now, so it never blocks on a full pty)."""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except (BlockingIOError, OSError):  # nothing yet; EIO once it closed the terminal
                break
            if not chunk:
                break
            self.buffer += chunk
        return self.buffer.decode(errors="replace")

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait(self, timeout: float) -> int:
        """The exit code, reading the terminal meanwhile."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.text()
            assert time.monotonic() < deadline, f"still running:\n{self.text()}"
            time.sleep(0.02)
        self.text()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def sched(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCHED, "--state-dir", str(state), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_argv(state: Path) -> list[str]:
    return [*SCHED, "--state-dir", str(state), "run", "--workers", "1", "--no-web"]


def started(state: Path, job: str) -> str:
    """Trigger `job` on the `sched run` of `state` and wait until it runs; its run id."""
    queued = wait_for(
        lambda: (r := sched(state, "trigger", job)).returncode == 0 and r.stdout, 30, "trigger"
    )
    run_id = queued.split()[-1]

    def running() -> bool:
        shown = sched(state, "show", run_id, "--json")
        return shown.returncode == 0 and json.loads(shown.stdout)["status"] == "running"

    wait_for(running, 30, f"{job} to run")
    return run_id


def status_of(state: Path, run_id: str) -> dict[str, object]:
    shown = sched(state, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, object] = json.loads(shown.stdout)
    return data


def test_two_ctrl_c_a_tenth_apart_stop_sched_run_cold(tmp_path: Path) -> None:
    state = tmp_path / "state"
    term = Terminal(run_argv(state), _env())
    try:
        wait_for(lambda: "started worker-1" in term.text(), 30, "sched run to start")
        run_id = started(state, "stop.long")
        term.ctrl_c()
        time.sleep(0.1)  # the scenario itself: a second press a tenth of a second later
        term.ctrl_c()
        assert term.wait(30) == 0
    finally:
        term.close()
    out = term.text()
    assert "cold shutdown (SIGINT)" in out, out
    run = status_of(state, run_id)
    assert (run["status"], run["reason"]) == ("killed", "shutdown"), run


def test_first_ctrl_c_says_what_it_waits_for(tmp_path: Path) -> None:
    state = tmp_path / "state"
    term = Terminal(run_argv(state), _env())
    try:
        wait_for(lambda: "started worker-1" in term.text(), 30, "sched run to start")
        run_id = started(state, "stop.naps")
        term.ctrl_c()
        assert term.wait(30) == 0
    finally:
        term.close()
    out = term.text()
    assert f"waiting for 1 run: stop.naps (run {run_id}) to finish; Ctrl-C again to kill it" in (
        out
    ), out
    assert "cold shutdown" not in out
    assert status_of(state, run_id)["status"] == "completed"


def test_ctrl_c_reaches_sched_run_that_a_script_started_once(tmp_path: Path) -> None:
    # sh (no job control) runs sched in its own process group, the terminal's foreground
    # one: sched leads a group of its own and takes the terminal with it, so the press goes
    # to sched (once), and the script goes on after sched stopped.
    state = tmp_path / "state"
    script = " ".join(f"'{a}'" for a in run_argv(state)) + '; echo "sched exited $?"'
    term = Terminal(["sh", "-c", script], _env())
    try:
        wait_for(lambda: "started worker-1" in term.text(), 30, "sched run to start")
        run_id = started(state, "stop.naps")
        term.ctrl_c()
        assert term.wait(30) == 0
    finally:
        term.close()
    out = term.text()
    assert "sched exited 0" in out, out
    assert "cold shutdown" not in out, out
    assert status_of(state, run_id)["status"] == "completed"


def test_one_signal_from_timeout_is_one_warm_shutdown(tmp_path: Path) -> None:
    # Signalled, `timeout` passes the signal to its command and then to its process group.
    state = tmp_path / "state"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["timeout", "-s", "INT", "600", *run_argv(state)],
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "started worker-1" in log.read_text(), 30, "sched run to start")
        run_id = started(state, "stop.naps")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "warm shutdown (SIGINT)" in text and "cold shutdown" not in text, text
    assert status_of(state, run_id)["status"] == "completed"


def test_a_signal_to_the_group_sched_was_started_in_does_not_count_twice(tmp_path: Path) -> None:
    # What `timeout` does, with its second copy arriving late enough to be handled apart:
    # the signal to sched's pid, then the same to the process group it was started in.
    state = tmp_path / "state"
    log = tmp_path / "run.log"
    wrapper = 'trap "" INT; "$@"; echo "sched exited $?"'
    with log.open("w") as out:
        shell = subprocess.Popen(
            ["sh", "-c", wrapper, "sh", *run_argv(state)],
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "started worker-1" in log.read_text(), 30, "sched run to start")
        (sched_pid,) = children_of(shell.pid)
        run_id = started(state, "stop.naps")
        os.kill(sched_pid, signal.SIGINT)
        wait_for(lambda: "warm shutdown (SIGINT)" in log.read_text(), 10, "the first SIGINT")
        os.killpg(shell.pid, signal.SIGINT)
        assert shell.wait(30) == 0
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    text = log.read_text()
    assert "sched exited 0" in text and "cold shutdown" not in text, text
    assert status_of(state, run_id)["status"] == "completed"


@pytest.fixture()
def fresh(redis_server: EmbeddedRedis) -> Iterator[tuple[Store, str]]:
    namespace = f"stop-{uuid.uuid4().hex[:6]}"
    store = Store(redis_server.url, namespace)
    yield store, namespace
    store.close()


def _worker_argv() -> list[str]:
    return [*SCHED, "worker", "--grace", "0.3s", "--lease", "2s"]


def _worker_env(url: str, namespace: str) -> dict[str, str]:
    return _env(SCHED_REDIS_URL=url, SCHED_NAMESPACE=namespace)


def _running(store: Store, run_id: str) -> bool:
    return store.get_run(run_id).status is RunStatus.RUNNING


def test_two_ctrl_c_stop_a_worker_cold(
    fresh: tuple[Store, str], redis_server: EmbeddedRedis
) -> None:
    store, namespace = fresh
    term = Terminal(_worker_argv(), _worker_env(redis_server.url, namespace))
    try:
        wait_for(lambda: "serving queues" in term.text(), 30, "the worker to start")
        run_id = trigger(store, "stop.long")
        wait_for(lambda: _running(store, run_id), 30, "the run to start")
        term.ctrl_c()
        time.sleep(0.1)  # the scenario itself
        term.ctrl_c()
        assert term.wait(30) == 0
    finally:
        term.close()
    run = final(store, run_id)
    assert (run.status, run.reason) == (RunStatus.KILLED, "shutdown"), run


def test_first_ctrl_c_on_a_worker_says_what_it_waits_for(
    fresh: tuple[Store, str], redis_server: EmbeddedRedis
) -> None:
    store, namespace = fresh
    term = Terminal(_worker_argv(), _worker_env(redis_server.url, namespace))
    try:
        wait_for(lambda: "serving queues" in term.text(), 30, "the worker to start")
        run_id = trigger(store, "stop.naps")
        wait_for(lambda: _running(store, run_id), 30, "the run to start")
        term.ctrl_c()
        wait_for(lambda: "to finish" in term.text(), 10, "the shutdown line")
        assert term.wait(30) == 0
    finally:
        term.close()
    out = term.text()
    assert (
        f"warm shutdown (SIGINT): waiting for run {run_id} (job stop.naps) to finish; "
        "Ctrl-C again to kill it"
    ) in out, out
    assert final(store, run_id).status is RunStatus.COMPLETED
